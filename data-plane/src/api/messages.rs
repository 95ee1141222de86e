//! `POST /api/v1/messages` and `/v1/messages`: the Anthropic Messages skin, so Anthropic
//! SDKs and Claude Code work with `ANTHROPIC_BASE_URL=http://host/api`. Requests are
//! translated to the canonical chat request (`messages_request`), answers rendered as
//! Anthropic `message` objects, streams encoded as Anthropic events (`messages_stream`),
//! and errors returned in Anthropic's `{"type":"error","error":{…}}` shape.
//!
//! Reasoning state that did not come from Claude (e.g. Gemini thought signatures) has no
//! Anthropic representation; it rides in a thinking block's opaque `signature`, prefixed
//! with [`FOREIGN_SIGNATURE_PREFIX`], and is turned back into the original
//! `reasoning_details` item when the client sends the block back.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::messages_stream::MessagesEncoder;
use super::pipeline;
use super::skin::{Skin, StreamContext};
use crate::chat_request::{ChatRequest, Message};
use crate::error::ApiError;
use crate::providers::{ANTHROPIC_FORMAT, arguments_object, count};
use crate::state::AppState;

pub const FOREIGN_SIGNATURE_PREFIX: &str = "switchyard.reasoning:";

pub async fn messages(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    pipeline::run(state, headers, body, AnthropicMessages).await
}

/// `POST …/messages/count_tokens`, which Claude Code calls to size its context: Claude's
/// own count when the model's first endpoint is an Anthropic one, otherwise Switchyard's
/// estimate (four characters a token). Not a generation: nothing is billed.
pub async fn count_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match count_input_tokens(&state, &headers, &body).await {
        Ok(tokens) => axum::Json(json!({"input_tokens": tokens})).into_response(),
        Err(err) => AnthropicMessages.error_response(err),
    }
}

async fn count_input_tokens(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<u64, ApiError> {
    let snapshot = state.snapshot()?;
    let key = super::auth::inference_key(&snapshot, headers, crate::unix_now_ms())?;
    let request = super::messages_request::parse(body)?;
    let model = snapshot
        .org(&key.org_id)
        .and_then(|c| c.model(request.model()))
        .cloned()
        .ok_or_else(|| ApiError::ModelNotFound {
            model: request.model().to_owned(),
        })?;
    if let Some(endpoint) = model.endpoints.first()
        && let Some(counted) = state.upstream.count_tokens(&request, endpoint).await
    {
        return counted;
    }
    let chars: usize = request
        .conversation()
        .iter()
        .map(Message::text_len)
        .sum::<usize>()
        + request
            .extra
            .get("tools")
            .map_or(0, |t| t.to_string().len());
    Ok(super::usage_json::estimate_tokens(chars))
}

pub struct AnthropicMessages;

impl Skin for AnthropicMessages {
    type Encoder = MessagesEncoder;

    fn api(&self) -> &'static str {
        "messages"
    }

    fn parse(&self, body: &Bytes) -> Result<ChatRequest, ApiError> {
        super::messages_request::parse(body)
    }

    fn render(&self, completion: Value) -> Value {
        render(&completion)
    }

    fn encoder(&self, context: StreamContext) -> MessagesEncoder {
        MessagesEncoder::new(context)
    }

    fn error_response(&self, error: ApiError) -> Response {
        let status = error.status();
        if status.is_server_error() {
            tracing::error!(error = ?error, "request failed");
        } else {
            tracing::debug!(error = %error, error_type = error.error_type(), "request rejected");
        }
        let mut response = (status, axum::Json(error_body(&error))).into_response();
        for (name, value) in error.headers() {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Anthropic's error `type` for an HTTP status.
pub fn error_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// `{"type":"error","error":{"type","message","error_type"},"request_id":null}`; the
/// `error_type` is OpenRouter's stable vocabulary, the same in every skin.
pub fn error_body(error: &ApiError) -> Value {
    let object = error.error_object();
    json!({
        "type": "error",
        "error": {
            "type": error_kind(error.status()),
            "message": object["message"],
            "error_type": error.error_type(),
        },
        "request_id": null,
    })
}

/// Anthropic's `stop_reason` for a canonical choice. Claude's own value wins when the
/// answer came from Claude, so `stop_sequence` and `pause_turn` survive.
pub fn stop_reason(finish_reason: &str, native: &str) -> &'static str {
    match native {
        "end_turn" => return "end_turn",
        "max_tokens" => return "max_tokens",
        "stop_sequence" => return "stop_sequence",
        "tool_use" => return "tool_use",
        "pause_turn" => return "pause_turn",
        "refusal" => return "refusal",
        _ => {}
    }
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// The client `usage` object in Anthropic's shape: `input_tokens` excludes cache reads
/// and writes. `cost` (USD) is Switchyard's addition.
pub fn usage(client_usage: &Value) -> Value {
    let read = count(client_usage, &["prompt_tokens_details", "cached_tokens"]);
    let write = count(
        client_usage,
        &["prompt_tokens_details", "cache_write_tokens"],
    );
    json!({
        "input_tokens": count(client_usage, &["prompt_tokens"]).saturating_sub(read + write),
        "output_tokens": count(client_usage, &["completion_tokens"]),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
        "cost": client_usage.get("cost").cloned().unwrap_or(Value::Null),
    })
}

fn is_claude(detail: &Value) -> bool {
    detail
        .get("format")
        .and_then(Value::as_str)
        .is_none_or(|f| f == ANTHROPIC_FORMAT)
}

pub fn pack_foreign(detail: &Value) -> String {
    format!("{FOREIGN_SIGNATURE_PREFIX}{detail}")
}

/// Thinking blocks for `reasoning_details`. Pieces of one Claude block (streamed text,
/// then the signature) share an `index` and are joined.
pub fn reasoning_blocks(details: &[Value]) -> Vec<Value> {
    let mut blocks: Vec<Value> = Vec::new();
    let mut claude_text_at: HashMap<u64, usize> = HashMap::new();
    for detail in details {
        let kind = detail.get("type").and_then(Value::as_str);
        let text = detail.get("text").and_then(Value::as_str).unwrap_or("");
        if !is_claude(detail) {
            blocks.push(
                json!({"type": "thinking", "thinking": text, "signature": pack_foreign(detail)}),
            );
            continue;
        }
        match kind {
            Some("reasoning.encrypted") => blocks.push(json!({
                "type": "redacted_thinking",
                "data": detail.get("data").cloned().unwrap_or(json!("")),
            })),
            Some("reasoning.text") | Some("reasoning.summary") => {
                let signature = detail.get("signature").and_then(Value::as_str);
                let text = detail
                    .get("summary")
                    .and_then(Value::as_str)
                    .unwrap_or(text);
                let index = detail.get("index").and_then(Value::as_u64);
                match index.and_then(|i| claude_text_at.get(&i).copied()) {
                    Some(at) => {
                        let block = &mut blocks[at];
                        let joined =
                            format!("{}{text}", block["thinking"].as_str().unwrap_or_default());
                        block["thinking"] = json!(joined);
                        if let Some(sig) = signature.filter(|s| !s.is_empty()) {
                            block["signature"] = json!(sig);
                        }
                    }
                    None => {
                        if let Some(i) = index {
                            claude_text_at.insert(i, blocks.len());
                        }
                        blocks.push(json!({"type": "thinking", "thinking": text, "signature": signature.unwrap_or("")}));
                    }
                }
            }
            _ => {}
        }
    }
    blocks
}

/// A canonical `chat.completion` as an Anthropic `message`.
fn render(completion: &Value) -> Value {
    let choice = completion.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = match message.get("reasoning_details").and_then(Value::as_array) {
        Some(details) => reasoning_blocks(details),
        None => match message.get("reasoning").and_then(Value::as_str) {
            Some(r) if !r.is_empty() => {
                vec![json!({"type": "thinking", "thinking": r, "signature": ""})]
            }
            _ => Vec::new(),
        },
    };
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(json!("")),
            "name": call.pointer("/function/name").cloned().unwrap_or(json!("")),
            "input": arguments_object(call.pointer("/function/arguments")),
        }));
    }
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop");
    let native = choice
        .get("native_finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    json!({
        "id": completion["id"],
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        "stop_reason": stop_reason(finish, native),
        "stop_sequence": null,
        "usage": usage(completion.get("usage").unwrap_or(&Value::Null)),
        "provider": completion.get("provider").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_completion_as_an_anthropic_message() {
        let completion = json!({
            "id": "gen-1", "model": "acme/claude", "provider": "Anthropic",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "native_finish_reason": "tool_use", "message": {
                "role": "assistant", "content": "Let me look.",
                "reasoning": "thinking hard",
                "reasoning_details": [
                    {"type": "reasoning.text", "text": "thinking ", "format": ANTHROPIC_FORMAT, "index": 0},
                    {"type": "reasoning.text", "text": "hard", "format": ANTHROPIC_FORMAT, "index": 0},
                    {"type": "reasoning.text", "text": "", "signature": "sig", "format": ANTHROPIC_FORMAT, "index": 0},
                    {"type": "reasoning.encrypted", "data": "gsig", "id": "call_1", "format": "google-gemini-v1", "index": 2},
                ],
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
            }}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "cost": 0.5,
                "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 10}},
        });
        let m = render(&completion);
        assert_eq!(m["id"], "gen-1");
        assert_eq!(m["type"], "message");
        assert_eq!(m["stop_reason"], "tool_use");
        let content = m["content"].as_array().unwrap();
        assert_eq!(
            content[0],
            json!({"type": "thinking", "thinking": "thinking hard", "signature": "sig"})
        );
        assert_eq!(content[1]["type"], "thinking");
        let packed = content[1]["signature"].as_str().unwrap();
        assert!(packed.starts_with(FOREIGN_SIGNATURE_PREFIX));
        assert_eq!(content[2], json!({"type": "text", "text": "Let me look."}));
        assert_eq!(content[3]["input"], json!({"city": "Paris"}));
        assert_eq!(m["usage"]["input_tokens"], 30);
        assert_eq!(m["usage"]["cache_read_input_tokens"], 60);
        assert_eq!(m["usage"]["cache_creation_input_tokens"], 10);
        assert_eq!(m["usage"]["output_tokens"], 20);
    }

    #[test]
    fn errors_use_anthropic_types() {
        let body = error_body(&ApiError::Unauthorized("nope".into()));
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert_eq!(body["error"]["error_type"], "authentication");
        let body = error_body(&ApiError::ModelNotFound { model: "x".into() });
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}
