//! A2A (Agent2Agent) protocol 0.3.0: every deployed agent is an A2A agent, and an agent may
//! delegate to A2A agents on other servers.
//!
//! The wire types are `a2a-types` (written from the protocol's JSON schema). This module maps
//! them to Caxton's own: an A2A task is an execution (the task id is the execution id), a
//! `contextId` is a conversation id, and task states are execution outcomes. The JSON-RPC
//! endpoint and the cards are served by `crate::api::a2a_handlers`; calls to other servers are
//! made by [`remote`].
//!
//! A2A carries no delegation depth, ancestry or budget, so Caxton carries them in the message's
//! `metadata` under [`DELEGATION_KEY`] (the extension [`DELEGATION_EXTENSION`], declared in every
//! card): the guards of `crate::delegation` then hold across servers too. Each server has an id
//! of its own ([`server_id`]), so an agent is named across servers by the pair.

pub mod card;
pub mod remote;

use std::collections::HashMap;
use std::path::Path;

use a2a_types::{Artifact, Message, MessageRole, Part, Task, TaskState, TaskStatus};
use caxton_api_contract::{ExecutionRecord, ExecutionReport, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The A2A protocol version spoken.
pub const PROTOCOL_VERSION: &str = "0.3.0";

/// The extension that carries a delegation's ancestry, depth, deadline and budget.
pub const DELEGATION_EXTENSION: &str = "https://caxton.dev/a2a/extensions/delegation/v1";

/// The `metadata` key of a message that holds its [`Delegation`].
pub const DELEGATION_KEY: &str = "caxton.delegation";

/// The `metadata` key of a task that holds what its execution spent (`tokens`).
pub const USAGE_KEY: &str = "caxton.usage";

/// The id of the artifact that holds an execution's answer.
pub const ANSWER_ARTIFACT: &str = "answer";

/// One agent on the path of a request that crosses servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The server's id ([`server_id`]).
    pub server: String,
    /// The agent's name on that server.
    pub agent: String,
}

/// What a delegating server tells the one it asks, so the guards of its tree hold there too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    /// The agents from the root of the request down to the one asking, that one last.
    pub ancestry: Vec<Hop>,
    /// The deepest depth any execution of the tree may have (the root is at depth 0).
    pub max_depth: u32,
    /// Milliseconds the asking execution has left; the task must end by then.
    pub deadline_ms: u64,
    /// Tokens the tree may still spend.
    pub tokens_left: u64,
    /// Tool calls the tree may still make.
    pub tool_calls_left: u64,
    /// The asking server's conversation.
    pub conversation: String,
    /// The asking execution, on the asking server.
    pub parent_task: String,
}

impl Delegation {
    /// The delegation a message's metadata carries; `Ok(None)` when it carries none.
    pub fn of(message: &Message) -> Result<Option<Self>, RpcError> {
        let Some(value) = message
            .metadata
            .as_ref()
            .and_then(|m| m.get(DELEGATION_KEY))
        else {
            return Ok(None);
        };
        serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| {
                RpcError::invalid_params(format!("message.metadata.{DELEGATION_KEY}: {e}"))
            })
    }
}

/// A JSON-RPC error, with the codes A2A 0.3.0 gives its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RpcError {
    /// The JSON-RPC error code.
    pub code: i32,
    /// What went wrong, naming the field or method.
    pub message: String,
}

impl RpcError {
    fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// -32700: the body is not JSON.
    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(-32700, message)
    }

    /// -32600: JSON, but not a JSON-RPC request.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(-32600, message)
    }

    /// -32601: no such method.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            -32601,
            format!(
                "method {method:?} not found: this server speaks A2A {PROTOCOL_VERSION} \
                 (message/send, message/stream, tasks/get, tasks/cancel, tasks/resubscribe)"
            ),
        )
    }

    /// -32602: the params do not fit the method.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(-32602, message)
    }

    /// -32603: the server failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(-32603, message)
    }

    /// -32001: no such task (for this agent).
    pub fn task_not_found(id: &str) -> Self {
        Self::new(-32001, format!("task {id:?} not found"))
    }

    /// -32002: the task has ended.
    pub fn task_not_cancelable(id: &str, state: &str) -> Self {
        Self::new(
            -32002,
            format!("task {id:?} cannot be canceled: it is {state}"),
        )
    }

    /// -32003: no push notifications here.
    pub fn push_not_supported() -> Self {
        Self::new(
            -32003,
            "push notifications are not supported: use message/stream or tasks/get",
        )
    }

    /// -32004: a method this server does not do.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(-32004, message)
    }

    /// -32005: a part this server cannot read.
    pub fn content_type(message: impl Into<String>) -> Self {
        Self::new(-32005, message)
    }

    /// -32007: no extended card.
    pub fn no_extended_card() -> Self {
        Self::new(
            -32007,
            "this server has no authenticated extended card: the card is the whole card",
        )
    }

    /// -32009: a protocol version this server does not speak.
    pub fn version_not_supported(asked: &str) -> Self {
        Self::new(
            -32009,
            format!("A2A {asked} is not supported: this server speaks A2A {PROTOCOL_VERSION}"),
        )
    }

    /// The error as JSON-RPC's `error` member.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"code": self.code, "message": self.message})
    }
}

/// The text an agent is asked: the message's text parts, and its data parts as JSON, in order,
/// one per line. A message with nothing to read, or with files, is refused.
pub fn request_text(message: &Message) -> Result<String, RpcError> {
    let mut pieces = Vec::new();
    for (i, part) in message.parts.iter().enumerate() {
        match part {
            Part::Text { text, .. } => pieces.push(text.clone()),
            Part::Data { data, .. } => pieces.push(data.to_string()),
            Part::File { .. } => {
                return Err(RpcError::content_type(format!(
                    "message.parts[{i}] is a file: Caxton agents read text and data parts only"
                )));
            }
        }
    }
    if pieces.iter().all(|p| p.trim().is_empty()) {
        return Err(RpcError::invalid_params(
            "message has no text part: send at least one part like {\"kind\": \"text\", \"text\": \"...\"}",
        ));
    }
    Ok(pieces.join("\n"))
}

/// The A2A state of an execution that ended with `outcome`.
pub fn state_of(outcome: &Outcome) -> TaskState {
    match outcome {
        Outcome::Succeeded => TaskState::Completed,
        Outcome::Cancelled
        | Outcome::Killed {
            by_operator: true, ..
        } => TaskState::Canceled,
        _ => TaskState::Failed,
    }
}

/// The A2A state of a stored execution: `status` (`running`, `finished`, `abandoned`) and its
/// outcome label.
pub fn state_of_record(record: &ExecutionRecord) -> TaskState {
    match (record.status.as_str(), record.outcome.as_deref()) {
        ("running", _) => TaskState::Working,
        (_, Some("succeeded")) => TaskState::Completed,
        (_, Some("cancelled")) => TaskState::Canceled,
        // `killed` by an operator or a tasks/cancel: the record says which in its error.
        (_, Some("killed")) if record.error.as_deref().is_some_and(is_operator_kill) => {
            TaskState::Canceled
        }
        _ => TaskState::Failed,
    }
}

/// Whether an execution's error says its worker was killed on purpose (`caxton worker kill`, a
/// task cancellation), not by something it did: the words `worker_pool::outcome` writes then.
fn is_operator_kill(error: &str) -> bool {
    error.contains("by an operator")
}

/// A state's name on the wire (`completed`, `input-required`).
pub fn state_name(state: &TaskState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Whether a task in `state` has ended.
pub fn is_final(state: &TaskState) -> bool {
    matches!(
        state,
        TaskState::Completed | TaskState::Canceled | TaskState::Failed | TaskState::Rejected
    )
}

/// A message of `role` with one text part.
pub fn text_message(role: MessageRole, text: &str, task: &str, context: &str) -> Message {
    Message {
        kind: "message".into(),
        message_id: uuid::Uuid::new_v4().to_string(),
        role,
        parts: vec![Part::Text {
            text: text.to_owned(),
            metadata: None,
        }],
        context_id: Some(context.to_owned()),
        task_id: Some(task.to_owned()),
        reference_task_ids: Vec::new(),
        extensions: Vec::new(),
        metadata: None,
    }
}

/// The answer as the task's artifact.
pub fn answer_artifact(text: &str) -> Artifact {
    Artifact {
        artifact_id: ANSWER_ARTIFACT.into(),
        parts: vec![Part::Text {
            text: text.to_owned(),
            metadata: None,
        }],
        name: Some(ANSWER_ARTIFACT.into()),
        description: None,
        extensions: Vec::new(),
        metadata: None,
    }
}

/// An RFC 3339 time from seconds since the epoch.
pub fn timestamp(unix_seconds: f64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix_seconds.max(0.0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// A task with `id` in `context`, in `state`, with `message` as its status message.
pub fn task(id: &str, context: &str, state: TaskState, message: Option<Message>) -> Task {
    Task {
        kind: "task".into(),
        id: id.to_owned(),
        context_id: context.to_owned(),
        status: TaskStatus {
            state,
            timestamp: Some(timestamp(crate::store::now_seconds())),
            message,
        },
        history: Vec::new(),
        artifacts: Vec::new(),
        metadata: None,
    }
}

/// The task a finished execution is: its state, its answer as an artifact, the error as its
/// status message, what it spent in its metadata; `request` is the message that started it.
pub fn finished_task(report: &ExecutionReport, request: Option<Message>) -> Task {
    let context = report.placement.conversation_id.clone().unwrap_or_default();
    let id = report.execution_id.as_str();
    let state = state_of(&report.outcome);
    let status_message = report
        .error
        .as_deref()
        .map(|e| text_message(MessageRole::Agent, e, id, &context));
    let mut task = task(id, &context, state, status_message);
    task.status.timestamp = Some(timestamp(report.started_at + report.duration_ms / 1000.0));
    task.history.extend(request);
    if let Some(answer) = &report.answer {
        task.artifacts.push(answer_artifact(answer));
        task.history
            .push(text_message(MessageRole::Agent, answer, id, &context));
    }
    let tokens = report.usage.as_ref().map_or(0, |u| {
        u64::from(u.prompt_tokens.unwrap_or(0)) + u64::from(u.completion_tokens.unwrap_or(0))
    });
    task.metadata = Some(HashMap::from([(
        USAGE_KEY.to_owned(),
        serde_json::json!({ "tokens": tokens }),
    )]));
    task
}

/// The id this server goes by across servers: made once, kept in `data_dir/server-id`.
pub fn server_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("server-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = uuid::Uuid::new_v4().to_string();
    // Written whole or not at all: a crash here leaves no half id behind.
    let partial = data_dir.join("server-id.partial");
    std::fs::write(&partial, format!("{id}\n"))?;
    std::fs::rename(&partial, &path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn message(parts: Value) -> Message {
        serde_json::from_value(serde_json::json!({
            "kind": "message", "messageId": "m1", "role": "user", "parts": parts
        }))
        .unwrap()
    }

    #[test]
    fn the_request_is_the_text_and_data_parts_in_order() {
        let m = message(serde_json::json!([
            {"kind": "text", "text": "sum these"},
            {"kind": "data", "data": {"a": 1}}
        ]));
        assert_eq!(request_text(&m).unwrap(), "sum these\n{\"a\":1}");
    }

    #[test]
    fn a_message_with_nothing_to_read_or_a_file_is_refused_naming_the_part() {
        let e = request_text(&message(serde_json::json!([]))).unwrap_err();
        assert_eq!(e.code, -32602);
        assert!(e.message.contains("no text part"), "{e}");
        let e = request_text(&message(serde_json::json!([
            {"kind": "text", "text": "look"},
            {"kind": "file", "file": {"uri": "http://x/y.pdf"}}
        ])))
        .unwrap_err();
        assert_eq!(e.code, -32005);
        assert!(e.message.contains("message.parts[1] is a file"), "{e}");
    }

    #[test]
    fn a_delegation_that_does_not_fit_names_the_field() {
        let mut m = message(serde_json::json!([{"kind": "text", "text": "x"}]));
        m.metadata = Some(HashMap::from([(
            DELEGATION_KEY.to_owned(),
            serde_json::json!({"ancestry": "boss"}),
        )]));
        let e = Delegation::of(&m).unwrap_err();
        assert_eq!(e.code, -32602);
        assert!(
            e.message.contains("message.metadata.caxton.delegation"),
            "{e}"
        );
    }

    #[test]
    fn outcomes_map_to_the_states_a2a_clients_know() {
        assert_eq!(state_name(&state_of(&Outcome::Succeeded)), "completed");
        assert_eq!(state_name(&state_of(&Outcome::Cancelled)), "canceled");
        assert_eq!(state_name(&state_of(&Outcome::ShutDown)), "failed");
        assert_eq!(state_name(&TaskState::InputRequired), "input-required");
    }

    #[test]
    fn the_server_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = server_id(dir.path()).unwrap();
        assert_eq!(server_id(dir.path()).unwrap(), first);
        assert_eq!(first.len(), 36);
    }
}
