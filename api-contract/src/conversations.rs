//! Messages and conversations (`GET /api/v1/conversations[/ID]`): every request an agent gets,
//! from an outside caller or from another agent, is a stored [`Message`] in a [`Conversation`],
//! and so is every answer.

use serde::{Deserialize, Serialize};

/// What a message is, as the specification types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Asks for work; answered by a `Response` or an `Error`.
    Request,
    /// The answer to a request.
    Response,
    /// Sent without waiting for an answer.
    Notification,
    /// The request failed; the content says why.
    Error,
}

impl MessageKind {
    /// The kind as the database and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
            Self::Notification => "notification",
            Self::Error => "error",
        }
    }
}

impl std::str::FromStr for MessageKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "request" => Ok(Self::Request),
            "response" => Ok(Self::Response),
            "notification" => Ok(Self::Notification),
            "error" => Ok(Self::Error),
            other => Err(format!("unknown message kind {other:?}")),
        }
    }
}

/// Who sends or receives a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Party {
    /// Whoever called the API or the CLI.
    Caller,
    /// A deployed agent, by name.
    Agent(String),
    /// Any agent declaring this capability (a receiver only).
    Capability(String),
    /// Every subscriber of this topic (a receiver only).
    Topic(String),
    /// An agent on another server, reached over A2A: `AGENT@SERVER task TASK` as the message
    /// that crossed named it.
    Remote(String),
}

impl Party {
    /// `caller`, `agent:NAME`, `capability:NAME`, `topic:NAME` or `remote:NAME`, as the
    /// database stores it.
    pub fn to_key(&self) -> String {
        match self {
            Self::Caller => "caller".into(),
            Self::Agent(n) => format!("agent:{n}"),
            Self::Capability(n) => format!("capability:{n}"),
            Self::Topic(n) => format!("topic:{n}"),
            Self::Remote(n) => format!("remote:{n}"),
        }
    }

    /// Read what [`to_key`](Self::to_key) wrote.
    pub fn from_key(key: &str) -> Option<Self> {
        if key == "caller" {
            return Some(Self::Caller);
        }
        let (kind, name) = key.split_once(':')?;
        let name = name.to_owned();
        match kind {
            "agent" => Some(Self::Agent(name)),
            "capability" => Some(Self::Capability(name)),
            "topic" => Some(Self::Topic(name)),
            "remote" => Some(Self::Remote(name)),
            _ => None,
        }
    }

    /// The agent's name, when the party is an agent.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Self::Agent(n) => Some(n),
            _ => None,
        }
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Caller => f.write_str("caller"),
            Self::Agent(n) => f.write_str(n),
            Self::Capability(n) => write!(f, "capability {n}"),
            Self::Topic(n) => write!(f, "topic {n}"),
            Self::Remote(n) => write!(f, "remote {n}"),
        }
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Unique id.
    pub id: String,
    /// Request, response, notification or error.
    pub kind: MessageKind,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// The message this one answers.
    pub reply_to: Option<String>,
    /// Who sent it.
    pub sender: Party,
    /// Who it is for: an agent, or a capability or topic the supervisor resolved.
    pub receiver: Party,
    /// The text.
    pub content: String,
    /// When it was stored, seconds since the Unix epoch.
    pub timestamp: f64,
    /// The execution it started (a request or notification) or answered (a response or error).
    pub execution_id: Option<String>,
}

/// How the agents of a conversation interact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// A request and its answer.
    #[default]
    RequestReply,
    /// A call for proposals, an award to the best proposer, the others told.
    ContractNet,
    /// Bids with a price; the award follows the stated rule.
    Auction,
    /// Rounds of proposal and counter-proposal between two agents.
    Negotiation,
    /// A notification published to a topic reaches every subscriber.
    Subscribe,
}

impl Protocol {
    /// The protocol as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestReply => "request-reply",
            Self::ContractNet => "contract-net",
            Self::Auction => "auction",
            Self::Negotiation => "negotiation",
            Self::Subscribe => "subscribe",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "request-reply" => Ok(Self::RequestReply),
            "contract-net" => Ok(Self::ContractNet),
            "auction" => Ok(Self::Auction),
            "negotiation" => Ok(Self::Negotiation),
            "subscribe" => Ok(Self::Subscribe),
            other => Err(format!(
                "unknown protocol {other:?}: use request-reply, contract-net, auction, negotiation or subscribe"
            )),
        }
    }
}

/// Where a conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConversationState {
    /// Created; nothing has run yet.
    Initiated,
    /// An execution of it is running.
    InProgress,
    /// Its last request was answered.
    Completed,
    /// Its last request failed.
    Failed,
    /// Idle past its expiry; it cannot be continued.
    Expired,
}

impl ConversationState {
    /// The state as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "initiated",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

impl std::str::FromStr for ConversationState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "initiated" => Ok(Self::Initiated),
            "in-progress" => Ok(Self::InProgress),
            "completed" => Ok(Self::Completed),
            "failed" => Ok(Self::Failed),
            "expired" => Ok(Self::Expired),
            other => Err(format!("unknown conversation state {other:?}")),
        }
    }
}

/// A conversation as lists show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// Unique id; a request continues the conversation by naming it.
    pub id: String,
    /// Who started it.
    pub initiator: Party,
    /// The agents that sent or received a message in it, by name.
    pub participants: Vec<String>,
    /// How its agents interact.
    pub protocol: Protocol,
    /// Where it stands.
    pub state: ConversationState,
    /// Seconds since the Unix epoch.
    pub created_at: f64,
    /// When it last changed.
    pub updated_at: f64,
    /// When it expires unless continued before.
    pub expires_at: f64,
    /// Messages stored.
    pub messages: u64,
    /// Executions it caused.
    pub executions: u64,
}

/// `GET /api/v1/conversations`: the most recently changed first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationList {
    /// The conversations.
    pub conversations: Vec<ConversationSummary>,
}

/// One execution of a conversation and the executions it delegated to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionNode {
    /// Execution id.
    pub execution_id: String,
    /// The agent that ran.
    pub agent: String,
    /// `running`, `finished` or `abandoned`.
    pub status: String,
    /// Outcome label once finished.
    pub outcome: Option<String>,
    /// The error shown to its caller.
    pub error: Option<String>,
    /// Seconds since the Unix epoch.
    pub started_at: f64,
    /// Milliseconds.
    pub duration_ms: Option<f64>,
    /// Prompt tokens.
    pub prompt_tokens: Option<u32>,
    /// Completion tokens.
    pub completion_tokens: Option<u32>,
    /// The executions it started, in start order.
    pub children: Vec<ExecutionNode>,
}

/// `GET /api/v1/conversations/{id}`: the conversation, its messages in order and its tree of
/// executions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationDetail {
    /// The conversation.
    pub conversation: ConversationSummary,
    /// Every message, oldest first.
    pub messages: Vec<Message>,
    /// Root executions (those a caller started), each with its delegations below it.
    pub executions: Vec<ExecutionNode>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn a_party_reads_back_from_its_key() {
        for p in [
            Party::Caller,
            Party::Agent("a:b".into()),
            Party::Capability("c".into()),
            Party::Topic("t".into()),
        ] {
            assert_eq!(Party::from_key(&p.to_key()), Some(p));
        }
        assert_eq!(Party::from_key("nobody:x"), None);
    }

    #[test]
    fn names_read_as_they_are_written() {
        for p in [
            Protocol::RequestReply,
            Protocol::ContractNet,
            Protocol::Auction,
            Protocol::Negotiation,
            Protocol::Subscribe,
        ] {
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for s in [
            ConversationState::Initiated,
            ConversationState::InProgress,
            ConversationState::Completed,
            ConversationState::Failed,
            ConversationState::Expired,
        ] {
            assert_eq!(s.as_str().parse::<ConversationState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in [
            MessageKind::Request,
            MessageKind::Response,
            MessageKind::Notification,
            MessageKind::Error,
        ] {
            assert_eq!(k.as_str().parse::<MessageKind>(), Ok(k));
        }
    }
}
