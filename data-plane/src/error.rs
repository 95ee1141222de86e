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
    #[error("{}", .0.detail)]
    NoRoute(crate::routing::NoRoute),
    #[error("rate limit exceeded: the {} allows {} {}", .0.scope, .0.limit, .0.limit_name.replace('_', " "))]
    RateLimited(crate::limits::Rejection),
    #[error("{0}")]
    Guardrail(crate::guardrails::GuardrailViolation),
    /// A spend limit or budget cannot cover the request's estimated cost.
    #[error("{0}")]
    BudgetExceeded(crate::budget::Shortfall),
    /// The usage spool is at its disk cap (control plane unreachable for long).
    #[error(
        "this gateway cannot record usage right now (usage spool at {bytes} of {max_bytes} bytes); retry shortly or use another gateway"
    )]
    SpoolFull { bytes: u64, max_bytes: u64 },
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

impl UpstreamFailure {
    /// A failure described from the gateway's side: "provider `x` <what>".
    pub fn new(status: StatusCode, error_type: &'static str, provider: &str, what: &str) -> Self {
        Self {
            status,
            error_type,
            message: format!("provider `{provider}` {what}"),
            provider: provider.to_owned(),
            provider_code: None,
            retry_after_secs: None,
        }
    }
}

/// OpenRouter's `error_type` vocabulary (reference §2.3), for reading it back from
/// upstream bodies (an OpenRouter-compatible upstream reports errors this way).
pub fn known_error_type(name: &str) -> Option<&'static str> {
    const TYPES: &[&str] = &[
        "context_length_exceeded",
        "max_tokens_exceeded",
        "token_limit_exceeded",
        "string_too_long",
        "authentication",
        "permission_denied",
        "payment_required",
        "rate_limit_exceeded",
        "provider_overloaded",
        "provider_unavailable",
        "invalid_request",
        "invalid_prompt",
        "not_found",
        "precondition_failed",
        "payload_too_large",
        "unprocessable",
        "content_policy_violation",
        "refusal",
        "invalid_image",
        "image_too_large",
        "image_too_small",
        "unsupported_image_format",
        "image_download_failed",
        "image_not_found",
        "server",
        "timeout",
        "unmapped",
    ];
    TYPES.iter().copied().find(|t| *t == name)
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
            ApiError::SpoolFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NoRoute(r) if r.code == "model_not_found" => StatusCode::BAD_REQUEST,
            ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Guardrail(_) => StatusCode::FORBIDDEN,
            ApiError::BudgetExceeded(_) => StatusCode::PAYMENT_REQUIRED,
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
            ApiError::SpoolFull { .. } => "spool_full",
            ApiError::Internal(_) => "server",
            ApiError::NoRoute(r) if r.code == "model_not_found" => "invalid_request",
            ApiError::NoRoute(_) => "not_found",
            ApiError::RateLimited(_) => "rate_limit_exceeded",
            ApiError::Guardrail(_) => "permission_denied",
            ApiError::BudgetExceeded(_) => "payment_required",
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
            ApiError::NoRoute(r) => Some(json!({
                "code": r.code, "retryable": false, "retry_after": null,
                "requested_models": r.requested_models, "affected_providers": r.affected_providers,
                "excluded_by": r.excluded_by, "fallback_models": [],
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
        if let ApiError::Guardrail(v) = self {
            // OpenRouter's guardrail shape names the rule, never the matched text.
            metadata = v.error_body()["error"]["metadata"].clone();
        }
        if let ApiError::BudgetExceeded(s) = self {
            metadata["budget"] = s.metadata();
        }
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
            ApiError::RateLimited(r) => Some(r.retry_after.as_secs_f64().ceil().max(1.0) as u64),
            ApiError::SpoolFull { .. } => Some(5),
            _ => None,
        }
    }

    /// Headers every skin adds to this error's response: `Retry-After`, and the
    /// `X-RateLimit-*` trio on rate-limit rejections.
    pub fn headers(&self) -> Vec<(header::HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        if let Some(secs) = self.retry_after()
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            out.push((header::RETRY_AFTER, value));
        }
        if let ApiError::RateLimited(r) = self {
            for (name, value) in [
                ("x-ratelimit-limit", r.limit.to_string()),
                ("x-ratelimit-remaining", r.remaining.to_string()),
                ("x-ratelimit-reset", r.reset_unix_ms.to_string()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    out.push((header::HeaderName::from_static(name), v));
                }
            }
        }
        out
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
        response
            .extensions_mut()
            .insert(crate::telemetry::ErrorType(self.error_type()));
        for (name, value) in self.headers() {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
