//! A mock Anthropic Messages provider that speaks Anthropic's wire format exactly: `POST
//! /v1/messages` (also without `/v1`), JSON `message` objects, the SSE event stream
//! (`message_start`, `ping`, content blocks, `message_delta` with usage, `message_stop`),
//! error bodies `{"type":"error","error":{"type","message"}}`, and `x-api-key` +
//! `anthropic-version` checks. Every request is recorded before it is answered.
//!
//! The reply is `"mock reply to: <words>"` (the words of the last user text), followed by
//! ` [N images]` when the request carried images. `input_tokens` counts the words of all
//! text (system included), `output_tokens` the reply's words.
//!
//! Behaviour switches, by substrings of the request's `model`:
//!
//! | model contains | behaviour |
//! |---|---|
//! | `think` | a thinking block (`"mock thinking"`, signature `sig-anthropic-<n>`) comes first; a request whose assistant `tool_use` turn lacks a signed thinking block is refused with 400, as Claude does when thinking is on |
//! | `tool` | when the last user turn has no `tool_result`, the answer is a `tool_use` of the first tool with input `{"q": <words>}` and `stop_reason: "tool_use"`; otherwise the reply is `tool said: <result text>` |
//! | `cache` | usage reports 100 cache-read and 50 cache-write tokens (20 of them with a 1h TTL) on top of `input_tokens` |
//! | `error-500` / `error-429` / `error-400` / `overloaded` | 500 `api_error` / 429 `rate_limit_error` (`retry-after: 1`) / 400 `invalid_request_error` / 529 `overloaded_error` |
//! | `cut-stream` | streaming: the text block starts and gets one delta, then the connection is aborted |
//! | `stream-error` | streaming: one text delta, then an `error` event (`overloaded_error`) |
//!
//! `POST /v1/messages/count_tokens` answers `{"input_tokens": <words> + 1000}` and refuses
//! `max_tokens`, as Anthropic does.
//!
//! The helpers at the bottom ([`Recorder`], [`sse_body`], [`serve`]) are shared with the
//! Gemini mock.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::mock_openai::{MockConfig, RecordedRequest};

/// A running mock; the server stops when this is dropped.
pub struct MockAnthropic {
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

impl MockAnthropic {
    pub async fn start(config: MockConfig) -> anyhow::Result<MockAnthropic> {
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            config,
            recorder: Recorder::default(),
            counter: AtomicU64::new(0),
            shutdown: shutdown.clone(),
        });
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .with_state(shared.clone());
        let server = serve(app, shutdown).await?;
        Ok(MockAnthropic {
            addr: server.addr,
            shared,
            _server: server,
        })
    }

    /// `http://HOST:PORT/v1`, the base URL of an `anthropic` provider.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.all()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.recorder.all().pop()
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"});
    (status, axum::Json(body)).into_response()
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// All text of a content value (string or blocks), including tool results.
fn all_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b["text"].as_str().unwrap_or_default().to_owned(),
                Some("tool_result") => all_text(&b["content"]),
                _ => String::new(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn count_images(content: &Value) -> usize {
    content.as_array().map_or(0, |blocks| {
        blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("image"))
            .count()
    })
}

fn forced_error(model: &str) -> Option<Response> {
    if model.contains("error-500") {
        return Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error",
        ));
    }
    if model.contains("error-429") {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return Some(r);
    }
    if model.contains("error-400") {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the mock was asked to reject it (model contains error-400)",
        ));
    }
    if model.contains("overloaded") {
        return Some(error(
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error",
            "Overloaded",
        ));
    }
    None
}

/// Claude refuses a tool-use turn without its signed thinking block when thinking is on.
fn missing_thinking(messages: &[Value]) -> bool {
    messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter_map(|m| m["content"].as_array())
        .filter(|blocks| blocks.iter().any(|b| b["type"] == "tool_use"))
        .any(|blocks| {
            !blocks.iter().any(|b| {
                b["type"] == "thinking"
                    && b["signature"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("sig-anthropic-"))
            })
        })
}

/// `count_tokens`: the same count `input_tokens` would report, plus 1000 so tests can
/// tell it from the gateway's estimate.
async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = shared.recorder.record(&method, &uri, &headers, &body);
    if request.get("max_tokens").is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Extra inputs are not permitted",
        );
    }
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let input = words(&all_text(&request["system"]))
        + messages
            .iter()
            .map(|m| words(&all_text(&m["content"])))
            .sum::<u64>();
    axum::Json(json!({"input_tokens": input + 1000})).into_response()
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = shared.recorder.record(&method, &uri, &headers, &body);
    if let Some(key) = &shared.config.api_key
        && headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str())
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        );
    }
    if headers.get("anthropic-version").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let (Some(model), Some(messages), Some(_)) = (
        request["model"].as_str(),
        request["messages"].as_array(),
        request["max_tokens"].as_u64(),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "model, messages and max_tokens are required",
        );
    };
    if let Some(response) = forced_error(model) {
        return response;
    }
    let think = model.contains("think");
    if think && missing_thinking(messages) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block",
        );
    }
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let last_has_result = last["content"]
        .as_array()
        .is_some_and(|b| b.iter().any(|b| b["type"] == "tool_result"));
    let last_text = all_text(&last["content"]);
    let mut text = format!(
        "mock reply to: {}",
        last_text.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    let images: usize = messages.iter().map(|m| count_images(&m["content"])).sum();
    if images > 0 {
        text.push_str(&format!(" [{images} images]"));
    }
    let mut tool_use = None;
    if model.contains("tool") {
        if last_has_result {
            text = format!("tool said: {last_text}");
        } else if let Some(tool) = request["tools"].as_array().and_then(|t| t.first()) {
            tool_use = Some(
                json!({"type": "tool_use", "id": format!("toolu_mock_{n}"), "name": tool["name"],
                "input": {"q": last_text.split_whitespace().collect::<Vec<_>>().join(" ")}}),
            );
        }
    }
    let system_text = all_text(&request["system"]);
    let input: u64 = words(&system_text)
        + messages
            .iter()
            .map(|m| words(&all_text(&m["content"])))
            .sum::<u64>();
    let mut blocks = Vec::new();
    if think {
        blocks.push(json!({"type": "thinking", "thinking": "mock thinking", "signature": format!("sig-anthropic-{n}")}));
    }
    let stop_reason = match &tool_use {
        Some(t) => {
            blocks.push(t.clone());
            "tool_use"
        }
        None => {
            blocks.push(json!({"type": "text", "text": text}));
            "end_turn"
        }
    };
    let (fixed_in, fixed_out) = shared.config.fixed_usage.unwrap_or((input, 0));
    let output = if shared.config.fixed_usage.is_some() {
        fixed_out
    } else {
        words(&text)
    };
    let (read, write, write_1h) = if model.contains("cache") {
        (100, 50, 20)
    } else {
        (0, 0, 0)
    };
    let usage = json!({
        "input_tokens": fixed_in, "output_tokens": output,
        "cache_read_input_tokens": read, "cache_creation_input_tokens": write,
        "cache_creation": {"ephemeral_5m_input_tokens": write - write_1h, "ephemeral_1h_input_tokens": write_1h},
    });
    let id = format!("msg_mock_{n}");
    if request["stream"] != json!(true) {
        return axum::Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": blocks,
            "stop_reason": stop_reason, "stop_sequence": null, "usage": usage,
        }))
        .into_response();
    }

    let mut frames = VecDeque::new();
    let ev = |name: &str, data: Value| {
        Frame::Send(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
    };
    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    frames.push_back(ev(
        "message_start",
        json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
    ));
    frames.push_back(ev("ping", json!({"type": "ping"})));
    for (index, block) in blocks.iter().enumerate() {
        let start = match block["type"].as_str() {
            Some("thinking") => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Some("text") => json!({"type": "text", "text": ""}),
            _ => json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
        };
        frames.push_back(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        let delta = |d: Value| {
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": d}),
            )
        };
        match block["type"].as_str() {
            Some("thinking") => {
                frames.push_back(delta(
                    json!({"type": "thinking_delta", "thinking": block["thinking"]}),
                ));
                frames.push_back(delta(
                    json!({"type": "signature_delta", "signature": block["signature"]}),
                ));
            }
            Some("text") => {
                let pieces: Vec<&str> = block["text"]
                    .as_str()
                    .unwrap_or_default()
                    .split_inclusive(' ')
                    .collect();
                for (i, piece) in pieces.iter().enumerate() {
                    frames.push_back(delta(json!({"type": "text_delta", "text": piece})));
                    if i == 0 && model.contains("cut-stream") {
                        frames.push_back(Frame::Abort);
                    }
                    if i == 0 && model.contains("stream-error") {
                        frames.push_back(ev("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
                        frames.push_back(Frame::Abort);
                    }
                }
            }
            _ => {
                let input = block["input"].to_string();
                let (a, b) = input.split_at(input.len() / 2);
                frames.push_back(delta(
                    json!({"type": "input_json_delta", "partial_json": ""}),
                ));
                frames.push_back(delta(
                    json!({"type": "input_json_delta", "partial_json": a}),
                ));
                frames.push_back(delta(
                    json!({"type": "input_json_delta", "partial_json": b}),
                ));
            }
        }
        frames.push_back(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    frames.push_back(ev("message_delta", json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output}})));
    frames.push_back(ev("message_stop", json!({"type": "message_stop"})));
    sse_response(frames, shared.config.chunk_delay, shared.shutdown.clone())
}

// ---- shared by the Anthropic and Gemini mocks ------------------------------------------

/// Records requests as they arrive.
#[derive(Default)]
pub(crate) struct Recorder(Mutex<Vec<RecordedRequest>>);

impl Recorder {
    pub(crate) fn all(&self) -> Vec<RecordedRequest> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the request and returns its JSON body (`Null` when empty or not JSON).
    pub(crate) fn record(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Value {
        let mut recorded = BTreeMap::<String, String>::new();
        for (name, value) in headers {
            recorded.insert(
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            );
        }
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(RecordedRequest {
                method: method.as_str().to_owned(),
                path: uri.path().to_owned(),
                headers: recorded,
                body: body.clone(),
            });
        body
    }
}

pub(crate) enum Frame {
    Send(Bytes),
    /// Fail the body here: the client sees the connection cut.
    Abort,
}

pub(crate) fn sse_response(
    frames: VecDeque<Frame>,
    delay: Duration,
    shutdown: CancellationToken,
) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        )],
        sse_body(frames, delay, shutdown),
    )
        .into_response()
}

pub(crate) fn sse_body(
    frames: VecDeque<Frame>,
    delay: Duration,
    shutdown: CancellationToken,
) -> Body {
    let stream = futures_util::stream::unfold(
        (frames, delay, shutdown, false),
        |(mut frames, delay, shutdown, started)| async move {
            let frame = frames.pop_front()?;
            let pause = match frame {
                // Lets hyper flush what was sent before the body fails.
                Frame::Abort => delay.max(Duration::from_millis(20)),
                Frame::Send(_) if started => delay,
                Frame::Send(_) => Duration::ZERO,
            };
            if !pause.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => {
                        frames.clear();
                        return Some((Err(std::io::Error::other("mock shut down")), (frames, delay, shutdown, true)));
                    }
                }
            }
            match frame {
                Frame::Send(bytes) => Some((Ok(bytes), (frames, delay, shutdown, true))),
                Frame::Abort => {
                    frames.clear();
                    Some((
                        Err(std::io::Error::other("mock cut the stream")),
                        (frames, delay, shutdown, true),
                    ))
                }
            }
        },
    );
    Body::from_stream(stream)
}

/// A server on 127.0.0.1:0 that stops when dropped.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

pub(crate) async fn serve(app: Router, shutdown: CancellationToken) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let addr = listener.local_addr()?;
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
        {
            tracing::warn!(%err, "mock provider stopped with an error");
        }
    });
    Ok(Server {
        addr,
        shutdown,
        task,
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}
