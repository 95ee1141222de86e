//! An OpenAI Responses request translated to the canonical chat request. Switchyard's
//! Responses API is stateless, as OpenRouter's is: `store: true`, `previous_response_id`
//! and `background: true` are refused with 400 rather than silently ignored, and clients
//! carry the conversation (including `reasoning` items) in `input`.

use serde_json::{Map, Value, json};

use super::responses::unpack_reasoning;
use crate::chat_request::{ChatRequest, describe_json_error};
use crate::error::ApiError;

/// Top-level fields that mean the same in the chat request.
const SAME_FIELDS: &[&str] = &[
    "model",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "parallel_tool_calls",
    "user",
    "seed",
    "provider",
    "models",
    "plugins",
    "session_id",
    "trace",
    "service_tier",
];

pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(describe_json_error(&e)))?;
    let Value::Object(input) = value else {
        return Err(ApiError::BadRequest(
            "request body must be a JSON object".into(),
        ));
    };
    let bad = |m: &str| Err(ApiError::BadRequest(m.to_owned()));
    if input.get("store").and_then(Value::as_bool) == Some(true) {
        return bad(
            "`store: true` is not supported: Switchyard's Responses API is stateless; send `store: false` and carry the conversation in `input`",
        );
    }
    if input
        .get("previous_response_id")
        .is_some_and(|v| !v.is_null())
    {
        return bad(
            "`previous_response_id` is not supported: Switchyard's Responses API is stateless; send the earlier items in `input`",
        );
    }
    if input.get("background").and_then(Value::as_bool) == Some(true) {
        return bad("`background: true` is not supported: Switchyard's Responses API is stateless");
    }

    let mut out = Map::new();
    for field in SAME_FIELDS {
        if let Some(v) = input.get(*field).filter(|v| !v.is_null()) {
            out.insert((*field).to_owned(), v.clone());
        }
    }
    if let Some(id) = input.get("safety_identifier").filter(|v| v.is_string()) {
        out.insert("user".into(), id.clone());
    }
    if let Some(n) = input.get("max_output_tokens").filter(|v| !v.is_null()) {
        out.insert("max_tokens".into(), n.clone());
    }
    if let Some(r) = input.get("reasoning").filter(|v| v.is_object()) {
        out.insert("reasoning".into(), r.clone());
    }
    match input.get("text").and_then(|t| t.get("format")) {
        Some(format) if format["type"] == "json_schema" => {
            let mut schema = json!({"name": format.get("name").cloned().unwrap_or(json!("response")),
                "schema": format.get("schema").cloned().unwrap_or(json!({}))});
            if let Some(strict) = format.get("strict") {
                schema["strict"] = strict.clone();
            }
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": schema}),
            );
        }
        Some(format) if format["type"] == "json_object" => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        _ => {}
    }
    if let Some(tools) = input.get("tools").and_then(Value::as_array) {
        let mut converted = Vec::with_capacity(tools.len());
        for tool in tools {
            if tool["type"] != "function" {
                return Err(ApiError::BadRequest(format!(
                    "tool type `{}` is not supported; only `function` tools are",
                    tool["type"].as_str().unwrap_or("?")
                )));
            }
            let mut function = json!({"name": tool["name"], "parameters": tool.get("parameters").cloned().unwrap_or(json!({"type": "object"}))});
            for key in ["description", "strict"] {
                if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                    function[key] = v.clone();
                }
            }
            converted.push(json!({"type": "function", "function": function}));
        }
        out.insert("tools".into(), Value::Array(converted));
    }
    match input.get("tool_choice") {
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            out.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": o.get("name")}}),
            );
        }
        Some(v @ Value::String(_)) => {
            out.insert("tool_choice".into(), v.clone());
        }
        _ => {}
    }

    let mut messages = Vec::new();
    if let Some(instructions) = input.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match input.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => items_to_messages(items, &mut messages)?,
        _ => return bad("`input` is required: a string or an array of items"),
    }
    out.insert("messages".into(), Value::Array(messages));
    ChatRequest::from_value(Value::Object(out))
}

fn content_parts(content: &Value) -> Value {
    let Value::Array(parts) = content else {
        return content.clone();
    };
    Value::Array(
        parts
            .iter()
            .filter_map(|p| match p["type"].as_str()? {
                "input_text" | "output_text" | "text" => {
                    Some(json!({"type": "text", "text": p["text"]}))
                }
                "input_image" => {
                    let mut image = json!({"url": p.get("image_url")?});
                    if let Some(d) = p.get("detail") {
                        image["detail"] = d.clone();
                    }
                    Some(json!({"type": "image_url", "image_url": image}))
                }
                "input_file" => Some(json!({"type": "file", "file": {
                    "filename": p.get("filename").cloned().unwrap_or(json!("file")),
                    "file_data": p.get("file_data")?,
                }})),
                _ => None,
            })
            .collect(),
    )
}

/// The assistant message that function calls and reasoning attach to: the last message
/// if it is an assistant turn still open for them, else a new one.
fn open_assistant(messages: &mut Vec<Value>) -> &mut Value {
    let reusable = messages
        .last()
        .is_some_and(|m| m["role"] == "assistant" && m.get("switchyard_open").is_some());
    if !reusable {
        messages.push(json!({"role": "assistant", "content": null, "switchyard_open": true}));
    }
    let last = messages.len() - 1;
    &mut messages[last]
}

fn items_to_messages(items: &[Value], messages: &mut Vec<Value>) -> Result<(), ApiError> {
    for (i, item) in items.iter().enumerate() {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match kind {
            "message" => {
                let role = item["role"].as_str().unwrap_or("user");
                let content = content_parts(item.get("content").unwrap_or(&Value::Null));
                if role == "assistant" {
                    let text = match &content {
                        Value::Array(parts) => parts
                            .iter()
                            .filter_map(|p| p["text"].as_str())
                            .collect::<String>(),
                        other => other.as_str().unwrap_or_default().to_owned(),
                    };
                    let message = open_assistant(messages);
                    message["content"] = json!(text);
                } else {
                    messages.push(json!({"role": role, "content": content}));
                }
            }
            "function_call" => {
                let call = json!({"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item.get("arguments").cloned().unwrap_or(json!("{}"))}});
                let message = open_assistant(messages);
                match message.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    Some(calls) => calls.push(call),
                    None => message["tool_calls"] = json!([call]),
                }
            }
            "function_call_output" => {
                let output = match &item["output"] {
                    Value::String(s) => json!(s),
                    other => content_parts(other),
                };
                messages.push(
                    json!({"role": "tool", "tool_call_id": item["call_id"], "content": output}),
                );
            }
            "reasoning" => {
                let details = item
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .and_then(unpack_reasoning)
                    .unwrap_or_default();
                if !details.is_empty() {
                    let message = open_assistant(messages);
                    match message
                        .get_mut("reasoning_details")
                        .and_then(Value::as_array_mut)
                    {
                        Some(existing) => existing.extend(details),
                        None => message["reasoning_details"] = Value::Array(details),
                    }
                }
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "input[{i}]: item type `{other}` is not supported"
                )));
            }
        }
    }
    for message in messages.iter_mut() {
        if let Some(o) = message.as_object_mut() {
            o.remove("switchyard_open");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stateful_options_are_refused() {
        for body in [
            r#"{"model":"m","input":"x","store":true}"#,
            r#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#,
            r#"{"model":"m","input":"x","background":true}"#,
        ] {
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("stateless"), "{body}: {err}");
        }
        assert!(parse(br#"{"model":"m","input":"x","store":false}"#).is_ok());
    }

    #[test]
    fn items_become_a_conversation() {
        let body = json!({
            "model": "m", "instructions": "be brief", "max_output_tokens": 50,
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [],
                    "encrypted_content": super::super::responses::pack_reasoning(&[json!({"type": "reasoning.text", "text": "t", "signature": "s", "format": "anthropic-claude-v1", "index": 0})])},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            ],
        });
        let req = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        let canon = req.to_openai_body("m");
        let messages = canon["messages"].as_array().unwrap();
        assert_eq!(
            messages[0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(
            messages[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AA"
        );
        assert_eq!(messages[2]["role"], "assistant");
        assert_eq!(messages[2]["reasoning_details"][0]["signature"], "s");
        assert_eq!(messages[2]["tool_calls"][0]["id"], "c1");
        assert!(messages[2].get("switchyard_open").is_none());
        assert_eq!(
            messages[3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
        );
        assert_eq!(canon["max_tokens"], 50);
        assert_eq!(canon["response_format"]["json_schema"]["name"], "w");
        assert_eq!(canon["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(canon["tool_choice"]["function"]["name"], "get_weather");
    }
}
