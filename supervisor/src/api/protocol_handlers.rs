//! `POST /api/v1/protocols/{contract-net,auction,negotiation}` and
//! `POST /api/v1/topics/{topic}/publish`: the interaction protocols a caller starts; the
//! supervisor runs every step ([`crate::protocols`]) and answers with all of them.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use caxton_api_contract::protocols::{
    AwardRule, CallForProposals, NegotiationRequest, PublishRequest,
};
use serde_json::Value;

use super::error::ApiError;
use super::handlers::{ApiResult, Shared, json_object, run_error};
use crate::protocols::{self, ProtocolError};

fn failed(e: ProtocolError) -> ApiError {
    match e {
        ProtocolError::Run(e) => run_error(e),
        ProtocolError::NoSubscribers { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "no_subscribers", e.to_string())
        }
        ProtocolError::SameAgent(_) | ProtocolError::Rounds(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
        }
        ProtocolError::Refused(_) => {
            ApiError::new(StatusCode::FORBIDDEN, "delegation_refused", e.to_string())
        }
    }
}

async fn award(
    State(sup): Shared,
    body: Result<Json<Value>, JsonRejection>,
    rule: AwardRule,
) -> ApiResult {
    let body: CallForProposals = json_object(body, r#"like {"capability": "...", "task": "..."}"#)?;
    let answer = protocols::start_call_for_proposals(&sup, body, rule)
        .await
        .map_err(failed)?;
    Ok(Json(answer).into_response())
}

/// `POST /api/v1/protocols/contract-net`: the highest score wins.
pub async fn contract_net(sup: Shared, body: Result<Json<Value>, JsonRejection>) -> ApiResult {
    award(sup, body, AwardRule::HighestScore).await
}

/// `POST /api/v1/protocols/auction`: the lowest price wins.
pub async fn auction(sup: Shared, body: Result<Json<Value>, JsonRejection>) -> ApiResult {
    award(sup, body, AwardRule::LowestPrice).await
}

/// `POST /api/v1/protocols/negotiation`
pub async fn negotiation(
    State(sup): Shared,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let body: NegotiationRequest = json_object(
        body,
        r#"like {"initiator": "...", "responder": "...", "subject": "..."}"#,
    )?;
    let answer = protocols::start_negotiation(&sup, body)
        .await
        .map_err(failed)?;
    Ok(Json(answer).into_response())
}

/// `POST /api/v1/topics/{topic}/publish`: one execution per subscriber, all waited for.
pub async fn publish(
    State(sup): Shared,
    Path(topic): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let body: PublishRequest = json_object(body, r#"like {"content": "..."}"#)?;
    let answer = protocols::start_publication(&sup, &topic, body)
        .await
        .map_err(failed)?;
    Ok(Json(answer).into_response())
}
