//! The built-in offline provider `echo`: answers with the last user message. Token counts
//! are deterministic — one token per whitespace-separated word — so cost and billing can be
//! checked exactly without any network.

use serde_json::{Value, json};

use crate::chat_request::ChatRequest;

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn reply_text(request: &ChatRequest) -> String {
    request
        .conversation()
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(crate::chat_request::Message::text)
        .unwrap_or_default()
}

fn usage(request: &ChatRequest, reply: &str) -> Value {
    let prompt: u64 = request
        .conversation()
        .iter()
        .map(|m| words(&m.text()))
        .sum();
    let completion = words(reply);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    })
}

pub fn complete(request: &ChatRequest, model: &str) -> Value {
    let reply = reply_text(request);
    json!({
        "id": "echo",
        "object": "chat.completion",
        "created": crate::unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply},
            "finish_reason": "stop",
            "logprobs": null
        }],
        "usage": usage(request, &reply),
    })
}

/// The same answer as `complete`, one chunk per word, then the finish and usage chunks.
pub fn chunks(request: &ChatRequest, model: &str) -> Vec<Value> {
    let reply = reply_text(request);
    let created = crate::unix_now();
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "echo", "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]
        })
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let pieces: Vec<&str> = reply.split_whitespace().collect();
    for (i, word) in pieces.iter().enumerate() {
        let text = if i + 1 < pieces.len() {
            format!("{word} ")
        } else {
            (*word).to_owned()
        };
        out.push(chunk(json!({"content": text}), Value::Null));
    }
    out.push(chunk(json!({}), json!("stop")));
    out.push(json!({
        "id": "echo", "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [], "usage": usage(request, &reply)
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_the_last_user_message_with_word_counts() {
        let req = ChatRequest::parse(
            br#"{"model":"switchyard/echo","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there world"}]}"#,
        )
        .unwrap();
        let out = complete(&req, "switchyard/echo");
        assert_eq!(out["choices"][0]["message"]["content"], "hello there world");
        assert_eq!(out["usage"]["prompt_tokens"], 5);
        assert_eq!(out["usage"]["completion_tokens"], 3);

        let chunks = chunks(&req, "switchyard/echo");
        let text: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(text, "hello there world");
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);
    }
}
