//! Anthropic Messages wire format (`POST {base}/messages`, `x-api-key`,
//! `anthropic-version: 2023-06-01`).
//!
//! System and developer messages become `system`; tool results become `tool_result` blocks
//! in user turns; images become base64 or URL image blocks; thinking blocks and their
//! signatures travel as `reasoning_details` (format `anthropic-claude-v1`) and go back
//! unchanged; `cache_control` on content parts and tools is passed through.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::reasoning::{ANTHROPIC_FORMAT, details_in, encrypted_detail, text_detail};
use super::{
    Completion, Parsed, StreamParser, UpstreamRequest, arguments_object, canonical_usage, count,
    parse_data_url, reasoning_budget, requested_max_tokens, text_of,
};
use crate::chat_request::{ChatRequest, Message};
use crate::error::{ApiError, UpstreamFailure};
use crate::snapshot::EndpointEntry;

pub const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; used when neither the client nor the catalog says.
const DEFAULT_MAX_TOKENS: u32 = 4096;
/// Anthropic's minimum thinking budget.
const MIN_THINKING_BUDGET: u32 = 1024;

pub fn build_request(
    request: &ChatRequest,
    endpoint: &EndpointEntry,
) -> Result<UpstreamRequest, ApiError> {
    let body = build_body(
        request,
        &endpoint.upstream_model,
        endpoint.max_output_tokens,
    )?;
    let credential = &endpoint.provider.credential;
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("anthropic-version", API_VERSION.to_owned()),
    ];
    if !credential.is_empty() {
        headers.push(("x-api-key", credential.expose().to_owned()));
    }
    Ok(UpstreamRequest {
        url: format!("{}/messages", endpoint.provider.base_url),
        headers,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    })
}

/// `POST {base}/messages/count_tokens`: the message body without the generation-only
/// fields.
pub fn build_count_tokens(
    request: &ChatRequest,
    endpoint: &EndpointEntry,
) -> Result<UpstreamRequest, ApiError> {
    let mut built = build_request(request, endpoint)?;
    let mut body = build_body(
        request,
        &endpoint.upstream_model,
        endpoint.max_output_tokens,
    )?;
    if let Some(o) = body.as_object_mut() {
        for field in [
            "max_tokens",
            "stream",
            "temperature",
            "top_p",
            "top_k",
            "stop_sequences",
            "metadata",
        ] {
            o.remove(field);
        }
    }
    built.url = format!("{}/messages/count_tokens", endpoint.provider.base_url);
    built.body = serde_json::to_vec(&body).unwrap_or_default();
    Ok(built)
}

pub fn build_body(
    request: &ChatRequest,
    model: &str,
    catalog_max_output: u32,
) -> Result<Value, ApiError> {
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for message in request.conversation().iter() {
        match message.role.as_str() {
            "system" | "developer" => system.extend(text_blocks(&message.content)),
            "user" => push_turn(&mut turns, "user", user_blocks(&message.content)?),
            "assistant" => push_turn(&mut turns, "assistant", assistant_blocks(message)),
            "tool" | "function" => push_turn(&mut turns, "user", vec![tool_result(message)]),
            _ => {}
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();

    let mut max_tokens = requested_max_tokens(request)
        .or((catalog_max_output > 0).then_some(catalog_max_output))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut body = json!({"model": model, "messages": messages});
    if !system.is_empty() {
        body["system"] = Value::Array(system);
    }
    if let Some(budget) = reasoning_budget(request, max_tokens) {
        let budget = budget.max(MIN_THINKING_BUDGET);
        // Anthropic rejects a budget that does not leave room for the answer.
        if budget >= max_tokens {
            max_tokens = budget.saturating_add(MIN_THINKING_BUDGET);
        }
        body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
    }
    body["max_tokens"] = json!(max_tokens);
    let extra = &request.extra;
    for field in ["temperature", "top_p", "top_k"] {
        if let Some(v) = extra.get(field).filter(|v| v.is_number()) {
            body[field] = v.clone();
        }
    }
    match extra.get("stop") {
        Some(Value::String(s)) => body["stop_sequences"] = json!([s]),
        Some(Value::Array(a)) if !a.is_empty() => body["stop_sequences"] = json!(a),
        _ => {}
    }
    if let Some(user) = extra.get("user").and_then(Value::as_str) {
        body["metadata"] = json!({"user_id": user});
    }
    if let Some(tools) = extra.get("tools").and_then(Value::as_array)
        && !tools.is_empty()
    {
        body["tools"] = Value::Array(tools.iter().map(tool).collect());
        if let Some(choice) = tool_choice(extra) {
            body["tool_choice"] = choice;
        }
    }
    if request.stream {
        body["stream"] = json!(true);
    }
    if request.auto_cache_breakpoints {
        add_cache_breakpoints(&mut body);
    }
    Ok(body)
}

/// Anthropic caches only up to explicit `cache_control` breakpoints (at most 4). When the
/// org asks for automatic breakpoints and the request carries none, mark the end of the
/// system prompt, the end of the latest turn (written to cache now) and the end of the
/// previous user turn (read from the cache the last turn wrote).
fn add_cache_breakpoints(body: &mut Value) {
    if contains_cache_control(body) {
        return;
    }
    let mark = |blocks: Option<&mut Value>| {
        if let Some(last) = blocks
            .and_then(Value::as_array_mut)
            .and_then(|b| b.last_mut())
            .and_then(Value::as_object_mut)
        {
            last.insert("cache_control".into(), json!({"type": "ephemeral"}));
        }
    };
    mark(body.get_mut("system"));
    if let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) {
        let last = messages.len().checked_sub(1);
        let previous_user = last.and_then(|l| {
            messages[..l]
                .iter()
                .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        });
        for i in [last, previous_user].into_iter().flatten() {
            mark(messages[i].get_mut("content"));
        }
    }
}

fn contains_cache_control(value: &Value) -> bool {
    match value {
        Value::Object(o) => {
            o.contains_key("cache_control") || o.values().any(contains_cache_control)
        }
        Value::Array(a) => a.iter().any(contains_cache_control),
        _ => false,
    }
}

/// Consecutive messages of one role become one turn, as Anthropic wants alternation.
fn push_turn(turns: &mut Vec<(String, Vec<Value>)>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, content)) if last == role => content.extend(blocks),
        _ => turns.push((role.to_owned(), blocks)),
    }
}

fn text_block(text: &str, part: Option<&Value>) -> Value {
    let mut block = json!({"type": "text", "text": text});
    if let Some(cc) = part.and_then(|p| p.get("cache_control")) {
        block["cache_control"] = cc.clone();
    }
    block
}

fn text_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![text_block(s, None)],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| {
                let text = p.get("text").and_then(Value::as_str)?;
                Some(text_block(text, Some(p)))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn image_block(part: &Value) -> Option<Value> {
    let url = part
        .pointer("/image_url/url")
        .or_else(|| part.get("image_url"))
        .and_then(Value::as_str)?;
    let source = match parse_data_url(url) {
        Some((media, data)) => json!({"type": "base64", "media_type": media, "data": data}),
        None => json!({"type": "url", "url": url}),
    };
    let mut block = json!({"type": "image", "source": source});
    if let Some(cc) = part.get("cache_control") {
        block["cache_control"] = cc.clone();
    }
    Some(block)
}

fn file_block(part: &Value) -> Option<Value> {
    let data = part.pointer("/file/file_data").and_then(Value::as_str)?;
    let source = match parse_data_url(data) {
        Some((media, data)) => json!({"type": "base64", "media_type": media, "data": data}),
        None => json!({"type": "url", "url": data}),
    };
    Some(json!({"type": "document", "source": source}))
}

fn user_blocks(content: &Value) -> Result<Vec<Value>, ApiError> {
    let Value::Array(parts) = content else {
        return Ok(text_blocks(content));
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("text");
        let block = match kind {
            "text" => part
                .get("text")
                .and_then(Value::as_str)
                .map(|t| text_block(t, Some(part))),
            "image_url" => image_block(part),
            "file" => file_block(part),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "content part type `{other}` is not supported by Anthropic endpoints"
                )));
            }
        };
        blocks.extend(block);
    }
    Ok(blocks)
}

fn assistant_blocks(message: &Message) -> Vec<Value> {
    let mut blocks = thinking_blocks(&message.extra);
    blocks.extend(text_blocks(&message.content));
    for call in message
        .extra
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        blocks.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(json!("")),
            "name": call.pointer("/function/name").cloned().unwrap_or(json!("")),
            "input": arguments_object(call.pointer("/function/arguments")),
        }));
    }
    blocks
}

/// Thinking blocks from `reasoning_details`. Streamed details arrive in pieces sharing an
/// `index` (text deltas, then the signature); they are joined back into one block. Text
/// without a signature cannot be replayed — Anthropic would reject it — so it is left out.
fn thinking_blocks(extra: &Map<String, Value>) -> Vec<Value> {
    let mut blocks: Vec<Value> = Vec::new();
    let mut by_index: HashMap<u64, usize> = HashMap::new();
    for detail in details_in(extra, ANTHROPIC_FORMAT) {
        let index = detail.get("index").and_then(Value::as_u64);
        match detail.get("type").and_then(Value::as_str) {
            Some("reasoning.text") => {
                let text = detail.get("text").and_then(Value::as_str).unwrap_or("");
                let signature = detail.get("signature").and_then(Value::as_str);
                let slot = index.and_then(|i| by_index.get(&i).copied());
                match slot {
                    Some(slot) => {
                        let block = &mut blocks[slot];
                        let joined =
                            format!("{}{text}", block["thinking"].as_str().unwrap_or_default());
                        block["thinking"] = json!(joined);
                        if let Some(sig) = signature.filter(|s| !s.is_empty()) {
                            block["signature"] = json!(sig);
                        }
                    }
                    None => {
                        if let Some(i) = index {
                            by_index.insert(i, blocks.len());
                        }
                        blocks.push(json!({"type": "thinking", "thinking": text, "signature": signature.unwrap_or("")}));
                    }
                }
            }
            Some("reasoning.encrypted") => {
                if let Some(data) = detail.get("data").and_then(Value::as_str) {
                    blocks.push(json!({"type": "redacted_thinking", "data": data}));
                }
            }
            _ => {}
        }
    }
    blocks.retain(|b| {
        b["type"] != "thinking" || b["signature"].as_str().is_some_and(|s| !s.is_empty())
    });
    blocks
}

fn tool_result(message: &Message) -> Value {
    let content = match &message.content {
        Value::Array(parts) => Value::Array(
            parts
                .iter()
                .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                    Some("image_url") => image_block(p),
                    _ => p
                        .get("text")
                        .and_then(Value::as_str)
                        .map(|t| text_block(t, Some(p))),
                })
                .collect(),
        ),
        other => json!(text_of(other)),
    };
    json!({
        "type": "tool_result",
        "tool_use_id": message.extra.get("tool_call_id").cloned().unwrap_or(json!("")),
        "content": content,
    })
}

fn tool(tool: &Value) -> Value {
    let Some(function) = tool.get("function") else {
        // Anthropic's own tool types (server tools) arrive in their native shape.
        return tool.clone();
    };
    let mut out = json!({
        "name": function.get("name").cloned().unwrap_or(json!("")),
        "input_schema": function
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    });
    if let Some(d) = function.get("description") {
        out["description"] = d.clone();
    }
    if let Some(cc) = tool.get("cache_control") {
        out["cache_control"] = cc.clone();
    }
    out
}

fn tool_choice(extra: &Map<String, Value>) -> Option<Value> {
    let mut choice = match extra.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => json!({"type": "any"}),
        Some(Value::String(s)) if s == "none" => json!({"type": "none"}),
        Some(Value::Object(o)) => match o.get("function").and_then(|f| f.get("name")) {
            Some(name) => json!({"type": "tool", "name": name}),
            None => json!({"type": "auto"}),
        },
        _ => json!({"type": "auto"}),
    };
    let parallel = extra.get("parallel_tool_calls").and_then(Value::as_bool);
    if parallel == Some(false) && choice["type"] != "none" {
        choice["disable_parallel_tool_use"] = json!(true);
    } else if extra.get("tool_choice").is_none() && parallel.is_none() {
        return None;
    }
    Some(choice)
}

/// Anthropic's `usage` in canonical form: its `input_tokens` excludes cache reads and
/// writes, canonical `prompt_tokens` includes them.
pub fn usage(u: &Value) -> Value {
    let read = count(u, &["cache_read_input_tokens"]);
    let write = count(u, &["cache_creation_input_tokens"]);
    let write_1h = count(u, &["cache_creation", "ephemeral_1h_input_tokens"]).min(write);
    canonical_usage(
        count(u, &["input_tokens"]) + read + write,
        count(u, &["output_tokens"]),
        read,
        write,
        write_1h,
        0,
    )
}

pub fn parse_response(value: &Value, provider: &str) -> Result<Value, UpstreamFailure> {
    let Some(blocks) = value.get("content").and_then(Value::as_array) else {
        return Err(UpstreamFailure::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            provider,
            "returned a message without content",
        ));
    };
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut details = Vec::new();
    let mut tool_calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let index = i as u64;
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("thinking") => {
                let t = block["thinking"].as_str().unwrap_or_default();
                reasoning.push_str(t);
                details.push(text_detail(
                    t,
                    block["signature"].as_str(),
                    ANTHROPIC_FORMAT,
                    index,
                ));
            }
            Some("redacted_thinking") => details.push(encrypted_detail(
                block["data"].as_str().unwrap_or_default(),
                None,
                ANTHROPIC_FORMAT,
                index,
            )),
            Some("tool_use") => tool_calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()},
            })),
            _ => {}
        }
    }
    let stop = value.get("stop_reason").cloned().unwrap_or(Value::Null);
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) }});
    if !details.is_empty() {
        message["reasoning"] = json!(reasoning);
        message["reasoning_details"] = Value::Array(details);
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    Ok(json!({
        "id": value.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": crate::unix_now(),
        "model": value.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "finish_reason": stop, "native_finish_reason": stop, "logprobs": null}],
        "usage": usage(value.get("usage").unwrap_or(&Value::Null)),
    }))
}

/// Maps an Anthropic error `type` (HTTP body or stream `error` event) to the vocabulary.
fn stream_failure(provider: &str, error: &Value) -> UpstreamFailure {
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("stream error");
    let (status, error_type) = match kind {
        "overloaded_error" => (StatusCode::SERVICE_UNAVAILABLE, "provider_overloaded"),
        "rate_limit_error" => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded"),
        "invalid_request_error" => (StatusCode::BAD_REQUEST, "invalid_request"),
        "timeout_error" => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        _ => (StatusCode::BAD_GATEWAY, "provider_unavailable"),
    };
    let mut failure = UpstreamFailure::new(
        status,
        error_type,
        provider,
        &format!("reported an error mid-stream: {message}"),
    );
    failure.provider_code = Some(kind.to_owned());
    failure
}

enum Block {
    /// A tool_use block and its position among the message's tool calls.
    Tool(u64),
    Other,
}

/// Anthropic's event stream turned into canonical chunks.
pub struct AnthropicStream {
    provider: String,
    id: Value,
    model: Value,
    created: i64,
    blocks: HashMap<u64, Block>,
    tools: u64,
    usage: Map<String, Value>,
}

impl AnthropicStream {
    pub fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            id: Value::Null,
            model: Value::Null,
            created: crate::unix_now(),
            blocks: HashMap::new(),
            tools: 0,
            usage: Map::new(),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&Value>) -> Value {
        let finish = finish.cloned().unwrap_or(Value::Null);
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish}],
        })
    }

    fn not_json(&self) -> UpstreamFailure {
        UpstreamFailure::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            &self.provider,
            "sent an event that is not JSON",
        )
    }
}

impl StreamParser for AnthropicStream {
    fn event(&mut self, _event: &str, data: &str) -> Result<Parsed, UpstreamFailure> {
        if data.trim().is_empty() {
            return Ok(Parsed::default());
        }
        let event: Value = serde_json::from_str(data).map_err(|_| self.not_json())?;
        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
        let mut chunks = Vec::new();
        let mut done = false;
        match event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "message_start" => {
                let message = &event["message"];
                self.id = message.get("id").cloned().unwrap_or(Value::Null);
                self.model = message.get("model").cloned().unwrap_or(Value::Null);
                if let Some(u) = message.get("usage").and_then(Value::as_object) {
                    self.usage.extend(u.clone());
                }
                chunks.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let block = &event["content_block"];
                let kind = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            chunks.push(self.chunk(json!({"content": t}), None));
                        }
                        Block::Other
                    }
                    Some("redacted_thinking") => {
                        let data = block["data"].as_str().unwrap_or_default();
                        let detail = encrypted_detail(data, None, ANTHROPIC_FORMAT, index);
                        chunks.push(self.chunk(json!({"reasoning_details": [detail]}), None));
                        Block::Other
                    }
                    Some("tool_use") => {
                        let position = self.tools;
                        self.tools += 1;
                        chunks.push(self.chunk(
                            json!({"tool_calls": [{"index": position, "id": block["id"], "type": "function",
                                "function": {"name": block["name"], "arguments": ""}}]}),
                            None,
                        ));
                        Block::Tool(position)
                    }
                    _ => Block::Other,
                };
                self.blocks.insert(index, kind);
            }
            "content_block_delta" => {
                let delta = &event["delta"];
                let text = |key: &str| delta[key].as_str().unwrap_or_default().to_owned();
                let out = match (delta["type"].as_str(), self.blocks.get(&index)) {
                    (Some("text_delta"), _) => Some(json!({"content": text("text")})),
                    (Some("thinking_delta"), _) => {
                        let t = text("thinking");
                        Some(
                            json!({"reasoning": t, "reasoning_details": [text_detail(&t, None, ANTHROPIC_FORMAT, index)]}),
                        )
                    }
                    (Some("signature_delta"), _) => Some(json!({"reasoning_details": [
                        text_detail("", Some(&text("signature")), ANTHROPIC_FORMAT, index)
                    ]})),
                    (Some("input_json_delta"), Some(Block::Tool(position)))
                        if !text("partial_json").is_empty() =>
                    {
                        Some(
                            json!({"tool_calls": [{"index": position, "function": {"arguments": text("partial_json")}}]}),
                        )
                    }
                    _ => None,
                };
                if let Some(delta) = out {
                    chunks.push(self.chunk(delta, None));
                }
            }
            "message_delta" => {
                if let Some(u) = event.get("usage").and_then(Value::as_object) {
                    // Counts in message_delta are cumulative and win over message_start's.
                    for (k, v) in u {
                        if !v.is_null() {
                            self.usage.insert(k.clone(), v.clone());
                        }
                    }
                }
                if let Some(stop) = event.pointer("/delta/stop_reason").filter(|s| !s.is_null()) {
                    chunks.push(self.chunk(json!({}), Some(stop)));
                }
            }
            "message_stop" => {
                let mut chunk = self.chunk(json!({}), None);
                chunk["choices"] = json!([]);
                chunk["usage"] = usage(&Value::Object(self.usage.clone()));
                chunks.push(chunk);
                done = true;
            }
            "error" => return Err(stream_failure(&self.provider, &event["error"])),
            _ => {}
        }
        Ok(Parsed {
            chunks: chunks.into_iter().map(Completion::Canonical).collect(),
            done,
        })
    }

    fn closed(&mut self) -> Result<Vec<Value>, UpstreamFailure> {
        Err(UpstreamFailure::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            &self.provider,
            "ended the stream before message_stop",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::fixtures;

    #[test]
    fn automatic_breakpoints_mark_system_and_latest_turns_unless_the_client_did() {
        let mut request = ChatRequest::parse(
            br#"{"model":"a/c","messages":[{"role":"system","content":"rules"},{"role":"user","content":"q1"},{"role":"assistant","content":"a1"},{"role":"user","content":"q2"}]}"#,
        )
        .unwrap();
        request.auto_cache_breakpoints = true;
        let body = build_body(&request, "claude", 0).unwrap();
        let eph = json!({"type": "ephemeral"});
        assert_eq!(body["system"][0]["cache_control"], eph);
        assert_eq!(body["messages"][2]["content"][0]["cache_control"], eph);
        assert_eq!(body["messages"][0]["content"][0]["cache_control"], eph);
        assert!(
            body["messages"][1]["content"][0]
                .get("cache_control")
                .is_none()
        );
        let mut own = ChatRequest::parse(
            br#"{"model":"a/c","messages":[{"role":"user","content":[{"type":"text","text":"q","cache_control":{"type":"ephemeral","ttl":"1h"}}]},{"role":"assistant","content":"a"},{"role":"user","content":"q2"}]}"#,
        )
        .unwrap();
        own.auto_cache_breakpoints = true;
        let body = build_body(&own, "claude", 0).unwrap();
        assert_eq!(
            body["messages"][0]["content"][0]["cache_control"]["ttl"],
            "1h"
        );
        assert!(
            body["messages"][2]["content"][0]
                .get("cache_control")
                .is_none()
        );
    }

    #[test]
    fn builds_the_documented_request() {
        let canonical = fixtures::json("anthropic", "request.canonical.json");
        let request = ChatRequest::from_value(canonical).unwrap();
        let body = build_body(&request, "claude-sonnet-4-5", 0).unwrap();
        assert_eq!(body, fixtures::json("anthropic", "request.expected.json"));
    }

    #[test]
    fn parses_the_documented_response() {
        let response = fixtures::json("anthropic", "response.json");
        let parsed = parse_response(&response, "anthropic").unwrap();
        assert_eq!(
            fixtures::scrub(parsed),
            fixtures::json("anthropic", "response.expected.json")
        );
        // Cache writes with a one-hour lifetime are priced apart from five-minute ones.
        let dims = super::super::openai::parse_usage(&usage(&response["usage"])).unwrap();
        assert_eq!(
            (
                dims.input_tokens,
                dims.cache_read_tokens,
                dims.cache_write_5m_tokens,
                dims.cache_write_1h_tokens
            ),
            (4672, 3000, 200, 1000)
        );
    }

    #[test]
    fn parses_the_documented_stream() {
        let mut parser = AnthropicStream::new("anthropic");
        let (chunks, done) = fixtures::run_stream(&mut parser, "anthropic", "stream.sse");
        assert!(done, "message_stop ends the stream");
        assert_eq!(
            Value::Array(chunks),
            fixtures::json("anthropic", "stream.expected.json")
        );
        let mut parser = AnthropicStream::new("anthropic");
        assert!(
            parser.closed().is_err(),
            "a close before message_stop is a failure"
        );
    }

    #[test]
    fn maps_errors() {
        let body = fixtures::text("anthropic", "error.json");
        let f = super::super::Wire::Anthropic.map_error(
            StatusCode::from_u16(529).unwrap(),
            body.as_bytes(),
            "anthropic",
            None,
        );
        assert_eq!(f.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(f.error_type, "provider_overloaded");
        assert_eq!(f.provider_code.as_deref(), Some("overloaded_error"));
        assert!(f.message.contains("Overloaded"));

        let mut parser = AnthropicStream::new("anthropic");
        let err = parser
            .event(
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            )
            .unwrap_err();
        assert_eq!(err.error_type, "provider_overloaded");
    }
}
