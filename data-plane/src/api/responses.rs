//! `POST /api/v1/responses`: the OpenAI Responses skin, stateless (see
//! `responses_request`). Answers are `response` objects whose `output` holds `reasoning`,
//! `message` and `function_call` items; streams are Responses events
//! (`responses_stream`). Reasoning state travels in the reasoning item's
//! `encrypted_content` — the canonical `reasoning_details`, packed — so a client that sends
//! the items back keeps Claude and Gemini signatures intact across turns.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::pipeline;
use super::responses_stream::ResponsesEncoder;
use super::skin::{Skin, StreamContext};
use crate::chat_request::ChatRequest;
use crate::error::ApiError;
use crate::providers::count;
use crate::state::AppState;

const PACKED_PREFIX: &str = "switchyard.reasoning_details:";

pub async fn responses(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    pipeline::run(state, headers, body, OpenAiResponses).await
}

pub struct OpenAiResponses;

impl Skin for OpenAiResponses {
    type Encoder = ResponsesEncoder;

    fn api(&self) -> &'static str {
        "responses"
    }

    fn parse(&self, body: &Bytes) -> Result<ChatRequest, ApiError> {
        super::responses_request::parse(body)
    }

    fn render(&self, completion: Value) -> Value {
        render(&completion)
    }

    fn encoder(&self, context: StreamContext) -> ResponsesEncoder {
        ResponsesEncoder::new(context)
    }

    fn error_response(&self, error: ApiError) -> Response {
        error.into_response()
    }
}

pub fn pack_reasoning(details: &[Value]) -> String {
    format!("{PACKED_PREFIX}{}", Value::Array(details.to_vec()))
}

pub fn unpack_reasoning(packed: &str) -> Option<Vec<Value>> {
    let json = packed.strip_prefix(PACKED_PREFIX)?;
    match serde_json::from_str(json).ok()? {
        Value::Array(details) => Some(details),
        _ => None,
    }
}

/// The client `usage` object in Responses' shape; `cost` (USD) is Switchyard's addition.
pub fn usage(client_usage: &Value) -> Value {
    let input = count(client_usage, &["prompt_tokens"]);
    let output = count(client_usage, &["completion_tokens"]);
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": count(client_usage, &["prompt_tokens_details", "cached_tokens"])},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": count(client_usage, &["completion_tokens_details", "reasoning_tokens"])},
        "total_tokens": input + output,
        "cost": client_usage.get("cost").cloned().unwrap_or(Value::Null),
    })
}

/// A `response` object around `output`.
pub fn response_object(
    context: &StreamContext,
    status: &str,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    json!({
        "id": context.id,
        "object": "response",
        "created_at": crate::unix_now(),
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "model": context.model,
        "provider": context.provider,
        "output": output,
        "usage": usage,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "store": false,
        "previous_response_id": null,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "metadata": {},
    })
}

pub fn reasoning_item(id: &str, summary: &str, details: &[Value]) -> Value {
    let summary = if summary.is_empty() {
        json!([])
    } else {
        json!([{"type": "summary_text", "text": summary}])
    };
    let mut item = json!({"type": "reasoning", "id": format!("rs_{id}"), "summary": summary});
    if !details.is_empty() {
        item["encrypted_content"] = json!(pack_reasoning(details));
    }
    item
}

pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": format!("msg_{id}"), "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

pub fn function_call_item(call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id,
        "name": name, "arguments": arguments, "status": status})
}

/// Responses' `status` for a normalised finish reason.
pub fn status_of(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "incomplete",
        "error" => "failed",
        _ => "completed",
    }
}

fn render(completion: &Value) -> Value {
    let choice = completion.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let id = completion["id"].as_str().unwrap_or_default();
    let short = id.strip_prefix("gen-").unwrap_or(id);
    let mut output = Vec::new();
    let details = message
        .get("reasoning_details")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let summary = message
        .get("reasoning")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !details.is_empty() || !summary.is_empty() {
        output.push(reasoning_item(short, summary, &details));
    }
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !text.is_empty() {
        output.push(message_item(short, text, "completed"));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        output.push(function_call_item(
            call["id"].as_str().unwrap_or_default(),
            call.pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            call.pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}"),
            "completed",
        ));
    }
    let context = StreamContext {
        id: id.to_owned(),
        model: completion["model"].as_str().unwrap_or_default().to_owned(),
        provider: completion["provider"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop");
    let mut response = response_object(
        &context,
        status_of(finish),
        output,
        usage(completion.get("usage").unwrap_or(&Value::Null)),
    );
    if finish == "error" {
        response["error"] =
            json!({"code": "server_error", "message": "the provider failed while answering"});
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_items_in_order_with_packed_reasoning() {
        let details = vec![
            json!({"type": "reasoning.encrypted", "data": "g", "id": "c1", "format": "google-gemini-v1"}),
        ];
        let out = render(&json!({"id": "gen-1", "model": "a/b", "provider": "P",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "ok",
                "reasoning": "hm", "reasoning_details": details,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "cost": 0.01,
                "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}}));
        assert_eq!(out["object"], "response");
        assert_eq!(out["status"], "completed");
        let items = out["output"].as_array().unwrap();
        assert_eq!(items[0]["type"], "reasoning");
        assert_eq!(items[0]["summary"][0]["text"], "hm");
        assert_eq!(
            unpack_reasoning(items[0]["encrypted_content"].as_str().unwrap()).unwrap(),
            details
        );
        assert_eq!(items[1]["content"][0]["text"], "ok");
        assert_eq!(items[2]["call_id"], "c1");
        assert_eq!(items[2]["arguments"], "{\"a\":1}");
        assert_eq!(out["usage"]["input_tokens"], 10);
        assert_eq!(out["usage"]["input_tokens_details"]["cached_tokens"], 2);
        assert_eq!(out["usage"]["output_tokens_details"]["reasoning_tokens"], 1);
    }
}
