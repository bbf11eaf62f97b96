//! `GET /api/v1/conversations[/ID]`: conversations, their messages and their trees of
//! executions, as the database has them.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use caxton_api_contract::conversations::ConversationList;

use super::error::ApiError;
use super::handlers::{ApiResult, Limit, Shared, store_status};
use crate::store::StoreError;

fn failed(e: StoreError) -> ApiError {
    let (status, kind) = store_status(&e);
    ApiError::new(status, kind, e.to_string())
}

/// `GET /api/v1/conversations?limit=N`: the most recently changed first.
pub async fn list(State(sup): Shared, Query(q): Query<Limit>) -> ApiResult {
    let limit = q.limit.unwrap_or(20).min(1000);
    let conversations = sup.conversations(limit).await.map_err(failed)?;
    Ok(Json(ConversationList { conversations }).into_response())
}

/// `GET /api/v1/conversations/{id}`
pub async fn show(State(sup): Shared, Path(id): Path<String>) -> ApiResult {
    match sup.conversation(&id).await.map_err(failed)? {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_conversation",
            format!("no conversation {id:?} exists (see `caxton conversation list`)"),
        )),
    }
}
