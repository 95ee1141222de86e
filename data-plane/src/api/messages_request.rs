//! An Anthropic Messages request translated to the canonical chat request: `system` to a
//! system message, content blocks to OpenAI parts, `tool_result` blocks to tool messages,
//! `tool_use` to `tool_calls`, thinking blocks to `reasoning_details`, and the sampling,
//! tool and thinking options to their OpenRouter equivalents. OpenRouter's own extras
//! (`provider`, `models`, `plugins`, `session_id`, …) pass through unchanged.

use serde_json::{Map, Value, json};

use super::messages::FOREIGN_SIGNATURE_PREFIX;
use crate::chat_request::{ChatRequest, describe_json_error};
use crate::error::ApiError;
use crate::providers::ANTHROPIC_FORMAT;

/// Top-level fields that mean the same in both shapes.
const SAME_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "provider",
    "models",
    "plugins",
    "session_id",
    "transforms",
    "route",
    "trace",
    "user",
];

pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(describe_json_error(&e)))?;
    let Value::Object(input) = value else {
        return Err(ApiError::BadRequest(
            "request body must be a JSON object".into(),
        ));
    };
    let bad = |m: &str| ApiError::BadRequest(m.to_owned());
    if !input.get("model").is_some_and(Value::is_string) {
        return Err(bad("`model` is required and must be a string"));
    }
    let Some(Value::Array(turns)) = input.get("messages") else {
        return Err(bad("`messages` is required and must be an array"));
    };
    if turns.is_empty() {
        return Err(bad("`messages` must not be empty"));
    }
    if input.get("max_tokens").is_some_and(|v| !v.is_u64()) {
        return Err(bad("`max_tokens` must be a non-negative integer"));
    }

    let mut out = Map::new();
    for field in SAME_FIELDS {
        if let Some(v) = input.get(*field).filter(|v| !v.is_null()) {
            out.insert((*field).to_owned(), v.clone());
        }
    }
    let mut messages = Vec::with_capacity(turns.len() + 1);
    match input.get("system") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({"role": "system", "content": s}));
        }
        Some(Value::Array(blocks)) if !blocks.is_empty() => {
            messages.push(json!({"role": "system", "content": text_parts(blocks)}));
        }
        _ => {}
    }
    for (i, turn) in turns.iter().enumerate() {
        let role = turn.get("role").and_then(Value::as_str);
        let content = turn.get("content").unwrap_or(&Value::Null);
        match role {
            Some("user") => user_turn(content, &mut messages),
            Some("assistant") => messages.push(assistant_turn(content)),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "messages[{i}].role must be `user` or `assistant`"
                )));
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));

    if let Some(stops) = input.get("stop_sequences").and_then(Value::as_array)
        && !stops.is_empty()
    {
        out.insert("stop".into(), Value::Array(stops.clone()));
    }
    if let Some(user) = input.get("metadata").and_then(|m| m.get("user_id")) {
        out.insert("user".into(), user.clone());
    }
    if let Some(tools) = input.get("tools").and_then(Value::as_array) {
        out.insert(
            "tools".into(),
            Value::Array(tools.iter().map(tool).collect()),
        );
    }
    if let Some(choice) = input.get("tool_choice") {
        let kind = choice.get("type").and_then(Value::as_str);
        let mapped = match kind {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice["name"]}}),
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), mapped);
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(true)
        {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if let Some(thinking) = input.get("thinking") {
        let reasoning = match thinking.get("type").and_then(Value::as_str) {
            Some("enabled") => match thinking.get("budget_tokens").and_then(Value::as_u64) {
                Some(budget) => json!({"max_tokens": budget}),
                None => json!({"enabled": true}),
            },
            Some("disabled") => json!({"enabled": false}),
            _ => json!({"enabled": true}),
        };
        out.insert("reasoning".into(), reasoning);
    }
    if let Some(effort) = input.get("output_config").and_then(|c| c.get("effort"))
        && let Some(Value::Object(r)) = out.get_mut("reasoning")
    {
        r.insert("effort".into(), effort.clone());
    }
    ChatRequest::from_value(Value::Object(out))
}

fn with_cache_control(mut part: Value, block: &Value) -> Value {
    if let Some(cc) = block.get("cache_control") {
        part["cache_control"] = cc.clone();
    }
    part
}

fn text_parts(blocks: &[Value]) -> Vec<Value> {
    blocks
        .iter()
        .filter_map(|b| {
            let text = b.get("text").and_then(Value::as_str)?;
            Some(with_cache_control(json!({"type": "text", "text": text}), b))
        })
        .collect()
}

/// `source` of an image or document block as a URL (data URL for base64).
fn source_url(block: &Value) -> Option<String> {
    let source = block.get("source")?;
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => Some(format!(
            "data:{};base64,{}",
            source.get("media_type").and_then(Value::as_str)?,
            source.get("data").and_then(Value::as_str)?
        )),
        Some("url") => source.get("url").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn part(block: &Value) -> Option<Value> {
    let part = match block.get("type").and_then(Value::as_str)? {
        "text" => json!({"type": "text", "text": block.get("text")?}),
        "image" => json!({"type": "image_url", "image_url": {"url": source_url(block)?}}),
        "document" => json!({"type": "file", "file": {
            "filename": block.get("title").and_then(Value::as_str).unwrap_or("document.pdf"),
            "file_data": source_url(block)?,
        }}),
        _ => return None,
    };
    Some(with_cache_control(part, block))
}

/// A user turn: its `tool_result` blocks become tool messages (first, as Anthropic puts
/// them first), the rest one user message.
fn user_turn(content: &Value, messages: &mut Vec<Value>) {
    let Value::Array(blocks) = content else {
        messages.push(json!({"role": "user", "content": content}));
        return;
    };
    let mut parts = Vec::new();
    for block in blocks {
        if block.get("type").and_then(Value::as_str) == Some("tool_result") {
            let result = match block.get("content") {
                Some(Value::Array(inner)) => Value::Array(inner.iter().filter_map(part).collect()),
                Some(Value::String(s)) => json!(s),
                _ => json!(""),
            };
            messages.push(json!({
                "role": "tool",
                "tool_call_id": block.get("tool_use_id").cloned().unwrap_or(json!("")),
                "content": result,
            }));
        } else if let Some(p) = part(block) {
            parts.push(p);
        }
    }
    if !parts.is_empty() {
        messages.push(json!({"role": "user", "content": parts}));
    }
}

/// A thinking block's signature back to the `reasoning_details` item it came from.
fn thinking_detail(block: &Value, index: usize) -> Value {
    let signature = block.get("signature").and_then(Value::as_str).unwrap_or("");
    if let Some(packed) = signature.strip_prefix(FOREIGN_SIGNATURE_PREFIX)
        && let Ok(detail @ Value::Object(_)) = serde_json::from_str::<Value>(packed)
    {
        return detail;
    }
    json!({
        "type": "reasoning.text",
        "text": block.get("thinking").cloned().unwrap_or(json!("")),
        "signature": signature,
        "format": ANTHROPIC_FORMAT,
        "index": index,
    })
}

fn assistant_turn(content: &Value) -> Value {
    let Value::Array(blocks) = content else {
        return json!({"role": "assistant", "content": content});
    };
    let mut text = String::new();
    let mut details = Vec::new();
    let mut calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => details.push(thinking_detail(block, i)),
            Some("redacted_thinking") => details.push(json!({
                "type": "reasoning.encrypted", "data": block.get("data").cloned().unwrap_or(json!("")),
                "format": ANTHROPIC_FORMAT, "index": i,
            })),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(json!("")),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(json!("")),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !details.is_empty() {
        message["reasoning_details"] = Value::Array(details);
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

fn tool(tool: &Value) -> Value {
    let custom =
        tool.get("input_schema").is_some() || tool.get("type").is_none_or(|t| t == "custom");
    if !custom {
        // Anthropic server tools (web search, code execution, …) keep their native shape.
        return tool.clone();
    }
    let mut function = json!({
        "name": tool.get("name").cloned().unwrap_or(json!("")),
        "parameters": tool.get("input_schema").cloned().unwrap_or(json!({"type": "object"})),
    });
    if let Some(d) = tool.get("description") {
        function["description"] = d.clone();
    }
    with_cache_control(json!({"type": "function", "function": function}), tool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_a_full_request() {
        let body = json!({
            "model": "acme/claude", "max_tokens": 1024, "stream": true,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig1"},
                    {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": 1}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat"},
                    {"type": "text", "text": "thanks"},
                ]},
            ],
            "tools": [{"name": "look", "description": "looks", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"], "temperature": 0.5, "top_k": 3,
            "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 2000},
        });
        let req = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        let canon = req.to_openai_body("m");
        let messages = canon["messages"].as_array().unwrap();
        assert_eq!(messages[0]["role"], "system");
        assert_eq!(
            messages[0]["content"][0]["cache_control"]["type"],
            "ephemeral"
        );
        assert_eq!(
            messages[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,iVBOR"
        );
        assert_eq!(messages[2]["reasoning_details"][0]["signature"], "sig1");
        assert_eq!(
            messages[2]["reasoning_details"][0]["format"],
            ANTHROPIC_FORMAT
        );
        assert_eq!(
            messages[2]["tool_calls"][0]["function"]["arguments"],
            "{\"q\":1}"
        );
        assert_eq!(messages[3]["role"], "tool");
        assert_eq!(messages[3]["tool_call_id"], "toolu_1");
        assert_eq!(messages[4]["content"][0]["text"], "thanks");
        assert_eq!(canon["tools"][0]["function"]["name"], "look");
        assert_eq!(canon["tool_choice"], "required");
        assert_eq!(canon["parallel_tool_calls"], false);
        assert_eq!(canon["stop"], json!(["END"]));
        assert_eq!(canon["user"], "u-1");
        assert_eq!(canon["top_k"], 3);
        assert_eq!(canon["max_tokens"], 1024);
        assert_eq!(canon["reasoning"]["max_tokens"], 2000);
        assert!(req.stream);
    }

    #[test]
    fn foreign_reasoning_round_trips_through_the_signature() {
        let detail = json!({"type": "reasoning.encrypted", "data": "g", "id": "call_1", "format": "google-gemini-v1", "index": 0});
        let block = json!({"type": "thinking", "thinking": "", "signature": super::super::messages::pack_foreign(&detail)});
        assert_eq!(thinking_detail(&block, 3), detail);
    }

    #[test]
    fn rejects_what_anthropic_rejects() {
        let err = parse(br#"{"model":"a","messages":[]}"#).unwrap_err();
        assert!(err.to_string().contains("must not be empty"));
        let err = parse(br#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
        assert!(err.to_string().contains("`model`"));
        let err =
            parse(br#"{"model":"a","messages":[{"role":"system","content":"x"}]}"#).unwrap_err();
        assert!(err.to_string().contains("messages[0].role"));
    }
}
