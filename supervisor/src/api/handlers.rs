//! Route handlers. Each one is a thin translation between HTTP/JSON and a [`Supervisor`] call.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use caxton_api_contract::agents::{
    AgentList, AgentSource, DeployAnswer, RemoveAnswer, ValidateAnswer,
};
use caxton_api_contract::routing::{BroadcastAnswer, Strategy};
use caxton_api_contract::{
    ErrorAnswer, ExecutionList, Health, KillAnswer, KillRequest, RunRequest, StreamLine, WorkerList,
};
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use crate::agent::{AgentDefinition, RegistryError};
use crate::messaging::ConversationError;
use crate::worker_pool::{ExecutionReport, KillError, KillTarget, Outcome};
use crate::{DeployError, PreparedRun, RunError, Supervisor};
use caxton_api_contract::runs::ExecutionFilter;

pub(super) type Shared = State<Arc<Supervisor>>;
pub(super) type ApiResult = Result<Response, ApiError>;

pub async fn health(State(sup): Shared) -> Response {
    let (status, word) = if sup.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    };
    (
        status,
        Json(Health {
            status: word.into(),
        }),
    )
        .into_response()
}

pub async fn status(State(sup): Shared) -> Response {
    Json(sup.status()).into_response()
}

pub async fn list_agents(State(sup): Shared) -> Response {
    let agents = sup.registry().list().iter().map(|a| a.summary()).collect();
    Json(AgentList { agents }).into_response()
}

pub async fn show_agent(State(sup): Shared, Path(name): Path<String>) -> ApiResult {
    let agent = sup
        .registry()
        .get(&name)
        .ok_or_else(|| not_deployed(&name))?;
    Ok(Json(agent.detail()).into_response())
}

const AGENT_SOURCE_SHAPE: &str = r#"like {"source": "<agent TOML>"}"#;

/// A JSON body that must be an object: serde would otherwise read an array as the struct's
/// fields in order (`["hi"]` as `{"request": "hi"}`).
pub(super) fn json_object<T: serde::de::DeserializeOwned>(
    body: Result<Json<Value>, JsonRejection>,
    shape: &str,
) -> Result<T, ApiError> {
    let Json(value) = body?;
    if !value.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "the request body must be a JSON object {shape}, not {}",
                json_kind(&value)
            ),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
            format!("request body: {e}"),
        )
    })
}

/// "an array", "a string", ... for messages.
pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn origin(body: &AgentSource) -> PathBuf {
    PathBuf::from(body.file.clone().unwrap_or_else(|| "<request>".into()))
}

pub async fn deploy_agent(
    State(sup): Shared,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let body: AgentSource = json_object(body, AGENT_SOURCE_SHAPE)?;
    let out = sup
        .deploy(&origin(&body), &body.source)
        .map_err(deploy_error)?;
    let status = if out.replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(DeployAnswer {
            agent: out.agent.summary(),
            path: out.path.display().to_string(),
            replaced: out.replaced,
            warnings: warnings(&sup, &out.agent),
        }),
    )
        .into_response())
}

pub async fn validate_agent(
    State(sup): Shared,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let body: AgentSource = json_object(body, AGENT_SOURCE_SHAPE)?;
    let agent = sup
        .validate(&origin(&body), &body.source)
        .map_err(deploy_error)?;
    Ok(Json(ValidateAnswer {
        valid: true,
        agent: agent.summary(),
        warnings: warnings(&sup, &agent),
    })
    .into_response())
}

/// The file's own warnings, then the tools it names that are not deployed.
fn warnings(sup: &Supervisor, agent: &AgentDefinition) -> Vec<String> {
    agent
        .warnings
        .iter()
        .cloned()
        .chain(sup.tool_warnings(agent))
        .collect()
}

pub async fn reload_agents(State(sup): Shared) -> ApiResult {
    let report = sup.reload().map_err(registry_error)?;
    Ok(Json(report).into_response())
}

pub async fn remove_agent(State(sup): Shared, Path(name): Path<String>) -> ApiResult {
    let removed = sup.remove(&name).map_err(registry_error)?;
    Ok(Json(RemoveAnswer {
        removed: removed.name.to_string(),
    })
    .into_response())
}

/// `?stream=true`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    #[serde(default)]
    stream: bool,
}

pub async fn run_agent(
    State(sup): Shared,
    Path(name): Path<String>,
    Query(query): Query<RunQuery>,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let body: RunRequest = json_object(body, r#"like {"request": "..."}"#)?;
    let prepared = sup.prepare_run(&name, body).await.map_err(run_error)?;
    if !query.stream {
        return report_response(sup.run_prepared(prepared, None).await);
    }
    Ok(stream_run(sup, prepared))
}

/// Why a request could not run at all, as an answer.
pub(super) fn run_error(e: RunError) -> ApiError {
    let (status, kind) = match e {
        RunError::UnknownAgent(_) => (StatusCode::NOT_FOUND, "unknown_agent"),
        RunError::Route(_) => (StatusCode::NOT_FOUND, "unknown_capability"),
        RunError::Provider(_) => (StatusCode::UNPROCESSABLE_ENTITY, "provider_not_configured"),
        RunError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        RunError::MemoryScope(_) => (StatusCode::BAD_REQUEST, "workspace_refused"),
        RunError::Conversation(ConversationError::Unknown(_)) => {
            (StatusCode::NOT_FOUND, "unknown_conversation")
        }
        RunError::Conversation(ConversationError::Expired { .. }) => {
            (StatusCode::GONE, "conversation_expired")
        }
        RunError::Conversation(ConversationError::Store(ref e)) => store_status(e),
        RunError::Refused(_) => (StatusCode::FORBIDDEN, "delegation_refused"),
    };
    ApiError::new(status, kind, e.to_string())
}

/// A database failure as a status and kind: a full one is the operator's to fix.
pub(super) fn store_status(e: &crate::store::StoreError) -> (StatusCode, &'static str) {
    match e {
        crate::store::StoreError::Full(_) => (StatusCode::INSUFFICIENT_STORAGE, "database_full"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// `GET /api/v1/capabilities`
pub async fn list_capabilities(State(sup): Shared) -> Response {
    Json(sup.capabilities()).into_response()
}

/// `?strategy=best|round-robin|broadcast`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CapabilityQuery {
    #[serde(default)]
    strategy: Strategy,
}

/// `POST /api/v1/capabilities/{capability}/run`: the request goes to the agent (or, with
/// `strategy=broadcast`, to every agent) that declares the capability; a broadcast answers with
/// every agent's report, each with its own outcome.
pub async fn run_capability(
    State(sup): Shared,
    Path(capability): Path<String>,
    Query(query): Query<CapabilityQuery>,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let body: RunRequest = json_object(body, r#"like {"request": "..."}"#)?;
    // Every check first, so a refusal runs nothing; then every agent at once.
    let mut prepared = sup
        .prepare_capability_run(&capability, query.strategy, body)
        .await
        .map_err(run_error)?;
    if query.strategy != Strategy::Broadcast {
        let Some(one) = prepared.pop() else {
            return Err(run_error(RunError::UnknownAgent(capability)));
        };
        return report_response(sup.run_prepared(one, None).await);
    }
    let answers =
        futures_util::future::join_all(prepared.into_iter().map(|p| sup.run_prepared(p, None)))
            .await;
    Ok(Json(BroadcastAnswer {
        capability,
        answers,
    })
    .into_response())
}

/// The finished report as a response: 200, or the failure's status with the report attached.
fn report_response(report: ExecutionReport) -> ApiResult {
    match failure_of(&report) {
        None => Ok(Json(report).into_response()),
        Some(error) => Err(error),
    }
}

fn failure_of(report: &ExecutionReport) -> Option<ApiError> {
    // Whatever the run did, a caller is never told it succeeded when its record is missing;
    // the answer still comes back, inside the execution.
    if let Some(message) = report.not_recorded_message() {
        return Some(ApiError {
            status: StatusCode::INSUFFICIENT_STORAGE,
            kind: "not_recorded",
            message,
            answer: Some(Box::new(with_report(report))),
        });
    }
    let status = match report.outcome {
        Outcome::Succeeded => return None,
        Outcome::NotRecorded { .. } => StatusCode::INSUFFICIENT_STORAGE,
        Outcome::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
        Outcome::AgentFailed { .. } => StatusCode::BAD_GATEWAY,
        Outcome::ShutDown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Some(ApiError {
        status,
        kind: report.outcome.label(),
        message: report.error.clone().unwrap_or_default(),
        answer: Some(Box::new(with_report(report))),
    })
}

/// An error answer carrying the report of the run that failed.
fn with_report(report: &ExecutionReport) -> ErrorAnswer {
    let mut answer = ErrorAnswer::new("", "");
    answer.execution = Some(Box::new(report.clone()));
    answer
}

/// A streamed run: newline-delimited JSON, `{"delta": "..."}` per piece of the answer as the
/// worker sends it, then one `{"done": report}` or `{"error": {...}, "execution": report}`.
/// The status is 200 once streaming has begun; the last line says how it ended.
fn stream_run(sup: Arc<Supervisor>, prepared: PreparedRun) -> Response {
    let (lines, body) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
    let (deltas, mut pieces) = tokio::sync::mpsc::unbounded_channel::<String>();
    let line = |l: StreamLine| {
        let mut text = serde_json::to_string(&l).unwrap_or_default();
        text.push('\n');
        bytes::Bytes::from(text)
    };
    tokio::spawn(async move {
        let run = sup.run_prepared(prepared, Some(deltas));
        tokio::pin!(run);
        // A client that went away does not stop the run: it finishes and is recorded.
        let report = loop {
            tokio::select! {
                biased;
                Some(delta) = pieces.recv() => { let _ = lines.send(line(StreamLine::Delta { delta })); }
                report = &mut run => break report,
            }
        };
        while let Ok(delta) = pieces.try_recv() {
            let _ = lines.send(line(StreamLine::Delta { delta }));
        }
        let last = match failure_of(&report) {
            None => StreamLine::Done {
                done: Box::new(report),
            },
            Some(e) => {
                let mut answer = with_report(&report);
                answer.error.kind = e.kind.to_owned();
                answer.error.message = e.message;
                StreamLine::Failed(answer)
            }
        };
        let _ = lines.send(line(last));
    });
    let stream = futures_util::stream::unfold(body, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// `?limit=N`
#[derive(Deserialize)]
pub struct Limit {
    pub(super) limit: Option<usize>,
}

pub async fn list_executions(
    State(sup): Shared,
    query: Result<Query<ExecutionFilter>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(filter) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "{}; the filters are agent, status, since (seconds since the epoch) and limit",
                e.body_text()
            ),
        )
    })?;
    let store = sup.store().clone();
    let rows = tokio::task::spawn_blocking(move || store.executions(&filter))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(e.to_string()))?;
    Ok(Json(ExecutionList { executions: rows }).into_response())
}

pub async fn show_execution(State(sup): Shared, Path(id): Path<String>) -> ApiResult {
    let store = sup.store().clone();
    let lookup = id.clone();
    let row = tokio::task::spawn_blocking(move || store.get(&lookup))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(e.to_string()))?;
    match row {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_execution",
            format!("no execution with id {id:?}"),
        )),
    }
}

pub async fn list_workers(State(sup): Shared) -> Response {
    Json(WorkerList {
        workers: sup.status().workers,
    })
    .into_response()
}

pub async fn kill_worker(
    State(sup): Shared,
    Path(target): Path<String>,
    body: Option<Json<KillRequest>>,
) -> ApiResult {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let signal_text = body.signal.unwrap_or_else(|| "TERM".into());
    let signal = crate::worker_pool::parse_signal(&signal_text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_signal",
            format!("unknown signal {signal_text:?}; use a name like TERM or a number"),
        )
    })?;
    let target = KillTarget::parse(&target);
    let worker = sup.kill_worker(&target, signal).map_err(|e| match e {
        KillError::NotFound(_) | KillError::AlreadyExited(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_worker", e.to_string())
        }
        KillError::Os { .. } => internal(e.to_string()),
    })?;
    Ok(Json(KillAnswer {
        signalled: worker,
        signal: crate::signal_name(signal),
    })
    .into_response())
}

/// `/metrics` in the format the `Accept` header prefers (see [`crate::metrics`]).
pub async fn metrics(State(sup): Shared, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = sup.metrics().render_for(accept);
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::VARY, "Accept"),
        ],
        body,
    )
        .into_response()
}

pub async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

/// The body length a request declares in `Content-Length`, if it declares one.
pub(super) fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Refuse a body whose declared length is over the limit before reading any of it, so a client
/// that sent `Expect: 100-continue` gets the 413 instead of uploading megabytes first.
pub async fn refuse_oversized(max_body: usize, request: Request, next: Next) -> Response {
    match declared_length(&request) {
        Some(len) if len > max_body as u64 => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "request body of {len} bytes exceeds the {max_body}-byte limit ([api] max_body)"
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// `GET /api/v1/log-filter`
pub async fn log_filter(State(sup): Shared) -> ApiResult {
    match sup.log_filter() {
        Some(filter) => Ok(Json(caxton_api_contract::LogFilter { filter }).into_response()),
        None => Err(no_log_control()),
    }
}

/// `PUT /api/v1/log-filter`: `{"filter": "debug"}`, in force at once.
pub async fn set_log_filter(
    State(sup): Shared,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let body: caxton_api_contract::LogFilter = json_object(body, r#"like {"filter": "debug"}"#)?;
    match sup.set_log_filter(&body.filter) {
        Ok(Some(filter)) => Ok(Json(caxton_api_contract::LogFilter { filter }).into_response()),
        Ok(None) => Err(no_log_control()),
        Err(reason) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("filter {:?}: {reason}", body.filter),
        )),
    }
}

fn no_log_control() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_available",
        "this supervisor's log filter cannot be changed at run time",
    )
}

/// One span per API request, with method, path and the final status as structured fields; the
/// execution span of a run nests inside it.
pub async fn trace_request(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    // Named and attributed by the OpenTelemetry HTTP conventions: a SERVER span, the method
    // and path as its name (the path holds no free text but agent and resource names).
    let span = tracing::info_span!(
        "api_request",
        "otel.name" = %format!("{} {}", request.method(), request.uri().path()),
        "otel.kind" = "server",
        "otel.status_code" = tracing::field::Empty,
        "http.request.method" = %request.method(),
        "url.path" = %request.uri().path(),
        "http.response.status_code" = tracing::field::Empty,
        method = %request.method(),
        path = %request.uri().path(),
        status = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    crate::telemetry::adopt_caller_trace(&span, request.headers());
    crate::telemetry::label_with_trace(&span);
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    span.record("http.response.status_code", i64::from(status));
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    tracing::debug!(parent: &span, latency_ms = started.elapsed().as_secs_f64() * 1000.0, "request handled");
    response
}

/// Refuse TCP requests without `Authorization: Bearer <token>`.
pub async fn require_token(token: &str, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => {
            if let Some(connection) = request.extensions().get::<super::serve::ConnectionHandle>() {
                connection.mark_allowed();
            }
            next.run(request).await
        }
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn not_deployed(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_agent",
        RunError::UnknownAgent(name.to_owned()).to_string(),
    )
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

fn registry_error(e: RegistryError) -> ApiError {
    match &e {
        RegistryError::Invalid(file_err) => ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_agent",
            message: e.to_string(),
            answer: Some(Box::new(ErrorAnswer {
                file: Some(file_err.file.clone()),
                line: Some(file_err.line),
                reason: Some(file_err.reason.clone()),
                ..ErrorAnswer::new("", "")
            })),
        },
        RegistryError::NotFound(name) => not_deployed(name),
        RegistryError::Io { .. } => internal(e.to_string()),
    }
}

fn deploy_error(e: DeployError) -> ApiError {
    match e {
        DeployError::Registry(r) => registry_error(r),
        DeployError::UnknownProvider { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "unknown_provider", e.to_string())
        }
    }
}
