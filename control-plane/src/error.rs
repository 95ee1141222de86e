//! Errors of the control plane's REST API, answered in OpenRouter's envelope
//! `{"error":{"code","message","metadata":{"error_type"}}}`, and mapped to gRPC statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// A request the framework refused before a handler ran (body too large, wrong method,
    /// unreadable body): its status is kept, its message put in the API's envelope.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("internal error")]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::Store(StoreError::NotFound) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) | ApiError::Store(StoreError::Conflict(_)) => {
                StatusCode::CONFLICT
            }
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Rejected { status, .. } => *status,
            ApiError::Internal(_) | ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "authentication",
            StatusCode::FORBIDDEN => "permission_denied",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::CONFLICT => "precondition_failed",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_exceeded",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY => {
                "invalid_request"
            }
            _ => "server",
        }
    }

    fn public_message(&self) -> String {
        match self {
            ApiError::Store(StoreError::NotFound) => "not found".into(),
            ApiError::Store(StoreError::Conflict(what)) => format!("conflict: {what}"),
            ApiError::Internal(_) | ApiError::Store(_) => "internal server error".into(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = ?self, "management request failed");
        }
        let body = json!({
            "error": {
                "code": status.as_u16(),
                "message": self.public_message(),
                "metadata": { "error_type": self.error_type() },
            }
        });
        (status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for tonic::Status {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => tonic::Status::not_found("not found"),
            StoreError::Conflict(what) => tonic::Status::already_exists(what),
            other => {
                tracing::error!(error = ?other, "store error in a gRPC call");
                tonic::Status::unavailable("the control plane's database is unavailable")
            }
        }
    }
}
