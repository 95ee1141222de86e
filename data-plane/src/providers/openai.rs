//! OpenAI chat-completions wire format, used for `openai` and every OpenAI-compatible server.

use axum::http::StatusCode;
use serde_json::Value;
use switchyard_proto::UsageDims;

use crate::chat_request::ChatRequest;
use crate::error::UpstreamFailure;
use crate::snapshot::EndpointEntry;

pub struct UpstreamRequest {
    pub url: String,
    pub bearer: Option<String>,
    pub body: Vec<u8>,
}

pub fn build_request(request: &ChatRequest, endpoint: &EndpointEntry) -> UpstreamRequest {
    let body = request.to_openai_body(&endpoint.upstream_model);
    let credential = &endpoint.provider.credential;
    UpstreamRequest {
        url: format!("{}/chat/completions", endpoint.provider.base_url),
        bearer: (!credential.is_empty()).then(|| credential.expose().to_owned()),
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

fn count(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Reads OpenAI's `usage` object. `prompt_tokens` includes cached tokens, which matches
/// the canonical meaning of `input_tokens`.
pub fn parse_usage(usage: &Value) -> Option<UsageDims> {
    if !usage.is_object() {
        return None;
    }
    Some(UsageDims {
        input_tokens: count(usage, &["prompt_tokens"]),
        output_tokens: count(usage, &["completion_tokens"]),
        cache_read_tokens: count(usage, &["prompt_tokens_details", "cached_tokens"]),
        cache_write_5m_tokens: count(usage, &["prompt_tokens_details", "cache_write_tokens"]),
        cache_write_1h_tokens: 0,
        reasoning_tokens: count(usage, &["completion_tokens_details", "reasoning_tokens"]),
    })
}

/// Maps an upstream HTTP error to the OpenRouter error vocabulary.
pub fn map_error(
    status: StatusCode,
    body: &[u8],
    provider: &str,
    retry_after_secs: Option<u64>,
) -> UpstreamFailure {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let upstream_message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let provider_code = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/code"))
        .and_then(|c| match c {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let (status_out, error_type) = match status.as_u16() {
        400 => (StatusCode::BAD_REQUEST, "invalid_request"),
        401 | 403 => (StatusCode::BAD_GATEWAY, "provider_unavailable"),
        404 => (StatusCode::NOT_FOUND, "not_found"),
        408 | 504 => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        413 => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        422 => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
        429 => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded"),
        503 | 529 => (StatusCode::SERVICE_UNAVAILABLE, "provider_overloaded"),
        _ => (StatusCode::BAD_GATEWAY, "provider_unavailable"),
    };
    let message = match (status.as_u16(), upstream_message) {
        (401 | 403, _) => format!("provider `{provider}` rejected the configured credential"),
        (_, Some(m)) => format!("provider `{provider}` returned {}: {m}", status.as_u16()),
        (_, None) => format!("provider `{provider}` returned {}", status.as_u16()),
    };
    UpstreamFailure {
        status: status_out,
        error_type,
        message,
        provider: provider.to_owned(),
        provider_code,
        retry_after_secs,
    }
}

/// Whether another endpoint may be tried after this failure (nothing was streamed yet).
pub fn is_retryable(failure: &UpstreamFailure) -> bool {
    matches!(
        failure.error_type,
        "rate_limit_exceeded" | "provider_overloaded" | "provider_unavailable" | "timeout"
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_usage_with_details() {
        let u = parse_usage(&json!({
            "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 60},
            "completion_tokens_details": {"reasoning_tokens": 5}
        }))
        .unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.reasoning_tokens
            ),
            (100, 20, 60, 5)
        );
        assert!(parse_usage(&Value::Null).is_none());
    }

    #[test]
    fn maps_errors_to_openrouter_types() {
        let body = br#"{"error":{"message":"slow down","type":"rate_limit_exceeded","code":"rate_limit_exceeded"}}"#;
        let f = map_error(StatusCode::TOO_MANY_REQUESTS, body, "openai", Some(3));
        assert_eq!(f.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(f.error_type, "rate_limit_exceeded");
        assert!(f.message.contains("slow down"));
        assert_eq!(f.provider_code.as_deref(), Some("rate_limit_exceeded"));
        assert!(is_retryable(&f));

        let f = map_error(StatusCode::UNAUTHORIZED, b"{}", "openai", None);
        assert_eq!(f.status, StatusCode::BAD_GATEWAY);
        assert!(!f.message.contains("{}"));

        let f = map_error(StatusCode::BAD_REQUEST, b"not json", "openai", None);
        assert_eq!(f.error_type, "invalid_request");
        assert!(!is_retryable(&f));
    }
}
