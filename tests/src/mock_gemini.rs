//! A mock Google Gemini provider that speaks the `generativelanguage` v1beta wire format:
//! `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`
//! (every SSE event a whole `GenerateContentResponse`, no terminator), `usageMetadata`,
//! error bodies `{"error":{"code","message","status"}}`, and the `x-goog-api-key` check.
//! Every request is recorded before it is answered.
//!
//! The reply is `"mock reply to: <words>"` (the words of the last user turn's text),
//! followed by ` [N images]` when the request carried inline or file data.
//! `promptTokenCount` counts the words of all text (system instruction included),
//! `candidatesTokenCount` the reply's words.
//!
//! | model contains | behaviour |
//! |---|---|
//! | `think` | a thought part (`"mock thinking"`, 2 `thoughtsTokenCount`) comes first, and the first answer part carries `thoughtSignature: "sig-gemini-<n>"`; a request with a model `functionCall` part lacking such a signature is refused with 400, as Gemini 3 does |
//! | `tool` | when the last user turn has no `functionResponse`, the answer is a `functionCall` of the first declared function with args `{"q": <words>}`; otherwise the reply is `tool said: <response JSON>` |
//! | `cache` | 100 more prompt tokens, reported as `cachedContentTokenCount` |
//! | `error-500` / `error-429` / `error-400` / `overloaded` | 500 `INTERNAL` / 429 `RESOURCE_EXHAUSTED` / 400 `INVALID_ARGUMENT` / 503 `UNAVAILABLE` |
//! | `cut-stream` | streaming: one text event, then the connection is aborted |
//! | `stream-error` | streaming: one text event, then an event with an `error` object |
//!
//! `:batchEmbedContents` answers each request with `[word count, character count]`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::mock_anthropic::{Frame, Recorder, Server, serve, sse_response};
pub use crate::mock_openai::{MockConfig, RecordedRequest};

pub struct MockGemini {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Server,
}

struct Shared {
    config: MockConfig,
    recorder: Recorder,
    counter: AtomicU64,
    shutdown: CancellationToken,
}

impl MockGemini {
    pub async fn start(config: MockConfig) -> anyhow::Result<MockGemini> {
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            config,
            recorder: Recorder::default(),
            counter: AtomicU64::new(0),
            shutdown: shutdown.clone(),
        });
        let app = Router::new().fallback(generate).with_state(shared.clone());
        let server = serve(app, shutdown).await?;
        Ok(MockGemini {
            addr: server.addr,
            shared,
            _server: server,
        })
    }

    /// `http://HOST:PORT/v1beta`, the base URL of a `gemini` provider.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1beta", self.addr)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.all()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.recorder.all().pop()
    }
}

fn error(code: u16, status: &str, message: &str) -> Response {
    let http = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        http,
        axum::Json(json!({"error": {"code": code, "message": message, "status": status}})),
    )
        .into_response()
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn parts_text(parts: &Value) -> String {
    parts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn forced_error(model: &str) -> Option<Response> {
    if model.contains("error-500") {
        return Some(error(500, "INTERNAL", "An internal error has occurred."));
    }
    if model.contains("error-429") {
        return Some(error(
            429,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
        ));
    }
    if model.contains("error-400") {
        return Some(error(
            400,
            "INVALID_ARGUMENT",
            "the mock was asked to reject it (model contains error-400)",
        ));
    }
    if model.contains("overloaded") {
        return Some(error(
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
        ));
    }
    None
}

fn unsigned_call(contents: &[Value]) -> bool {
    contents
        .iter()
        .filter(|c| c["role"] == "model")
        .filter_map(|c| c["parts"].as_array())
        .flatten()
        .any(|p| {
            p.get("functionCall").is_some()
                && !p["thoughtSignature"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("sig-gemini-"))
        })
}

/// `batchEmbedContents`: for each request, `[word count, character count]` of its text.
fn embed(shared: &Shared, headers: &HeaderMap, request: &Value) -> Response {
    if let Some(key) = &shared.config.api_key
        && headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str())
    {
        return error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
        );
    }
    let Some(requests) = request["requests"].as_array() else {
        return error(
            400,
            "INVALID_ARGUMENT",
            "* BatchEmbedContentsRequest.requests: is required",
        );
    };
    let embeddings: Vec<Value> = requests
        .iter()
        .map(|r| {
            let text = parts_text(&r["content"]["parts"]);
            json!({"values": [words(&text) as f64, text.len() as f64]})
        })
        .collect();
    axum::Json(json!({"embeddings": embeddings})).into_response()
}

async fn generate(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = shared.recorder.record(&method, &uri, &headers, &body);
    let Some((model, action)) = uri
        .path()
        .strip_prefix("/v1beta/models/")
        .and_then(|rest| rest.split_once(':'))
    else {
        return error(404, "NOT_FOUND", "unknown path");
    };
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        "batchEmbedContents" => return embed(&shared, &headers, &request),
        _ => return error(404, "NOT_FOUND", "unknown method"),
    };
    if stream && uri.query() != Some("alt=sse") {
        return error(
            400,
            "INVALID_ARGUMENT",
            "the mock only streams with alt=sse",
        );
    }
    if let Some(key) = &shared.config.api_key
        && headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str())
    {
        return error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
        );
    }
    let Some(contents) = request["contents"].as_array() else {
        return error(
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified",
        );
    };
    if let Some(response) = forced_error(model) {
        return response;
    }
    let think = model.contains("think");
    if think && unsigned_call(contents) {
        return error(
            400,
            "INVALID_ARGUMENT",
            "Function call is missing a thought_signature in functionCall parts.",
        );
    }
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let last = contents.last().cloned().unwrap_or(Value::Null);
    let response_part = last["parts"]
        .as_array()
        .and_then(|p| p.iter().find_map(|p| p.get("functionResponse")).cloned());
    let last_text = parts_text(&last["parts"]);
    let last_words = last_text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut text = format!("mock reply to: {last_words}");
    let images = contents
        .iter()
        .filter_map(|c| c["parts"].as_array())
        .flatten()
        .filter(|p| p.get("inlineData").is_some() || p.get("fileData").is_some())
        .count();
    if images > 0 {
        text.push_str(&format!(" [{images} images]"));
    }
    let mut call = None;
    if model.contains("tool") {
        match &response_part {
            Some(r) => text = format!("tool said: {}", r["response"]),
            None => {
                if let Some(name) = request.pointer("/tools/0/functionDeclarations/0/name") {
                    call = Some(json!({"functionCall": {"name": name, "args": {"q": last_words}}}));
                }
            }
        }
    }
    let cached = if model.contains("cache") { 100 } else { 0 };
    let prompt = parts_text(&request["systemInstruction"]["parts"]);
    let prompt_tokens = cached
        + words(&prompt)
        + contents
            .iter()
            .map(|c| words(&parts_text(&c["parts"])))
            .sum::<u64>();
    let thoughts = if think { 2 } else { 0 };
    let candidates = if call.is_some() { 3 } else { words(&text) };
    let mut usage = json!({
        "promptTokenCount": prompt_tokens, "candidatesTokenCount": candidates,
        "totalTokenCount": prompt_tokens + candidates + thoughts,
    });
    if cached > 0 {
        usage["cachedContentTokenCount"] = json!(cached);
    }
    if think {
        usage["thoughtsTokenCount"] = json!(thoughts);
    }
    let mut answer = match call {
        Some(c) => vec![c],
        None => vec![json!({"text": text})],
    };
    if think {
        answer[0]["thoughtSignature"] = json!(format!("sig-gemini-{n}"));
    }
    let response_id = format!("mock-resp-{n}");
    let envelope = |parts: Vec<Value>, finish: Option<&str>, usage: &Value| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": response_id})
    };
    if !stream {
        let mut parts = Vec::new();
        if think {
            parts.push(json!({"text": "mock thinking", "thought": true}));
        }
        parts.extend(answer);
        return axum::Json(envelope(parts, Some("STOP"), &usage)).into_response();
    }

    let partial_usage =
        json!({"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens});
    let data = |v: Value| Frame::Send(Bytes::from(format!("data: {v}\r\n\r\n")));
    let mut frames = VecDeque::new();
    if think {
        frames.push_back(data(envelope(
            vec![json!({"text": "mock thinking", "thought": true})],
            None,
            &partial_usage,
        )));
    }
    let first = answer.remove(0);
    if let Some(t) = first.get("text").and_then(Value::as_str) {
        let pieces: Vec<&str> = t.split_inclusive(' ').collect();
        let last_piece = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.iter().enumerate() {
            let mut part = json!({"text": piece});
            if i == 0
                && let Some(sig) = first.get("thoughtSignature")
            {
                part["thoughtSignature"] = sig.clone();
            }
            let done = i == last_piece;
            frames.push_back(data(envelope(
                vec![part],
                done.then_some("STOP"),
                if done { &usage } else { &partial_usage },
            )));
            if i == 0 && model.contains("cut-stream") {
                frames.push_back(Frame::Abort);
            }
            if i == 0 && model.contains("stream-error") {
                frames.push_back(data(json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})));
                frames.push_back(Frame::Abort);
            }
        }
    } else {
        frames.push_back(data(envelope(vec![first], Some("STOP"), &usage)));
    }
    sse_response(frames, shared.config.chunk_delay, shared.shutdown.clone())
}
