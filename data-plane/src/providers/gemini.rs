//! Google Gemini wire format: `POST {base}/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, key in `x-goog-api-key`.
//!
//! Gemini has no tool-call ids, so calls get Switchyard ids and tool results find their
//! function name through the assistant turn that made the call. Thought signatures travel
//! as `reasoning_details` items of type `reasoning.encrypted` (format `google-gemini-v1`),
//! keyed by the tool call they belong to, and are put back on the same part on later turns.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::reasoning::{GEMINI_FORMAT, details_in, encrypted_detail, text_detail};
use super::{
    Completion, Parsed, StreamParser, UpstreamRequest, arguments_object, canonical_usage, count,
    parse_data_url, reasoning_budget, requested_max_tokens, text_of,
};
use crate::chat_request::{ChatRequest, Message};
use crate::error::{ApiError, UpstreamFailure};
use crate::snapshot::EndpointEntry;

/// JSON-Schema keywords Gemini's OpenAPI-subset `Schema` rejects.
const UNSUPPORTED_SCHEMA_KEYS: &[&str] =
    &["$schema", "additionalProperties", "$id", "$ref", "strict"];

pub fn build_request(
    request: &ChatRequest,
    endpoint: &EndpointEntry,
) -> Result<UpstreamRequest, ApiError> {
    let body = build_body(request, endpoint.max_output_tokens)?;
    let method = if request.stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    let model = &endpoint.upstream_model;
    let credential = &endpoint.provider.credential;
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if !credential.is_empty() {
        headers.push(("x-goog-api-key", credential.expose().to_owned()));
    }
    Ok(UpstreamRequest {
        url: url(&endpoint.provider.base_url, model, method),
        headers,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    })
}

/// Catalog entries may name models as Gemini lists them (`models/gemini-…`) or bare.
fn url(base: &str, model: &str, method: &str) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    format!("{base}/models/{model}:{method}")
}

pub fn build_body(request: &ChatRequest, catalog_max_output: u32) -> Result<Value, ApiError> {
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    for message in request.conversation().iter() {
        match message.role.as_str() {
            "system" | "developer" => system.extend(text_parts(&message.content)),
            "user" => push_turn(&mut contents, "user", user_parts(&message.content)?),
            "assistant" => {
                let parts = model_parts(message, &mut call_names);
                push_turn(&mut contents, "model", parts);
            }
            "tool" | "function" => {
                let part = function_response(message, &call_names);
                push_turn(&mut contents, "user", vec![part]);
            }
            _ => {}
        }
    }
    let contents: Vec<Value> = contents
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    let mut body = json!({"contents": contents});
    if !system.is_empty() {
        body["systemInstruction"] = json!({"parts": system});
    }
    let extra = &request.extra;
    let mut config = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = extra.get(from).filter(|v| v.is_number()) {
            config.insert(to.into(), v.clone());
        }
    }
    let max_tokens = requested_max_tokens(request);
    if let Some(n) = max_tokens {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    match extra.get("stop") {
        Some(Value::String(s)) => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            config.insert("stopSequences".into(), json!(a));
        }
        _ => {}
    }
    let format = extra.get("response_format");
    match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), json!("application/json"));
            if let Some(schema) = format.and_then(|f| f.pointer("/json_schema/schema")) {
                config.insert("responseSchema".into(), clean_schema(schema));
            }
        }
        _ => {}
    }
    let budget_base = max_tokens
        .or((catalog_max_output > 0).then_some(catalog_max_output))
        .unwrap_or(8192);
    if let Some(budget) = reasoning_budget(request, budget_base) {
        config.insert(
            "thinkingConfig".into(),
            json!({"thinkingBudget": budget, "includeThoughts": true}),
        );
    } else if extra.get("reasoning").is_some() || extra.get("reasoning_effort").is_some() {
        config.insert("thinkingConfig".into(), json!({"thinkingBudget": 0}));
    }
    if !config.is_empty() {
        body["generationConfig"] = Value::Object(config);
    }
    if let Some(tools) = extra.get("tools").and_then(Value::as_array)
        && !tools.is_empty()
    {
        let declarations: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut d = json!({"name": f.get("name").cloned().unwrap_or(json!(""))});
                if let Some(desc) = f.get("description") {
                    d["description"] = desc.clone();
                }
                if let Some(p) = f.get("parameters") {
                    d["parameters"] = clean_schema(p);
                }
                d
            })
            .collect();
        body["tools"] = json!([{"functionDeclarations": declarations}]);
        if let Some(config) = tool_config(extra) {
            body["toolConfig"] = config;
        }
    }
    Ok(body)
}

fn push_turn(
    contents: &mut Vec<(&'static str, Vec<Value>)>,
    role: &'static str,
    parts: Vec<Value>,
) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some((last, existing)) if *last == role => existing.extend(parts),
        _ => contents.push((role, parts)),
    }
}

fn clean_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !UNSUPPORTED_SCHEMA_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), clean_schema(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean_schema).collect()),
        other => other.clone(),
    }
}

fn text_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({"text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|t| json!({"text": t}))
            .collect(),
        _ => Vec::new(),
    }
}

fn media_type_of(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        _ => "image/jpeg",
    }
}

fn media_part(url: &str) -> Value {
    match parse_data_url(url) {
        Some((media, data)) => json!({"inlineData": {"mimeType": media, "data": data}}),
        None => json!({"fileData": {"mimeType": media_type_of(url), "fileUri": url}}),
    }
}

fn user_parts(content: &Value) -> Result<Vec<Value>, ApiError> {
    let Value::Array(parts) = content else {
        return Ok(text_parts(content));
    };
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("text");
        let url = match kind {
            "text" => {
                out.extend(
                    part.get("text")
                        .and_then(Value::as_str)
                        .map(|t| json!({"text": t})),
                );
                continue;
            }
            "image_url" => part
                .pointer("/image_url/url")
                .or_else(|| part.get("image_url"))
                .and_then(Value::as_str),
            "file" => part.pointer("/file/file_data").and_then(Value::as_str),
            "input_audio" => {
                let data = part.pointer("/input_audio/data").and_then(Value::as_str);
                let format = part
                    .pointer("/input_audio/format")
                    .and_then(Value::as_str)
                    .unwrap_or("wav");
                out.extend(data.map(
                    |d| json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": d}}),
                ));
                continue;
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "content part type `{other}` is not supported by Gemini endpoints"
                )));
            }
        };
        out.extend(url.map(media_part));
    }
    Ok(out)
}

fn model_parts(message: &Message, call_names: &mut HashMap<String, String>) -> Vec<Value> {
    let mut signatures: HashMap<&str, &str> = HashMap::new();
    let mut loose_signature = None;
    for detail in details_in(&message.extra, GEMINI_FORMAT) {
        if detail.get("type").and_then(Value::as_str) != Some("reasoning.encrypted") {
            continue;
        }
        let Some(data) = detail.get("data").and_then(Value::as_str) else {
            continue;
        };
        match detail.get("id").and_then(Value::as_str) {
            Some(id) => {
                signatures.insert(id, data);
            }
            None => loose_signature = loose_signature.or(Some(data)),
        }
    }
    let mut parts = text_parts(&message.content);
    for call in message
        .extra
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        call_names.insert(id.to_owned(), name.to_owned());
        let mut part = json!({"functionCall": {
            "name": name, "args": arguments_object(call.pointer("/function/arguments")),
        }});
        if let Some(sig) = signatures.get(id) {
            part["thoughtSignature"] = json!(sig);
        }
        parts.push(part);
    }
    if let (Some(sig), Some(first)) = (loose_signature, parts.first_mut()) {
        first["thoughtSignature"] = json!(sig);
    }
    parts
}

fn function_response(message: &Message, call_names: &HashMap<String, String>) -> Value {
    let id = message
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = call_names
        .get(id)
        .cloned()
        .or_else(|| {
            message
                .extra
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let text = text_of(&message.content);
    // Gemini wants an object; a tool's JSON object answer is passed as is.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"content": text}),
    };
    json!({"functionResponse": {"name": name, "response": response}})
}

fn tool_config(extra: &Map<String, Value>) -> Option<Value> {
    let (mode, names) = match extra.get("tool_choice")? {
        Value::String(s) if s == "required" => ("ANY", None),
        Value::String(s) if s == "none" => ("NONE", None),
        Value::Object(o) => match o.get("function").and_then(|f| f.get("name")) {
            Some(name) => ("ANY", Some(json!([name]))),
            None => ("AUTO", None),
        },
        _ => ("AUTO", None),
    };
    let mut config = json!({"mode": mode});
    if let Some(names) = names {
        config["allowedFunctionNames"] = names;
    }
    Some(json!({"functionCallingConfig": config}))
}

/// `usageMetadata` in canonical form. `candidatesTokenCount` excludes thinking tokens;
/// canonical completion tokens include them.
pub fn usage(u: &Value) -> Value {
    let thoughts = count(u, &["thoughtsTokenCount"]);
    canonical_usage(
        count(u, &["promptTokenCount"]) + count(u, &["toolUsePromptTokenCount"]),
        count(u, &["candidatesTokenCount"]) + thoughts,
        count(u, &["cachedContentTokenCount"]),
        0,
        0,
        thoughts,
    )
}

/// The normalised finish reason: Gemini says `STOP` when it calls functions.
fn finish_reason(native: &str, called_tools: bool) -> &'static str {
    match native {
        "STOP" if called_tools => "tool_calls",
        "STOP" | "FINISH_REASON_UNSPECIFIED" => "stop",
        "MAX_TOKENS" => "length",
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" => "error",
        _ => "content_filter",
    }
}

/// One candidate's parts as a canonical delta (or message body), numbering tool calls
/// from `first_tool`.
struct Parts {
    text: String,
    reasoning: String,
    details: Vec<Value>,
    tool_calls: Vec<Value>,
}

fn read_parts(candidate: &Value, first_tool: usize) -> Parts {
    let mut out = Parts {
        text: String::new(),
        reasoning: String::new(),
        details: Vec::new(),
        tool_calls: Vec::new(),
    };
    let parts = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, part) in parts.iter().enumerate() {
        let index = i as u64;
        let mut call_id = None;
        if let Some(call) = part.get("functionCall") {
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("call_{}", uuid::Uuid::now_v7().simple()));
            out.tool_calls.push(json!({
                "index": first_tool + out.tool_calls.len(), "id": id, "type": "function",
                "function": {"name": call["name"], "arguments": call.get("args").unwrap_or(&json!({})).to_string()},
            }));
            call_id = Some(id);
        } else if let Some(text) = part.get("text").and_then(Value::as_str) {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                out.reasoning.push_str(text);
                out.details
                    .push(text_detail(text, None, GEMINI_FORMAT, index));
            } else {
                out.text.push_str(text);
            }
        }
        if let Some(sig) = part.get("thoughtSignature").and_then(Value::as_str) {
            out.details.push(encrypted_detail(
                sig,
                call_id.as_deref(),
                GEMINI_FORMAT,
                index,
            ));
        }
    }
    out
}

fn blocked(provider: &str, value: &Value) -> Option<UpstreamFailure> {
    let reason = value.pointer("/promptFeedback/blockReason")?.as_str()?;
    let mut f = UpstreamFailure::new(
        StatusCode::BAD_REQUEST,
        "content_policy_violation",
        provider,
        &format!("blocked the prompt: {reason}"),
    );
    f.provider_code = Some(reason.to_owned());
    Some(f)
}

fn mid_stream_error(provider: &str, value: &Value) -> Option<UpstreamFailure> {
    let error = value.get("error")?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("stream error");
    let mut f = UpstreamFailure::new(
        StatusCode::BAD_GATEWAY,
        "provider_unavailable",
        provider,
        &format!("reported an error mid-stream: {message}"),
    );
    f.provider_code = error
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some(f)
}

pub fn parse_response(value: &Value, provider: &str) -> Result<Value, UpstreamFailure> {
    if let Some(f) = mid_stream_error(provider, value) {
        return Err(f);
    }
    let Some(candidate) = value.pointer("/candidates/0") else {
        return Err(blocked(provider, value).unwrap_or_else(|| {
            UpstreamFailure::new(
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                provider,
                "returned no candidates",
            )
        }));
    };
    let parts = read_parts(candidate, 0);
    let native = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .unwrap_or("STOP");
    let called = !parts.tool_calls.is_empty();
    let mut message = json!({"role": "assistant", "content": if parts.text.is_empty() && called { Value::Null } else { json!(parts.text) }});
    if !parts.details.is_empty() {
        message["reasoning"] = json!(parts.reasoning);
        message["reasoning_details"] = Value::Array(parts.details);
    }
    if called {
        let calls: Vec<Value> = parts
            .tool_calls
            .into_iter()
            .map(|mut c| {
                if let Some(o) = c.as_object_mut() {
                    o.remove("index");
                }
                c
            })
            .collect();
        message["tool_calls"] = Value::Array(calls);
    }
    Ok(json!({
        "id": value.get("responseId").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": crate::unix_now(),
        "model": value.get("modelVersion").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(native, called), "native_finish_reason": native, "logprobs": null}],
        "usage": usage(value.get("usageMetadata").unwrap_or(&Value::Null)),
    }))
}

/// Gemini's SSE stream: every event is a whole `GenerateContentResponse` with the new
/// parts; the last has `finishReason`, and the connection closes without a terminator.
pub struct GeminiStream {
    provider: String,
    id: Value,
    model: Value,
    created: i64,
    started: bool,
    tools: usize,
    finished: bool,
    usage: Value,
}

impl GeminiStream {
    pub fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            id: Value::Null,
            model: Value::Null,
            created: crate::unix_now(),
            started: false,
            tools: 0,
            finished: false,
            usage: Value::Null,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<(&str, &str)>) -> Value {
        let (finish, native) = match finish {
            Some((f, n)) => (json!(f), json!(n)),
            None => (Value::Null, Value::Null),
        };
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": native}],
        })
    }

    fn usage_chunk(&self) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [], "usage": usage(&self.usage),
        })
    }
}

impl StreamParser for GeminiStream {
    fn event(&mut self, _event: &str, data: &str) -> Result<Parsed, UpstreamFailure> {
        if data.trim().is_empty() {
            return Ok(Parsed::default());
        }
        let value: Value = serde_json::from_str(data).map_err(|_| {
            UpstreamFailure::new(
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                &self.provider,
                "sent an event that is not JSON",
            )
        })?;
        if let Some(f) = mid_stream_error(&self.provider, &value) {
            return Err(f);
        }
        if let Some(u) = value.get("usageMetadata") {
            self.usage = u.clone();
        }
        if self.finished {
            return Ok(Parsed::default());
        }
        let mut chunks = Vec::new();
        if !self.started {
            self.started = true;
            self.id = value.get("responseId").cloned().unwrap_or(Value::Null);
            self.model = value.get("modelVersion").cloned().unwrap_or(Value::Null);
            chunks.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        let Some(candidate) = value.pointer("/candidates/0") else {
            if let Some(f) = blocked(&self.provider, &value) {
                return Err(f);
            }
            return Ok(Parsed {
                chunks: chunks.into_iter().map(Completion::Canonical).collect(),
                done: false,
            });
        };
        let parts = read_parts(candidate, self.tools);
        self.tools += parts.tool_calls.len();
        let mut delta = Map::new();
        if !parts.text.is_empty() {
            delta.insert("content".into(), json!(parts.text));
        }
        if !parts.details.is_empty() {
            if !parts.reasoning.is_empty() {
                delta.insert("reasoning".into(), json!(parts.reasoning));
            }
            delta.insert("reasoning_details".into(), Value::Array(parts.details));
        }
        if !parts.tool_calls.is_empty() {
            delta.insert("tool_calls".into(), Value::Array(parts.tool_calls));
        }
        if !delta.is_empty() {
            chunks.push(self.chunk(Value::Object(delta), None));
        }
        if let Some(native) = candidate.get("finishReason").and_then(Value::as_str) {
            let finish = finish_reason(native, self.tools > 0);
            chunks.push(self.chunk(json!({}), Some((finish, native))));
            self.finished = true;
        }
        Ok(Parsed {
            chunks: chunks.into_iter().map(Completion::Canonical).collect(),
            done: false,
        })
    }

    fn closed(&mut self) -> Result<Vec<Value>, UpstreamFailure> {
        if self.finished {
            Ok(vec![self.usage_chunk()])
        } else {
            Err(UpstreamFailure::new(
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                &self.provider,
                "ended the stream before a finish reason",
            ))
        }
    }
}

/// `models/{m}:batchEmbedContents`, one request per input text.
pub fn build_embeddings(
    request: &super::EmbeddingsRequest,
    endpoint: &EndpointEntry,
) -> Result<UpstreamRequest, ApiError> {
    let model = endpoint
        .upstream_model
        .strip_prefix("models/")
        .unwrap_or(&endpoint.upstream_model);
    let body = embeddings_body(request, model)?;
    let credential = &endpoint.provider.credential;
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if !credential.is_empty() {
        headers.push(("x-goog-api-key", credential.expose().to_owned()));
    }
    Ok(UpstreamRequest {
        url: url(&endpoint.provider.base_url, model, "batchEmbedContents"),
        headers,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    })
}

fn embeddings_body(request: &super::EmbeddingsRequest, model: &str) -> Result<Value, ApiError> {
    let texts = request.texts().ok_or_else(|| {
        ApiError::BadRequest("token-array `input` is not supported by Gemini endpoints".into())
    })?;
    let task = match request.input_type.as_deref() {
        Some("search_query" | "query") => Some("RETRIEVAL_QUERY"),
        Some("search_document" | "document") => Some("RETRIEVAL_DOCUMENT"),
        Some("classification") => Some("CLASSIFICATION"),
        Some("clustering") => Some("CLUSTERING"),
        _ => None,
    };
    let requests: Vec<Value> = texts
        .iter()
        .map(|text| {
            let mut r =
                json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
            if let Some(d) = request.dimensions {
                r["outputDimensionality"] = json!(d);
            }
            if let Some(t) = task {
                r["taskType"] = json!(t);
            }
            r
        })
        .collect();
    Ok(json!({"requests": requests}))
}

/// `{"embeddings":[{"values":[…]}]}` in OpenAI's embeddings shape. Gemini does not count
/// embedding tokens, so there is no `usage` and the gateway estimates it.
pub fn parse_embeddings(
    value: &Value,
    request: &super::EmbeddingsRequest,
    provider: &str,
) -> Result<Value, UpstreamFailure> {
    let Some(embeddings) = value.get("embeddings").and_then(Value::as_array) else {
        return Err(UpstreamFailure::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            provider,
            "returned no embeddings",
        ));
    };
    let data: Vec<Value> = embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let values: Vec<f64> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .collect();
            let embedding = if request.wants_base64() {
                json!(super::embedding::base64_f32_le(&values))
            } else {
                json!(values)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(json!({"object": "list", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::fixtures;

    #[test]
    fn builds_the_documented_request() {
        let canonical = fixtures::json("gemini", "request.canonical.json");
        let request = ChatRequest::from_value(canonical).unwrap();
        let body = build_body(&request, 0).unwrap();
        assert_eq!(body, fixtures::json("gemini", "request.expected.json"));
        assert_eq!(
            url(
                "https://g/v1beta",
                "models/gemini-2.5-flash",
                "streamGenerateContent?alt=sse"
            ),
            "https://g/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn parses_the_documented_response() {
        let response = fixtures::json("gemini", "response.json");
        let parsed = parse_response(&response, "gemini").unwrap();
        assert_eq!(
            fixtures::scrub(parsed.clone()),
            fixtures::json("gemini", "response.expected.json")
        );
        // The signature is keyed by the very id the tool call got.
        let message = &parsed["choices"][0]["message"];
        assert_eq!(
            message["reasoning_details"][1]["id"],
            message["tool_calls"][0]["id"]
        );
    }

    #[test]
    fn parses_the_documented_stream() {
        let mut parser = GeminiStream::new("gemini");
        let (chunks, done) = fixtures::run_stream(&mut parser, "gemini", "stream.sse");
        assert!(done);
        assert_eq!(
            Value::Array(chunks),
            fixtures::json("gemini", "stream.expected.json")
        );
        let mut parser = GeminiStream::new("gemini");
        parser
            .event(
                "",
                r#"{"candidates":[{"content":{"parts":[{"text":"a"}]}}]}"#,
            )
            .unwrap();
        assert!(
            parser.closed().is_err(),
            "a close before finishReason is a failure"
        );
    }

    #[test]
    fn builds_and_parses_embeddings() {
        let request = super::super::EmbeddingsRequest::parse(
            br#"{"model":"x","input":["a","b"],"input_type":"search_query","dimensions":8}"#,
        )
        .unwrap();
        assert_eq!(
            embeddings_body(&request, "text-embedding-004").unwrap(),
            fixtures::json("gemini", "embeddings.request.expected.json")
        );
        let parsed = parse_embeddings(
            &fixtures::json("gemini", "embeddings.response.json"),
            &request,
            "gemini",
        )
        .unwrap();
        assert_eq!(parsed["data"][1]["index"], 1);
        assert_eq!(parsed["data"][1]["embedding"], json!([0.5, -0.25]));
    }

    #[test]
    fn maps_errors() {
        let body = fixtures::text("gemini", "error.json");
        let f = super::super::Wire::Gemini.map_error(
            StatusCode::TOO_MANY_REQUESTS,
            body.as_bytes(),
            "gemini",
            None,
        );
        assert_eq!(f.error_type, "rate_limit_exceeded");
        assert_eq!(f.provider_code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        let f = parse_response(
            &serde_json::json!({"promptFeedback": {"blockReason": "SAFETY"}}),
            "gemini",
        )
        .unwrap_err();
        assert_eq!(f.error_type, "content_policy_violation");
    }
}
