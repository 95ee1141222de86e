//! The response cache's key: API-key scope + model + endpoint type (skin) + stream flag +
//! a hash of the normalised request body.
//!
//! Normalisation makes requests that must produce the same answer share one key:
//! - JSON objects are written with their keys sorted, without whitespace;
//! - a message whose content is a single text part (without `cache_control`) equals the
//!   same text given as a plain string;
//! - fields that never change the answer are dropped: `user` and `session_id` (attribution),
//!   `metadata` and `trace` (tags), `prompt_cache_key` (a provider routing hint),
//!   `stream_options` (the gateway always asks for usage) and `stream` (part of the key
//!   on its own). Everything else — sampling parameters, tools, `provider`, `models` —
//!   stays, because it can change the answer or who gives it.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::chat_request::ChatRequest;

/// Fields dropped before hashing; see the module docs for why each cannot change the answer.
const IGNORED_FIELDS: &[&str] = &[
    "user",
    "session_id",
    "metadata",
    "trace",
    "prompt_cache_key",
    "stream_options",
    "stream",
];

/// A cache key: lowercase hex SHA-256, safe as a Redis key suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of `request` for the API key `key_hash` on the skin `api`.
    pub fn of(key_hash: &str, api: &str, request: &ChatRequest) -> CacheKey {
        let mut body = serde_json::to_value(request).unwrap_or(Value::Null);
        if let Some(object) = body.as_object_mut() {
            for field in IGNORED_FIELDS {
                object.remove(*field);
            }
            // A legacy `prompt` and the one user message it stands for are the same request.
            if let Some(Value::String(prompt)) = object.remove("prompt") {
                object.insert(
                    "messages".into(),
                    serde_json::json!([{"role": "user", "content": prompt}]),
                );
            }
            if let Some(Value::Array(messages)) = object.get_mut("messages") {
                messages.iter_mut().for_each(collapse_single_text_part);
            }
        }
        let mut canonical = String::with_capacity(1024);
        write_canonical(&body, &mut canonical);
        let mut hasher = Sha256::new();
        // Length-prefixed parts, so no two different tuples hash the same.
        for part in [
            key_hash,
            api,
            request.model(),
            if request.stream { "stream" } else { "json" },
            canonical.as_str(),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for byte in digest {
            let _ = write!(hex, "{byte:02x}");
        }
        CacheKey(hex)
    }
}

/// `[{"type":"text","text":"hi"}]` → `"hi"`, unless the part carries anything else (a
/// `cache_control` breakpoint changes what the provider caches, though not the answer, but
/// keeping it costs nothing and keeps normalisation obviously safe).
fn collapse_single_text_part(message: &mut Value) {
    let Some(content) = message.get_mut("content") else {
        return;
    };
    let text = match content.as_array().map(Vec::as_slice) {
        Some([part])
            if part.get("type").and_then(Value::as_str) == Some("text")
                && part.as_object().is_some_and(|o| o.len() == 2) =>
        {
            part.get("text").and_then(Value::as_str).map(str::to_owned)
        }
        _ => None,
    };
    if let Some(text) = text {
        *content = Value::String(text);
    }
}

/// JSON with object keys sorted and no whitespace, whatever order the client sent.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str) -> CacheKey {
        CacheKey::of("k1", "chat", &ChatRequest::parse(body.as_bytes()).unwrap())
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a =
            key(r#"{"model":"m/a","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#);
        let b = key(r#"{ "temperature": 0.5,
                 "messages": [ { "content": "hi", "role": "user" } ],
                 "model": "m/a" }"#);
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn attribution_fields_are_ignored_but_sampling_is_not() {
        let base = key(r#"{"model":"m/a","messages":[{"role":"user","content":"hi"}]}"#);
        let tagged = key(
            r#"{"model":"m/a","messages":[{"role":"user","content":"hi"}],"user":"u1","session_id":"s","metadata":{"a":"b"},"prompt_cache_key":"p"}"#,
        );
        assert_eq!(base, tagged);
        let hotter =
            key(r#"{"model":"m/a","messages":[{"role":"user","content":"hi"}],"temperature":1}"#);
        assert_ne!(base, hotter);
        let other_model = key(r#"{"model":"m/b","messages":[{"role":"user","content":"hi"}]}"#);
        assert_ne!(base, other_model);
    }

    #[test]
    fn a_single_text_part_equals_a_string_and_prompt_equals_one_user_message() {
        let s = key(r#"{"model":"m/a","messages":[{"role":"user","content":"hi"}]}"#);
        let parts = key(
            r#"{"model":"m/a","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
        );
        let prompt = key(r#"{"model":"m/a","prompt":"hi"}"#);
        assert_eq!(s, parts);
        assert_eq!(s, prompt);
        let marked = key(
            r#"{"model":"m/a","messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]}"#,
        );
        assert_ne!(s, marked);
    }

    #[test]
    fn scope_skin_and_stream_flag_separate_keys() {
        let req =
            ChatRequest::parse(br#"{"model":"m/a","messages":[{"role":"user","content":"hi"}]}"#)
                .unwrap();
        let mut streamed = req.clone();
        streamed.stream = true;
        let a = CacheKey::of("k1", "chat", &req);
        assert_ne!(a, CacheKey::of("k2", "chat", &req));
        assert_ne!(a, CacheKey::of("k1", "messages", &req));
        assert_ne!(a, CacheKey::of("k1", "chat", &streamed));
    }
}
