//! The A2A endpoints (protocol 0.3.0, JSON-RPC over HTTP): each agent's card at
//! `/a2a/{agent}/.well-known/agent-card.json` and its endpoint at `POST /a2a/{agent}`; the
//! server's card at `/.well-known/agent-card.json` and its endpoint at `POST /a2a`, which needs
//! the agent named in `metadata.skill`. The older `agent.json` name is served too. Every route
//! is behind the API's authentication like the rest of the API.
//!
//! A task is an execution: `message/send` runs one (waiting for it unless
//! `configuration.blocking` is false), `message/stream` runs one and streams its answer as
//! Server-Sent Events, `tasks/get` reads its record, `tasks/cancel` kills its worker,
//! `tasks/resubscribe` streams what is left of it. Errors are JSON-RPC errors with A2A's codes
//! (`crate::a2a::RpcError`), each naming the member or method at fault; those of the two
//! streaming methods arrive as the one event of a stream, which is all their clients read.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use a2a_types::{
    Message, MessageRole, MessageSendParams, Task, TaskArtifactUpdateEvent, TaskIdParams,
    TaskQueryParams, TaskState, TaskStatusUpdateEvent,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use bytes::Bytes;
use caxton_api_contract::conversations::MessageKind;
use caxton_api_contract::{ExecutionRecord, RunRequest};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::a2a::{self, RpcError, card};
use crate::messaging::ConversationError;
use crate::worker_pool::KillTarget;
use crate::{RunError, Supervisor};

type Shared = State<Arc<Supervisor>>;

/// How often a stream following a task another request started looks at its record.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// How long a non-blocking send or a cancellation waits for the record it answers with.
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// Which agents an endpoint answers for.
#[derive(Debug, Clone)]
enum Scope {
    /// One agent's endpoint: its tasks only.
    Agent(String),
    /// The server's: any agent, named in each message.
    Server,
}

impl Scope {
    fn admits(&self, record: &ExecutionRecord) -> bool {
        match self {
            Self::Agent(a) => record.agent == *a,
            Self::Server => true,
        }
    }
}

/// The URL this request reached the server at, for the cards' `url`s.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// `GET /.well-known/agent-card.json` (and `agent.json`): the server's card.
pub async fn server_card(State(sup): Shared, headers: HeaderMap) -> Response {
    let agents = sup.registry().list();
    Json(card::server_card(
        &agents,
        &base_url(&headers),
        sup.config().tcp.is_some(),
    ))
    .into_response()
}

/// `GET /a2a/{agent}/.well-known/agent-card.json` (and `agent.json`): the agent's card.
pub async fn agent_card(
    State(sup): Shared,
    Path(agent): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let definition = sup
        .registry()
        .get(&agent)
        .ok_or_else(|| unknown_agent(&agent))?;
    Ok(Json(card::agent_card(
        &definition,
        &base_url(&headers),
        sup.config().tcp.is_some(),
    ))
    .into_response())
}

fn unknown_agent(agent: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_agent",
        format!("no agent named {agent:?} is deployed, so it has no A2A card or endpoint"),
    )
}

/// `POST /a2a/{agent}`: the agent's JSON-RPC endpoint.
pub async fn agent_rpc(
    State(sup): Shared,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if sup.registry().get(&agent).is_none() {
        return Err(unknown_agent(&agent));
    }
    Ok(rpc(sup, Scope::Agent(agent), &headers, &body).await)
}

/// `POST /a2a`: the server's JSON-RPC endpoint.
pub async fn server_rpc(State(sup): Shared, headers: HeaderMap, body: Bytes) -> Response {
    rpc(sup, Scope::Server, &headers, &body).await
}

/// One JSON-RPC request, checked as far as the envelope goes.
struct Call {
    id: Value,
    method: String,
    params: Value,
}

fn parse_call(body: &[u8]) -> Result<Call, (Value, RpcError)> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        (
            Value::Null,
            RpcError::parse(format!("the body is not JSON: {e}")),
        )
    })?;
    let Value::Object(mut request) = value else {
        return Err((
            Value::Null,
            RpcError::invalid_request(
                "a JSON-RPC request is an object (batches are not supported)",
            ),
        ));
    };
    let id = match request.remove("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id,
        Some(other) => {
            return Err((
                Value::Null,
                RpcError::invalid_request(format!("id must be a string or a number, not {other}")),
            ));
        }
        None => {
            return Err((
                Value::Null,
                RpcError::invalid_request("the request has no id (A2A has no notifications)"),
            ));
        }
    };
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((id, RpcError::invalid_request("jsonrpc must be \"2.0\"")));
    }
    let Some(Value::String(method)) = request.remove("method") else {
        return Err((id, RpcError::invalid_request("method must be a string")));
    };
    let params = request.remove("params").unwrap_or_else(|| json!({}));
    Ok(Call { id, method, params })
}

fn answer(id: &Value, result: Result<Value, RpcError>) -> Response {
    let body = match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()}),
    };
    Json(body).into_response()
}

fn params<T: serde::de::DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params)
        .map_err(|e| RpcError::invalid_params(format!("{method} params: {e}")))
}

/// The methods A2A 1.0 renamed: a 1.0 client is told which version this server speaks.
const V1_METHODS: &[&str] = &[
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
    "GetExtendedAgentCard",
];

async fn rpc(sup: Arc<Supervisor>, scope: Scope, headers: &HeaderMap, body: &[u8]) -> Response {
    let call = match parse_call(body) {
        Ok(call) => call,
        Err((id, e)) => return answer(&id, Err(e)),
    };
    let span = tracing::info_span!(
        "a2a",
        "otel.name" = %format!("a2a {}", call.method),
        "rpc.system" = "jsonrpc",
        "rpc.method" = %call.method,
        agent = tracing::field::Empty,
    );
    if let Scope::Agent(a) = &scope {
        span.record("agent", a.as_str());
    }
    let asked_version = headers
        .get("a2a-version")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.starts_with("0."));
    if let Some(version) = asked_version {
        return answer(&call.id, Err(RpcError::version_not_supported(version)));
    }
    tracing::Instrument::instrument(dispatch(sup, scope, call), span).await
}

/// Run one checked call's method.
async fn dispatch(sup: Arc<Supervisor>, scope: Scope, call: Call) -> Response {
    let Call {
        id,
        method,
        params: p,
    } = call;
    let result = match method.as_str() {
        "message/send" => match params::<MessageSendParams>(&method, p) {
            Ok(p) => send(&sup, &scope, p).await,
            Err(e) => Err(e),
        },
        "message/stream" => {
            return match params::<MessageSendParams>(&method, p) {
                Ok(p) => stream(sup, scope, id, p).await,
                Err(e) => single_event(&id, Err(e)),
            };
        }
        "tasks/get" => match params::<TaskQueryParams>(&method, p) {
            Ok(p) => get(&sup, &scope, &p).await,
            Err(e) => Err(e),
        },
        "tasks/cancel" => match params::<TaskIdParams>(&method, p) {
            Ok(p) => cancel(&sup, &scope, &p.id).await,
            Err(e) => Err(e),
        },
        "tasks/resubscribe" => {
            return match params::<TaskIdParams>(&method, p) {
                Ok(p) => match record(&sup, &scope, &p.id).await {
                    Ok(record) => follow(sup, id, record),
                    Err(e) => single_event(&id, Err(e)),
                },
                Err(e) => single_event(&id, Err(e)),
            };
        }
        m if m.starts_with("tasks/pushNotificationConfig/") => Err(RpcError::push_not_supported()),
        "agent/getAuthenticatedExtendedCard" => Err(RpcError::no_extended_card()),
        m if V1_METHODS.contains(&m) => Err(RpcError::version_not_supported("1.0")),
        m => Err(RpcError::method_not_found(m)),
    };
    answer(&id, result)
}

/// Everything `message/send` and `message/stream` check before an execution exists; `Err` with
/// a task already answered is a request the guards refused (state `rejected`).
async fn prepare(
    sup: &Arc<Supervisor>,
    scope: &Scope,
    p: &MessageSendParams,
) -> Result<Result<(crate::PreparedRun, Message), Task>, RpcError> {
    let message = &p.message;
    if message.role != MessageRole::User {
        return Err(RpcError::invalid_params(
            "message.role must be \"user\": the agent answers it",
        ));
    }
    if let Some(task) = &message.task_id {
        return Err(RpcError::invalid_params(format!(
            "message.taskId {task:?}: a Caxton task never waits for more input, so a message \
             cannot continue one; send it without taskId (with the task's contextId to continue \
             its conversation)"
        )));
    }
    let agent = match scope {
        Scope::Agent(a) => a.clone(),
        Scope::Server => skill_of(p).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "name the agent in message.metadata.skill (one of the skills on the server's \
                 card: {}), or send to /a2a/{{agent}}",
                sup.registry()
                    .list()
                    .iter()
                    .map(|a| a.name.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
    };
    let text = a2a::request_text(message)?;
    let delegation = a2a::Delegation::of(message)?;
    let request = RunRequest {
        request: text,
        conversation: message.context_id.clone(),
        ..RunRequest::default()
    };
    match sup.prepare_a2a(&agent, request, delegation.as_ref()).await {
        Ok(prepared) => {
            let mut asked = message.clone();
            asked.task_id = Some(prepared.execution_id().to_owned());
            asked.context_id = Some(prepared.conversation_id().to_owned());
            Ok(Ok((prepared, asked)))
        }
        Err(RunError::Refused(refusal)) => {
            tracing::info!(
                agent,
                reason = refusal.reason(),
                "A2A request refused by the delegation guards"
            );
            let id = uuid::Uuid::new_v4().to_string();
            let context = message.context_id.clone().unwrap_or_default();
            let why = a2a::text_message(MessageRole::Agent, &refusal.to_string(), &id, &context);
            Ok(Err(a2a::task(
                &id,
                &context,
                TaskState::Rejected,
                Some(why),
            )))
        }
        Err(e) => Err(run_error(&e)),
    }
}

/// The agent a message to the server's endpoint names.
fn skill_of(p: &MessageSendParams) -> Option<String> {
    [p.message.metadata.as_ref(), p.metadata.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|m| m.get("skill").and_then(Value::as_str).map(str::to_owned))
}

fn run_error(e: &RunError) -> RpcError {
    match e {
        RunError::UnknownAgent(_) | RunError::MemoryScope(_) => {
            RpcError::invalid_params(e.to_string())
        }
        RunError::Conversation(ConversationError::Unknown(id)) => RpcError::invalid_params(
            format!("message.contextId {id:?} names no conversation on this server"),
        ),
        RunError::Conversation(ConversationError::Expired { .. }) => {
            RpcError::invalid_params(format!("message.contextId: {e}"))
        }
        _ => RpcError::internal(e.to_string()),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::internal(e.to_string()))
}

async fn send(
    sup: &Arc<Supervisor>,
    scope: &Scope,
    p: MessageSendParams,
) -> Result<Value, RpcError> {
    let blocking = p.configuration.as_ref().and_then(|c| c.blocking) != Some(false);
    let (prepared, asked) = match prepare(sup, scope, &p).await? {
        Ok(ready) => ready,
        Err(rejected) => return to_value(&rejected),
    };
    if blocking {
        let report = sup.run_prepared(prepared, None).await;
        return to_value(&a2a::finished_task(&report, Some(asked)));
    }
    // Answered at once with the task working; tasks/get finds it from here on.
    let id = prepared.execution_id().to_owned();
    let context = prepared.conversation_id().to_owned();
    sup.run_detached(prepared);
    wait_for_record(sup, &id, |_| true).await;
    let mut task = a2a::task(&id, &context, TaskState::Working, None);
    task.history.push(asked);
    to_value(&task)
}

/// Read execution `id`'s record until `done` says it is what is wanted, or [`RECORD_WAIT`]
/// passes; the last record read.
async fn wait_for_record(
    sup: &Arc<Supervisor>,
    id: &str,
    done: impl Fn(&ExecutionRecord) -> bool,
) -> Option<ExecutionRecord> {
    let give_up = tokio::time::Instant::now() + RECORD_WAIT;
    loop {
        let lookup = id.to_owned();
        let record = sup.with_store(move |s| s.get(&lookup)).await.ok().flatten();
        if record.as_ref().is_some_and(&done) || tokio::time::Instant::now() >= give_up {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Execution `id`'s record, if the endpoint answers for its agent.
async fn record(
    sup: &Arc<Supervisor>,
    scope: &Scope,
    id: &str,
) -> Result<ExecutionRecord, RpcError> {
    let lookup = id.to_owned();
    let record = sup
        .with_store(move |s| s.get(&lookup))
        .await
        .map_err(|e| RpcError::internal(e.to_string()))?;
    record
        .filter(|r| scope.admits(r))
        .ok_or_else(|| RpcError::task_not_found(id))
}

/// The task a stored execution is: its request and answer from its conversation's messages.
async fn stored_task(sup: &Arc<Supervisor>, record: &ExecutionRecord) -> Result<Task, RpcError> {
    let id = record.execution_id.clone();
    let context = record.placement.conversation_id.clone().unwrap_or_default();
    let (c, e) = (context.clone(), id.clone());
    let messages = sup
        .with_store(move |s| s.execution_messages(&c, &e))
        .await
        .map_err(|e| RpcError::internal(e.to_string()))?;
    let state = a2a::state_of_record(record);
    let status = record
        .error
        .as_deref()
        .map(|e| a2a::text_message(MessageRole::Agent, e, &id, &context));
    let mut task = a2a::task(&id, &context, state, status);
    if let Some(ms) = record.duration_ms {
        task.status.timestamp = Some(a2a::timestamp(record.started_at + ms / 1000.0));
    }
    for m in messages {
        match m.kind {
            MessageKind::Request => task.history.push(a2a::text_message(
                MessageRole::User,
                &m.content,
                &id,
                &context,
            )),
            MessageKind::Response => {
                task.artifacts.push(a2a::answer_artifact(&m.content));
                task.history.push(a2a::text_message(
                    MessageRole::Agent,
                    &m.content,
                    &id,
                    &context,
                ));
            }
            MessageKind::Notification | MessageKind::Error => {}
        }
    }
    Ok(task)
}

async fn get(sup: &Arc<Supervisor>, scope: &Scope, p: &TaskQueryParams) -> Result<Value, RpcError> {
    let record = record(sup, scope, &p.id).await?;
    let mut task = stored_task(sup, &record).await?;
    if let Some(keep) = p.history_length.and_then(|n| usize::try_from(n).ok()) {
        let drop = task.history.len().saturating_sub(keep);
        task.history.drain(..drop);
    }
    to_value(&task)
}

async fn cancel(sup: &Arc<Supervisor>, scope: &Scope, id: &str) -> Result<Value, RpcError> {
    let found = record(sup, scope, id).await?;
    if found.status != "running" {
        return Err(RpcError::task_not_cancelable(
            id,
            &a2a::state_name(&a2a::state_of_record(&found)),
        ));
    }
    if let Err(e) = sup.kill_worker(&KillTarget::Execution(id.to_owned()), libc::SIGKILL) {
        // It may have ended between the read and the kill.
        let now = record(sup, scope, id).await?;
        if now.status != "running" {
            return Err(RpcError::task_not_cancelable(
                id,
                &a2a::state_name(&a2a::state_of_record(&now)),
            ));
        }
        return Err(RpcError::task_not_cancelable(
            id,
            &format!("not cancelable now: {e}"),
        ));
    }
    tracing::info!(execution_id = id, "A2A task canceled");
    let ended = wait_for_record(sup, id, |r| r.status != "running")
        .await
        .ok_or_else(|| RpcError::task_not_found(id))?;
    to_value(&stored_task(sup, &ended).await?)
}

/// One Server-Sent Event: a JSON-RPC response whose result is `result`.
fn event(id: &Value, result: Result<Value, RpcError>) -> Result<Event, Infallible> {
    let body = match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()}),
    };
    Ok(Event::default().data(body.to_string()))
}

fn sse(events: tokio::sync::mpsc::UnboundedReceiver<Result<Event, Infallible>>) -> Response {
    let stream =
        futures_util::stream::unfold(
            events,
            |mut rx| async move { rx.recv().await.map(|e| (e, rx)) },
        );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A stream of one event: how a streaming method answers when it fails (or its task is rejected)
/// before anything runs. A client that asked for a stream reads only an event stream (the
/// official SDK refuses any other content type without reading it), so the JSON-RPC error must
/// be an event for the client to see its code.
fn single_event(id: &Value, result: Result<Value, RpcError>) -> Response {
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = events.send(event(id, result));
    sse(rx)
}

fn status_update(task: &Task, is_final: bool) -> TaskStatusUpdateEvent {
    TaskStatusUpdateEvent {
        kind: "status-update".into(),
        task_id: task.id.clone(),
        context_id: task.context_id.clone(),
        status: task.status.clone(),
        is_final,
        metadata: task.metadata.clone(),
    }
}

fn artifact_update(
    task: &Task,
    artifact: a2a_types::Artifact,
    append: bool,
    last: bool,
) -> TaskArtifactUpdateEvent {
    TaskArtifactUpdateEvent {
        kind: "artifact-update".into(),
        task_id: task.id.clone(),
        context_id: task.context_id.clone(),
        artifact,
        append: Some(append),
        last_chunk: Some(last),
        metadata: None,
    }
}

/// `message/stream`: the task (working), its answer as it is generated, then its final status.
/// A caller that goes away does not stop the execution: it finishes and is recorded.
async fn stream(sup: Arc<Supervisor>, scope: Scope, id: Value, p: MessageSendParams) -> Response {
    let (prepared, asked) = match prepare(&sup, &scope, &p).await {
        Ok(Ok(ready)) => ready,
        Ok(Err(rejected)) => return single_event(&id, to_value(&rejected)),
        Err(e) => return single_event(&id, Err(e)),
    };
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut working = a2a::task(
        prepared.execution_id(),
        prepared.conversation_id(),
        TaskState::Working,
        None,
    );
    working.history.push(asked.clone());
    let _ = events.send(event(&id, to_value(&working)));
    let (deltas, mut pieces) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        let run = sup.run_prepared(prepared, Some(deltas));
        tokio::pin!(run);
        let mut streamed = false;
        let send_piece = |piece: String, streamed: &mut bool| {
            let update = artifact_update(&working, a2a::answer_artifact(&piece), *streamed, false);
            *streamed = true;
            let _ = events.send(event(&id, to_value(&update)));
        };
        let report = loop {
            tokio::select! {
                biased;
                Some(piece) = pieces.recv() => send_piece(piece, &mut streamed),
                report = &mut run => break report,
            }
        };
        while let Ok(piece) = pieces.try_recv() {
            send_piece(piece, &mut streamed);
        }
        let done = a2a::finished_task(&report, Some(asked));
        // An answer that was not streamed piece by piece arrives whole.
        if !streamed && let Some(answer) = done.artifacts.first() {
            let update = artifact_update(&done, answer.clone(), false, true);
            let _ = events.send(event(&id, to_value(&update)));
        }
        let _ = events.send(event(&id, to_value(&status_update(&done, true))));
    }));
    sse(rx)
}

/// `tasks/resubscribe`: the task as it is now, then (while it runs) its final status when it
/// ends. The pieces of an answer already being streamed to another caller are not repeated.
fn follow(sup: Arc<Supervisor>, id: Value, first: ExecutionRecord) -> Response {
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        let mut record = first;
        match stored_task(&sup, &record).await {
            Ok(task) => {
                let _ = events.send(event(&id, to_value(&task)));
            }
            Err(e) => {
                let _ = events.send(event(&id, Err(e)));
                return;
            }
        }
        while record.status == "running" {
            tokio::time::sleep(FOLLOW_EVERY).await;
            if events.is_closed() {
                return;
            }
            let lookup = record.execution_id.clone();
            match sup.with_store(move |s| s.get(&lookup)).await {
                Ok(Some(now)) => record = now,
                Ok(None) => return,
                Err(e) => {
                    let _ = events.send(event(&id, Err(RpcError::internal(e.to_string()))));
                    return;
                }
            }
        }
        let result = stored_task(&sup, &record).await.map(|task| {
            if let Some(answer) = task.artifacts.first() {
                let update = artifact_update(&task, answer.clone(), false, true);
                let _ = events.send(event(&id, to_value(&update)));
            }
            status_update(&task, true)
        });
        let _ = events.send(event(&id, result.and_then(|u| to_value(&u))));
    }));
    sse(rx)
}

/// The fuzzers' entry (`fuzz/`): what an A2A call is checked for before a supervisor is
/// involved (the envelope, the method's params, and for `message/*` the request text, the
/// skill and the delegation a message carries); the JSON-RPC error code that refuses it.
#[doc(hidden)]
pub fn fuzz_call(body: &[u8]) -> Result<(), i32> {
    let call = parse_call(body).map_err(|(id, e)| {
        assert!(
            matches!(id, Value::Null | Value::String(_) | Value::Number(_)),
            "an error answers with a null, string or number id, not {id}"
        );
        e.code
    })?;
    assert!(matches!(call.id, Value::String(_) | Value::Number(_)));
    match call.method.as_str() {
        "message/send" | "message/stream" => {
            let p: MessageSendParams = params(&call.method, call.params).map_err(|e| e.code)?;
            let _ = skill_of(&p);
            a2a::request_text(&p.message).map_err(|e| e.code)?;
            a2a::Delegation::of(&p.message).map_err(|e| e.code)?;
        }
        "tasks/get" => {
            params::<TaskQueryParams>(&call.method, call.params).map_err(|e| e.code)?;
        }
        "tasks/cancel" | "tasks/resubscribe" => {
            params::<TaskIdParams>(&call.method, call.params).map_err(|e| e.code)?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn the_envelope_is_checked_before_the_method() {
        let code = |body: &str| parse_call(body.as_bytes()).err().map(|(_, e)| e.code);
        assert_eq!(code("{"), Some(-32700));
        assert_eq!(code("[]"), Some(-32600));
        assert_eq!(code(r#"{"jsonrpc":"2.0","method":"x"}"#), Some(-32600));
        assert_eq!(
            code(r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#),
            Some(-32600)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#),
            Some(-32600)
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":2}"#), Some(-32600));
        let call = parse_call(br#"{"jsonrpc":"2.0","id":"a","method":"tasks/get"}"#).unwrap();
        assert_eq!(call.method, "tasks/get");
        assert_eq!(call.params, json!({}));
    }

    #[test]
    fn a_card_names_the_url_it_was_asked_at() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "10.0.0.5:8080".parse().unwrap());
        assert_eq!(base_url(&headers), "http://10.0.0.5:8080");
    }

    #[test]
    fn status_updates_carry_the_task_s_state() {
        let task = a2a::task("t", "c", TaskState::Completed, None);
        let update = serde_json::to_value(status_update(&task, true)).unwrap();
        assert_eq!(update["kind"], "status-update");
        assert_eq!(update["final"], true);
        assert_eq!(update["status"]["state"], "completed");
    }
}
