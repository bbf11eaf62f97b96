//! The interaction protocols a caller can start (`/api/v1/protocols/...`,
//! `/api/v1/topics/{topic}/publish`), each run by the supervisor as a series of executions in
//! one conversation: contract-net and auction (a call for proposals, an award), negotiation
//! (offers and counter-offers between two agents) and subscribe (a notification to every
//! subscriber of a topic).

use serde::{Deserialize, Serialize};

use crate::runs::ExecutionReport;

/// How the best proposal of a call for proposals is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AwardRule {
    /// Contract-net: the highest `score` a proposer gives itself wins; equal scores go to the
    /// agent whose name sorts first.
    HighestScore,
    /// Auction: the lowest `price` wins; equal prices go to the agent whose name sorts first.
    LowestPrice,
}

impl AwardRule {
    /// The rule in words, as answers state it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::HighestScore => {
                "highest score wins; equal scores go to the agent whose name sorts first"
            }
            Self::LowestPrice => {
                "lowest price wins; equal prices go to the agent whose name sorts first"
            }
        }
    }
}

/// Body of `POST /api/v1/protocols/contract-net` and `/auction`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallForProposals {
    /// Every agent declaring this capability is asked for a proposal.
    pub capability: String,
    /// The task (or, for an auction, what is bid for).
    pub task: String,
    /// A conversation to hold it in; a new one when absent.
    #[serde(default)]
    pub conversation: Option<String>,
}

/// One agent's answer to a call for proposals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalRecord {
    /// The proposer.
    pub agent: String,
    /// The execution that made the proposal.
    pub execution_id: String,
    /// Its score (contract-net) or price (auction); `None` when it declined or its answer was
    /// not a proposal.
    pub value: Option<f64>,
    /// What it proposed, or why it is not counted.
    pub text: String,
    /// Whether it was counted: the agent answered with a valid proposal.
    pub valid: bool,
}

/// The answer of a contract-net or an auction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwardAnswer {
    /// The conversation holding every message of it.
    pub conversation_id: String,
    /// How the winner was chosen.
    pub rule: AwardRule,
    /// The rule in words.
    pub rule_text: String,
    /// Every proposal, in agent order.
    pub proposals: Vec<ProposalRecord>,
    /// The agent awarded the task; `None` when no proposal was valid.
    pub awarded: Option<String>,
    /// The awarded agent's execution of the task.
    pub result: Option<ExecutionReport>,
}

/// Body of `POST /api/v1/protocols/negotiation`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegotiationRequest {
    /// The agent that makes the opening offer.
    pub initiator: String,
    /// The agent it negotiates with.
    pub responder: String,
    /// What is negotiated.
    pub subject: String,
    /// Most responses (accept, reject or counter) before it ends without agreement.
    #[serde(default)]
    pub max_rounds: Option<u32>,
    /// A conversation to hold it in; a new one when absent.
    #[serde(default)]
    pub conversation: Option<String>,
}

/// One offer or response of a negotiation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NegotiationTurn {
    /// The agent that spoke.
    pub agent: String,
    /// Its execution.
    pub execution_id: String,
    /// `offer`, `accept`, `reject`, `counter`, or `invalid` when its answer was none of them.
    pub decision: String,
    /// The offer it made or accepted.
    pub offer: Option<String>,
}

/// How a negotiation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NegotiationOutcome {
    /// One side accepted the other's offer.
    Agreed,
    /// One side rejected it, or answered with no valid decision.
    Refused,
    /// The round limit came first.
    RoundLimit,
    /// An execution failed.
    Failed,
}

/// The answer of a negotiation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NegotiationAnswer {
    /// The conversation holding every message of it.
    pub conversation_id: String,
    /// How it ended.
    pub outcome: NegotiationOutcome,
    /// The offer agreed on.
    pub agreement: Option<String>,
    /// Every turn, in order.
    pub turns: Vec<NegotiationTurn>,
}

/// Body of `POST /api/v1/topics/{topic}/publish`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The notification's text.
    pub content: String,
    /// A conversation to hold it in; a new one when absent.
    #[serde(default)]
    pub conversation: Option<String>,
}

/// The answer of a publication: every subscriber's execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishAnswer {
    /// The topic.
    pub topic: String,
    /// The conversation holding the notifications.
    pub conversation_id: String,
    /// One report per subscriber, in agent order.
    pub deliveries: Vec<ExecutionReport>,
}
