//! The management API: HTTP/JSON over the Unix socket (peer credentials checked) and, when
//! configured, over TCP with a bearer token. The `caxton` CLI is a client of this API only.

mod a2a_handlers;
mod conversation_handlers;
mod error;
mod handlers;
pub(crate) mod listener;
pub mod mcp;
pub mod memory_handlers;
mod protocol_handlers;
mod serve;
mod tool_handlers;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use memory_handlers as mem;

/// The fuzzers' entry to the A2A endpoint's checks (see `fuzz/`).
#[doc(hidden)]
pub use a2a_handlers::fuzz_call as fuzz_a2a_call;
pub use error::ApiError;
pub use listener::{CheckedUnixListener, bind_unix_socket};
pub use serve::{ApiListener, ServeLimits, serve};

use crate::Supervisor;

/// Current API prefix.
pub const API_PREFIX: &str = "/api/v1";

/// The routes, shared by both listeners.
pub fn router(supervisor: Arc<Supervisor>) -> Router {
    let max_body = supervisor.config().max_body_bytes;
    // Tool packages carry a module, so they get a limit of their own.
    let tools = Router::new()
        .route(
            "/api/v1/tools",
            get(tool_handlers::list_tools).post(tool_handlers::deploy_tool),
        )
        .route(
            "/api/v1/tools/{name}",
            get(tool_handlers::show_tool).delete(tool_handlers::remove_tool),
        )
        .layer(DefaultBodyLimit::max(tool_handlers::MAX_DEPLOY_BODY))
        .layer(axum::middleware::from_fn(move |req, next| {
            handlers::refuse_oversized(tool_handlers::MAX_DEPLOY_BODY, req, next)
        }));
    // An import carries a whole memory export, so it too has a limit of its own.
    let memory_import = Router::new()
        .route("/api/v1/memory/import", post(mem::import))
        .layer(DefaultBodyLimit::max(mem::MAX_IMPORT_BODY))
        .layer(axum::middleware::from_fn(mem::refuse_oversized_import));
    Router::new()
        .route("/api/v1/health", get(handlers::health))
        .route(
            "/api/v1/log-filter",
            get(handlers::log_filter).put(handlers::set_log_filter),
        )
        .route("/api/v1/status", get(handlers::status))
        .route(
            "/api/v1/agents",
            get(handlers::list_agents).post(handlers::deploy_agent),
        )
        .route("/api/v1/agents/validate", post(handlers::validate_agent))
        .route("/api/v1/agents/reload", post(handlers::reload_agents))
        .route(
            "/api/v1/agents/{name}",
            get(handlers::show_agent).delete(handlers::remove_agent),
        )
        .route("/api/v1/agents/{name}/run", post(handlers::run_agent))
        .route("/api/v1/capabilities", get(handlers::list_capabilities))
        .route(
            "/api/v1/capabilities/{capability}/run",
            post(handlers::run_capability),
        )
        .route(
            "/api/v1/protocols/contract-net",
            post(protocol_handlers::contract_net),
        )
        .route(
            "/api/v1/protocols/auction",
            post(protocol_handlers::auction),
        )
        .route(
            "/api/v1/protocols/negotiation",
            post(protocol_handlers::negotiation),
        )
        .route(
            "/api/v1/topics/{topic}/publish",
            post(protocol_handlers::publish),
        )
        .route("/api/v1/conversations", get(conversation_handlers::list))
        .route(
            "/api/v1/conversations/{id}",
            get(conversation_handlers::show),
        )
        .route("/api/v1/executions", get(handlers::list_executions))
        .route("/api/v1/executions/{id}", get(handlers::show_execution))
        .route("/api/v1/workers", get(handlers::list_workers))
        .route("/api/v1/workers/{target}/kill", post(handlers::kill_worker))
        .route("/api/v1/memory/entities", post(mem::upsert_entity))
        .route(
            "/api/v1/memory/entities/{name}",
            get(mem::show_entity).delete(mem::delete_entity),
        )
        .route(
            "/api/v1/memory/entities/{name}/observations",
            post(mem::add_observations).delete(mem::delete_observations),
        )
        .route(
            "/api/v1/memory/entities/{name}/neighbours",
            get(mem::neighbours),
        )
        .route(
            "/api/v1/memory/relations",
            post(mem::relate).delete(mem::unrelate),
        )
        .route("/api/v1/memory/search", get(mem::search))
        .route("/api/v1/memory/path", get(mem::path))
        .route("/api/v1/memory/export", get(mem::export))
        .route("/api/v1/memory/stats", get(mem::stats))
        .route("/metrics", get(handlers::metrics))
        .route(
            "/.well-known/agent-card.json",
            get(a2a_handlers::server_card),
        )
        .route("/.well-known/agent.json", get(a2a_handlers::server_card))
        .route("/a2a", post(a2a_handlers::server_rpc))
        .route("/a2a/{name}", post(a2a_handlers::agent_rpc))
        .route(
            "/a2a/{name}/.well-known/agent-card.json",
            get(a2a_handlers::agent_card),
        )
        .route(
            "/a2a/{name}/.well-known/agent.json",
            get(a2a_handlers::agent_card),
        )
        .merge(
            Router::new()
                .route("/mcp", post(mcp::post).get(mcp::get).delete(mcp::delete))
                .with_state((supervisor.clone(), Arc::new(mcp::McpSessions::default()))),
        )
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(move |req, next| {
            handlers::refuse_oversized(max_body, req, next)
        }))
        // Added after the layers above, so only the tool routes' own limits apply to them.
        .merge(tools)
        .merge(memory_import)
        .layer(axum::middleware::from_fn(handlers::trace_request))
        .with_state(supervisor)
}

/// The same routes behind a bearer-token check, for the TCP listener.
pub fn router_with_token(supervisor: Arc<Supervisor>, token: String) -> Router {
    let token = Arc::new(token);
    router(supervisor).layer(axum::middleware::from_fn(move |req, next| {
        let token = token.clone();
        async move { handlers::require_token(&token, req, next).await }
    }))
}
