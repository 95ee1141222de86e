//! Provider wire formats. Adapters are pure: they build upstream requests and parse
//! upstream responses and stream events; all I/O lives in `upstream.rs`. Replies are
//! normalised to the canonical shapes — OpenAI `chat.completion` / `chat.completion.chunk`
//! objects extended with OpenRouter's `reasoning`, `reasoning_details` and
//! `native_finish_reason` — which every ingress skin renders for its clients.
//!
//! Canonical usage is OpenAI's `usage` object where `prompt_tokens` includes cached tokens
//! and `prompt_tokens_details.cache_write_tokens` counts every cache write; the part of
//! those writes with a one-hour lifetime is in `prompt_tokens_details.cache_write_1h_tokens`.

pub mod anthropic;
pub mod echo;
pub mod embedding;
pub mod gemini;
pub(crate) mod json_scan;
pub mod openai;
pub mod openai_answer;
mod reasoning;
mod usage_scan;

#[cfg(test)]
pub(crate) mod fixtures;

use std::pin::Pin;

use axum::http::StatusCode;
use futures_util::Stream;
use serde_json::Value;

use crate::chat_request::ChatRequest;
use crate::error::{ApiError, UpstreamFailure};
use crate::snapshot::{EndpointEntry, ProviderKind};

pub use embedding::EmbeddingsRequest;
pub use reasoning::ANTHROPIC_FORMAT;

/// A provider's answer, in canonical shapes.
pub enum Reply {
    /// A whole `chat.completion` object.
    Complete(Completion),
    /// `chat.completion.chunk` objects as they arrive.
    Stream(ChunkStream),
}

/// A whole `chat.completion` object, or one `chat.completion.chunk`: parsed, or — from an
/// OpenAI-format provider, whose answer already is one — located in the provider's bytes,
/// so an OpenAI-format client can get them patched instead of re-serialised.
#[derive(Debug, Clone)]
pub enum Completion {
    Canonical(Value),
    OpenAi(openai_answer::OpenAiAnswer),
}

impl Completion {
    pub fn into_value(self) -> Value {
        match self {
            Completion::Canonical(value) => value,
            Completion::OpenAi(answer) => answer.into_value(),
        }
    }
}

impl From<Value> for Completion {
    fn from(value: Value) -> Self {
        Completion::Canonical(value)
    }
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Completion, ApiError>> + Send>>;

/// One HTTP call to a provider, fully built.
#[derive(Debug)]
pub struct UpstreamRequest {
    pub url: String,
    /// Header names are lowercase; values may hold credentials, so this is never logged.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// What one upstream SSE event meant.
#[derive(Debug, Default)]
pub struct Parsed {
    pub chunks: Vec<Completion>,
    /// The provider said the stream is complete; later events are ignored.
    pub done: bool,
}

/// Turns one provider's SSE events into canonical chunks. Stateful, because several
/// formats spread one logical item (a tool call, the usage) across events.
pub trait StreamParser: Send {
    fn event(&mut self, event: &str, data: &str) -> Result<Parsed, UpstreamFailure>;
    /// The provider closed the connection without saying it was done: whatever is still
    /// owed to the client, or the failure if that is not a normal end for this format.
    fn closed(&mut self) -> Result<Vec<Value>, UpstreamFailure>;
}

/// The wire formats Switchyard speaks to providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Wire {
    pub fn of(kind: ProviderKind) -> Option<Wire> {
        match kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Some(Wire::OpenAi),
            ProviderKind::Anthropic => Some(Wire::Anthropic),
            ProviderKind::Gemini => Some(Wire::Gemini),
            ProviderKind::Echo => None,
        }
    }

    pub fn build_request(
        self,
        request: &ChatRequest,
        endpoint: &EndpointEntry,
    ) -> Result<UpstreamRequest, ApiError> {
        match self {
            Wire::OpenAi => Ok(openai::build_request(request, endpoint)),
            Wire::Anthropic => anthropic::build_request(request, endpoint),
            Wire::Gemini => gemini::build_request(request, endpoint),
        }
    }

    pub fn parse_response(self, body: &[u8], provider: &str) -> Result<Value, UpstreamFailure> {
        let value: Value = serde_json::from_slice(body).map_err(|_| not_json(provider))?;
        match self {
            Wire::OpenAi => Ok(value),
            Wire::Anthropic => anthropic::parse_response(&value, provider),
            Wire::Gemini => gemini::parse_response(&value, provider),
        }
    }

    /// A whole answer as received: with `located`, an OpenAI-format body is located and
    /// kept as bytes when it can be (see `openai_answer`); anything else is parsed. A body
    /// that is not JSON is a failure here, so the next endpoint is tried.
    pub fn completion(
        self,
        body: bytes::Bytes,
        provider: &str,
        located: bool,
    ) -> Result<Completion, UpstreamFailure> {
        if self == Wire::OpenAi
            && located
            && let Some(answer) = openai_answer::OpenAiAnswer::read(body.clone())
        {
            return Ok(Completion::OpenAi(answer));
        }
        let value = self.parse_response(&body, provider)?;
        if !value.is_object() {
            // Every later step edits the answer's members.
            return Err(UpstreamFailure::new(
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                provider,
                "returned a body that is not a JSON object",
            ));
        }
        Ok(Completion::Canonical(value))
    }

    /// `located`: OpenAI-format chunks as `Completion::OpenAi` (for clients whose encoder
    /// patches them), not trees; other formats are always translated into trees.
    pub fn stream_parser(self, provider: &str, located: bool) -> Box<dyn StreamParser> {
        match self {
            Wire::OpenAi => Box::new(openai::OpenAiStream::new(provider, located)),
            Wire::Anthropic => Box::new(anthropic::AnthropicStream::new(provider)),
            Wire::Gemini => Box::new(gemini::GeminiStream::new(provider)),
        }
    }

    pub fn map_error(
        self,
        status: StatusCode,
        body: &[u8],
        provider: &str,
        retry_after_secs: Option<u64>,
    ) -> UpstreamFailure {
        let code_at = match self {
            Wire::OpenAi => "/error/code",
            Wire::Anthropic => "/error/type",
            Wire::Gemini => "/error/status",
        };
        map_http_error(status, body, provider, retry_after_secs, code_at)
    }
}

fn not_json(provider: &str) -> UpstreamFailure {
    UpstreamFailure::new(
        StatusCode::BAD_GATEWAY,
        "provider_unavailable",
        provider,
        "returned a body that is not JSON",
    )
}

/// Maps an upstream HTTP error to the OpenRouter error vocabulary. Every supported format
/// puts its message at `/error/message`; `code_at` says where its own error code lives.
pub fn map_http_error(
    status: StatusCode,
    body: &[u8],
    provider: &str,
    retry_after_secs: Option<u64>,
    code_at: &str,
) -> UpstreamFailure {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let upstream_message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let provider_code = parsed
        .as_ref()
        .and_then(|v| v.pointer(code_at))
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

/// Reads a non-negative count at `path`, 0 when absent.
pub(crate) fn count(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The canonical usage object (see the module docs).
pub(crate) fn canonical_usage(
    prompt: u64,
    completion: u64,
    cache_read: u64,
    cache_write: u64,
    cache_write_1h: u64,
    reasoning: u64,
) -> Value {
    serde_json::json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "cache_write_1h_tokens": cache_write_1h,
        },
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    })
}

/// A tool call's arguments as the JSON object providers with structured inputs expect.
/// OpenAI clients send a JSON string; an empty string means no arguments.
pub(crate) fn arguments_object(arguments: Option<&Value>) -> Value {
    match arguments {
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Default::default()),
        Some(Value::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| serde_json::json!({ "_raw_arguments": s }))
        }
        Some(v @ Value::Object(_)) => v.clone(),
        _ => Value::Object(Default::default()),
    }
}

/// `data:[<media>];base64,<data>` split into media type and data.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((
        if media.is_empty() {
            "application/octet-stream"
        } else {
            media
        },
        data,
    ))
}

/// A tool message's content as text: a string, or its text parts joined.
pub(crate) fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The `max_tokens` the client asked for, if any.
pub(crate) fn requested_max_tokens(request: &ChatRequest) -> Option<u32> {
    request.max_completion_tokens.or(request.max_tokens)
}

/// How many tokens of `max_tokens` a reasoning request may spend on thinking: an explicit
/// `reasoning.max_tokens`, or OpenRouter's effort shares. `None` when reasoning is off.
pub(crate) fn reasoning_budget(request: &ChatRequest, max_tokens: u32) -> Option<u32> {
    let reasoning = request.extra.get("reasoning");
    let effort = reasoning
        .and_then(|r| r.get("effort"))
        .or_else(|| request.extra.get("reasoning_effort"))
        .and_then(Value::as_str);
    if reasoning
        .and_then(|r| r.get("enabled"))
        .and_then(Value::as_bool)
        == Some(false)
        || effort == Some("none")
    {
        return None;
    }
    if let Some(n) = reasoning
        .and_then(|r| r.get("max_tokens"))
        .and_then(Value::as_u64)
    {
        return Some(u32::try_from(n).unwrap_or(u32::MAX));
    }
    let share = match effort {
        Some("max" | "xhigh") => 95,
        Some("high") => 80,
        Some("medium") => 50,
        Some("low") => 20,
        Some("minimal") => 10,
        _ if reasoning
            .and_then(|r| r.get("enabled"))
            .and_then(Value::as_bool)
            == Some(true) =>
        {
            50
        }
        _ => return None,
    };
    Some(u32::try_from(u64::from(max_tokens) * share / 100).unwrap_or(u32::MAX))
}
