//! `POST /api/v1/protocols/{contract-net,auction,negotiation}` and
//! `POST /api/v1/topics/{topic}/publish`: the interaction protocols a caller starts; the
//! supervisor runs every step ([`crate::protocols`]) and answers with all of them.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use caxton_api_contract::conversations::Protocol;
use caxton_api_contract::protocols::{
    AwardRule, CallForProposals, NegotiationRequest, PublishRequest,
};
use serde_json::Value;

use super::error::ApiError;
use super::handlers::{ApiResult, Shared, json_object, run_error};
use crate::RunError;
use crate::protocols::{self, DEFAULT_NEGOTIATION_ROUNDS, ProtocolError, caller_origin};

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
    sup: Shared,
    body: Result<Json<Value>, JsonRejection>,
    rule: AwardRule,
) -> ApiResult {
    let State(sup) = sup;
    let body: CallForProposals = json_object(body, r#"like {"capability": "...", "task": "..."}"#)?;
    let protocol = match rule {
        AwardRule::HighestScore => Protocol::ContractNet,
        AwardRule::LowestPrice => Protocol::Auction,
    };
    let origin = caller_origin(&sup, body.conversation, protocol)
        .await
        .map_err(run_error)?;
    let answer = protocols::call_for_proposals(&sup, &origin, &body.capability, &body.task, rule)
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
    let agent = |name: &str| {
        sup.registry()
            .get(name)
            .ok_or_else(|| run_error(RunError::UnknownAgent(name.to_owned())))
    };
    let (initiator, responder) = (agent(&body.initiator)?, agent(&body.responder)?);
    let origin = caller_origin(&sup, body.conversation, Protocol::Negotiation)
        .await
        .map_err(run_error)?;
    let answer = protocols::negotiate(
        &sup,
        &origin,
        initiator,
        responder,
        &body.subject,
        body.max_rounds.unwrap_or(DEFAULT_NEGOTIATION_ROUNDS),
    )
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
    let origin = caller_origin(&sup, body.conversation, Protocol::Subscribe)
        .await
        .map_err(run_error)?;
    let answer = protocols::publish(&sup, &origin, &topic, &body.content)
        .await
        .map_err(failed)?;
    Ok(Json(answer).into_response())
}
