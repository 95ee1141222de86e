//! Canonical chunks encoded as Anthropic's stream: `message_start`, then content blocks
//! (`content_block_start` / `content_block_delta` with `text_delta`, `thinking_delta`,
//! `signature_delta`, `input_json_delta` / `content_block_stop`), then `message_delta`
//! with the stop reason and usage, and `message_stop`. Keep-alives are `ping` events; an
//! upstream failure after the start is an `error` event and the stream ends there.

use std::collections::HashMap;

use axum::body::Bytes;
use serde_json::{Value, json};

use super::messages::{pack_foreign, stop_reason, usage};
use super::skin::{StreamContext, StreamEncoder, sse_event};
use crate::error::ApiError;
use crate::providers::ANTHROPIC_FORMAT;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    /// A Claude thinking block, by its `reasoning_details` index.
    Thinking(Option<u64>),
    /// A tool_use block, by its position among the tool calls.
    Tool(u64),
}

pub struct MessagesEncoder {
    context: StreamContext,
    /// The open block and its Anthropic index.
    open: Option<(Open, u64)>,
    next_index: u64,
    /// Anthropic block index of each tool call, for argument fragments.
    tools: HashMap<u64, u64>,
    stop_reason: &'static str,
    failed: bool,
}

impl MessagesEncoder {
    pub fn new(context: StreamContext) -> Self {
        Self {
            context,
            open: None,
            next_index: 0,
            tools: HashMap::new(),
            stop_reason: "end_turn",
            failed: false,
        }
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((_, index)) = self.open.take() {
            out.push(sse_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    /// Makes `kind` the open block, starting it with `start` if it is not open already.
    fn ensure(&mut self, kind: Open, start: Value, out: &mut Vec<Bytes>) -> u64 {
        if let Some((open, index)) = self.open
            && open == kind
        {
            return index;
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        out.push(sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        self.open = Some((kind, index));
        index
    }

    fn delta(out: &mut Vec<Bytes>, index: u64, delta: Value) {
        out.push(sse_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
    }

    /// A block that is complete in one piece.
    fn whole(&mut self, block: Value, out: &mut Vec<Bytes>) {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        out.push(sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        out.push(sse_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }

    fn thinking_text(&mut self, key: Option<u64>, text: &str, out: &mut Vec<Bytes>) {
        let start = json!({"type": "thinking", "thinking": "", "signature": ""});
        let index = self.ensure(Open::Thinking(key), start, out);
        if !text.is_empty() {
            Self::delta(
                out,
                index,
                json!({"type": "thinking_delta", "thinking": text}),
            );
        }
    }

    fn reasoning_detail(&mut self, detail: &Value, out: &mut Vec<Bytes>) {
        let claude = detail
            .get("format")
            .and_then(Value::as_str)
            .is_none_or(|f| f == ANTHROPIC_FORMAT);
        let text = detail.get("text").and_then(Value::as_str).unwrap_or("");
        if !claude {
            self.whole(
                json!({"type": "thinking", "thinking": text, "signature": pack_foreign(detail)}),
                out,
            );
            return;
        }
        match detail.get("type").and_then(Value::as_str) {
            Some("reasoning.encrypted") => self.whole(
                json!({"type": "redacted_thinking", "data": detail.get("data").cloned().unwrap_or(json!(""))}),
                out,
            ),
            Some("reasoning.text" | "reasoning.summary") => {
                let key = detail.get("index").and_then(Value::as_u64);
                let text = detail
                    .get("summary")
                    .and_then(Value::as_str)
                    .unwrap_or(text);
                self.thinking_text(key, text, out);
                if let Some(sig) = detail
                    .get("signature")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    && let Some((_, index)) = self.open
                {
                    Self::delta(out, index, json!({"type": "signature_delta", "signature": sig}));
                }
            }
            _ => {}
        }
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<Bytes>) {
        let position = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let id = call.get("id").and_then(Value::as_str);
        if (id.is_some() || name.is_some()) && !self.tools.contains_key(&position) {
            let start = json!({"type": "tool_use", "id": id.unwrap_or(""), "name": name.unwrap_or(""), "input": {}});
            let index = self.ensure(Open::Tool(position), start, out);
            self.tools.insert(position, index);
        }
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty());
        if let (Some(arguments), Some(index)) = (arguments, self.tools.get(&position)) {
            Self::delta(
                out,
                *index,
                json!({"type": "input_json_delta", "partial_json": arguments}),
            );
        }
    }
}

impl StreamEncoder for MessagesEncoder {
    fn keepalive(&self) -> Bytes {
        Bytes::from_static(b"event: ping\ndata: {\"type\":\"ping\"}\n\n")
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        out.push(sse_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.context.id, "type": "message", "role": "assistant", "model": self.context.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        ));
    }

    fn chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        match delta.get("reasoning_details").and_then(Value::as_array) {
            Some(details) => {
                for detail in details {
                    self.reasoning_detail(detail, out);
                }
            }
            None => {
                if let Some(r) = delta
                    .get("reasoning")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                {
                    self.thinking_text(None, r, out);
                }
            }
        }
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let index = self.ensure(Open::Text, json!({"type": "text", "text": ""}), out);
            Self::delta(out, index, json!({"type": "text_delta", "text": text}));
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.tool_call(call, out);
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            let native = choice
                .get("native_finish_reason")
                .and_then(Value::as_str)
                .unwrap_or("");
            self.stop_reason = stop_reason(finish, native);
        }
    }

    fn error(&mut self, error: &ApiError, _native_finish_reason: &str, out: &mut Vec<Bytes>) {
        self.failed = true;
        out.push(sse_event("error", &super::messages::error_body(error)));
    }

    fn usage(&mut self, client_usage: &Value, out: &mut Vec<Bytes>) {
        if self.failed {
            return;
        }
        self.close(out);
        out.push(sse_event(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
                "usage": usage(client_usage)}),
        ));
        out.push(sse_event("message_stop", &json!({"type": "message_stop"})));
    }

    fn end(&mut self, _out: &mut Vec<Bytes>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(frames: &[Bytes]) -> Vec<(String, Value)> {
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).unwrap();
                let mut lines = text.lines();
                let event = lines.next().unwrap().strip_prefix("event: ").unwrap();
                let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                (event.to_owned(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    fn chunk(delta: Value, finish: Option<(&str, &str)>) -> Value {
        let (f, n) = finish.map_or((Value::Null, Value::Null), |(f, n)| (json!(f), json!(n)));
        json!({"choices": [{"index": 0, "delta": delta, "finish_reason": f, "native_finish_reason": n}]})
    }

    #[test]
    fn encodes_thinking_text_and_tools_as_anthropic_blocks() {
        let mut enc = MessagesEncoder::new(StreamContext {
            id: "gen-1".into(),
            model: "acme/c".into(),
            provider: "P".into(),
        });
        let mut out = Vec::new();
        enc.start(&mut out);
        let d = |t: &str, sig: Option<&str>| {
            let mut v = json!({"type": "reasoning.text", "text": t, "format": ANTHROPIC_FORMAT, "index": 0});
            if let Some(s) = sig {
                v["signature"] = json!(s);
            }
            v
        };
        enc.chunk(
            &chunk(json!({"role": "assistant", "content": ""}), None),
            &mut out,
        );
        enc.chunk(
            &chunk(
                json!({"reasoning": "hm", "reasoning_details": [d("hm", None)]}),
                None,
            ),
            &mut out,
        );
        enc.chunk(
            &chunk(json!({"reasoning_details": [d("", Some("sig"))]}), None),
            &mut out,
        );
        enc.chunk(&chunk(json!({"content": "Hi"}), None), &mut out);
        enc.chunk(&chunk(json!({"tool_calls": [{"index": 0, "id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}]}), None), &mut out);
        enc.chunk(
            &chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}]}),
                None,
            ),
            &mut out,
        );
        enc.chunk(
            &chunk(json!({}), Some(("tool_calls", "tool_calls"))),
            &mut out,
        );
        enc.usage(
            &json!({"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.1}),
            &mut out,
        );
        enc.end(&mut out);
        let ev = events(&out);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[0].1["message"]["id"], "gen-1");
        assert_eq!(
            ev[2].1["delta"],
            json!({"type": "thinking_delta", "thinking": "hm"})
        );
        assert_eq!(
            ev[3].1["delta"],
            json!({"type": "signature_delta", "signature": "sig"})
        );
        assert_eq!(ev[6].1["delta"]["text"], "Hi");
        assert_eq!(ev[8].1["content_block"]["name"], "f");
        assert_eq!(ev[9].1["delta"]["partial_json"], "{\"a\":1}");
        assert_eq!(ev[9].1["index"], 2);
        assert_eq!(ev[11].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[11].1["usage"]["input_tokens"], 10);
        assert_eq!(ev[11].1["usage"]["output_tokens"], 5);
    }

    #[test]
    fn an_error_ends_the_stream_without_message_stop() {
        let mut enc = MessagesEncoder::new(StreamContext {
            id: "gen-1".into(),
            model: "m".into(),
            provider: "P".into(),
        });
        let mut out = Vec::new();
        enc.chunk(&chunk(json!({"content": "par"}), None), &mut out);
        enc.error(&ApiError::Internal("x".into()), "", &mut out);
        enc.usage(&json!({}), &mut out);
        enc.end(&mut out);
        let ev = events(&out);
        assert_eq!(ev.last().unwrap().0, "error");
        assert_eq!(ev.last().unwrap().1["error"]["type"], "api_error");
        assert!(ev.iter().all(|(n, _)| n != "message_stop"));
    }
}
