//! OpenRouter's `reasoning_details` convention: provider reasoning state (Claude thinking
//! blocks and their signatures, Gemini thought signatures) travels through OpenAI-shaped
//! messages as typed items that clients echo back unchanged on later turns.

use serde_json::{Value, json};

pub const ANTHROPIC_FORMAT: &str = "anthropic-claude-v1";
pub const GEMINI_FORMAT: &str = "google-gemini-v1";

/// The `reasoning_details` items of an assistant message written in `format`. Items
/// without a format are accepted too: some clients drop it when echoing.
pub fn details_in<'a>(
    message_extra: &'a serde_json::Map<String, Value>,
    format: &str,
) -> Vec<&'a Value> {
    message_extra
        .get("reasoning_details")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter(|d| {
                    d.get("format")
                        .and_then(Value::as_str)
                        .is_none_or(|f| f == format)
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn text_detail(text: &str, signature: Option<&str>, format: &str, index: u64) -> Value {
    let mut detail =
        json!({"type": "reasoning.text", "text": text, "format": format, "index": index});
    if let Some(sig) = signature {
        detail["signature"] = json!(sig);
    }
    detail
}

pub fn encrypted_detail(data: &str, id: Option<&str>, format: &str, index: u64) -> Value {
    let mut detail =
        json!({"type": "reasoning.encrypted", "data": data, "format": format, "index": index});
    if let Some(id) = id {
        detail["id"] = json!(id);
    }
    detail
}
