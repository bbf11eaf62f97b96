//! The interaction protocols beyond request-reply, each a series of executions the supervisor
//! runs in one conversation: contract-net and auction ([`call_for_proposals`]), negotiation
//! ([`negotiate`]) and subscribe ([`publish`]). A caller starts one through the API or the CLI
//! ([`Origin::Caller`]: each step is an execution of the conversation), an agent through a
//! delegation tool ([`Origin::Agent`]: each step is a child of its execution, under its tree's
//! guards).
//!
//! The supervisor, not a model, decides what a step's answer means: a proposal, a bid or a
//! decision is the first JSON object in the agent's answer, and one that is not valid is
//! recorded as such and counts for nothing. Who wins is stated in every answer
//! ([`AwardRule::describe`]) and deterministic: equal values go to the agent whose name sorts
//! first.

use std::sync::Arc;

use caxton_api_contract::conversations::{Message, MessageKind, Party, Protocol};
use caxton_api_contract::protocols::{
    AwardAnswer, AwardRule, CallForProposals, NegotiationAnswer, NegotiationOutcome,
    NegotiationRequest, NegotiationTurn, ProposalRecord, PublishAnswer, PublishRequest,
};
use caxton_api_contract::routing::Strategy;
use caxton_api_contract::{ExecutionReport, RunRequest};
use serde_json::Value;

use crate::agent::AgentDefinition;
use crate::delegation::{Lineage, Refusal};
use crate::messaging::Joined;
use crate::worker_pool::Outcome;
use crate::{PreparedRun, RunError, Supervisor};

/// Who started a protocol.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A caller (API, CLI): its steps are executions of this conversation.
    Caller(Joined),
    /// An agent's tool call: its steps are children of this execution.
    Agent(Arc<Lineage>),
}

/// Why a protocol could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A step could not be prepared (unknown agent or capability, draining, ...).
    #[error(transparent)]
    Run(#[from] RunError),
    /// A tree guard refused a step started by an agent.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No agent subscribes to the topic.
    #[error("no agent subscribes to topic {topic:?}; topics with subscribers: {known}")]
    NoSubscribers {
        /// The topic.
        topic: String,
        /// The topics that have subscribers.
        known: String,
    },
    /// A negotiation names the same agent on both sides.
    #[error("an agent cannot negotiate with itself ({0})")]
    SameAgent(String),
    /// A negotiation's round limit is out of range.
    #[error("max_rounds = {0}: a negotiation has 1 to {MAX_NEGOTIATION_ROUNDS} rounds")]
    Rounds(u32),
}

/// Most responses a negotiation may have.
pub const MAX_NEGOTIATION_ROUNDS: u32 = 20;
/// Responses a negotiation has when the request does not say.
pub const DEFAULT_NEGOTIATION_ROUNDS: u32 = 4;

impl Origin {
    fn conversation_id(&self) -> &str {
        match self {
            Self::Caller(joined) => &joined.id,
            Self::Agent(lineage) => &lineage.conversation_id,
        }
    }

    fn sender(&self) -> Party {
        match self {
            Self::Caller(_) => Party::Caller,
            Self::Agent(lineage) => lineage
                .agent()
                .map_or(Party::Caller, |a| Party::Agent(a.to_string())),
        }
    }

    /// Prepare one step: `agent` gets `text`; for an agent's protocol, after the tree guards.
    fn prepare(
        &self,
        sup: &Supervisor,
        agent: &Arc<AgentDefinition>,
        text: &str,
        receiver: Party,
        kind: MessageKind,
    ) -> Result<PreparedRun, ProtocolError> {
        match self {
            Self::Caller(joined) => Ok(sup.prepare_in(
                agent.name.as_str(),
                RunRequest {
                    request: text.to_owned(),
                    ..RunRequest::default()
                },
                receiver,
                kind,
                joined,
            )?),
            Self::Agent(lineage) => {
                lineage.check(&agent.name)?;
                Ok(sup.prepare_child(agent.clone(), text, "", lineage, receiver, kind)?)
            }
        }
    }

    /// Agents on this origin's path cannot take part (they are busy with this very request);
    /// when they are all there is, that is refused as the cycle it would be.
    fn off_path(
        &self,
        agents: Vec<Arc<AgentDefinition>>,
    ) -> Result<Vec<Arc<AgentDefinition>>, ProtocolError> {
        let Self::Agent(lineage) = self else {
            return Ok(agents);
        };
        let (on, off): (Vec<_>, Vec<_>) = agents
            .into_iter()
            .partition(|a| lineage.path.contains(&a.name));
        if let (true, Some(first)) = (off.is_empty(), on.first()) {
            lineage.check(&first.name)?;
        }
        Ok(off)
    }
}

/// The first JSON object in a model's answer (models wrap JSON in prose or code fences). Only
/// the first [`SCANNED_BYTES`] of the answer and its first [`SCANNED_OBJECTS`] opening braces
/// are tried, so an answer crafted to make every brace a deep failed parse costs little.
fn first_object(text: &str) -> Option<serde_json::Map<String, Value>> {
    let mut end = text.len().min(SCANNED_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    text.char_indices()
        .filter(|(_, c)| *c == '{')
        .take(SCANNED_OBJECTS)
        .find_map(|(at, _)| {
            serde_json::Deserializer::from_str(&text[at..])
                .into_iter::<Value>()
                .next()
                .and_then(Result::ok)
                .and_then(|v| match v {
                    Value::Object(map) => Some(map),
                    _ => None,
                })
        })
}

/// How much of an answer is searched for a proposal or a decision.
const SCANNED_BYTES: usize = 64 * 1024;
/// How many opening braces are tried as the start of one.
const SCANNED_OBJECTS: usize = 16;

/// What a proposer's execution amounts to under `rule`.
fn proposal(report: &ExecutionReport, rule: AwardRule) -> ProposalRecord {
    let mut record = ProposalRecord {
        agent: report.agent.clone(),
        execution_id: report.execution_id.clone(),
        value: None,
        text: String::new(),
        valid: false,
    };
    let Some(answer) = report
        .answer
        .as_deref()
        .filter(|_| report.outcome == Outcome::Succeeded)
    else {
        record.text = format!(
            "no proposal: the execution ended {} ({})",
            report.outcome.label(),
            report.failure_message().unwrap_or_default()
        );
        return record;
    };
    let key = match rule {
        AwardRule::HighestScore => "score",
        AwardRule::LowestPrice => "price",
    };
    match first_object(answer) {
        Some(obj) if obj.get("decline").and_then(Value::as_bool) == Some(true) => {
            record.text = "declined".into();
        }
        Some(obj) => match obj.get(key).and_then(Value::as_f64).filter(|v| match rule {
            AwardRule::HighestScore => (0.0..=1.0).contains(v),
            AwardRule::LowestPrice => v.is_finite() && *v >= 0.0,
        }) {
            Some(value) => {
                record.value = Some(value);
                record.text = obj
                    .get("proposal")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                record.valid = true;
            }
            None => {
                record.text = match rule {
                    AwardRule::HighestScore => {
                        "not counted: the answer has no \"score\" between 0 and 1".into()
                    }
                    AwardRule::LowestPrice => {
                        "not counted: the answer has no \"price\" of 0 or more".into()
                    }
                }
            }
        },
        None => record.text = "not counted: the answer holds no JSON object".into(),
    }
    record
}

/// The winner under `rule`: the best value, ties to the name that sorts first.
fn award(proposals: &[ProposalRecord], rule: AwardRule) -> Option<&ProposalRecord> {
    proposals
        .iter()
        .filter(|p| p.valid)
        .filter_map(|p| p.value.map(|v| (v, p)))
        .min_by(|(a, pa), (b, pb)| {
            let by_value = match rule {
                AwardRule::HighestScore => b.total_cmp(a),
                AwardRule::LowestPrice => a.total_cmp(b),
            };
            by_value.then_with(|| pa.agent.cmp(&pb.agent))
        })
        .map(|(_, p)| p)
}

/// Contract-net (highest score) or auction (lowest price): every agent with `capability` is
/// asked for a proposal in parallel, the best is awarded `task` and performs it, the others
/// are told they were not chosen.
pub async fn call_for_proposals(
    sup: &Supervisor,
    origin: &Origin,
    capability: &str,
    task: &str,
    rule: AwardRule,
) -> Result<AwardAnswer, ProtocolError> {
    let agents = origin.off_path(sup.route(capability, Strategy::Broadcast)?)?;
    let (call, reply) = match rule {
        AwardRule::HighestScore => (
            "CALL FOR PROPOSALS (contract-net)",
            r#"{"score": <0 to 1: how well you can do it>, "proposal": "<how you would do it>"}"#,
        ),
        AwardRule::LowestPrice => (
            "CALL FOR BIDS (auction)",
            r#"{"price": <your price or cost, a number>, "proposal": "<what you offer for it>"}"#,
        ),
    };
    let text = format!(
        "{call}\nTask: {task}\n\nDo not do the task yet. Reply with only a JSON object: {reply}, \
         or {{\"decline\": true}} if you cannot do it. The award rule: {}.",
        rule.describe()
    );
    let receiver = Party::Capability(capability.to_owned());
    let prepared = agents
        .iter()
        .map(|a| origin.prepare(sup, a, &text, receiver.clone(), MessageKind::Request))
        .collect::<Result<Vec<_>, _>>()?;
    let reports =
        futures_util::future::join_all(prepared.into_iter().map(|p| sup.run_prepared(p, None)))
            .await;
    let mut proposals: Vec<ProposalRecord> = reports.iter().map(|r| proposal(r, rule)).collect();
    proposals.sort_by(|a, b| a.agent.cmp(&b.agent));
    let winner = award(&proposals, rule).cloned();
    let mut answer = AwardAnswer {
        conversation_id: origin.conversation_id().to_owned(),
        rule,
        rule_text: rule.describe().to_owned(),
        proposals,
        awarded: winner.as_ref().map(|w| w.agent.clone()),
        result: None,
    };
    let Some(winner) = winner else {
        return Ok(answer);
    };
    let protocol = match rule {
        AwardRule::HighestScore => Protocol::ContractNet,
        AwardRule::LowestPrice => Protocol::Auction,
    };
    // The others are told, as messages of the conversation; telling them costs no model call.
    for loser in answer.proposals.iter().filter(|p| p.agent != winner.agent) {
        let notice = Message {
            id: uuid::Uuid::new_v4().to_string(),
            kind: MessageKind::Notification,
            conversation_id: answer.conversation_id.clone(),
            reply_to: None,
            sender: origin.sender(),
            receiver: Party::Agent(loser.agent.clone()),
            content: format!(
                "Your proposal was not chosen: the task went to {} ({}).",
                winner.agent,
                rule.describe()
            ),
            timestamp: crate::store::now_seconds(),
            execution_id: Some(loser.execution_id.clone()),
        };
        if let Err(e) = sup
            .with_store(move |s| s.record_notice(protocol, &notice))
            .await
        {
            tracing::warn!(error = %e, "cannot store a rejection notice");
        }
    }
    let Some(agent) = agents.iter().find(|a| a.name.as_str() == winner.agent) else {
        return Ok(answer);
    };
    let award_text = format!(
        "You were awarded this task ({}): {task}\nYour proposal was: {}\nDo the task now and \
         answer with the result.",
        match rule {
            AwardRule::HighestScore => "contract-net",
            AwardRule::LowestPrice => "auction",
        },
        winner.text
    );
    let prepared = origin.prepare(
        sup,
        agent,
        &award_text,
        Party::Agent(winner.agent.clone()),
        MessageKind::Request,
    )?;
    answer.result = Some(sup.run_prepared(prepared, None).await);
    Ok(answer)
}

/// A negotiation between `initiator` and `responder`: the initiator's opening offer, then
/// alternating responses (accept, reject, or a counter-offer) until one side accepts or
/// rejects, or `max_rounds` responses were made.
pub async fn negotiate(
    sup: &Supervisor,
    origin: &Origin,
    initiator: Arc<AgentDefinition>,
    responder: Arc<AgentDefinition>,
    subject: &str,
    max_rounds: u32,
) -> Result<NegotiationAnswer, ProtocolError> {
    if initiator.name == responder.name {
        return Err(ProtocolError::SameAgent(initiator.name.to_string()));
    }
    if !(1..=MAX_NEGOTIATION_ROUNDS).contains(&max_rounds) {
        return Err(ProtocolError::Rounds(max_rounds));
    }
    let mut answer = NegotiationAnswer {
        conversation_id: origin.conversation_id().to_owned(),
        outcome: NegotiationOutcome::RoundLimit,
        agreement: None,
        turns: Vec::new(),
    };
    let mut offer: Option<String> = None;
    for round in 0..=max_rounds {
        let (speaker, other) = if round % 2 == 0 {
            (&initiator, &responder)
        } else {
            (&responder, &initiator)
        };
        let other = &other.name;
        let text = match &offer {
            None => format!(
                "NEGOTIATION with {other} about: {subject}\nRound 0 of {max_rounds}: make your \
                 opening offer. Reply with only a JSON object: {{\"decision\": \"offer\", \
                 \"offer\": \"<your offer>\"}}."
            ),
            Some(theirs) => format!(
                "NEGOTIATION with {other} about: {subject}\nRound {round} of {max_rounds}: {other} \
                 offers: {theirs}\nReply with only a JSON object: {{\"decision\": \"accept\"}} to \
                 agree, {{\"decision\": \"reject\"}} to end without agreement, or \
                 {{\"decision\": \"counter\", \"offer\": \"<your counter-offer>\"}}."
            ),
        };
        let prepared = origin.prepare(
            sup,
            speaker,
            &text,
            Party::Agent(speaker.name.to_string()),
            MessageKind::Request,
        )?;
        let report = sup.run_prepared(prepared, None).await;
        let mut turn = NegotiationTurn {
            agent: report.agent.clone(),
            execution_id: report.execution_id.clone(),
            decision: "invalid".into(),
            offer: None,
        };
        if report.outcome != Outcome::Succeeded {
            answer.turns.push(turn);
            answer.outcome = NegotiationOutcome::Failed;
            return Ok(answer);
        }
        let parsed = report.answer.as_deref().and_then(first_object);
        let decision = parsed
            .as_ref()
            .and_then(|o| o.get("decision"))
            .and_then(Value::as_str)
            .unwrap_or("invalid");
        let proposed = parsed
            .as_ref()
            .and_then(|o| o.get("offer"))
            .and_then(Value::as_str)
            .filter(|o| !o.trim().is_empty())
            .map(str::to_owned);
        turn.decision = decision.to_owned();
        match (offer.is_some(), decision, proposed) {
            // An opening offer, or a counter-offer: the other side answers next.
            (false, "offer" | "counter", Some(new)) | (true, "counter", Some(new)) => {
                turn.offer = Some(new.clone());
                offer = Some(new);
                answer.turns.push(turn);
            }
            (true, "accept", _) => {
                turn.offer.clone_from(&offer);
                answer.agreement = offer.clone();
                answer.outcome = NegotiationOutcome::Agreed;
                answer.turns.push(turn);
                return Ok(answer);
            }
            (_, decision, _) => {
                if decision != "reject" {
                    turn.decision = "invalid".into();
                }
                answer.outcome = NegotiationOutcome::Refused;
                answer.turns.push(turn);
                return Ok(answer);
            }
        }
    }
    Ok(answer)
}

/// The agents subscribed to `topic`, in name order.
pub fn subscribers(
    sup: &Supervisor,
    topic: &str,
) -> Result<Vec<Arc<AgentDefinition>>, ProtocolError> {
    let agents = sup.registry.list();
    let mut found: Vec<_> = agents
        .iter()
        .filter(|a| a.subscriptions.iter().any(|t| t == topic))
        .cloned()
        .collect();
    if found.is_empty() {
        let mut known: Vec<&str> = agents
            .iter()
            .flat_map(|a| a.subscriptions.iter().map(String::as_str))
            .collect();
        known.sort_unstable();
        known.dedup();
        return Err(ProtocolError::NoSubscribers {
            topic: topic.to_owned(),
            known: if known.is_empty() {
                "none (an agent file subscribes with subscriptions = [...])".into()
            } else {
                known.join(", ")
            },
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Subscribe: a notification published to `topic` starts one execution per subscriber, each
/// recorded in the conversation. A caller waits for every delivery; an agent does not (see the
/// `publish` tool).
pub async fn publish(
    sup: &Supervisor,
    origin: &Origin,
    topic: &str,
    content: &str,
) -> Result<PublishAnswer, ProtocolError> {
    let prepared = prepare_publication(sup, origin, topic, content)?;
    let deliveries =
        futures_util::future::join_all(prepared.into_iter().map(|p| sup.run_prepared(p, None)))
            .await;
    Ok(PublishAnswer {
        topic: topic.to_owned(),
        conversation_id: origin.conversation_id().to_owned(),
        deliveries,
    })
}

/// Every delivery of a publication, prepared (so one refusal delivers none).
pub fn prepare_publication(
    sup: &Supervisor,
    origin: &Origin,
    topic: &str,
    content: &str,
) -> Result<Vec<PreparedRun>, ProtocolError> {
    let agents = origin.off_path(subscribers(sup, topic)?)?;
    agents
        .iter()
        .map(|a| {
            origin.prepare(
                sup,
                a,
                content,
                Party::Topic(topic.to_owned()),
                MessageKind::Notification,
            )
        })
        .collect()
}

/// A new conversation for a caller's protocol, or the one it names.
async fn caller_origin(
    sup: &Supervisor,
    conversation: Option<String>,
    protocol: Protocol,
) -> Result<Origin, RunError> {
    let mut joined = sup.join_conversation(conversation).await?;
    joined.protocol = protocol;
    // A protocol's steps carry their own words; earlier turns are not theirs to see.
    joined.history.clear();
    Ok(Origin::Caller(joined))
}

/// A contract-net (`HighestScore`) or an auction (`LowestPrice`) a caller starts: the API's
/// and the in-process CLI's one way in.
pub async fn start_call_for_proposals(
    sup: &Supervisor,
    body: CallForProposals,
    rule: AwardRule,
) -> Result<AwardAnswer, ProtocolError> {
    let protocol = match rule {
        AwardRule::HighestScore => Protocol::ContractNet,
        AwardRule::LowestPrice => Protocol::Auction,
    };
    let origin = caller_origin(sup, body.conversation, protocol).await?;
    call_for_proposals(sup, &origin, &body.capability, &body.task, rule).await
}

/// A negotiation a caller starts.
pub async fn start_negotiation(
    sup: &Supervisor,
    body: NegotiationRequest,
) -> Result<NegotiationAnswer, ProtocolError> {
    let agent = |name: &str| {
        sup.registry
            .get(name)
            .ok_or_else(|| RunError::UnknownAgent(name.to_owned()))
    };
    let (initiator, responder) = (agent(&body.initiator)?, agent(&body.responder)?);
    let origin = caller_origin(sup, body.conversation, Protocol::Negotiation).await?;
    negotiate(
        sup,
        &origin,
        initiator,
        responder,
        &body.subject,
        body.max_rounds.unwrap_or(DEFAULT_NEGOTIATION_ROUNDS),
    )
    .await
}

/// A publication a caller starts, waiting for every delivery.
pub async fn start_publication(
    sup: &Supervisor,
    topic: &str,
    body: PublishRequest,
) -> Result<PublishAnswer, ProtocolError> {
    let origin = caller_origin(sup, body.conversation, Protocol::Subscribe).await?;
    publish(sup, &origin, topic, &body.content).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(agent: &str, value: Option<f64>) -> ProposalRecord {
        ProposalRecord {
            agent: agent.into(),
            execution_id: String::new(),
            value,
            text: String::new(),
            valid: value.is_some(),
        }
    }

    #[test]
    fn the_award_follows_the_stated_rule_and_ties_go_to_the_first_name() {
        let bids = [
            record("carol", Some(0.5)),
            record("bob", Some(0.9)),
            record("alice", Some(0.9)),
            record("dave", None),
        ];
        assert_eq!(
            award(&bids, AwardRule::HighestScore).map(|p| p.agent.as_str()),
            Some("alice")
        );
        assert_eq!(
            award(&bids, AwardRule::LowestPrice).map(|p| p.agent.as_str()),
            Some("carol")
        );
        assert!(award(&[record("x", None)], AwardRule::LowestPrice).is_none());
    }

    #[test]
    fn a_score_outside_0_to_1_or_a_negative_price_counts_for_nothing() {
        let report = |answer: &str| {
            let agent = crate::agent::parse_agent(
                std::path::Path::new("a.toml"),
                "name = \"bidder\"\nversion = \"1\"\nuser_prompt_template = \"{{ request }}\"\n",
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let mut r =
                crate::worker_pool::new_report("e".into(), &agent, 0.0, 1.0, Outcome::Succeeded);
            r.answer = Some(answer.into());
            r
        };
        let boastful = proposal(&report(r#"{"score": 1e9}"#), AwardRule::HighestScore);
        assert!(!boastful.valid);
        assert!(
            boastful.text.contains("between 0 and 1"),
            "{}",
            boastful.text
        );
        assert!(proposal(&report(r#"{"score": 0.5}"#), AwardRule::HighestScore).valid);
        assert!(!proposal(&report(r#"{"price": -3}"#), AwardRule::LowestPrice).valid);
        assert!(proposal(&report(r#"{"price": 0}"#), AwardRule::LowestPrice).valid);
        // Only the first braces of a long answer are tried.
        let crafted = format!("{}{{\"score\": 0.5}}", "{\"a\":[".repeat(100));
        assert!(!proposal(&report(&crafted), AwardRule::HighestScore).valid);
    }

    #[test]
    fn a_proposal_is_the_first_json_object_in_the_answer() {
        let obj = first_object("Sure! ```json\n{\"score\": 0.7, \"proposal\": \"{fast}\"}\n```")
            .unwrap_or_default();
        assert_eq!(obj.get("score").and_then(Value::as_f64), Some(0.7));
        assert!(first_object("no braces here").is_none());
        assert!(first_object("{broken").is_none());
    }
}
