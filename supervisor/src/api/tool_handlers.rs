//! `/api/v1/tools`: deploy, list, show and remove MCP tool servers.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use caxton_api_contract::tools::{ToolDeployAnswer, ToolPackage, ToolRemoveAnswer, ToolServerList};

use super::error::ApiError;
use crate::Supervisor;
use crate::tools::ToolError;

type Shared = State<Arc<Supervisor>>;
type ApiResult = Result<Response, ApiError>;

/// Most bytes a deploy request may carry: a module and its manifest, base64-encoded.
pub const MAX_DEPLOY_BODY: usize = 96 << 20;

pub async fn list_tools(State(sup): Shared) -> Response {
    Json(ToolServerList {
        servers: sup.tools().list(),
    })
    .into_response()
}

pub async fn show_tool(State(sup): Shared, Path(name): Path<String>) -> ApiResult {
    match sup.tools().show(&name) {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(tool_error(ToolError::UnknownServer(name))),
    }
}

pub async fn deploy_tool(
    State(sup): Shared,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> ApiResult {
    let body: ToolPackage = super::handlers::json_object(
        body,
        r#"like {"manifest": "<tool.toml>", "module_base64": "..."}"#,
    )?;
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(body.module_base64.as_bytes())
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("module_base64: {e}"),
            )
        })?;
    let origin = PathBuf::from(body.origin.unwrap_or_else(|| "<request>".into()));
    let replaced = {
        // Compiling takes a while for big modules: keep it off the async threads.
        let sup = sup.clone();
        let manifest = body.manifest;
        tokio::task::spawn_blocking(move || {
            let name_before = sup
                .tools()
                .list()
                .into_iter()
                .map(|i| i.name)
                .collect::<Vec<_>>();
            sup.tools()
                .deploy(&origin, &manifest, &wasm)
                .map(|info| (name_before.contains(&info.name), info))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    };
    let (replaced, info) = replaced.map_err(tool_error)?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(ToolDeployAnswer {
            server: info,
            replaced,
        }),
    )
        .into_response())
}

pub async fn remove_tool(State(sup): Shared, Path(name): Path<String>) -> ApiResult {
    let removed = sup.tools().remove(&name).map_err(tool_error)?;
    Ok(Json(ToolRemoveAnswer {
        removed: removed.name,
    })
    .into_response())
}

fn tool_error(e: ToolError) -> ApiError {
    let (status, kind) = match &e {
        ToolError::Package(_) => (StatusCode::BAD_REQUEST, "invalid_tool"),
        ToolError::NameClash { .. } => (StatusCode::CONFLICT, "tool_name_clash"),
        ToolError::UnknownServer(_) => (StatusCode::NOT_FOUND, "unknown_tool_server"),
        ToolError::BuiltIn(_) => (StatusCode::CONFLICT, "built_in_tool_server"),
        ToolError::Storage { .. } | ToolError::Host(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    ApiError::new(status, kind, e.to_string())
}
