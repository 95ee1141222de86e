//! Golden fixtures under `tests/fixtures/<provider>/`, written from the providers' API docs.

use serde_json::Value;

use super::{Completion, StreamParser};

pub fn text(provider: &str, name: &str) -> String {
    // Cargo's run-time value first: with a target directory shared between checkouts, a
    // crate reused from a build elsewhere carries that checkout's compile-time path.
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = format!("{dir}/../tests/fixtures/{provider}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn json(provider: &str, name: &str) -> Value {
    serde_json::from_str(&text(provider, name)).unwrap()
}

/// Drops what differs between runs: `created` timestamps, and generated tool-call ids
/// (`call_<32 hex>`), which become `call_*`.
pub fn scrub(value: Value) -> Value {
    match value {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(k, _)| k != "created")
                .map(|(k, v)| (k, scrub(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(scrub).collect()),
        Value::String(s)
            if s.len() == 37
                && s.starts_with("call_")
                && s[5..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Value::String("call_*".into())
        }
        other => other,
    }
}

/// Feeds an SSE fixture to a parser: the chunks it produced (scrubbed), and whether the
/// stream completed (said so itself, or closed normally afterwards).
pub fn run_stream(parser: &mut dyn StreamParser, provider: &str, name: &str) -> (Vec<Value>, bool) {
    let mut chunks = Vec::new();
    for block in text(provider, name)
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
    {
        let mut event = "";
        let mut data = String::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            }
        }
        let parsed = parser.event(event, &data).unwrap();
        chunks.extend(parsed.chunks.into_iter().map(Completion::into_value));
        if parsed.done {
            return (chunks.into_iter().map(scrub).collect(), true);
        }
    }
    let done = match parser.closed() {
        Ok(more) => {
            chunks.extend(more);
            true
        }
        Err(_) => false,
    };
    (chunks.into_iter().map(scrub).collect(), done)
}
