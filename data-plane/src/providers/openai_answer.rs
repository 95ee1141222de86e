//! A whole answer (or one streamed chunk, the same shape with `delta` for `message`) from
//! an OpenAI-format provider, read once and kept as the provider's bytes: the members are located (not parsed into a `serde_json::Value` tree), so an
//! OpenAI-format client gets those bytes with Switchyard's id, model, provider and usage
//! written in place and the finish reasons normalised. Parsing into a tree, editing it and
//! re-serialising it cost ~69k instructions per request at c=1 (callgrind; method in
//! `tests/bench/README.md`), the largest single part of the gateway's own work.
//!
//! `read` returns `None` for anything this path does not rewrite itself — an error
//! reported inside the answer, a body that is not an object, duplicate or escaped member
//! names — and the caller parses the body into a `Value`, which handles every case.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use switchyard_proto::UsageDims;

use super::json_scan::{self, Member, Scanner};
use super::{openai, usage_scan};

/// An answer's members located in one pass: its top level, and the objects of its
/// `choices` (rather than scanning `choices` once as a whole and again member by member).
struct Located {
    members: Vec<Member>,
    /// `None`: no `choices`; `Some(None)`: `null`; else the choices' members.
    choices: Option<Option<Vec<Vec<Member>>>>,
    /// The counts of a `usage` object, read on the way (`usage_scan`).
    usage: Option<UsageDims>,
}

/// `None` unless `text` is one JSON object with unescaped, unique member names whose
/// `choices`, if present, is `null` or an array of such objects.
fn locate(text: &str) -> Option<Located> {
    let bytes = text.as_bytes();
    let mut scanner = Scanner::new(text);
    let mut members: Vec<Member> = Vec::with_capacity(12);
    let mut choices = None;
    let mut usage = None;
    scanner.object(0, |s, key| {
        let name = &bytes[key.clone()];
        if members.iter().any(|m| &bytes[m.key.clone()] == name) {
            return None;
        }
        let value = if name == b"choices" && s.peek()? == b'[' {
            let mut list = Vec::new();
            let range = s.array(1, |s| {
                list.push(json_scan::members(s, 2)?);
                Some(())
            })?;
            choices = Some(Some(list));
            // Written from its located objects, never copied.
            range.start..range.start
        } else if name == b"usage" && s.peek()? == b'{' {
            let (range, counts) = usage_scan::scan(s, 1, text)?;
            usage = counts;
            range
        } else {
            let range = s.value(1)?;
            if name == b"choices" {
                if &bytes[range.clone()] != b"null" {
                    return None;
                }
                choices = Some(None);
            }
            range
        };
        members.push(Member { key, value });
        Some(())
    })?;
    scanner.at_end().then_some(Located {
        members,
        choices,
        usage,
    })
}

/// A member's value as text; `None` when absent.
fn get<'t>(text: &'t str, members: &[Member], key: &str) -> Option<&'t str> {
    // Names compared as bytes: slicing a `str` checks character boundaries each time.
    let bytes = text.as_bytes();
    members
        .iter()
        .find(|m| bytes.get(m.key.clone()) == Some(key.as_bytes()))
        .and_then(|m| text.get(m.value.clone()))
}

/// Present with a value other than `null`.
fn has(text: &str, members: &[Member], key: &str) -> bool {
    get(text, members, key).is_some_and(|v| v != "null")
}

/// Members of an object given as text, by name; `None` for each when it is not an object.
fn members_of<'t, const N: usize>(object: &'t str, keys: [&str; N]) -> [Option<&'t str>; N] {
    let members = json_scan::members(&mut Scanner::new(object), 0);
    keys.map(|key| get(object, members.as_deref()?, key))
}

/// Bytes in a string value; 0 for anything else.
fn text_len(raw: Option<&str>) -> usize {
    raw.and_then(string).map_or(0, |s| s.len())
}

/// A string value; `None` for any other JSON type.
fn string(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.starts_with('"') {
        return None;
    }
    // A located string is valid JSON: without escapes, its text is what the quotes hold.
    if raw.len() >= 2 && raw.ends_with('"') && !raw.contains('\\') {
        return raw.get(1..raw.len() - 1).map(Cow::Borrowed);
    }
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    serde_json::from_str::<Text<'_>>(raw).ok().map(|t| t.0)
}

/// One choice: its members, and its finish reason as the provider gave it.
#[derive(Debug, Clone)]
struct Choice {
    members: Vec<Member>,
    /// `native_finish_reason` if the provider set one, else `finish_reason`; `None` while
    /// the choice has not finished.
    native: Option<String>,
}

/// What Switchyard writes into an answer: its generation id and the model's and provider's
/// names, JSON-encoded once (a stream writes the same ones into every chunk), and how
/// finish reasons are normalised.
pub struct Stamp {
    id: Vec<u8>,
    model: Vec<u8>,
    provider: Vec<u8>,
    /// OpenRouter's normalised finish reason for a provider's own.
    normalize: fn(&str) -> &'static str,
}

impl Stamp {
    pub fn new(id: &str, model: &str, provider: &str, normalize: fn(&str) -> &'static str) -> Self {
        let encoded = |text: &str| {
            let mut out = Vec::with_capacity(text.len() + 2);
            // A string into a `Vec`: cannot fail.
            let _ = serde_json::to_writer(&mut out, text);
            out
        };
        Self {
            id: encoded(id),
            model: encoded(model),
            provider: encoded(provider),
            normalize,
        }
    }
}

/// An OpenAI-format answer, located but not parsed into a tree.
#[derive(Debug, Clone)]
pub struct OpenAiAnswer {
    body: Bytes,
    members: Vec<Member>,
    /// `None` when `choices` is absent, `null` or empty: it is then written as it came.
    choices: Option<Vec<Choice>>,
    /// What an absent, `null` or empty `choices` is written as.
    no_choices: &'static [u8],
    /// The provider's `id`, empty when it sent none.
    pub upstream_id: String,
    /// The usage the provider reported, if it did.
    pub usage: Option<UsageDims>,
    /// The first choice's native finish reason (empty when it has none).
    pub native_finish: String,
}

impl OpenAiAnswer {
    /// `None` when the answer needs the `Value` path (see the module docs).
    pub fn read(body: Bytes) -> Option<Self> {
        let text = std::str::from_utf8(&body).ok()?;
        let Located {
            members,
            choices,
            usage,
        } = locate(text)?;
        if has(text, &members, "error") {
            return None;
        }
        let (choices, no_choices) = match choices {
            Some(Some(choices)) if !choices.is_empty() => (
                Some(
                    choices
                        .into_iter()
                        .map(|c| Choice::read(text, c))
                        .collect::<Option<Vec<_>>>()?,
                ),
                &b""[..],
            ),
            Some(Some(_)) => (None, &b"[]"[..]),
            _ => (None, &b"null"[..]),
        };
        let usage = usage.or_else(|| get(text, &members, "usage").and_then(read_usage));
        let upstream_id = get(text, &members, "id")
            .and_then(string)
            .map(Cow::into_owned)
            .unwrap_or_default();
        let native_finish = choices
            .iter()
            .flatten()
            .next()
            .and_then(|c| c.native.clone())
            .unwrap_or_default();
        Some(Self {
            body,
            members,
            choices,
            no_choices,
            upstream_id,
            usage,
            native_finish,
        })
    }

    /// The answer as a tree, for the paths that need one.
    pub fn into_value(self) -> Value {
        // `read` parsed these bytes as a JSON object.
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Bytes of text in the first choice's message, for estimating usage the provider did
    /// not report.
    pub fn content_chars(&self) -> usize {
        self.choices
            .iter()
            .flatten()
            .next()
            .and_then(|c| self.value_of(&c.members, b"message"))
            .map_or(0, |message| {
                let [content] = members_of(message, ["content"]);
                text_len(content)
            })
    }

    /// The client's answer: the provider's members in order, with `id`, `model`,
    /// `provider` and `usage` replaced and each choice's finish reason normalised. `usage`
    /// is the client's usage object as JSON text; `None` drops the provider's (a streamed
    /// chunk's usage is reported once, at the end, with the cost).
    pub fn write(&self, stamp: &Stamp, usage: Option<&[u8]>) -> Vec<u8> {
        let mut out = Writer {
            body: &self.body,
            out: Vec::with_capacity(self.body.len() + 512),
        };
        out.open();
        out.encoded(b"id", &stamp.id);
        for m in &self.members {
            match (&self.body[m.key.clone()], &self.choices) {
                (b"id" | b"model" | b"provider" | b"usage", _) => {}
                (b"choices", Some(choices)) => {
                    out.key(b"choices");
                    out.out.push(b'[');
                    for (i, choice) in choices.iter().enumerate() {
                        if i > 0 {
                            out.out.push(b',');
                        }
                        choice.write(&mut out, stamp.normalize);
                    }
                    out.out.push(b']');
                }
                (b"choices", None) => {
                    out.key(b"choices");
                    out.out.extend_from_slice(self.no_choices);
                }
                _ => out.copy(m),
            }
        }
        out.encoded(b"model", &stamp.model);
        out.encoded(b"provider", &stamp.provider);
        if let Some(usage) = usage {
            out.encoded(b"usage", usage);
        }
        out.out.push(b'}');
        out.out
    }

    /// Whether `choices` holds any: a chunk without is a usage-only chunk.
    pub fn has_choices(&self) -> bool {
        self.choices.is_some()
    }

    /// The native finish reasons of the choices that finished, in order.
    pub fn finishes(&self) -> impl Iterator<Item = &str> {
        self.choices
            .iter()
            .flatten()
            .filter_map(|c| c.native.as_deref())
    }

    /// A top-level member parsed on its own; `None` when absent.
    pub fn member(&self, name: &str) -> Option<Value> {
        let m = self
            .members
            .iter()
            .find(|m| &self.body[m.key.clone()] == name.as_bytes())?;
        serde_json::from_str(self.text(&m.value)?).ok()
    }

    /// Bytes of generated output in a chunk's deltas (text, reasoning, tool-call
    /// arguments), for estimating usage the provider never reports.
    pub fn delta_chars(&self) -> usize {
        #[derive(Deserialize)]
        struct Call<'a> {
            #[serde(borrow)]
            function: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Function<'a> {
            #[serde(borrow)]
            arguments: Option<&'a RawValue>,
        }
        let arguments = |raw: &RawValue| {
            serde_json::from_str::<Call<'_>>(raw.get())
                .ok()
                .and_then(|c| c.function)
                .and_then(|f| serde_json::from_str::<Function<'_>>(f.get()).ok())
                .map_or(0, |f| text_len(f.arguments.map(RawValue::get)))
        };
        self.choices
            .iter()
            .flatten()
            .filter_map(|c| self.value_of(&c.members, b"delta"))
            .map(|delta| {
                let [content, reasoning, tool_calls] =
                    members_of(delta, ["content", "reasoning", "tool_calls"]);
                let calls = tool_calls
                    .and_then(|raw| serde_json::from_str::<Vec<&RawValue>>(raw).ok())
                    .map_or(0, |calls| calls.into_iter().map(arguments).sum());
                text_len(content) + text_len(reasoning) + calls
            })
            .sum()
    }

    fn value_of(&self, members: &[Member], name: &[u8]) -> Option<&str> {
        members
            .iter()
            .find(|m| &self.body[m.key.clone()] == name)
            .and_then(|m| self.text(&m.value))
    }

    /// A located value as text: `read` validated the whole body, and values end on
    /// character boundaries, so this only fails for a range that is not a value.
    fn text(&self, value: &Range<usize>) -> Option<&str> {
        std::str::from_utf8(self.body.get(value.clone())?).ok()
    }
}

impl Choice {
    fn read(text: &str, members: Vec<Member>) -> Option<Self> {
        if has(text, &members, "error") {
            return None;
        }
        let finish = get(text, &members, "finish_reason").and_then(string);
        if finish.as_deref() == Some("error") {
            return None;
        }
        let native = finish.map(|finish| {
            get(text, &members, "native_finish_reason")
                .and_then(string)
                .unwrap_or(finish)
                .into_owned()
        });
        Some(Self { members, native })
    }

    fn write(&self, out: &mut Writer<'_>, normalize: fn(&str) -> &'static str) {
        out.open();
        for m in &self.members {
            match (&out.body[m.key.clone()], &self.native) {
                (b"native_finish_reason", _) => {}
                (b"finish_reason", Some(native)) => out.member("finish_reason", normalize(native)),
                _ => out.copy(m),
            }
        }
        out.member("native_finish_reason", &self.native);
        out.out.push(b'}');
    }
}

/// A usage object `usage_scan` did not read (unusual, or not an object), the lenient way.
fn read_usage(raw: &str) -> Option<UsageDims> {
    if raw == "null" {
        return None;
    }
    openai::parse_usage(&serde_json::from_str::<Value>(raw).ok()?)
}

/// Writes one object's members, commas included.
struct Writer<'a> {
    body: &'a [u8],
    out: Vec<u8>,
}

impl Writer<'_> {
    fn open(&mut self) {
        self.out.push(b'{');
    }

    /// `key` is a name from the body (unescaped, so it needs no escaping) or a literal.
    fn key(&mut self, key: &[u8]) {
        if self.out.last() != Some(&b'{') {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key);
        self.out.extend_from_slice(b"\":");
    }

    /// A member whose value is already JSON text.
    fn encoded(&mut self, key: &[u8], value: &[u8]) {
        self.key(key);
        self.out.extend_from_slice(value);
    }

    fn copy(&mut self, member: &Member) {
        let (body, key, value) = (self.body, member.key.clone(), member.value.clone());
        self.key(&body[key]);
        self.out.extend_from_slice(&body[value]);
    }

    fn member<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.key(key.as_bytes());
        // Serialising into a `Vec` cannot fail for these types.
        let _ = serde_json::to_writer(&mut self.out, value);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stop_for_all(_: &str) -> &'static str {
        "stop"
    }

    fn read(body: &str) -> Option<OpenAiAnswer> {
        OpenAiAnswer::read(Bytes::copy_from_slice(body.as_bytes()))
    }

    fn written(answer: &OpenAiAnswer, normalize: fn(&str) -> &'static str) -> Value {
        let stamp = Stamp::new("gen-1", "acme/model", "Acme", normalize);
        let out = answer.write(&stamp, Some(br#"{"total_tokens":3}"#));
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn string_values_read_as_serde_reads_them() {
        for raw in [
            r#""""#,
            r#""chatcmpl-9""#,
            r#""hé ☃""#,
            r#""a\"b""#,
            r#""line\nnext \u00e9""#,
        ] {
            let expected: String = serde_json::from_str(raw).unwrap();
            assert_eq!(string(raw).as_deref(), Some(expected.as_str()), "{raw}");
        }
        assert!(matches!(string(r#""plain""#), Some(Cow::Borrowed("plain"))));
        for other in ["null", "12", "{}", r#"["a"]"#] {
            assert_eq!(string(other), None, "{other}");
        }
    }

    #[test]
    fn stamped_names_are_escaped_when_they_need_it() {
        let answer = read(r#"{"choices":[]}"#).unwrap();
        for name in ["plain/model", "quote\"d", "back\\slash", "tab\there", "é ☃"] {
            let out = answer.write(&Stamp::new(name, name, name, stop_for_all), None);
            let out: Value = serde_json::from_slice(&out).expect("valid JSON");
            for member in ["id", "model", "provider"] {
                assert_eq!(out[member], name, "{name:?}");
            }
        }
    }

    #[test]
    fn replaces_identity_and_usage_and_keeps_everything_else() {
        let answer = read(
            r#"{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"gpt-x",
                "system_fingerprint":"fp_\"q\"","choices":[{"index":0,"logprobs":null,
                "message":{"role":"assistant","content":"hé \"there\""},"finish_reason":"length"}],
                "usage":{"prompt_tokens":1,"completion_tokens":2},"service_tier":"default"}"#,
        )
        .expect("fast path");
        assert_eq!(
            written(&answer, |n| if n == "length" { "length" } else { "?" }),
            json!({
                "id": "gen-1", "object": "chat.completion", "created": 1, "model": "acme/model",
                "provider": "Acme", "system_fingerprint": "fp_\"q\"", "service_tier": "default",
                "choices": [{"index": 0, "logprobs": null,
                    "message": {"role": "assistant", "content": "hé \"there\""},
                    "finish_reason": "length", "native_finish_reason": "length"}],
                "usage": {"total_tokens": 3},
            })
        );
    }

    #[test]
    fn reads_what_metering_needs() {
        let answer = read(
            r#"{"id":"up-1","choices":[{"message":{"content":"a\nb"},"finish_reason":"end_turn","native_finish_reason":"end_turn"}],
                "usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2,"cache_write_tokens":5,"cache_write_1h_tokens":1},"completion_tokens_details":{"reasoning_tokens":4}}}"#,
        )
        .unwrap();
        assert_eq!(answer.upstream_id, "up-1");
        assert_eq!(answer.native_finish, "end_turn");
        assert_eq!(answer.content_chars(), 3);
        let usage = answer.usage.unwrap();
        let expected = openai::parse_usage(&json!({"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2,"cache_write_tokens":5,"cache_write_1h_tokens":1},"completion_tokens_details":{"reasoning_tokens":4}})).unwrap();
        assert_eq!(usage, expected, "the same dimensions as the tree path");
        let out = written(&answer, stop_for_all);
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert_eq!(out["choices"][0]["native_finish_reason"], "end_turn");
    }

    #[test]
    fn odd_usage_is_read_leniently_like_the_tree_path() {
        let answer =
            read(r#"{"choices":[],"usage":{"prompt_tokens":2.5,"completion_tokens":4}}"#).unwrap();
        let usage = answer.usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (0, 4));
        assert!(read(r#"{"usage":null}"#).unwrap().usage.is_none());
    }

    #[test]
    fn unfinished_choices_get_a_null_native_reason_and_empty_choices_stay() {
        let answer = read(r#"{"choices":[{"message":{"content":[]}}]}"#).unwrap();
        assert!(answer.usage.is_none());
        assert_eq!(answer.content_chars(), 0);
        assert_eq!(answer.native_finish, "");
        let out = written(&answer, stop_for_all);
        assert_eq!(out["choices"][0]["native_finish_reason"], Value::Null);
        assert!(out["choices"][0].get("finish_reason").is_none());
        let out = written(&read(r#"{"choices":[]}"#).unwrap(), stop_for_all);
        assert_eq!(out["choices"], json!([]));
    }

    #[test]
    fn what_it_does_not_rewrite_goes_to_the_value_path() {
        for body in [
            r#"{"error":{"message":"boom","code":502},"choices":[]}"#,
            r#"{"choices":[{"error":{"message":"x"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"finish_reason":"error"}]}"#,
            r#"{"id":"a","id":"b"}"#,
            r#"{"choices":[{"index":0,"index":1}]}"#,
            r#"{"\u0069d":"escaped name"}"#,
            r#"{"choices":"nope"}"#,
            r#"[1,2]"#,
            r#"{"usage":{"prompt_tokens":1}"#,
        ] {
            assert!(read(body).is_none(), "{body}");
        }
        // An explicit `"error": null` is no error.
        assert!(read(r#"{"error":null,"choices":[]}"#).is_some());
    }

    #[test]
    fn into_value_is_the_body_as_sent() {
        let body = r#"{"id":"x","choices":[],"extra":{"k":[1,2]}}"#;
        assert_eq!(
            read(body).unwrap().into_value(),
            serde_json::from_str::<Value>(body).unwrap()
        );
    }
}
