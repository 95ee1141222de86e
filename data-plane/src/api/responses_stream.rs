//! Canonical chunks encoded as OpenAI Responses stream events: `response.created`,
//! `response.in_progress`, then per output item `response.output_item.added`, its deltas
//! (`response.reasoning_summary_text.delta`, `response.output_text.delta`,
//! `response.function_call_arguments.delta`) and `…done` events, then
//! `response.completed` (or `response.incomplete`) with usage. An upstream failure after
//! the start is `response.failed`, and the stream ends there.

use std::collections::HashMap;

use axum::body::Bytes;
use serde_json::{Value, json};

use super::responses::{
    function_call_item, message_item, reasoning_item, response_object, status_of, usage,
};
use super::skin::{StreamContext, StreamEncoder, sse_event};
use crate::error::ApiError;

enum Open {
    Reasoning {
        summary: String,
        details: Vec<Value>,
    },
    Message {
        text: String,
    },
    /// A function call, by its position among the tool calls.
    Call {
        position: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

pub struct ResponsesEncoder {
    context: StreamContext,
    /// `gen-` stripped, for item ids.
    short: String,
    sequence: u64,
    output: Vec<Value>,
    open: Option<Open>,
    /// Output index of each tool call.
    calls: HashMap<u64, usize>,
    finish: String,
    failed: bool,
}

impl ResponsesEncoder {
    pub fn new(context: StreamContext) -> Self {
        let short = context
            .id
            .strip_prefix("gen-")
            .unwrap_or(&context.id)
            .to_owned();
        Self {
            context,
            short,
            sequence: 0,
            output: Vec::new(),
            open: None,
            calls: HashMap::new(),
            finish: "stop".into(),
            failed: false,
        }
    }

    fn emit(&mut self, out: &mut Vec<Bytes>, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.push(sse_event(kind, &data));
    }

    /// Output index of the open item (it is appended to `output` when closed).
    fn index(&self) -> usize {
        self.output.len()
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let index = self.index();
        let item = match open {
            Open::Reasoning { summary, details } => {
                let item_id = format!("rs_{}", self.short);
                let part = json!({"type": "summary_text", "text": summary});
                self.emit(out, "response.reasoning_summary_text.done", json!({"item_id": item_id, "output_index": index, "summary_index": 0, "text": summary}));
                self.emit(out, "response.reasoning_summary_part.done", json!({"item_id": item_id, "output_index": index, "summary_index": 0, "part": part}));
                reasoning_item(&self.short, &summary, &details)
            }
            Open::Message { text } => {
                let item_id = format!("msg_{}", self.short);
                let part =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.emit(out, "response.output_text.done", json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}));
                self.emit(out, "response.content_part.done", json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": part}));
                message_item(&self.short, &text, "completed")
            }
            Open::Call {
                call_id,
                name,
                arguments,
                ..
            } => {
                self.emit(out, "response.function_call_arguments.done", json!({"item_id": format!("fc_{call_id}"), "output_index": index, "arguments": arguments}));
                function_call_item(&call_id, &name, &arguments, "completed")
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        self.output.push(item);
    }

    fn reasoning(&mut self, text: &str, details: &[Value], out: &mut Vec<Bytes>) {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close(out);
            let index = self.index();
            let item_id = format!("rs_{}", self.short);
            self.emit(out, "response.output_item.added", json!({"output_index": index, "item": {"type": "reasoning", "id": item_id, "summary": []}}));
            self.emit(out, "response.reasoning_summary_part.added", json!({"item_id": item_id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}));
            self.open = Some(Open::Reasoning {
                summary: String::new(),
                details: Vec::new(),
            });
        }
        let index = self.index();
        if let Some(Open::Reasoning {
            summary,
            details: d,
        }) = &mut self.open
        {
            summary.push_str(text);
            d.extend_from_slice(details);
        }
        if !text.is_empty() {
            let item_id = format!("rs_{}", self.short);
            self.emit(out, "response.reasoning_summary_text.delta", json!({"item_id": item_id, "output_index": index, "summary_index": 0, "delta": text}));
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<Bytes>) {
        let item_id = format!("msg_{}", self.short);
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close(out);
            let index = self.index();
            let mut item = message_item(&self.short, "", "in_progress");
            item["content"] = json!([]);
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            self.emit(out, "response.content_part.added", json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}));
            self.open = Some(Open::Message {
                text: String::new(),
            });
        }
        let index = self.index();
        if let Some(Open::Message { text: t }) = &mut self.open {
            t.push_str(text);
        }
        self.emit(out, "response.output_text.delta", json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []}));
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<Bytes>) {
        let position = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        if let Some(id) = call.get("id").and_then(Value::as_str)
            && !self.calls.contains_key(&position)
        {
            self.close(out);
            let index = self.index();
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            self.emit(out, "response.output_item.added", json!({"output_index": index, "item": function_call_item(id, name, "", "in_progress")}));
            self.calls.insert(position, index);
            self.open = Some(Open::Call {
                position,
                call_id: id.to_owned(),
                name: name.to_owned(),
                arguments: String::new(),
            });
        }
        let Some(fragment) = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        let index = self.index();
        if let Some(Open::Call {
            position: p,
            call_id,
            arguments,
            ..
        }) = &mut self.open
            && *p == position
        {
            arguments.push_str(fragment);
            let item_id = format!("fc_{call_id}");
            self.emit(
                out,
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": index, "delta": fragment}),
            );
        }
    }
}

impl StreamEncoder for ResponsesEncoder {
    fn keepalive(&self) -> Bytes {
        Bytes::from_static(b": SWITCHYARD PROCESSING\n\n")
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        let response = response_object(&self.context, "in_progress", Vec::new(), Value::Null);
        self.emit(
            out,
            "response.created",
            json!({"response": response.clone()}),
        );
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        let reasoning = delta
            .get("reasoning")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let details = delta
            .get("reasoning_details")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !reasoning.is_empty() || !details.is_empty() {
            self.reasoning(reasoning, details, out);
        }
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text(text, out);
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
            finish.clone_into(&mut self.finish);
        }
    }

    fn error(&mut self, error: &ApiError, _native_finish_reason: &str, out: &mut Vec<Bytes>) {
        self.failed = true;
        let code = match error.error_type() {
            "rate_limit_exceeded" => "rate_limit_exceeded",
            "invalid_prompt" => "invalid_prompt",
            _ => "server_error",
        };
        let mut response = response_object(
            &self.context,
            "failed",
            std::mem::take(&mut self.output),
            Value::Null,
        );
        response["error"] = json!({"code": code, "message": error.error_object()["message"]});
        response["error_type"] = json!(error.error_type());
        self.emit(out, "response.failed", json!({"response": response}));
    }

    fn usage(&mut self, client_usage: &Value, out: &mut Vec<Bytes>) {
        if self.failed {
            return;
        }
        self.close(out);
        let status = status_of(&self.finish);
        let response = response_object(
            &self.context,
            status,
            std::mem::take(&mut self.output),
            usage(client_usage),
        );
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(out, kind, json!({"response": response}));
    }

    fn end(&mut self, _out: &mut Vec<Bytes>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_items_as_responses_events() {
        let mut enc = ResponsesEncoder::new(StreamContext {
            id: "gen-1".into(),
            model: "a/b".into(),
            provider: "P".into(),
        });
        let mut out = Vec::new();
        enc.start(&mut out);
        let chunk = |delta: Value, finish: Value| json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        enc.chunk(&chunk(json!({"reasoning": "hm", "reasoning_details": [{"type": "reasoning.text", "text": "hm"}]}), Value::Null), &mut out);
        enc.chunk(&chunk(json!({"content": "Hi"}), Value::Null), &mut out);
        enc.chunk(&chunk(json!({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}), Value::Null), &mut out);
        enc.chunk(
            &chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                json!("tool_calls"),
            ),
            &mut out,
        );
        enc.usage(
            &json!({"prompt_tokens": 3, "completion_tokens": 2, "cost": 0.0}),
            &mut out,
        );
        let events: Vec<Value> = out
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).unwrap();
                serde_json::from_str(text.lines().nth(1).unwrap().strip_prefix("data: ").unwrap())
                    .unwrap()
            })
            .collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"response.created"));
        assert_eq!(kinds.last(), Some(&"response.completed"));
        assert!(
            events
                .iter()
                .enumerate()
                .all(|(i, e)| e["sequence_number"] == i)
        );
        let done = events.last().unwrap();
        let output = done["response"]["output"].as_array().unwrap();
        assert_eq!(output.len(), 3);
        assert_eq!(output[0]["type"], "reasoning");
        assert_eq!(output[1]["content"][0]["text"], "Hi");
        assert_eq!(output[2]["arguments"], "{\"a\":1}");
        assert_eq!(done["response"]["usage"]["input_tokens"], 3);
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == "response.output_item.added")
                .count(),
            3
        );
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == "response.output_item.done")
                .count(),
            3
        );
    }
}
