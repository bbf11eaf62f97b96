//! The delegation tools, a [`ToolProvider`]: `ask_agent` and `ask_capability` send a request to
//! another agent and wait for its answer (request-reply); `notify` sends one without waiting;
//! `call_for_proposals`, `negotiate` and `publish` run the other protocols
//! ([`crate::protocols`]) with the asking execution as the parent of every step.
//! An agent gets them only when its file has a `[delegation]` table, and each call is checked
//! against that table and the caller's [`Lineage`] before any worker is spawned.

use std::sync::{Arc, LazyLock, Weak};
use std::time::Instant;

use caxton_api_contract::conversations::{MessageKind, Party};
use caxton_api_contract::protocols::{AwardRule, NegotiationOutcome};
use caxton_api_contract::routing::Strategy;
use caxton_ipc_protocol::ToolSpec;
use caxton_memory::Scope;
use caxton_tool_host::ArgumentSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Lineage, Refusal};
use crate::agent::{AgentDefinition, AgentName};
use crate::protocols::{self, Origin, ProtocolError};
use crate::tools::{CallOutcome, Granted, ToolCallContext, ToolProvider, error_result};
use crate::worker_pool::{ExecutionReport, Outcome};
use crate::{RunError, Supervisor};

/// Ask one agent by name and wait for its answer.
pub const ASK_AGENT: &str = "ask_agent";
/// Ask an agent with a capability (or all of them) and wait.
pub const ASK_CAPABILITY: &str = "ask_capability";
/// Send a notification to an agent or a capability without waiting.
pub const NOTIFY: &str = "notify";
/// Contract-net or auction among the agents with a capability.
pub const CALL_FOR_PROPOSALS: &str = "call_for_proposals";
/// A negotiation between two agents.
pub const NEGOTIATE: &str = "negotiate";
/// A notification to every subscriber of a topic.
pub const PUBLISH: &str = "publish";

/// The names no tool package may take.
pub fn reserved_names() -> [(&'static str, &'static str); 6] {
    [
        ASK_AGENT,
        ASK_CAPABILITY,
        NOTIFY,
        CALL_FOR_PROPOSALS,
        NEGOTIATE,
        PUBLISH,
    ]
    .map(|t| (t, "delegation"))
}

struct Schemas {
    ask_agent: (Value, ArgumentSchema),
    ask_capability: (Value, ArgumentSchema),
    notify: (Value, ArgumentSchema),
    call_for_proposals: (Value, ArgumentSchema),
    negotiate: (Value, ArgumentSchema),
    publish: (Value, ArgumentSchema),
}

/// The schemas are constants of this file; the unit tests prove each compiles.
static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| {
    #[allow(
        clippy::expect_used,
        reason = "a constant schema, compiled by the unit tests"
    )]
    let compiled = |schema: Value| {
        let checker = ArgumentSchema::compile(&schema).expect("delegation schemas are valid");
        (schema, checker)
    };
    let request = json!({"type": "string", "minLength": 1, "description": "What you ask, in full: the other agent sees nothing of your conversation but this and the context."});
    let context = json!({"type": "string", "description": "Background the other agent needs (facts, data, constraints)."});
    Schemas {
        ask_agent: compiled(json!({
            "type": "object",
            "properties": {"agent": {"type": "string"}, "request": request, "context": context},
            "required": ["agent", "request"],
            "additionalProperties": false
        })),
        ask_capability: compiled(json!({
            "type": "object",
            "properties": {
                "capability": {"type": "string"},
                "request": request,
                "context": context,
                "strategy": {"type": "string", "enum": ["best", "round-robin", "broadcast"], "description": "best (default): one agent; broadcast: every agent with it, answers labelled."}
            },
            "required": ["capability", "request"],
            "additionalProperties": false
        })),
        notify: compiled(json!({
            "type": "object",
            "properties": {
                "agent": {"type": "string"},
                "capability": {"type": "string"},
                "content": {"type": "string", "minLength": 1}
            },
            "required": ["content"],
            "additionalProperties": false
        })),
        call_for_proposals: compiled(json!({
            "type": "object",
            "properties": {
                "capability": {"type": "string"},
                "task": {"type": "string", "minLength": 1},
                "protocol": {"type": "string", "enum": ["contract-net", "auction"], "description": "contract-net (default): the highest self-assessed score wins; auction: the lowest price wins. Ties go to the agent whose name sorts first."}
            },
            "required": ["capability", "task"],
            "additionalProperties": false
        })),
        negotiate: compiled(json!({
            "type": "object",
            "properties": {
                "initiator": {"type": "string", "description": "The agent that makes the opening offer."},
                "responder": {"type": "string"},
                "subject": {"type": "string", "minLength": 1},
                "max_rounds": {"type": "integer", "minimum": 1, "maximum": crate::protocols::MAX_NEGOTIATION_ROUNDS}
            },
            "required": ["initiator", "responder", "subject"],
            "additionalProperties": false
        })),
        publish: compiled(json!({
            "type": "object",
            "properties": {"topic": {"type": "string"}, "content": {"type": "string", "minLength": 1}},
            "required": ["topic", "content"],
            "additionalProperties": false
        })),
    }
});

/// The delegation tools, served by the supervisor itself.
pub struct DelegationTools {
    supervisor: Weak<Supervisor>,
}

impl DelegationTools {
    /// Tools that start their child requests on `supervisor`.
    pub fn new(supervisor: Weak<Supervisor>) -> Self {
        Self { supervisor }
    }
}

/// Whom a call names.
enum Target {
    Agent(String),
    Capability(String, Strategy),
}

impl Target {
    fn receiver(&self) -> Party {
        match self {
            Self::Agent(a) => Party::Agent(a.clone()),
            Self::Capability(c, _) => Party::Capability(c.clone()),
        }
    }
}

/// A checked call.
struct Delegation {
    target: Target,
    text: String,
    context: String,
    kind: MessageKind,
}

#[derive(Deserialize)]
struct AskAgentArgs {
    agent: String,
    request: String,
    #[serde(default)]
    context: String,
}

#[derive(Deserialize)]
struct AskCapabilityArgs {
    capability: String,
    request: String,
    #[serde(default)]
    context: String,
    #[serde(default)]
    strategy: Option<String>,
}

#[derive(Deserialize)]
struct NotifyArgs {
    agent: Option<String>,
    capability: Option<String>,
    content: String,
}

fn parse(tool: &str, arguments: Value) -> Result<Delegation, String> {
    let (schema, ask) = match tool {
        ASK_AGENT => (&SCHEMAS.ask_agent.1, true),
        ASK_CAPABILITY => (&SCHEMAS.ask_capability.1, true),
        NOTIFY => (&SCHEMAS.notify.1, false),
        other => return Err(format!("{other} is not a delegation tool")),
    };
    schema.check(tool, &arguments).map_err(|e| e.to_string())?;
    let bad = |e: serde_json::Error| format!("{tool}: {e}");
    if !ask {
        let a: NotifyArgs = serde_json::from_value(arguments).map_err(bad)?;
        let target = match (a.agent, a.capability) {
            (Some(agent), None) => Target::Agent(agent),
            (None, Some(capability)) => Target::Capability(capability, Strategy::Best),
            _ => return Err(format!("{tool}: name exactly one of agent or capability")),
        };
        return Ok(Delegation {
            target,
            text: a.content,
            context: String::new(),
            kind: MessageKind::Notification,
        });
    }
    if tool == ASK_AGENT {
        let a: AskAgentArgs = serde_json::from_value(arguments).map_err(bad)?;
        return Ok(Delegation {
            target: Target::Agent(a.agent),
            text: a.request,
            context: a.context,
            kind: MessageKind::Request,
        });
    }
    let a: AskCapabilityArgs = serde_json::from_value(arguments).map_err(bad)?;
    let strategy = match a.strategy.as_deref() {
        None => Strategy::Best,
        Some(s) => s.parse().map_err(|e: String| format!("{tool}: {e}"))?,
    };
    Ok(Delegation {
        target: Target::Capability(a.capability, strategy),
        text: a.request,
        context: a.context,
        kind: MessageKind::Request,
    })
}

/// What a remote agent is asked: the request, and the context after it (a local child gets
/// them apart, as its template's `request` and `context`).
fn with_context(request: &str, context: &str) -> String {
    if context.trim().is_empty() {
        request.to_owned()
    } else {
        format!("{request}\n\nContext:\n{context}")
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

#[async_trait::async_trait]
impl ToolProvider for DelegationTools {
    fn grant(&self, agent: &AgentDefinition, _memory: Option<&Scope>) -> Granted {
        let d = &agent.delegation;
        let describe = |name: &str| -> String {
            let Some(sup) = self.supervisor.upgrade() else {
                return name.to_owned();
            };
            match sup.registry.get(name) {
                Some(a) => match &a.description {
                    Some(text) => format!("{name} ({text})"),
                    None => name.to_owned(),
                },
                None => name.to_owned(),
            }
        };
        let agents: Vec<String> = d
            .agents
            .iter()
            .map(|a| describe(a))
            .chain(
                d.remote
                    .iter()
                    .map(|r| format!("{} (on another server)", r.name)),
            )
            .collect();
        let spec = |name: &str, description: String, schema: &Value| ToolSpec {
            name: name.to_owned(),
            description,
            input_schema_json: schema.to_string(),
        };
        let mut tools = Vec::new();
        if !agents.is_empty() {
            tools.push(spec(
                ASK_AGENT,
                format!(
                    "Ask another agent to do something and wait for its answer. Agents you may ask: {}.",
                    agents.join("; ")
                ),
                &SCHEMAS.ask_agent.0,
            ));
        }
        if !d.capabilities.is_empty() {
            tools.push(spec(
                ASK_CAPABILITY,
                format!(
                    "Ask an agent with a capability (the supervisor picks one, or all with strategy broadcast) and wait for the answer. Capabilities you may ask: {}.",
                    list(&d.capabilities)
                ),
                &SCHEMAS.ask_capability.0,
            ));
        }
        if !d.agents.is_empty() || !d.capabilities.is_empty() {
            tools.push(spec(
                NOTIFY,
                format!(
                    "Tell another agent something without waiting for an answer (name agent or capability). Agents: {}. Capabilities: {}.",
                    list(&d.agents),
                    list(&d.capabilities)
                ),
                &SCHEMAS.notify.0,
            ));
        }
        if !d.capabilities.is_empty() {
            tools.push(spec(
                CALL_FOR_PROPOSALS,
                format!(
                    "Run a contract-net or an auction: every agent with the capability proposes (a score, or a price), the best is awarded the task and does it, the others are told. Returns every proposal and the winner's result. Capabilities: {}.",
                    list(&d.capabilities)
                ),
                &SCHEMAS.call_for_proposals.0,
            ));
        }
        if d.agents.len() >= 2 {
            tools.push(spec(
                NEGOTIATE,
                format!(
                    "Have two agents negotiate: an opening offer, then counter-offers until one accepts or rejects, or the round limit. Returns every turn and the agreement. Agents: {}.",
                    list(&d.agents)
                ),
                &SCHEMAS.negotiate.0,
            ));
        }
        if !d.topics.is_empty() {
            tools.push(spec(
                PUBLISH,
                format!(
                    "Publish a notification to a topic: every agent subscribed to it gets it; you do not wait. Topics: {}.",
                    list(&d.topics)
                ),
                &SCHEMAS.publish.0,
            ));
        }
        Granted {
            tools,
            matched: Vec::new(),
        }
    }

    async fn call(&self, tool: &str, arguments: Value, ctx: &ToolCallContext) -> CallOutcome {
        let started = Instant::now();
        let shown = arguments.to_string();
        let finish = |result: Value, outcome: &str, error: Option<String>| {
            CallOutcome::new(tool, &shown, started, result, outcome, error)
        };
        let (Some(sup), Some(caller), Some(lineage)) = (
            self.supervisor.upgrade(),
            ctx.caller.as_ref(),
            ctx.lineage.as_ref(),
        ) else {
            let message = format!("{tool}: delegation is only possible from an agent's request");
            return finish(error_result(&message), "refused", Some(message));
        };
        let refused = |refusal: Refusal| {
            sup.metrics.record_refused_delegation(refusal.reason());
            tracing::info!(reason = refusal.reason(), caller = %caller.name, "delegation refused");
            let message = refusal.to_string();
            finish(error_result(&message), "refused", Some(message))
        };
        if matches!(tool, CALL_FOR_PROPOSALS | NEGOTIATE | PUBLISH) {
            let outcome = protocol_call(&sup, caller, lineage, tool, arguments).await;
            return match outcome {
                Ok(value) => {
                    let text = value["text"].as_str().unwrap_or_default().to_owned();
                    finish(
                        json!({"content": [{"type": "text", "text": text}], "structuredContent": value["answer"], "isError": false}),
                        "ok",
                        None,
                    )
                }
                Err(ProtocolCallError::Invalid(message)) => {
                    finish(error_result(&message), "invalid", Some(message))
                }
                Err(ProtocolCallError::Refused(refusal)) => refused(refusal),
            };
        }
        let delegation = match parse(tool, arguments) {
            Ok(d) => d,
            Err(message) => return finish(error_result(&message), "invalid", Some(message)),
        };
        if let Target::Agent(name) = &delegation.target
            && let Some(remote) = caller.delegation.remote.iter().find(|r| r.name == *name)
        {
            if delegation.kind == MessageKind::Notification {
                return refused(Refusal::NotAllowed(format!(
                    "refused: {name} is on another server, where it can be asked (ask_agent) \
                     but not notified"
                )));
            }
            if let Err(refusal) = lineage.check_bounds() {
                return refused(refusal);
            }
            tracing::info!(tool, caller = %caller.name, remote = %remote.name, card = %remote.card, "delegating to another server");
            let text = with_context(&delegation.text, &delegation.context);
            let asked = crate::a2a::remote::ask(
                sup.remote_cards(),
                remote,
                sup.server_id(),
                lineage,
                &text,
            )
            .await;
            sup.record_remote_exchange(lineage, remote, &text, &asked)
                .await;
            return match asked {
                Ok(answer) => {
                    lineage.budget.spend_tokens(answer.tokens);
                    let value = json!({"answers": [{
                        "agent": remote.name, "server": remote.card, "task_id": answer.task_id,
                        "context_id": answer.context_id, "outcome": "succeeded", "answer": answer.text,
                    }]});
                    finish(
                        json!({"content": [{"type": "text", "text": answer.text}], "structuredContent": value, "isError": false}),
                        "ok",
                        None,
                    )
                }
                Err(e @ crate::a2a::remote::RemoteError::Rejected { .. }) => {
                    refused(Refusal::Unavailable(format!("refused: {e}")))
                }
                Err(e) => {
                    let message = e.to_string();
                    finish(error_result(&message), e.outcome(), Some(message))
                }
            };
        }
        let targets = match resolve(&sup, caller, lineage, &delegation.target) {
            Ok(t) => t,
            Err(refusal) => return refused(refusal),
        };
        // The call runs in the execution's `execute_tool` span; the targets are its event.
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        tracing::info!(tool, caller = %caller.name, targets = %names.join(","), "delegating");
        for t in &targets {
            if let Err(refusal) = lineage.check(&t.name) {
                return refused(refusal);
            }
        }
        let mut prepared = Vec::with_capacity(targets.len());
        for target in targets {
            match sup.prepare_child(
                target,
                &delegation.text,
                &delegation.context,
                lineage,
                delegation.target.receiver(),
                delegation.kind,
            ) {
                Ok(p) => prepared.push(p),
                Err(e) => return refused(Refusal::Unavailable(format!("refused: {e}"))),
            }
        }
        if delegation.kind == MessageKind::Notification {
            let (sent, names) = send_detached(&sup, prepared);
            let value = json!({ "sent": sent });
            return finish(
                json!({"content": [{"type": "text", "text": format!("notification sent to {names}")}], "structuredContent": value, "isError": false}),
                "ok",
                None,
            );
        }
        let reports =
            futures_util::future::join_all(prepared.into_iter().map(|p| sup.run_prepared(p, None)))
                .await;
        answer(&reports, finish)
    }
}

/// Why a protocol tool call did not run.
enum ProtocolCallError {
    /// Its arguments are wrong.
    Invalid(String),
    /// A guard refused it.
    Refused(Refusal),
}

impl From<ProtocolError> for ProtocolCallError {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Refused(r) => Self::Refused(r),
            ProtocolError::Run(RunError::Route(e)) => {
                Self::Refused(Refusal::UnknownTarget(format!("refused: {e}")))
            }
            ProtocolError::NoSubscribers { .. } => {
                Self::Refused(Refusal::UnknownTarget(format!("refused: {e}")))
            }
            other => Self::Refused(Refusal::Unavailable(format!("refused: {other}"))),
        }
    }
}

#[derive(Deserialize)]
struct CallForProposalsArgs {
    capability: String,
    task: String,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Deserialize)]
struct NegotiateArgs {
    initiator: String,
    responder: String,
    subject: String,
    #[serde(default)]
    max_rounds: Option<u32>,
}

#[derive(Deserialize)]
struct PublishArgs {
    topic: String,
    content: String,
}

/// Run a protocol an agent started through a tool; `{"text", "answer"}` for its result.
async fn protocol_call(
    sup: &Arc<Supervisor>,
    caller: &AgentDefinition,
    lineage: &Arc<Lineage>,
    tool: &str,
    arguments: Value,
) -> Result<Value, ProtocolCallError> {
    let schema = match tool {
        CALL_FOR_PROPOSALS => &SCHEMAS.call_for_proposals.1,
        NEGOTIATE => &SCHEMAS.negotiate.1,
        _ => &SCHEMAS.publish.1,
    };
    schema
        .check(tool, &arguments)
        .map_err(|e| ProtocolCallError::Invalid(e.to_string()))?;
    let invalid = |e: serde_json::Error| ProtocolCallError::Invalid(format!("{tool}: {e}"));
    let d = &caller.delegation;
    let not_allowed = |what: &str, name: &str, allowed: &[String]| {
        ProtocolCallError::Refused(Refusal::NotAllowed(format!(
            "refused: {} may not reach {what} {name:?}; its [delegation] {what}s are: {}",
            caller.name,
            list(allowed)
        )))
    };
    let origin = Origin::Agent(lineage.clone());
    match tool {
        CALL_FOR_PROPOSALS => {
            let a: CallForProposalsArgs = serde_json::from_value(arguments).map_err(invalid)?;
            if !d.capabilities.contains(&a.capability) {
                return Err(not_allowed("capability", &a.capability, &d.capabilities));
            }
            let rule = match a.protocol.as_deref() {
                Some("auction") => AwardRule::LowestPrice,
                _ => AwardRule::HighestScore,
            };
            let answer =
                protocols::call_for_proposals(sup, &origin, &a.capability, &a.task, rule).await?;
            let text = match (&answer.awarded, &answer.result) {
                (Some(winner), Some(r)) => format!(
                    "awarded to {winner} ({}); its result: {}",
                    answer.rule_text,
                    r.answer
                        .clone()
                        .or_else(|| r.failure_message())
                        .unwrap_or_default()
                ),
                _ => "no agent made a valid proposal".to_owned(),
            };
            Ok(json!({"text": text, "answer": answer}))
        }
        NEGOTIATE => {
            let a: NegotiateArgs = serde_json::from_value(arguments).map_err(invalid)?;
            let mut sides = Vec::with_capacity(2);
            for name in [&a.initiator, &a.responder] {
                let parsed = AgentName::parse(name).ok().filter(|n| {
                    d.agents
                        .iter()
                        .any(|x| AgentName::parse(x).ok().as_ref() == Some(n))
                });
                let Some(parsed) = parsed else {
                    return Err(not_allowed("agent", name, &d.agents));
                };
                let agent = sup.registry.get(parsed.as_str()).ok_or_else(|| {
                    ProtocolCallError::Refused(Refusal::UnknownTarget(format!(
                        "refused: no agent named {:?} is deployed",
                        parsed.as_str()
                    )))
                })?;
                sides.push(agent);
            }
            let responder = sides.pop();
            let initiator = sides.pop();
            let (Some(initiator), Some(responder)) = (initiator, responder) else {
                return Err(ProtocolCallError::Invalid(format!(
                    "{tool}: two agents are needed"
                )));
            };
            let answer = protocols::negotiate(
                sup,
                &origin,
                initiator,
                responder,
                &a.subject,
                a.max_rounds
                    .unwrap_or(protocols::DEFAULT_NEGOTIATION_ROUNDS),
            )
            .await?;
            let text = match (&answer.outcome, &answer.agreement) {
                (NegotiationOutcome::Agreed, Some(deal)) => format!("agreed on: {deal}"),
                (outcome, _) => format!(
                    "no agreement ({}) after {} turn(s)",
                    serde_json::to_value(outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    answer.turns.len()
                ),
            };
            Ok(json!({"text": text, "answer": answer}))
        }
        _ => {
            let a: PublishArgs = serde_json::from_value(arguments).map_err(invalid)?;
            if !d.topics.contains(&a.topic) {
                return Err(not_allowed("topic", &a.topic, &d.topics));
            }
            let prepared = protocols::prepare_publication(sup, &origin, &a.topic, &a.content)?;
            let (sent, names) = send_detached(sup, prepared);
            let text = format!("published to {}: {names}", a.topic);
            let value = json!({"topic": a.topic, "sent": sent});
            Ok(json!({"text": text, "answer": value}))
        }
    }
}

/// Start each notification without waiting for it: what was sent (agent and execution id)
/// and the agents' names, for the tool's answer.
fn send_detached(sup: &Arc<Supervisor>, prepared: Vec<crate::PreparedRun>) -> (Vec<Value>, String) {
    let mut sent = Vec::with_capacity(prepared.len());
    let mut names = Vec::with_capacity(prepared.len());
    for p in prepared {
        names.push(p.grant.agent().name.to_string());
        sent.push(
            json!({"agent": p.grant.agent().name.as_str(), "execution_id": p.execution_id()}),
        );
        sup.run_detached(p);
    }
    (sent, names.join(", "))
}

/// The children's answers as one tool result: the answer alone for one child, each labelled for
/// several; an error only when every child failed.
fn answer(
    reports: &[ExecutionReport],
    finish: impl Fn(Value, &str, Option<String>) -> CallOutcome,
) -> CallOutcome {
    let line = |r: &ExecutionReport| match (&r.outcome, &r.answer) {
        (Outcome::Succeeded, Some(answer)) => answer.clone(),
        _ => format!(
            "agent {} failed ({}): {} [execution {}]",
            r.agent,
            r.outcome.label(),
            r.failure_message().unwrap_or_default(),
            r.execution_id
        ),
    };
    let failed = reports
        .iter()
        .filter(|r| r.outcome != Outcome::Succeeded)
        .count();
    let text = match reports {
        [one] => line(one),
        many => many
            .iter()
            .map(|r| format!("[{}] {}", r.agent, line(r)))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let structured = json!({
        "answers": reports.iter().map(|r| json!({
            "agent": r.agent,
            "execution_id": r.execution_id,
            "outcome": r.outcome.label(),
            "answer": r.answer,
            "error": r.failure_message(),
        })).collect::<Vec<_>>()
    });
    if failed == reports.len() {
        return finish(
            json!({"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": true}),
            "tool_error",
            Some(text),
        );
    }
    finish(
        json!({"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": false}),
        "ok",
        None,
    )
}

/// The agents a call reaches, allowed by the caller's `[delegation]` lists; a capability skips
/// agents already on the path (asking them would be a cycle) while others have it.
fn resolve(
    sup: &Supervisor,
    caller: &AgentDefinition,
    lineage: &Lineage,
    target: &Target,
) -> Result<Vec<Arc<AgentDefinition>>, Refusal> {
    let d = &caller.delegation;
    match target {
        Target::Agent(name) => {
            let allowed = AgentName::parse(name).ok().filter(|n| {
                d.agents
                    .iter()
                    .any(|a| AgentName::parse(a).ok().as_ref() == Some(n))
            });
            let Some(name) = allowed else {
                return Err(Refusal::NotAllowed(format!(
                    "refused: {} may not ask agent {name:?}; its [delegation] agents are: {}",
                    caller.name,
                    list(&d.agents)
                )));
            };
            sup.registry
                .get(name.as_str())
                .map(|a| vec![a])
                .ok_or_else(|| {
                    Refusal::UnknownTarget(format!(
                        "refused: no agent named {:?} is deployed",
                        name.as_str()
                    ))
                })
        }
        Target::Capability(capability, strategy) => {
            if !d.capabilities.iter().any(|c| c == capability) {
                return Err(Refusal::NotAllowed(format!(
                    "refused: {} may not ask capability {capability:?}; its [delegation] capabilities are: {}",
                    caller.name,
                    list(&d.capabilities)
                )));
            }
            let everyone = sup.registry.list();
            let off_path: Vec<_> = everyone
                .iter()
                .filter(|a| !lineage.path.contains(&a.name))
                .cloned()
                .collect();
            let live = sup.pool.live_workers();
            let in_flight = |agent: &str| live.iter().filter(|w| w.agent == agent).count();
            match sup
                .router
                .route(&off_path, capability, *strategy, in_flight)
            {
                Ok(agents) => Ok(agents),
                Err(e) => {
                    // Agents have it, but every one is already working on this request.
                    match everyone
                        .iter()
                        .find(|a| a.capabilities.iter().any(|c| c == capability))
                    {
                        Some(on_path) => lineage.check(&on_path.name).map(|()| Vec::new()),
                        None => Err(Refusal::UnknownTarget(format!("refused: {e}"))),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schemas_compile_and_a_malformed_call_is_named() {
        let _ = &*SCHEMAS;
        let err = parse(ASK_AGENT, json!({"agent": "x"}))
            .err()
            .unwrap_or_default();
        assert!(err.contains("request"), "{err}");
        let err = parse(NOTIFY, json!({"content": "hi"}))
            .err()
            .unwrap_or_default();
        assert!(err.contains("exactly one"), "{err}");
        let err = parse(
            ASK_CAPABILITY,
            json!({"capability": "c", "request": "r", "strategy": "loudest"}),
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("strategy"), "{err}");
    }
}
