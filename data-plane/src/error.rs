//! The gateway's error type and its OpenRouter-style envelope:
//! `{"error":{"code":<status>,"message":…,"metadata":{"error_type":…}}}`.
//! Errors are logged once, here, where they become responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("model `{model}` is not in this organization's catalog")]
    ModelNotFound { model: String },
    #[error("no endpoint is available for model `{model}`: {reason}")]
    NoEndpoints { model: String, reason: String },
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Upstream(UpstreamFailure),
    #[error("the gateway has not received its configuration yet")]
    NotReady,
    #[error("internal error")]
    Internal(String),
}

/// An upstream provider's failure, mapped to the OpenRouter vocabulary.
#[derive(Debug, Clone)]
pub struct UpstreamFailure {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
    pub provider: String,
    pub provider_code: Option<String>,
    pub retry_after_secs: Option<u64>,
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) | ApiError::ModelNotFound { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::NoEndpoints { .. } => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Upstream(f) => f.status,
            ApiError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenRouter's stable `error_type`; also the low-cardinality metrics label.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "authentication",
            ApiError::Forbidden(_) => "permission_denied",
            ApiError::BadRequest(_) | ApiError::ModelNotFound { .. } => "invalid_request",
            ApiError::NotFound(_) | ApiError::NoEndpoints { .. } => "not_found",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::Upstream(f) => f.error_type,
            ApiError::NotReady => "provider_overloaded",
            ApiError::Internal(_) => "server",
        }
    }

    fn availability(&self) -> Option<Value> {
        match self {
            ApiError::ModelNotFound { model } => Some(json!({
                "code": "model_not_found", "retryable": false, "retry_after": null,
                "requested_models": [model], "affected_providers": [], "excluded_by": [], "fallback_models": [],
            })),
            ApiError::NoEndpoints { model, .. } => Some(json!({
                "code": "no_endpoints", "retryable": false, "retry_after": null,
                "requested_models": [model], "affected_providers": [], "excluded_by": [], "fallback_models": [],
            })),
            _ => None,
        }
    }

    /// The `error` object shared by the JSON envelope and mid-stream error events.
    pub fn error_object(&self) -> Value {
        let status = self.status().as_u16();
        let message = match self {
            // Internal details stay in the log; the client gets a stable message.
            ApiError::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        };
        let mut metadata = json!({ "error_type": self.error_type() });
        if let ApiError::Upstream(f) = self {
            metadata["provider_name"] = json!(f.provider);
            if let Some(code) = &f.provider_code {
                metadata["provider_code"] = json!(code);
            }
        }
        let mut error = json!({ "code": status, "message": message, "metadata": metadata });
        if let Some(availability) = self.availability() {
            error["availability"] = availability;
            error["error_type"] = json!(self.error_type());
            error["http_status"] = json!(status);
        }
        error
    }

    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Upstream(f) => f.retry_after_secs,
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        } else {
            tracing::debug!(error = %self, error_type = self.error_type(), "request rejected");
        }
        let body = json!({ "error": self.error_object() });
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after()
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
