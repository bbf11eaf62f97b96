//! API errors: one JSON shape ([`caxton_api_contract::ErrorAnswer`]), with a fitting status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use caxton_api_contract::ErrorAnswer;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable kind.
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The execution report of a failed run, and the file, line and reason of a refused
    /// agent file; the kind and message above win over the answer's own.
    pub answer: Option<Box<ErrorAnswer>>,
}

impl ApiError {
    /// A plain error.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            answer: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self
            .answer
            .map_or_else(|| ErrorAnswer::new(self.kind, String::new()), |a| *a);
        body.error.kind = self.kind.to_owned();
        body.error.message = self.message;
        (self.status, Json(body)).into_response()
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let status = r.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_request"
        };
        Self::new(status, kind, r.body_text())
    }
}
