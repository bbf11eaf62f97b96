//! `/mcp`: the deployed tools for any MCP client, over the Streamable HTTP transport of the Model
//! Context Protocol (revision 2025-06-18), behind the same authentication as the rest of the API.
//!
//! Every POST carries one JSON-RPC message and gets one `application/json` reply (the transport
//! allows this instead of an SSE stream); notifications get 202. `initialize` opens a session
//! named by the `Mcp-Session-Id` header, which every later request must carry; DELETE ends it.
//! The server offers no server-initiated stream, so GET answers 405 as the transport specifies.
//!
//! Hand-written rather than built on `rmcp`: the server side used here is four methods and a
//! session table, and `rmcp`'s transport brings its own session manager, SSE machinery and
//! tower stack that would sit beside ours. The official Python SDK client in the test suite
//! checks that this speaks the protocol.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Supervisor;

/// The revision this server implements; also the answer to clients asking for an unknown one.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// Revisions whose requests this server also understands.
const SUPPORTED_VERSIONS: &[&str] = &["2025-06-18", "2025-03-26"];
/// Tools per `tools/list` page.
const PAGE_SIZE: usize = 50;
/// Sessions kept at once; the least recently used goes first.
const MAX_SESSIONS: usize = 1024;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

// JSON-RPC 2.0 error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Open MCP sessions.
#[derive(Default)]
pub struct McpSessions {
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    protocol_version: String,
    last_used: Instant,
}

impl McpSessions {
    fn open(&self, protocol_version: String) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut sessions = self.lock();
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                protocol_version,
                last_used: Instant::now(),
            },
        );
        id
    }

    /// The session's protocol version, touching it; `None` when unknown or expired.
    fn touch(&self, id: &str) -> Option<String> {
        let mut sessions = self.lock();
        let s = sessions.get_mut(id)?;
        s.last_used = Instant::now();
        Some(s.protocol_version.clone())
    }

    fn close(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// State of the `/mcp` routes.
pub type McpState = (Arc<Supervisor>, Arc<McpSessions>);

fn rpc_error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Browsers send `Origin`; a page elsewhere must not drive local tools (DNS rebinding).
fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    matches!(
        url.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    )
}

/// `POST /mcp`: one JSON-RPC message in, one reply out.
pub async fn post(
    State((sup, sessions)): State<McpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !origin_allowed(&headers) {
        return reply(
            StatusCode::FORBIDDEN,
            rpc_error(Value::Null, INVALID_REQUEST, "Origin not allowed"),
        );
    }
    let message = match envelope(&body) {
        Ok(message) => message,
        Err((status, body)) => return reply(status, body),
    };
    let id = message.get("id").cloned();
    let method = message.get("method").and_then(Value::as_str);
    let session_id = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok());

    if method == Some("initialize") {
        let Some(id) = id else {
            return reply(
                StatusCode::BAD_REQUEST,
                rpc_error(Value::Null, INVALID_REQUEST, "initialize must be a request"),
            );
        };
        return initialize(&sup, &sessions, id, &message);
    }

    // Everything else belongs to a session.
    let Some(session_id) = session_id else {
        return reply(
            StatusCode::BAD_REQUEST,
            rpc_error(
                id.unwrap_or(Value::Null),
                INVALID_REQUEST,
                "missing Mcp-Session-Id header: send initialize first",
            ),
        );
    };
    let Some(version) = sessions.touch(session_id) else {
        return reply(
            StatusCode::NOT_FOUND,
            rpc_error(
                id.unwrap_or(Value::Null),
                INVALID_REQUEST,
                "unknown or expired session: initialize again",
            ),
        );
    };
    if let Some(asked) = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok())
        && asked != version
        && !SUPPORTED_VERSIONS.contains(&asked)
    {
        return reply(
            StatusCode::BAD_REQUEST,
            rpc_error(
                id.unwrap_or(Value::Null),
                INVALID_REQUEST,
                format!("unsupported MCP-Protocol-Version {asked:?}"),
            ),
        );
    }

    let Some(method) = method else {
        // A response or something malformed from the client: nothing to answer.
        return if id.is_some()
            && (message.get("result").is_some() || message.get("error").is_some())
        {
            StatusCode::ACCEPTED.into_response()
        } else {
            reply(
                StatusCode::BAD_REQUEST,
                rpc_error(id.unwrap_or(Value::Null), INVALID_REQUEST, "no method"),
            )
        };
    };
    let Some(id) = id else {
        // Notifications (initialized, cancelled, ...) need no answer.
        tracing::debug!(method, "mcp notification");
        return StatusCode::ACCEPTED.into_response();
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    // Named by the OpenTelemetry MCP conventions (`tools/call {tool}`, SERVER); a context the
    // client sends in `params._meta` (as MCP specifies) becomes its parent.
    let tool = (method == "tools/call")
        .then(|| params.get("name").and_then(Value::as_str))
        .flatten();
    let span = tracing::info_span!(
        "mcp_request",
        "otel.name" = %tool.map_or_else(|| method.to_owned(), |t| format!("{method} {t}")),
        "otel.kind" = "server",
        "mcp.method.name" = method,
        "mcp.session.id" = session_id,
        "gen_ai.tool.name" = tool.unwrap_or_default(),
        method,
        session = session_id,
    );
    adopt_meta_trace_context(&span, &params);
    let answer = tracing::Instrument::instrument(handle(&sup, id, method, params), span).await;
    reply(StatusCode::OK, answer)
}

/// Make the W3C trace context a client sends in `params._meta` (as MCP specifies) `span`'s parent.
fn adopt_meta_trace_context(span: &tracing::Span, params: &Value) {
    let meta = params.get("_meta");
    if let Some(traceparent) = meta
        .and_then(|m| m.get("traceparent"))
        .and_then(Value::as_str)
    {
        let tracestate = meta
            .and_then(|m| m.get("tracestate"))
            .and_then(Value::as_str);
        crate::telemetry::adopt_trace_context(span, traceparent, tracestate);
    }
}

/// One JSON-RPC 2.0 message from a body, or the status and error that refuse it.
fn envelope(body: &[u8]) -> Result<Value, (StatusCode, Value)> {
    let message: Value = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            rpc_error(Value::Null, PARSE_ERROR, format!("parse error: {e}")),
        )
    })?;
    if message.is_array() {
        return Err((
            StatusCode::BAD_REQUEST,
            rpc_error(
                Value::Null,
                INVALID_REQUEST,
                "batches are not supported by protocol revision 2025-06-18",
            ),
        ));
    }
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            StatusCode::BAD_REQUEST,
            rpc_error(
                message.get("id").cloned().unwrap_or(Value::Null),
                INVALID_REQUEST,
                "not a JSON-RPC 2.0 message",
            ),
        ));
    }
    Ok(message)
}

fn initialize(sup: &Supervisor, sessions: &McpSessions, id: Value, message: &Value) -> Response {
    let asked = message
        .pointer("/params/protocolVersion")
        .and_then(Value::as_str);
    let Some(asked) = asked else {
        return reply(
            StatusCode::OK,
            rpc_error(
                id,
                INVALID_PARAMS,
                "initialize needs params.protocolVersion",
            ),
        );
    };
    // Agree on the client's revision when we speak it; otherwise offer ours and let it decide.
    let version = if SUPPORTED_VERSIONS.contains(&asked) {
        asked
    } else {
        PROTOCOL_VERSION
    };
    let session = sessions.open(version.to_owned());
    let client = message
        .pointer("/params/clientInfo/name")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    tracing::info!(client, protocol_version = version, "mcp session opened");
    let result = json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "caxton", "version": env!("CARGO_PKG_VERSION")},
        "instructions": format!(
            "Caxton hosts {} tools as WebAssembly sandboxes; call them with tools/call.",
            sup.tools().all_tools().len()
        ),
    });
    let mut response = reply(StatusCode::OK, rpc_result(id, result));
    if let Ok(value) = HeaderValue::from_str(&session) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

async fn handle(sup: &Supervisor, id: Value, method: &str, params: Value) -> Value {
    match method {
        "ping" => rpc_result(id, json!({})),
        "tools/list" => list_tools(sup, id, &params),
        "tools/call" => call_tool(sup, id, params).await,
        other => rpc_error(id, METHOD_NOT_FOUND, format!("method not found: {other}")),
    }
}

fn list_tools(sup: &Supervisor, id: Value, params: &Value) -> Value {
    let tools = sup.tools().all_tools();
    let start = match params.get("cursor") {
        None | Some(Value::Null) => 0,
        Some(Value::String(c)) => match c.parse::<usize>() {
            Ok(n) if n <= tools.len() => n,
            _ => return rpc_error(id, INVALID_PARAMS, format!("invalid cursor {c:?}")),
        },
        Some(_) => return rpc_error(id, INVALID_PARAMS, "cursor must be a string"),
    };
    let page: Vec<Value> = tools
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .map(|t| {
            json!({
                "name": t.name,
                "description": t.description,
                "inputSchema": serde_json::from_str::<Value>(&t.input_schema_json)
                    .unwrap_or_else(|_| json!({"type": "object"})),
            })
        })
        .collect();
    let mut result = json!({ "tools": page });
    if start + PAGE_SIZE < tools.len() {
        result["nextCursor"] = (start + PAGE_SIZE).to_string().into();
    }
    rpc_result(id, result)
}

async fn call_tool(sup: &Supervisor, id: Value, params: Value) -> Value {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return rpc_error(id, INVALID_PARAMS, "tools/call needs params.name");
    };
    if !sup.tools().all_tools().iter().any(|t| t.name == name) {
        return rpc_error(id, INVALID_PARAMS, format!("unknown tool: {name}"));
    }
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return rpc_error(id, INVALID_PARAMS, "arguments must be an object"),
    };
    let ctx = caxton_tool_host::CallContext {
        workspace: Some(sup.config().workspaces_dir.join(MCP_WORKSPACE)),
    };
    let outcome = sup.tools().call(name, arguments, ctx).await;
    rpc_result(id, outcome.result)
}

/// The workspace directory of tool calls that come through `/mcp` rather than from an agent.
pub const MCP_WORKSPACE: &str = "_mcp";

/// `DELETE /mcp`: the client ends its session.
pub async fn delete(State((_, sessions)): State<McpState>, headers: HeaderMap) -> StatusCode {
    match headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        Some(id) if sessions.close(id) => StatusCode::OK,
        Some(_) => StatusCode::NOT_FOUND,
        None => StatusCode::BAD_REQUEST,
    }
}

/// `GET /mcp`: this server sends nothing unprompted, so it offers no stream.
pub async fn get() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST, DELETE")],
    )
        .into_response()
}

/// The fuzzers' entry (`fuzz/`): the checks `POST /mcp` makes of a body and its `Origin`
/// header before a session or a supervisor is involved (the origin, the JSON-RPC envelope, a
/// `params._meta` trace context), with the status that refuses it; `None` when they pass.
#[doc(hidden)]
pub fn fuzz_message(body: &[u8], origin: Option<&[u8]>) -> Option<StatusCode> {
    let mut headers = HeaderMap::new();
    if let Some(value) = origin.and_then(|o| HeaderValue::from_bytes(o).ok()) {
        headers.insert(header::ORIGIN, value);
    }
    if !origin_allowed(&headers) {
        return Some(StatusCode::FORBIDDEN);
    }
    let message = match envelope(body) {
        Ok(message) => message,
        Err((status, _)) => return Some(status),
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    adopt_meta_trace_context(&tracing::Span::none(), &params);
    None
}
