//! The chat-completions request as clients send it (OpenAI + OpenRouter fields). Only the
//! fields the gateway acts on are typed; everything else is kept verbatim in `extra` so
//! that nothing a client sends is lost on the way to an OpenAI-format provider.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;

mod scan;

/// OpenRouter-only fields that an OpenAI-format upstream would reject or misread.
const GATEWAY_ONLY_FIELDS: &[&str] = &[
    "models",
    "provider",
    "plugins",
    "transforms",
    "route",
    "usage",
    "session_id",
    "trace",
    "debug",
    "include_reasoning",
    "preset",
];

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Messages>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Set by the gateway (org cache policy), never by clients: adapters for providers that
    /// need explicit prompt-cache breakpoints add them when the request has none.
    #[serde(skip)]
    pub auto_cache_breakpoints: bool,
}

/// The `messages` array, parsed, and as the client wrote it: the written form is what an
/// OpenAI-format provider gets while no message has been changed. Serialising the parsed
/// form again was ~40 % of the instructions of a request with a 45 KB conversation, most of
/// it escaping the prompt's text a second time. Any mutable access drops the written form.
#[derive(Debug, Clone, Default)]
pub struct Messages {
    list: Vec<Message>,
    /// The array's text in the request body (shared, not copied), as `ChatRequest::parse`
    /// found it.
    written: Option<Bytes>,
}

impl Messages {
    /// Whether the array will be sent as the client wrote it.
    pub fn is_verbatim(&self) -> bool {
        self.written.is_some()
    }
}

impl From<Vec<Message>> for Messages {
    fn from(list: Vec<Message>) -> Self {
        Self {
            list,
            written: None,
        }
    }
}

impl std::ops::Deref for Messages {
    type Target = Vec<Message>;

    fn deref(&self) -> &Vec<Message> {
        &self.list
    }
}

impl std::ops::DerefMut for Messages {
    fn deref_mut(&mut self) -> &mut Vec<Message> {
        self.written = None;
        &mut self.list
    }
}

impl<'a> IntoIterator for &'a Messages {
    type Item = &'a Message;
    type IntoIter = std::slice::Iter<'a, Message>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

impl<'a> IntoIterator for &'a mut Messages {
    type Item = &'a mut Message;
    type IntoIter = std::slice::IterMut<'a, Message>;

    fn into_iter(self) -> Self::IntoIter {
        self.written = None;
        self.list.iter_mut()
    }
}

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Message>::deserialize(deserializer).map(Self::from)
    }
}

impl Serialize for Messages {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.written {
            // The tree path (`to_openai_body`): the client's array read as it was sent, so
            // an absent `content` stays absent. `to_openai_bytes` copies the text itself.
            Some(written) => serde_json::from_slice::<Value>(written)
                .map_err(serde::ser::Error::custom)?
                .serialize(serializer),
            None => self.list.serialize(serializer),
        }
    }
}

/// The text of the body's top-level `messages` value, found with the gateway's own scanner:
/// capturing it while serde_json parsed the body skipped the 45 KB conversation's text once
/// more than parsing it does, and copied it (`SCRIPT=post-long` instructions). `None` when the
/// member's name is written with escapes; the parsed list is then what goes upstream.
fn written_messages(body: &Bytes) -> Option<Bytes> {
    let mut scanner = crate::providers::json_scan::Scanner::from_bytes(body);
    let mut found = None;
    // Stops at the array: `None` from the closure ends the scan, the members after it
    // (say, `tools`) need no look.
    let _ = scanner.object(0, |s, key| {
        let value = s.value(1)?;
        if body[key] == *b"messages" {
            found = Some(value);
            return None;
        }
        Some(())
    });
    found.map(|range| body.slice(range))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// The text of a message: a plain string, or the concatenated text parts.
    pub fn text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        }
    }

    /// `text().len()` without building the text, for prompt-size estimates.
    pub fn text_len(&self) -> usize {
        match &self.content {
            Value::String(s) => s.len(),
            Value::Array(parts) => {
                let (bytes, count) = parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .fold((0usize, 0usize), |(bytes, count), t| {
                        (bytes + t.len(), count + 1)
                    });
                // `text` joins the parts with one space.
                bytes + count.saturating_sub(1)
            }
            _ => 0,
        }
    }
}

impl ChatRequest {
    /// `parse_bytes` of a copy of `body`.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        Self::parse_bytes(&Bytes::copy_from_slice(body))
    }

    /// Reads a client's request; its `messages` keep a reference to `body` as their written
    /// form.
    pub fn parse_bytes(body: &Bytes) -> Result<Self, ApiError> {
        // A well-formed request is read from its located members (`scan`), or else straight
        // into the struct by serde_json; only a bad one goes through a `Value`, whose checks
        // name the offending field (see `check_field_types`). Whatever the direct reads
        // accept, those checks accept too.
        if let Some(request) = scan::read(body) {
            request.validate()?;
            return Ok(request);
        }
        if let Ok(mut request) = serde_json::from_slice::<ChatRequest>(body) {
            request.validate()?;
            if let Some(messages) = &mut request.messages {
                messages.written = written_messages(body);
            }
            return Ok(request);
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(describe_json_error(&e)))?;
        Self::from_value(value)
    }

    /// A request another skin translated into the chat shape, checked the same way.
    pub fn from_value(mut value: Value) -> Result<Self, ApiError> {
        check_field_types(&value)?;
        let bad = |e: serde_json::Error| ApiError::BadRequest(describe_json_error(&e));
        // Read from the tree, not through `Messages`' written form: that would print the
        // tree to text only to parse it again (a skin's request has no client text to keep).
        let messages = match value.as_object_mut().and_then(|o| o.remove("messages")) {
            Some(Value::Null) | None => None,
            Some(list) => Some(Messages::from(
                serde_json::from_value::<Vec<Message>>(list).map_err(bad)?,
            )),
        };
        let mut request: ChatRequest = serde_json::from_value(value).map_err(bad)?;
        request.messages = messages;
        request.validate()?;
        Ok(request)
    }

    fn validate(&self) -> Result<(), ApiError> {
        match (&self.messages, &self.prompt) {
            (None, None) => {
                return Err(ApiError::BadRequest(
                    "`messages` or `prompt` is required".into(),
                ));
            }
            (Some(m), _) if m.is_empty() => {
                return Err(ApiError::BadRequest("`messages` must not be empty".into()));
            }
            _ => {}
        }
        for (i, m) in self.messages.iter().flatten().enumerate() {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "messages[{i}].role `{}` is not one of {}",
                    m.role,
                    ROLES.join(", ")
                )));
            }
            if !matches!(m.content, Value::String(_) | Value::Array(_) | Value::Null) {
                return Err(ApiError::BadRequest(format!(
                    "messages[{i}].content must be a string or an array of parts"
                )));
            }
        }
        match self.model.as_deref() {
            None | Some("") => Err(ApiError::BadRequest("`model` is required".into())),
            Some(_) => Ok(()),
        }
    }

    pub fn model(&self) -> &str {
        self.model.as_deref().unwrap_or_default()
    }

    /// The messages, with a legacy `prompt` turned into one user message. Borrowed: a
    /// request reads its conversation several times (routing, limits, sticky key, cache,
    /// upstream body), and each copy used to be a deep one of the whole prompt.
    pub fn conversation(&self) -> Cow<'_, [Message]> {
        match (&self.messages, &self.prompt) {
            (Some(m), _) => Cow::Borrowed(&m.list),
            (None, Some(p)) => Cow::Owned(vec![Message {
                role: "user".into(),
                content: Value::String(p.clone()),
                extra: Map::new(),
            }]),
            (None, None) => Cow::Borrowed(&[]),
        }
    }

    /// The body for an OpenAI-format upstream: gateway-only fields removed, the upstream
    /// model name set, and streamed usage requested so it can be metered.
    pub fn to_openai_body(&self, upstream_model: &str) -> Value {
        serde_json::to_value(self.for_upstream(upstream_model)).unwrap_or(Value::Null)
    }

    /// `to_openai_body` as bytes, without the `Value` in between.
    pub fn to_openai_bytes(&self, upstream_model: &str) -> Vec<u8> {
        // Sized for the conversation up front: grown from serde_json's default capacity, a
        // 45 KB body was copied about twice over on the way (`SCRIPT=post-long` instructions).
        let mut out = Vec::with_capacity(self.upstream_size_hint(upstream_model));
        match self.write_upstream(&mut out, upstream_model) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }

    /// `UpstreamChat` as serde writes it, member by member, with the client's messages
    /// copied as written: serde_json can only splice text in through a `RawValue`, which
    /// would check and copy the whole conversation once more.
    fn write_upstream(&self, out: &mut Vec<u8>, upstream_model: &str) -> serde_json::Result<()> {
        let upstream = self.for_upstream(upstream_model);
        out.extend_from_slice(b"{\"model\":");
        serde_json::to_writer(&mut *out, upstream.model)?;
        out.extend_from_slice(b",\"messages\":");
        match &upstream.messages {
            UpstreamMessages::Client(Messages {
                written: Some(written),
                ..
            }) => out.extend_from_slice(written),
            messages => serde_json::to_writer(&mut *out, messages)?,
        }
        out.extend_from_slice(if upstream.stream {
            b",\"stream\":true"
        } else {
            b",\"stream\":false"
        });
        for (name, count) in [
            ("max_tokens", upstream.max_tokens),
            ("max_completion_tokens", upstream.max_completion_tokens),
        ] {
            if let Some(count) = count {
                out.push(b',');
                serde_json::to_writer(&mut *out, name)?;
                out.push(b':');
                serde_json::to_writer(&mut *out, &count)?;
            }
        }
        upstream.extra.each(|key, value| {
            out.push(b',');
            serde_json::to_writer(&mut *out, key)?;
            out.push(b':');
            serde_json::to_writer(&mut *out, value)
        })?;
        out.push(b'}');
        Ok(())
    }

    /// About the size of the upstream body: the conversation's text plus room for the other
    /// fields (large ones, like `tools`, grow the buffer once or twice).
    fn upstream_size_hint(&self, upstream_model: &str) -> usize {
        const ROOM: usize = 512;
        let conversation = match (&self.messages, &self.prompt) {
            (Some(messages), _) => match &messages.written {
                Some(written) => written.len(),
                None => messages.iter().map(|m| m.text_len() + 64).sum(),
            },
            (None, Some(prompt)) => prompt.len() + 64,
            (None, None) => 0,
        };
        conversation + upstream_model.len() + ROOM
    }

    fn for_upstream<'a>(&'a self, upstream_model: &'a str) -> UpstreamChat<'a> {
        UpstreamChat {
            model: upstream_model,
            messages: match &self.messages {
                Some(messages) => UpstreamMessages::Client(messages),
                None => UpstreamMessages::Prompt(self.conversation()),
            },
            stream: self.stream,
            max_tokens: self.max_tokens,
            max_completion_tokens: self.max_completion_tokens,
            extra: UpstreamExtra {
                fields: &self.extra,
                stream: self.stream,
            },
        }
    }
}

/// The body for an OpenAI-format upstream, borrowing the client's request instead of
/// copying it (the prompt is most of a request).
#[derive(Serialize)]
struct UpstreamChat<'a> {
    model: &'a str,
    messages: UpstreamMessages<'a>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(flatten)]
    extra: UpstreamExtra<'a>,
}

/// The client's messages (verbatim when unchanged), or a legacy prompt as one user message.
#[derive(Serialize)]
#[serde(untagged)]
enum UpstreamMessages<'a> {
    Client(&'a Messages),
    Prompt(Cow<'a, [Message]>),
}

/// The client's other fields without the gateway-only ones; a streamed request also asks
/// for usage in its last chunk (`stream_options.include_usage`), so it can be metered.
struct UpstreamExtra<'a> {
    fields: &'a Map<String, Value>,
    stream: bool,
}

impl UpstreamExtra<'_> {
    /// Calls `member` with each field that goes upstream, in order.
    fn each<E>(&self, mut member: impl FnMut(&str, &Value) -> Result<(), E>) -> Result<(), E> {
        const STREAM_OPTIONS: &str = "stream_options";
        for (key, value) in self.fields {
            if GATEWAY_ONLY_FIELDS.contains(&key.as_str()) {
                continue;
            }
            match value {
                Value::Object(options) if self.stream && key == STREAM_OPTIONS => {
                    let mut options = options.clone();
                    options.insert("include_usage".into(), Value::Bool(true));
                    member(key, &Value::Object(options))?;
                }
                _ => member(key, value)?,
            }
        }
        if self.stream && !self.fields.contains_key(STREAM_OPTIONS) {
            member(STREAM_OPTIONS, &serde_json::json!({"include_usage": true}))?;
        }
        Ok(())
    }
}

impl Serialize for UpstreamExtra<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        self.each(|key, value| map.serialize_entry(key, value))?;
        map.end()
    }
}

/// Flattened structs lose serde's field paths, so the typed fields are checked first and
/// errors name the field.
fn check_field_types(value: &Value) -> Result<(), ApiError> {
    let Some(object) = value.as_object() else {
        return Err(ApiError::BadRequest(
            "request body must be a JSON object".into(),
        ));
    };
    let expect = |field: &str, ok: fn(&Value) -> bool, what: &str| match object.get(field) {
        Some(v) if !v.is_null() && !ok(v) => {
            Err(ApiError::BadRequest(format!("`{field}` must be {what}")))
        }
        _ => Ok(()),
    };
    expect("model", Value::is_string, "a string")?;
    expect("messages", Value::is_array, "an array of messages")?;
    expect("prompt", Value::is_string, "a string")?;
    expect("stream", Value::is_boolean, "true or false")?;
    expect("max_tokens", Value::is_u64, "a non-negative integer")?;
    expect(
        "max_completion_tokens",
        Value::is_u64,
        "a non-negative integer",
    )?;
    if let Some(Value::Array(messages)) = object.get("messages") {
        for (i, m) in messages.iter().enumerate() {
            if !m.get("role").is_some_and(Value::is_string) {
                return Err(ApiError::BadRequest(format!(
                    "messages[{i}] needs a string `role`"
                )));
            }
        }
    }
    Ok(())
}

/// serde_json's messages already name the field and position; add what kind of problem it is.
pub fn describe_json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof => format!("request body is not valid JSON: {err}"),
        Category::Data => format!("request body has an invalid field: {err}"),
        Category::Io => format!("could not read the request body: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_fields_and_strips_gateway_ones() {
        let req = ChatRequest::parse(
            br#"{"model":"a/b","messages":[{"role":"user","content":"hi","name":"x"}],"temperature":0.2,"provider":{"order":["x"]},"stream":true}"#,
        )
        .unwrap();
        let body = req.to_openai_body("gpt-4o-mini");
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["messages"][0]["name"], "x");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(body.get("provider").is_none());
    }

    #[test]
    fn prompt_becomes_a_user_message() {
        let req = ChatRequest::parse(br#"{"model":"a/b","prompt":"hello"}"#).unwrap();
        let body = req.to_openai_body("m");
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["messages"][0]["content"], "hello");
        assert!(body.get("prompt").is_none());
    }

    #[test]
    fn stream_options_ask_for_usage_and_keep_the_clients_own() {
        let upstream = |body: &[u8]| -> Value {
            let req = ChatRequest::parse(body).unwrap();
            let bytes = req.to_openai_bytes("up");
            // Bytes and tree are the same body.
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body, req.to_openai_body("up"));
            body
        };
        let body = upstream(
            br#"{"model":"a/b","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_obfuscation":false},"session_id":"s","usage":{"include":true},"max_tokens":7}"#,
        );
        assert_eq!(
            body["stream_options"],
            serde_json::json!({"include_obfuscation": false, "include_usage": true})
        );
        assert_eq!(body["max_tokens"], 7);
        assert!(body.get("session_id").is_none() && body.get("usage").is_none());
        assert!(body.get("max_completion_tokens").is_none());
        // Not streamed: the client's options go as they came, nothing is added.
        let body = upstream(
            br#"{"model":"a/b","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":false}}"#,
        );
        assert_eq!(body["stream"], false);
        assert_eq!(
            body["stream_options"],
            serde_json::json!({"include_usage": false})
        );
        let body = upstream(br#"{"model":"a/b","messages":[{"role":"user","content":"hi"}]}"#);
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn unchanged_messages_go_upstream_as_the_client_wrote_them() {
        let written = r#"[ {"content":"caf\u00e9 \"x\"","role":"user", "name" : "n"} ]"#;
        let body = format!(r#"{{"model":"a/b","messages":{written},"temperature":0.5}}"#);
        let req = ChatRequest::parse(body.as_bytes()).unwrap();
        assert!(req.messages.as_ref().unwrap().is_verbatim());
        assert_eq!(req.conversation()[0].text(), "café \"x\"");
        let bytes = String::from_utf8(req.to_openai_bytes("up")).unwrap();
        assert!(
            bytes.contains(&format!(r#""messages":{written}"#)),
            "{bytes}"
        );
        let tree: Value = serde_json::from_str(&bytes).unwrap();
        assert_eq!(tree, req.to_openai_body("up"));
        assert_eq!(tree["messages"][0]["name"], "n");

        // A change to any message (guardrails redact in place) drops the written form.
        let mut changed = req.clone();
        for message in changed.messages.iter_mut().flatten() {
            message.content = Value::String("[redacted]".into());
        }
        assert!(!changed.messages.as_ref().unwrap().is_verbatim());
        let tree: Value = serde_json::from_slice(&changed.to_openai_bytes("up")).unwrap();
        assert_eq!(tree["messages"][0]["content"], "[redacted]");
        assert_eq!(tree["messages"][0]["name"], "n");
        // The original is untouched.
        assert!(req.messages.as_ref().unwrap().is_verbatim());
    }

    #[test]
    fn upstream_bytes_are_the_upstream_tree_written_out() {
        let bodies = [
            r#"{"model":"a/b","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"temperature":0.5,"messages" : [ {"role":"user","content":"caf\u00e9"} ] ,"model":"a/b","stream":true,"tools":[{"type":"function"}]}"#,
            r#"{"model":"a/b","m\u0065ssages":[{"role":"user","content":"escaped name"}],"max_tokens":3,"max_completion_tokens":4}"#,
            r#"{"model":"a/b","messages":[{"role":"assistant","tool_calls":[]}],"stream":true,"stream_options":{"x":1},"provider":{"order":["p"]}}"#,
            r#"{"model":"a/b","prompt":"legacy \"quoted\""}"#,
            r#"{"model":"a/b","messages":[{"role":"user","content":[{"type":"text","text":"t"}]}],"user":"u","n":1e2}"#,
        ];
        for body in bodies {
            let request = ChatRequest::parse(body.as_bytes()).unwrap();
            let bytes = request.to_openai_bytes("up/model");
            let tree: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{body}: {e}: {}", String::from_utf8_lossy(&bytes)));
            assert_eq!(tree, request.to_openai_body("up/model"), "{body}");
            assert_eq!(tree["model"], "up/model");
            // The client's array goes as written, spaces and escapes included, unless its
            // name was escaped (then the parsed list goes, which reads the same).
            if let Some(messages) = &request.messages {
                let text = String::from_utf8(bytes.clone()).unwrap();
                if body.contains(r#""messages""#) {
                    assert!(messages.is_verbatim(), "{body}");
                    let start = body.find('[').unwrap();
                    let array = &body[start..=start + body[start..].find(']').unwrap()];
                    assert!(text.contains(array), "{text} lacks {array}");
                } else {
                    assert!(!messages.is_verbatim(), "{body}");
                }
            }
        }
    }

    #[test]
    fn requests_other_skins_build_from_a_tree_read_the_same() {
        let req = ChatRequest::from_value(serde_json::json!({
            "model": "a/b",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
        }))
        .unwrap();
        assert_eq!(req.conversation().len(), 2);
        assert!(!req.messages.as_ref().unwrap().is_verbatim());
        let tree: Value = serde_json::from_slice(&req.to_openai_bytes("up")).unwrap();
        assert_eq!(tree["messages"][1]["content"], "hi");
        let err = ChatRequest::from_value(serde_json::json!({
            "model": "a/b", "messages": [{"role": 7, "content": "hi"}],
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("messages[0]"), "{err}");
    }

    #[test]
    fn text_len_is_the_length_of_text() {
        let messages: Vec<Message> = serde_json::from_value(serde_json::json!([
            {"role": "user", "content": "héllo"},
            {"role": "user", "content": [
                {"type": "text", "text": "one"},
                {"type": "image_url", "image_url": {"url": "data:,"}},
                {"type": "text", "text": "two three"}
            ]},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]},
            {"role": "assistant", "content": null}
        ]))
        .unwrap();
        let lens: Vec<usize> = messages.iter().map(Message::text_len).collect();
        assert_eq!(lens, [6, 13, 0, 0]);
        for m in &messages {
            assert_eq!(m.text_len(), m.text().len());
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let err = ChatRequest::parse(b"{\"model\": ").unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
        let err = ChatRequest::parse(br#"{"model":"a/b","messages":"hi"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("messages"), "{err}");
        let err = ChatRequest::parse(br#"{"model":"a/b"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`messages` or `prompt`"), "{err}");
        let err = ChatRequest::parse(br#"{"messages":[{"role":"user","content":"x"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`model`"), "{err}");
        let err =
            ChatRequest::parse(br#"{"model":"a","messages":[{"role":"robot","content":"x"}]}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("messages[0].role"), "{err}");
    }
}
