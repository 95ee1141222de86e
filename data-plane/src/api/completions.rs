//! `POST /api/v1/completions`: OpenAI's legacy text-completions skin. The prompt becomes
//! one user message; answers come back as `text_completion` objects whose choices carry
//! `text` instead of a message, streamed the same way as chat.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::chat::ChatEncoder;
use super::pipeline;
use super::skin::{Skin, StreamContext, StreamEncoder, sse_data};
use crate::chat_request::{ChatRequest, describe_json_error};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    pipeline::run(state, headers, body, LegacyCompletions).await
}

pub struct LegacyCompletions;

/// Legacy options with no chat equivalent; refused rather than silently ignored.
const UNSUPPORTED: &[&str] = &["echo", "best_of", "suffix"];

fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(describe_json_error(&e)))?;
    let Value::Object(mut fields) = value else {
        return Err(ApiError::BadRequest(
            "request body must be a JSON object".into(),
        ));
    };
    if fields.contains_key("messages") {
        return Err(ApiError::BadRequest(
            "`messages` belongs to /chat/completions; /completions takes `prompt`".into(),
        ));
    }
    for field in UNSUPPORTED {
        let set = match fields.get(*field) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Number(n)) => n.as_u64() != Some(1),
            Some(_) => true,
        };
        if set {
            return Err(ApiError::BadRequest(format!(
                "`{field}` is not supported by Switchyard's /completions"
            )));
        }
        fields.remove(*field);
    }
    match fields.get("prompt") {
        Some(Value::Array(prompts)) => match prompts.as_slice() {
            [Value::String(one)] => {
                let one = one.clone();
                fields.insert("prompt".into(), json!(one));
            }
            _ => {
                return Err(ApiError::BadRequest(
                    "`prompt` must be a string or an array of exactly one string".into(),
                ));
            }
        },
        Some(Value::String(_)) => {}
        _ => return Err(ApiError::BadRequest("`prompt` is required".into())),
    }
    // Legacy `logprobs` is a count; chat's is a flag plus `top_logprobs`.
    if let Some(n) = fields.get("logprobs").and_then(Value::as_u64) {
        fields.insert("logprobs".into(), json!(true));
        fields.insert("top_logprobs".into(), json!(n));
    }
    ChatRequest::from_value(Value::Object(fields))
}

fn text_choice(choice: &Value, text: Value) -> Value {
    json!({
        "index": choice.get("index").cloned().unwrap_or(json!(0)),
        "text": text,
        "logprobs": null,
        "finish_reason": choice.get("finish_reason").cloned().unwrap_or(Value::Null),
        "native_finish_reason": choice.get("native_finish_reason").cloned().unwrap_or(Value::Null),
    })
}

impl Skin for LegacyCompletions {
    type Encoder = CompletionsEncoder;

    fn api(&self) -> &'static str {
        "completions"
    }

    fn parse(&self, body: &Bytes) -> Result<ChatRequest, ApiError> {
        parse(body)
    }

    fn render(&self, mut completion: Value) -> Value {
        let choices: Vec<Value> = completion["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let text = c.pointer("/message/content").cloned().unwrap_or(json!(""));
                text_choice(c, text)
            })
            .collect();
        completion["choices"] = Value::Array(choices);
        completion["object"] = json!("text_completion");
        completion
    }

    fn encoder(&self, context: StreamContext) -> CompletionsEncoder {
        CompletionsEncoder(ChatEncoder::new(context, "text_completion"))
    }

    fn error_response(&self, error: ApiError) -> Response {
        error.into_response()
    }
}

pub struct CompletionsEncoder(ChatEncoder);

impl StreamEncoder for CompletionsEncoder {
    fn keepalive(&self) -> Bytes {
        self.0.keepalive()
    }

    fn chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        let mut converted = Map::new();
        if let Some(o) = chunk.as_object() {
            converted.extend(o.clone());
        }
        let choices: Vec<Value> = chunk["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                c.pointer("/delta/content")
                    .and_then(Value::as_str)
                    .is_some_and(|t| !t.is_empty())
                    || !c["finish_reason"].is_null()
            })
            .map(|c| {
                let text = c.pointer("/delta/content").cloned().unwrap_or(json!(""));
                text_choice(c, text)
            })
            .collect();
        if choices.is_empty() {
            return;
        }
        converted.insert("object".into(), json!("text_completion"));
        converted.insert("choices".into(), Value::Array(choices));
        self.0.chunk(&Value::Object(converted), out);
    }

    fn error(&mut self, error: &ApiError, native_finish_reason: &str, out: &mut Vec<Bytes>) {
        out.push(sse_data(&self.0.frame(json!({
            "error": error.error_object(),
            "choices": [{"index": 0, "text": "", "logprobs": null, "finish_reason": "error", "native_finish_reason": native_finish_reason}],
        }))));
    }

    fn usage(&mut self, usage: &Value, out: &mut Vec<Bytes>) {
        self.0.usage(usage, out);
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        self.0.end(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_becomes_one_user_message_and_legacy_options_are_checked() {
        let req =
            parse(br#"{"model":"a/b","prompt":["Say hi"],"logprobs":2,"max_tokens":5}"#).unwrap();
        let body = req.to_openai_body("m");
        assert_eq!(
            body["messages"][0],
            json!({"role": "user", "content": "Say hi"})
        );
        assert_eq!(body["logprobs"], true);
        assert_eq!(body["top_logprobs"], 2);
        assert_eq!(body["max_tokens"], 5);
        let err = parse(br#"{"model":"a/b","prompt":"x","echo":true}"#).unwrap_err();
        assert!(err.to_string().contains("`echo`"));
        let err = parse(br#"{"model":"a/b","prompt":["x","y"]}"#).unwrap_err();
        assert!(err.to_string().contains("exactly one"));
    }

    #[test]
    fn renders_text_choices() {
        let out = LegacyCompletions.render(json!({"id": "gen-1", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop", "native_finish_reason": "stop"}]}));
        assert_eq!(out["object"], "text_completion");
        assert_eq!(out["choices"][0]["text"], "hi");
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
    }
}
