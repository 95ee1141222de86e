//! OpenAI chat-completions wire format, used for `openai` and every OpenAI-compatible server.

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::Value;
use switchyard_proto::UsageDims;

use super::openai_answer::OpenAiAnswer;
use super::{Completion, Parsed, StreamParser, UpstreamRequest, count};
use crate::chat_request::ChatRequest;
use crate::error::UpstreamFailure;
use crate::snapshot::{EndpointEntry, ProviderKind};

/// How one OpenAI-format server departs from what OpenRouter clients send. Kept as data so
/// a new server is a new entry, not a code fork.
#[derive(Debug, Clone, Copy)]
pub struct Quirks {
    /// Takes `reasoning_effort` (a string) instead of OpenRouter's `reasoning` object.
    pub reasoning_effort_only: bool,
    /// Wants `max_completion_tokens`; its reasoning models refuse `max_tokens`.
    pub max_completion_tokens: bool,
    /// Top-level parameters it refuses.
    pub unsupported: &'static [&'static str],
    /// Message fields it refuses (OpenRouter's reasoning state on assistant turns).
    pub message_fields: &'static [&'static str],
}

/// api.openai.com.
pub const OPENAI: Quirks = Quirks {
    reasoning_effort_only: true,
    max_completion_tokens: true,
    unsupported: &["top_k", "min_p", "top_a", "repetition_penalty"],
    message_fields: &["reasoning", "reasoning_details", "reasoning_content"],
};

/// OpenRouter's `reasoning` object as `reasoning_effort`: the effort when given, else
/// none for a disabled request, else OpenAI's default.
fn reasoning_effort(reasoning: &Value) -> Option<&'static str> {
    if reasoning.get("enabled").and_then(Value::as_bool) == Some(false) {
        return None;
    }
    Some(match reasoning.get("effort").and_then(Value::as_str) {
        Some("none") => return None,
        Some("minimal") => "minimal",
        Some("low") => "low",
        Some("high" | "xhigh" | "max") => "high",
        _ => "medium",
    })
}

pub fn apply_quirks(body: &mut Value, quirks: Quirks) {
    let Some(o) = body.as_object_mut() else {
        return;
    };
    for field in quirks.unsupported {
        o.remove(*field);
    }
    if quirks.reasoning_effort_only
        && let Some(reasoning) = o.remove("reasoning")
        && !o.contains_key("reasoning_effort")
        && let Some(effort) = reasoning_effort(&reasoning)
    {
        o.insert("reasoning_effort".into(), Value::from(effort));
    }
    if quirks.max_completion_tokens
        && let Some(n) = o.remove("max_tokens")
    {
        o.entry("max_completion_tokens").or_insert(n);
    }
    if let Some(messages) = o.get_mut("messages").and_then(Value::as_array_mut) {
        for message in messages.iter_mut().filter_map(Value::as_object_mut) {
            for field in quirks.message_fields {
                message.remove(*field);
            }
        }
    }
}

/// OpenAI caches prompt prefixes by itself and has no breakpoints: Anthropic-style
/// `cache_control` markers on content parts and tools are removed (OpenAI rejects unknown
/// part fields), and a conversation's `session_id` becomes `prompt_cache_key`, which keeps
/// its turns on the same OpenAI cache. OpenAI-compatible servers get the markers as sent.
fn translate_cache_hints(body: &mut Value, request: &ChatRequest) {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(o) => {
                o.remove("cache_control");
                o.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let Some(o) = body.as_object_mut() else {
        return;
    };
    for field in ["messages", "tools"] {
        if let Some(v) = o.get_mut(field) {
            strip(v);
        }
    }
    if !o.contains_key("prompt_cache_key")
        && let Some(session) = request.extra.get("session_id").filter(|s| s.is_string())
    {
        o.insert("prompt_cache_key".into(), session.clone());
    }
}

pub fn build_request(request: &ChatRequest, endpoint: &EndpointEntry) -> UpstreamRequest {
    let body = if endpoint.provider.kind == ProviderKind::OpenAi {
        let mut body = request.to_openai_body(&endpoint.upstream_model);
        apply_quirks(&mut body, OPENAI);
        translate_cache_hints(&mut body, request);
        serde_json::to_vec(&body).unwrap_or_default()
    } else {
        // Compatible servers get what the client sent: no quirks, so no `Value` to edit.
        request.to_openai_bytes(&endpoint.upstream_model)
    };
    let credential = &endpoint.provider.credential;
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if !credential.is_empty() {
        headers.push(("authorization", format!("Bearer {}", credential.expose())));
    }
    UpstreamRequest {
        url: format!("{}/chat/completions", endpoint.provider.base_url),
        headers,
        body,
    }
}

/// `POST {base}/embeddings` with the client's fields and the upstream model name.
pub fn build_embeddings(
    request: &super::EmbeddingsRequest,
    endpoint: &EndpointEntry,
) -> UpstreamRequest {
    let mut body = request.extra.clone();
    body.insert(
        "model".into(),
        Value::String(endpoint.upstream_model.clone()),
    );
    body.insert("input".into(), request.input.clone());
    if let Some(f) = &request.encoding_format {
        body.insert("encoding_format".into(), Value::String(f.clone()));
    }
    if let Some(d) = request.dimensions {
        body.insert("dimensions".into(), Value::from(d));
    }
    if let Some(t) = &request.input_type {
        body.insert("input_type".into(), Value::String(t.clone()));
    }
    let credential = &endpoint.provider.credential;
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if !credential.is_empty() {
        headers.push(("authorization", format!("Bearer {}", credential.expose())));
    }
    UpstreamRequest {
        url: format!("{}/embeddings", endpoint.provider.base_url),
        headers,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// Reads OpenAI's `usage` object. `prompt_tokens` includes cached tokens, which matches
/// the canonical meaning of `input_tokens`.
pub fn parse_usage(usage: &Value) -> Option<UsageDims> {
    if !usage.is_object() {
        return None;
    }
    let writes = count(usage, &["prompt_tokens_details", "cache_write_tokens"]);
    let writes_1h = count(usage, &["prompt_tokens_details", "cache_write_1h_tokens"]).min(writes);
    Some(UsageDims {
        input_tokens: count(usage, &["prompt_tokens"]),
        output_tokens: count(usage, &["completion_tokens"]),
        cache_read_tokens: count(usage, &["prompt_tokens_details", "cached_tokens"]),
        cache_write_5m_tokens: writes.saturating_sub(writes_1h),
        cache_write_1h_tokens: writes_1h,
        reasoning_tokens: count(usage, &["completion_tokens_details", "reasoning_tokens"]),
    })
}

/// OpenAI's stream: `data:` chunks already in canonical shape, ended by `[DONE]`. An
/// `error` object inside the stream, or a close before `[DONE]`, is a failure.
pub struct OpenAiStream {
    provider: String,
    /// Chunks are located, not parsed (see `Wire::stream_parser`).
    located: bool,
}

impl OpenAiStream {
    pub fn new(provider: &str, located: bool) -> Self {
        Self {
            provider: provider.to_owned(),
            located,
        }
    }
}

impl StreamParser for OpenAiStream {
    fn event(&mut self, _event: &str, data: &str) -> Result<Parsed, UpstreamFailure> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Parsed::default());
        }
        if data == "[DONE]" {
            return Ok(Parsed {
                chunks: Vec::new(),
                done: true,
            });
        }
        // Most chunks take the located path; an error, or anything else it does not
        // rewrite itself, is parsed into a tree below.
        if self.located
            && let Some(chunk) = OpenAiAnswer::read(Bytes::copy_from_slice(data.as_bytes()))
        {
            return Ok(Parsed {
                chunks: vec![Completion::OpenAi(chunk)],
                done: false,
            });
        }
        let chunk: Value = serde_json::from_str(data).map_err(|_| {
            UpstreamFailure::new(
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                &self.provider,
                "sent an event that is not JSON",
            )
        })?;
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            let msg = chunk
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("stream error");
            return Err(UpstreamFailure::new(
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                &self.provider,
                &format!("reported an error mid-stream: {msg}"),
            ));
        }
        Ok(Parsed {
            chunks: vec![Completion::Canonical(chunk)],
            done: false,
        })
    }

    fn closed(&mut self) -> Result<Vec<Value>, UpstreamFailure> {
        Err(UpstreamFailure::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            &self.provider,
            "ended the stream before [DONE]",
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cache_breakpoints_become_openai_cache_keys() {
        let request = ChatRequest::parse(
            br#"{"model":"a/b","session_id":"conv-9","messages":[{"role":"system","content":[{"type":"text","text":"rules","cache_control":{"type":"ephemeral"}}]},{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"},"cache_control":{"type":"ephemeral"}}]}"#,
        )
        .unwrap();
        let mut body = request.to_openai_body("gpt-x");
        translate_cache_hints(&mut body, &request);
        assert!(!body.to_string().contains("cache_control"), "{body}");
        assert_eq!(body["prompt_cache_key"], "conv-9");
        assert_eq!(body["messages"][0]["content"][0]["text"], "rules");
    }

    #[test]
    fn builds_the_documented_request_for_api_openai_com() {
        use crate::providers::fixtures;
        let canonical = fixtures::json("openai", "request.canonical.json");
        let request = ChatRequest::from_value(canonical).unwrap();
        let mut body = request.to_openai_body("o3-2025-04-16");
        apply_quirks(&mut body, OPENAI);
        assert_eq!(
            body,
            fixtures::json("openai", "request.official.expected.json")
        );
    }

    #[test]
    fn parses_the_documented_stream() {
        use crate::providers::fixtures;
        let mut located = OpenAiStream::new("openai", true);
        let (chunks, done) = fixtures::run_stream(&mut located, "openai", "stream.sse");
        assert!(done, "[DONE] ends the stream");
        // Comments are not events; every data chunk passes through unchanged.
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hello");
        assert_eq!(chunks[3]["usage"]["prompt_tokens"], 9);
        let mut tree = OpenAiStream::new("openai", false);
        assert_eq!(
            fixtures::run_stream(&mut tree, "openai", "stream.sse"),
            (chunks, done),
            "located and parsed chunks are the same JSON"
        );
        let data = r#"{"choices":[{"delta":{"content":"x"}}]}"#;
        let located = [true, false].map(|located| {
            let parsed = OpenAiStream::new("openai", located).event("", data);
            matches!(parsed.unwrap().chunks.as_slice(), [Completion::OpenAi(_)])
        });
        assert_eq!(
            located,
            [true, false],
            "only a located parser keeps the bytes"
        );
        let mut parser = OpenAiStream::new("openai", true);
        assert!(
            parser.closed().is_err(),
            "a close before [DONE] is a failure"
        );
    }

    #[test]
    fn official_openai_gets_its_own_parameter_names() {
        let req = ChatRequest::parse(
            br#"{"model":"a/b","max_tokens":100,"top_k":5,"reasoning":{"effort":"xhigh"},"messages":[
                {"role":"user","content":"hi"},
                {"role":"assistant","content":"ok","reasoning_details":[{"type":"reasoning.text","text":"t"}]}]}"#,
        )
        .unwrap();
        let mut body = req.to_openai_body("o3");
        apply_quirks(&mut body, OPENAI);
        assert_eq!(body["max_completion_tokens"], 100);
        assert!(body.get("max_tokens").is_none());
        assert!(body.get("top_k").is_none());
        assert!(body.get("reasoning").is_none());
        assert_eq!(body["reasoning_effort"], "high");
        assert!(body["messages"][1].get("reasoning_details").is_none());

        // OpenAI-compatible servers (vLLM, Ollama, OpenRouter, …) get what the client sent.
        let body: Value = serde_json::from_slice(&req.to_openai_bytes("llama")).unwrap();
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["reasoning"]["effort"], "xhigh");
        assert_eq!(body["top_k"], 5);
    }

    #[test]
    fn an_answer_that_is_not_an_object_is_a_provider_failure() {
        use crate::providers::Wire;
        for located in [true, false] {
            for body in [&b"[1,2]"[..], b"\"text\"", b"not json"] {
                let err = Wire::OpenAi
                    .completion(bytes::Bytes::copy_from_slice(body), "acme", located)
                    .expect_err("refused");
                assert_eq!(err.status, StatusCode::BAD_GATEWAY);
                assert_eq!(err.error_type, "provider_unavailable");
            }
            let answer = Wire::OpenAi
                .completion(
                    bytes::Bytes::from_static(b"{\"choices\":[]}"),
                    "acme",
                    located,
                )
                .expect("an object is an answer");
            assert_eq!(matches!(answer, Completion::OpenAi(_)), located);
        }
    }

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
        use crate::providers::{Wire, is_retryable};
        let map_error = |status, body: &[u8], provider, retry| {
            Wire::OpenAi.map_error(status, body, provider, retry)
        };
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
