//! A mock OpenAI-format provider that speaks OpenAI's exact wire format, so tests can check that the
//! gateway relays responses faithfully and sends what it should upstream.
//!
//! Endpoints (each also served without the `/v1` prefix):
//!
//! - `POST /v1/chat/completions`: non-streaming and streaming (`"stream": true`) chat completions.
//! - `GET /v1/models`: an OpenAI list with two models.
//! - `POST /v1/embeddings`: one 8-dimensional vector per input, as floats or, when the request asks
//!   for `"encoding_format": "base64"` (the OpenAI Python SDK's default), as base64 little-endian f32.
//!
//! When [`MockConfig::api_key`] is set, every request must carry `Authorization: Bearer <key>`,
//! otherwise the answer is 401 with OpenAI's `invalid_api_key` error body.
//!
//! Every request is recorded before it is answered (see [`MockOpenAi::requests`]), including the
//! ones that are rejected.
//!
//! # Deterministic content
//!
//! - The reply is `"mock reply to: <words>"`, where `<words>` are the whitespace-separated words of
//!   the text of the last `user` message joined by single spaces (array content: the `text` parts,
//!   in order). Normalising whitespace keeps the streamed pieces identical to the non-streaming text.
//! - `prompt_tokens` is the number of whitespace-separated words across the text of all messages
//!   (every role); `completion_tokens` is the number of words in the reply. [`MockConfig::fixed_usage`]
//!   replaces both.
//! - The completion id is `chatcmpl-<n>`, where `n` counts chat requests answered by this mock from 1.
//! - Embedding vectors are derived from an FNV-1a hash of the input text; each component is a multiple
//!   of 1/1000 in `[-0.5, 0.5]`. Embedding `prompt_tokens` is the word count of the inputs (the
//!   length of token arrays), or the first value of [`MockConfig::fixed_usage`].
//!
//! # Streaming
//!
//! `text/event-stream`, one `data: <json>\n\n` event per chunk: a first chunk with delta
//! `{"role":"assistant","content":"","refusal":null}`, one chunk per reply word (the word plus a
//! trailing space, except for the last word), a chunk with an empty delta and `finish_reason:"stop"`,
//! then — only when the request had `stream_options.include_usage == true` — a usage chunk with
//! `"choices":[]`, then `data: [DONE]\n\n`. As OpenAI does, every chunk carries `"usage":null` when
//! usage was requested, and no `usage` key otherwise. [`MockConfig::keepalive_comment`] adds an SSE
//! comment `: keep-alive\n\n` before the first chunk; [`MockConfig::chunk_delay`] is waited between
//! consecutive events.
//!
//! # Behaviour switches
//!
//! Chosen by substrings of the request's `model`, so one mock serves many tests:
//!
//! | model contains | behaviour |
//! |---|---|
//! | `error-500` | 500, `{"error":{…,"type":"server_error"}}` |
//! | `error-429` | 429 with `Retry-After: 1`, type and code `rate_limit_exceeded` |
//! | `error-400` | 400, type `invalid_request_error` |
//! | `error-503` | 503, type `server_error` ("overloaded") |
//! | `stall-stream` | streaming: role chunk and two content chunks, then nothing until the client gives up |
//! | `cut-stream` | streaming: role chunk and two content chunks, then the connection is aborted (no terminating chunk, no `[DONE]`); non-streaming: status 200 and half of the JSON body, then the connection is aborted |
//! | `no-usage` | never sends usage, even when asked: no `usage` key in the body or in any chunk |
//! | `slow` | waits 200 ms before answering (on top of [`MockConfig::delay`]) |
//!
//! Errors are decided before any streaming starts, so they are plain JSON responses even for
//! `"stream": true`, as with OpenAI.
//!
//! The server stops when the [`MockOpenAi`] is dropped (or [`MockOpenAi::shutdown`] is awaited):
//! open streams are aborted and pending delays end at once.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a `slow` model waits before answering.
pub const SLOW_MODEL_DELAY: Duration = Duration::from_millis(200);

const SYSTEM_FINGERPRINT: &str = "fp_mock";

const ABORT_FLUSH_PAUSE: Duration = Duration::from_millis(20);

/// Models listed by `GET /v1/models`.
pub const LISTED_MODELS: [&str; 2] = ["gpt-4o-mini", "text-embedding-3-small"];

/// Embedding vector length.
pub const EMBEDDING_DIMENSIONS: usize = 8;

/// Behaviour of a [`MockOpenAi`]; per-request behaviour is chosen by model name (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// Bearer key every request must present; `None` accepts any or no key.
    pub api_key: Option<String>,
    /// Wait between consecutive SSE events of a stream.
    pub chunk_delay: Duration,
    /// Wait before answering every request (benchmarks: simulates provider latency).
    pub delay: Duration,
    /// `(prompt_tokens, completion_tokens)` reported instead of the word counts.
    pub fixed_usage: Option<(u64, u64)>,
    /// Send `: keep-alive\n\n` before the first chunk of every stream.
    pub keepalive_comment: bool,
}

/// One request as the mock received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Lowercase header names; repeated headers are joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// Parsed JSON body; `Value::Null` when empty, a `Value::String` of the raw text when not JSON.
    pub body: Value,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A running mock provider; the server stops when this is dropped.
#[derive(Debug)]
pub struct MockOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    config: MockConfig,
    requests: Mutex<Vec<RecordedRequest>>,
    completions: AtomicU64,
    shutdown: CancellationToken,
}

impl MockOpenAi {
    /// Starts a mock on an ephemeral port of 127.0.0.1.
    pub async fn start(config: MockConfig) -> anyhow::Result<MockOpenAi> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts a mock on `addr`; it accepts connections once this returns.
    pub async fn start_on(addr: SocketAddr, config: MockConfig) -> anyhow::Result<MockOpenAi> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding mock provider to {addr}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            requests: Mutex::new(Vec::new()),
            completions: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        let app = router(shared.clone());
        let listener = listener.tap_io(|tcp| {
            // Latency benchmarks would otherwise measure Nagle's algorithm on small SSE events.
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::warn!(%err, "mock provider: cannot set TCP_NODELAY");
            }
        });
        let token = shared.shutdown.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
            if let Err(err) = served {
                tracing::warn!(%err, "mock provider stopped with an error");
            }
        });
        Ok(MockOpenAi {
            addr,
            shared,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT/v1`, the value OpenAI SDKs take as `base_url`.
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        // A wildcard bind is reachable on loopback; the wildcard itself is not a connectable address.
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        format!("http://{addr}/v1")
    }

    pub fn config(&self) -> &MockConfig {
        &self.shared.config
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock_requests().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock_requests().len()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.lock_requests().last().cloned()
    }

    /// Forgets the recorded requests, so one mock can serve several phases of a test.
    pub fn clear_requests(&self) {
        self.shared.lock_requests().clear();
    }

    /// Stops accepting connections, aborts open streams and waits until the server has stopped.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::warn!(%err, "mock provider task failed");
        }
    }
}

impl Drop for MockOpenAi {
    fn drop(&mut self) {
        // Every handler and stream watches this token, so connection tasks end promptly too.
        self.shared.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Shared {
    fn lock_requests(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        // A panicking test thread must not hide the requests from the next assertion.
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Value {
        let mut recorded = BTreeMap::<String, String>::new();
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            recorded
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        self.lock_requests().push(RecordedRequest {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            headers: recorded,
            body: body.clone(),
        });
        body
    }

    /// The 401 to send, if the request lacks the configured key.
    fn reject_unauthorized(&self, headers: &HeaderMap) -> Option<Response> {
        let key = self.config.api_key.as_ref()?;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        (presented != Some(key.as_str())).then(|| {
            openai_error(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided",
                "invalid_request_error",
                Some("invalid_api_key"),
            )
        })
    }

    /// Waits `delay` unless the mock shuts down first, in which case the caller answers 503.
    async fn wait(&self, delay: Duration) -> Result<(), Response> {
        if delay.is_zero() {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.shutdown.cancelled() => Err(openai_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "mock provider is shutting down",
                "server_error",
                None,
            )),
        }
    }

    /// Recording, auth and the configured delay, common to every endpoint.
    async fn admit(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Value, Response> {
        let body = self.record(method, uri, headers, body);
        if let Some(rejection) = self.reject_unauthorized(headers) {
            return Err(rejection);
        }
        self.wait(self.config.delay).await?;
        Ok(body)
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/models", get(list_models))
        .route("/models", get(list_models))
        .route("/v1/embeddings", post(embeddings))
        .route("/embeddings", post(embeddings))
        .fallback(not_found)
        .with_state(shared)
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

fn openai_error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    let body = ErrorEnvelope {
        error: ErrorBody {
            message,
            kind,
            param: None,
            code,
        },
    };
    json_response(status, &body)
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

fn bad_request(message: &str) -> Response {
    openai_error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        None,
    )
}

async fn not_found(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = shared.admit(&method, &uri, &headers, &body).await {
        return response;
    }
    let message = format!("Invalid URL ({method} {})", uri.path());
    openai_error(
        StatusCode::NOT_FOUND,
        &message,
        "invalid_request_error",
        None,
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The text of a message's `content`: a string, or the `text` parts of an array, space-joined.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
    completion_tokens_details: CompletionTokensDetails,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct PromptTokensDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct CompletionTokensDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

impl Usage {
    fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: 0,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

// Structs rather than `json!` so the keys go out in OpenAI's order (serde_json's map is sorted).
#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: [CompletionChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<&'a str>,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice<'a>>,
    /// Absent when usage was not requested, `null` on content chunks when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<&'a str>>,
}

/// What the model name asks the mock to do.
#[derive(Debug, Clone, Copy, Default)]
struct Switches {
    cut_stream: bool,
    stall_stream: bool,
    no_usage: bool,
    slow: bool,
}

impl Switches {
    fn of(model: &str) -> Self {
        Switches {
            cut_stream: model.contains("cut-stream"),
            stall_stream: model.contains("stall-stream"),
            no_usage: model.contains("no-usage"),
            slow: model.contains("slow"),
        }
    }
}

fn forced_error(model: &str) -> Option<Response> {
    if model.contains("error-500") {
        return Some(openai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ));
    }
    if model.contains("error-503") {
        return Some(openai_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The engine is currently overloaded, please try again later",
            "server_error",
            None,
        ));
    }
    if model.contains("error-429") {
        let mut response = openai_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached for requests. Please try again in 1s.",
            "rate_limit_exceeded",
            Some("rate_limit_exceeded"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Some(response);
    }
    if model.contains("error-400") {
        return Some(bad_request(
            "Invalid request: the mock was asked to reject it (model contains error-400).",
        ));
    }
    None
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match shared.admit(&method, &uri, &headers, &body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if !request.is_object() {
        return bad_request("We could not parse the JSON body of your request.");
    }
    let Some(model) = request.get("model").and_then(Value::as_str) else {
        return bad_request("you must provide a model parameter");
    };
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return bad_request("Missing required parameter: 'messages'.");
    };
    if let Some(response) = forced_error(model) {
        return response;
    }
    let switches = Switches::of(model);
    if switches.slow
        && let Err(response) = shared.wait(SLOW_MODEL_DELAY).await
    {
        return response;
    }

    let last_user_text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content")))
        .unwrap_or_default();
    let words: Vec<&str> = ["mock", "reply", "to:"]
        .into_iter()
        .chain(last_user_text.split_whitespace())
        .collect();
    let usage = match shared.config.fixed_usage {
        Some((prompt, completion)) => Usage::new(prompt, completion),
        None => {
            let prompt = messages
                .iter()
                .map(|m| word_count(&content_text(m.get("content"))))
                .sum();
            Usage::new(prompt, words.len() as u64)
        }
    };
    let usage = (!switches.no_usage).then_some(usage);

    let n = shared.completions.fetch_add(1, Ordering::Relaxed) + 1;
    let id = format!("chatcmpl-{n}");
    let created = unix_now();

    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let stream = StreamPlan {
            id: &id,
            model,
            created,
            words: &words,
            usage: if include_usage { usage } else { None },
            usage_key: include_usage && !switches.no_usage,
            cut: switches.cut_stream,
            stall: switches.stall_stream,
            keepalive_comment: shared.config.keepalive_comment,
        };
        return match stream.events() {
            Ok(events) => sse_response(events, shared.config.chunk_delay, shared.shutdown.clone()),
            Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
        };
    }

    let reply = words.join(" ");
    let completion = ChatCompletion {
        id: &id,
        object: "chat.completion",
        created,
        model,
        system_fingerprint: SYSTEM_FINGERPRINT,
        choices: [CompletionChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: &reply,
                refusal: None,
            },
            logprobs: None,
            finish_reason: "stop",
        }],
        usage,
    };
    if switches.cut_stream {
        return match serde_json::to_vec(&completion) {
            Ok(bytes) => {
                let half = bytes.len() / 2;
                let half = Bytes::from(bytes).slice(..half);
                let events = VecDeque::from([Event::Send(half), Event::Abort]);
                let body = event_body(events, Duration::ZERO, shared.shutdown.clone());
                (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    body,
                )
                    .into_response()
            }
            Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
        };
    }
    json_response(StatusCode::OK, &completion)
}

struct StreamPlan<'a> {
    id: &'a str,
    model: &'a str,
    created: u64,
    words: &'a [&'a str],
    /// The usage chunk to send, if any.
    usage: Option<Usage>,
    /// Whether chunks carry a `usage` key at all (`null` on non-usage chunks).
    usage_key: bool,
    cut: bool,
    stall: bool,
    keepalive_comment: bool,
}

enum Event {
    Send(Bytes),
    /// Fails the body, which makes hyper drop the connection without the terminating chunk.
    Abort,
    /// Sends nothing more until the mock shuts down or the client disconnects.
    Stall,
}

impl StreamPlan<'_> {
    fn chunk(
        &self,
        delta: Delta<'_>,
        finish_reason: Option<&'static str>,
    ) -> serde_json::Result<Bytes> {
        self.frame(&ChatChunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: self.usage_key.then_some(None),
        })
    }

    fn frame(&self, chunk: &ChatChunk<'_>) -> serde_json::Result<Bytes> {
        let mut frame = b"data: ".to_vec();
        serde_json::to_writer(&mut frame, chunk)?;
        frame.extend_from_slice(b"\n\n");
        Ok(Bytes::from(frame))
    }

    fn events(&self) -> serde_json::Result<VecDeque<Event>> {
        let mut events = VecDeque::new();
        if self.keepalive_comment {
            events.push_back(Event::Send(Bytes::from_static(b": keep-alive\n\n")));
        }
        events.push_back(Event::Send(self.chunk(
            Delta {
                role: Some("assistant"),
                content: Some(""),
                refusal: Some(None),
            },
            None,
        )?));
        let last = self.words.len().saturating_sub(1);
        for (i, word) in self.words.iter().enumerate() {
            if self.cut && i == 2 {
                events.push_back(Event::Abort);
                return Ok(events);
            }
            if self.stall && i == 2 {
                events.push_back(Event::Stall);
                return Ok(events);
            }
            let piece = if i == last {
                (*word).to_owned()
            } else {
                format!("{word} ")
            };
            events.push_back(Event::Send(self.chunk(
                Delta {
                    content: Some(&piece),
                    ..Delta::default()
                },
                None,
            )?));
        }
        if self.cut {
            events.push_back(Event::Abort);
            return Ok(events);
        }
        events.push_back(Event::Send(self.chunk(Delta::default(), Some("stop"))?));
        if let Some(usage) = self.usage {
            events.push_back(Event::Send(self.frame(&ChatChunk {
                id: self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: self.model,
                system_fingerprint: SYSTEM_FINGERPRINT,
                choices: Vec::new(),
                usage: Some(Some(usage)),
            })?));
        }
        events.push_back(Event::Send(Bytes::from_static(b"data: [DONE]\n\n")));
        Ok(events)
    }
}

fn sse_response(events: VecDeque<Event>, delay: Duration, shutdown: CancellationToken) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        )],
        event_body(events, delay, shutdown),
    )
        .into_response()
}

/// A body that sends `events` with `delay` between them and fails on [`Event::Abort`] or shutdown.
fn event_body(events: VecDeque<Event>, delay: Duration, shutdown: CancellationToken) -> Body {
    struct Cursor {
        events: VecDeque<Event>,
        started: bool,
        delay: Duration,
        shutdown: CancellationToken,
    }
    let cursor = Cursor {
        events,
        started: false,
        delay,
        shutdown,
    };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.events.pop_front()?;
        let delay = match event {
            // Hyper drops its write buffer when the body fails; pausing first lets it flush what
            // was sent, so the client really sees a stream cut after those bytes.
            Event::Abort => ABORT_FLUSH_PAUSE.max(cursor.delay),
            Event::Stall => {
                cursor.shutdown.cancelled().await;
                cursor.events.clear();
                return Some((
                    Err(std::io::Error::other("mock provider shut down")),
                    cursor,
                ));
            }
            Event::Send(_) if cursor.started => cursor.delay,
            Event::Send(_) => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cursor.shutdown.cancelled() => {
                    cursor.events.clear();
                    return Some((Err(std::io::Error::other("mock provider shut down")), cursor));
                }
            }
        }
        cursor.started = true;
        match event {
            Event::Send(bytes) => Some((Ok(bytes), cursor)),
            Event::Abort | Event::Stall => {
                cursor.events.clear();
                Some((
                    Err(std::io::Error::other("mock provider cut the stream")),
                    cursor,
                ))
            }
        }
    });
    Body::from_stream(stream)
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelEntry>,
}

#[derive(Serialize)]
struct ModelEntry {
    id: &'static str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

async fn list_models(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = shared.admit(&method, &uri, &headers, &body).await {
        return response;
    }
    let list = ModelList {
        object: "list",
        data: vec![
            ModelEntry {
                id: LISTED_MODELS[0],
                object: "model",
                created: 1_721_172_741,
                owned_by: "system",
            },
            ModelEntry {
                id: LISTED_MODELS[1],
                object: "model",
                created: 1_705_948_997,
                owned_by: "system",
            },
        ],
    };
    json_response(StatusCode::OK, &list)
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingEntry>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingEntry {
    object: &'static str,
    index: usize,
    embedding: EmbeddingVector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// The inputs of an embeddings request as `(text, token_count)`; `None` when malformed.
fn embedding_inputs(input: &Value) -> Option<Vec<(String, u64)>> {
    let one = |value: &Value| -> Option<(String, u64)> {
        match value {
            Value::String(text) => Some((text.clone(), word_count(text))),
            Value::Array(tokens) if tokens.iter().all(Value::is_u64) => {
                let text = tokens
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(" ");
                Some((text, tokens.len() as u64))
            }
            _ => None,
        }
    };
    match input {
        Value::String(_) => Some(vec![one(input)?]),
        // A flat array of integers is one tokenised input, not many.
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_u64) => {
            Some(vec![one(input)?])
        }
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        _ => None,
    }
}

fn embedding_of(text: &str) -> Vec<f32> {
    // FNV-1a: stable across platforms and releases, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (0..EMBEDDING_DIMENSIONS)
        .map(|i| {
            let mixed = hash
                .rotate_left((i * 8) as u32)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let millis = (mixed >> 32) % 1001;
            (millis as f32 - 500.0) / 1000.0
        })
        .collect()
}

fn base64_f32_le(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= group.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match shared.admit(&method, &uri, &headers, &body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let Some(model) = request.get("model").and_then(Value::as_str) else {
        return bad_request("you must provide a model parameter");
    };
    if let Some(response) = forced_error(model) {
        return response;
    }
    if Switches::of(model).slow
        && let Err(response) = shared.wait(SLOW_MODEL_DELAY).await
    {
        return response;
    }
    let Some(inputs) = request.get("input").and_then(embedding_inputs) else {
        return bad_request(
            "'input' must be a non-empty string, array of strings or array of token arrays.",
        );
    };
    let base64 = request.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let prompt_tokens = match shared.config.fixed_usage {
        Some((prompt, _)) => prompt,
        None => inputs.iter().map(|(_, tokens)| tokens).sum(),
    };
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, (text, _))| {
            let vector = embedding_of(text);
            EmbeddingEntry {
                object: "embedding",
                index,
                embedding: if base64 {
                    EmbeddingVector::Base64(base64_f32_le(&vector))
                } else {
                    EmbeddingVector::Float(vector)
                },
            }
        })
        .collect();
    let list = EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    json_response(StatusCode::OK, &list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use serde_json::json;

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    async fn chat(mock: &MockOpenAi, body: Value) -> reqwest::Response {
        client()
            .post(format!("{}/chat/completions", mock.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Splits an SSE body into its events (comments included), checking every event ends in "\n\n".
    fn sse_events(body: &str) -> Vec<&str> {
        assert!(
            body.ends_with("\n\n"),
            "body must end with a blank line: {body:?}"
        );
        body.trim_end_matches("\n\n").split("\n\n").collect()
    }

    fn data_json(event: &str) -> Value {
        let data = event.strip_prefix("data: ").unwrap();
        serde_json::from_str(data).unwrap()
    }

    fn hello(model: &str) -> Value {
        json!({
            "model": model,
            "messages": [
                {"role": "system", "content": "be   brief"},
                {"role": "user", "content": "say\nhello  world"},
            ],
        })
    }

    #[tokio::test]
    async fn non_streaming_has_openai_shape() {
        let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
        let response = chat(&mock, hello("gpt-4o-mini")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        let text = response.text().await.unwrap();
        // Key order is part of the wire format the gateway must relay.
        assert!(
            text.starts_with(r#"{"id":"chatcmpl-1","object":"chat.completion","created":"#),
            "{text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
        let expected = json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": body["created"],
            "model": "gpt-4o-mini",
            "system_fingerprint": "fp_mock",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "mock reply to: say hello world", "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 6,
                "total_tokens": 11,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
        });
        assert_eq!(body, expected);

        let second: Value = chat(&mock, hello("gpt-4o-mini"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(second["id"], "chatcmpl-2");
    }

    #[tokio::test]
    async fn array_content_and_fixed_usage() {
        let mock = MockOpenAi::start(MockConfig {
            fixed_usage: Some((100, 7)),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let body: Value = chat(
            &mock,
            json!({
                "model": "m",
                "messages": [
                    {"role": "user", "content": "first question"},
                    {"role": "assistant", "content": "an answer"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "look at"},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                        {"type": "text", "text": "this"},
                    ]},
                ],
            }),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "mock reply to: look at this"
        );
        assert_eq!(body["usage"]["prompt_tokens"], 100);
        assert_eq!(body["usage"]["completion_tokens"], 7);
        assert_eq!(body["usage"]["total_tokens"], 107);
    }

    #[tokio::test]
    async fn streaming_without_usage_option() {
        let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
        let mut request = hello("gpt-4o-mini");
        request["stream"] = json!(true);
        let response = chat(&mock, request).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let text = response.text().await.unwrap();
        let events = sse_events(&text);
        // role + 6 words + finish + [DONE]
        assert_eq!(events.len(), 9, "{events:#?}");
        assert_eq!(*events.last().unwrap(), "data: [DONE]");

        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| data_json(e))
            .collect();
        assert!(
            events[0].starts_with(
                r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":"#
            ),
            "{}",
            events[0]
        );
        for chunk in &chunks {
            assert_eq!(chunk["id"], "chatcmpl-1");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["model"], "gpt-4o-mini");
            assert_eq!(chunk["system_fingerprint"], "fp_mock");
            assert!(
                chunk.get("usage").is_none(),
                "no usage key unless asked: {chunk}"
            );
        }
        assert_eq!(
            chunks[0]["choices"],
            json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}])
        );
        let pieces: Vec<&str> = chunks[1..7]
            .iter()
            .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(
            pieces,
            ["mock ", "reply ", "to: ", "say ", "hello ", "world"]
        );
        for chunk in &chunks[1..7] {
            assert_eq!(chunk["choices"][0]["delta"].as_object().unwrap().len(), 1);
            assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
        }
        assert_eq!(
            chunks[7]["choices"],
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}])
        );
    }

    #[tokio::test]
    async fn streaming_with_include_usage() {
        let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
        let mut request = hello("gpt-4o-mini");
        request["stream"] = json!(true);
        request["stream_options"] = json!({"include_usage": true});
        let text = chat(&mock, request).await.text().await.unwrap();
        let events = sse_events(&text);
        assert_eq!(events.len(), 10, "{events:#?}");
        assert_eq!(events[9], "data: [DONE]");
        for event in &events[..8] {
            let chunk = data_json(event);
            assert_eq!(chunk["usage"], Value::Null);
            assert!(
                chunk.get("usage").is_some(),
                "usage:null must be present: {chunk}"
            );
        }
        assert_eq!(data_json(events[7])["choices"][0]["finish_reason"], "stop");
        let usage_chunk = data_json(events[8]);
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(usage_chunk["id"], "chatcmpl-1");
        assert_eq!(usage_chunk["usage"]["prompt_tokens"], 5);
        assert_eq!(usage_chunk["usage"]["completion_tokens"], 6);
        assert_eq!(usage_chunk["usage"]["total_tokens"], 11);
        assert_eq!(
            usage_chunk["usage"]["completion_tokens_details"]["reasoning_tokens"],
            0
        );
    }

    #[tokio::test]
    async fn keepalive_comment_comes_first_and_no_usage_model_omits_usage() {
        let mock = MockOpenAi::start(MockConfig {
            keepalive_comment: true,
            chunk_delay: Duration::from_millis(5),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let mut request = hello("gpt-no-usage");
        request["stream"] = json!(true);
        request["stream_options"] = json!({"include_usage": true});
        let text = chat(&mock, request).await.text().await.unwrap();
        let events = sse_events(&text);
        assert_eq!(events[0], ": keep-alive");
        assert_eq!(events.len(), 10, "comment + 8 chunks + [DONE]: {events:#?}");
        for event in &events[1..9] {
            let chunk = data_json(event);
            assert!(chunk.get("usage").is_none(), "{chunk}");
            assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
        }

        let body: Value = chat(&mock, hello("gpt-no-usage"))
            .await
            .json()
            .await
            .unwrap();
        assert!(body.get("usage").is_none());
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
    }

    #[tokio::test]
    async fn cut_stream_aborts_without_done() {
        let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
        let mut request = hello("cut-stream");
        request["stream"] = json!(true);
        let response = chat(&mock, request).await;
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let mut received = Vec::new();
        let mut failed = false;
        while let Some(piece) = stream.next().await {
            match piece {
                Ok(bytes) => received.extend_from_slice(&bytes),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the body must end in a transport error");
        let text = String::from_utf8(received).unwrap();
        assert!(!text.contains("[DONE]"));
        let events = sse_events(&text);
        assert_eq!(
            events.len(),
            3,
            "role chunk + two content chunks: {events:#?}"
        );
        assert_eq!(
            data_json(events[1])["choices"][0]["delta"]["content"],
            "mock "
        );
        assert_eq!(
            data_json(events[2])["choices"][0]["delta"]["content"],
            "reply "
        );

        let response = chat(&mock, hello("cut-stream")).await;
        assert_eq!(response.status(), 200);
        assert!(
            response.bytes().await.is_err(),
            "non-streaming body must be cut too"
        );
    }

    #[tokio::test]
    async fn error_models() {
        let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();

        let response = chat(&mock, hello("x-error-500")).await;
        assert_eq!(response.status(), 500);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error");
        assert_eq!(body["error"]["param"], Value::Null);
        assert!(body["error"]["message"].as_str().unwrap().len() > 10);

        let mut streaming = hello("error-429");
        streaming["stream"] = json!(true);
        let response = chat(&mock, streaming).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/json",
            "errors before the stream starts are plain JSON"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_exceeded");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");

        let response = chat(&mock, hello("error-400")).await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");

        let response = chat(&mock, json!({"messages": []})).await;
        assert_eq!(response.status(), 400);

        assert_eq!(mock.request_count(), 4);
        // Errors do not consume completion ids.
        let body: Value = chat(&mock, hello("ok")).await.json().await.unwrap();
        assert_eq!(body["id"], "chatcmpl-1");
    }

    #[tokio::test]
    async fn slow_model_waits() {
        let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
        let started = std::time::Instant::now();
        let response = chat(&mock, hello("slow-model")).await;
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() >= SLOW_MODEL_DELAY);
    }

    #[tokio::test]
    async fn auth_is_checked_and_requests_are_recorded() {
        let mock = MockOpenAi::start(MockConfig {
            api_key: Some("sk-test".to_owned()),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let url = format!("{}/chat/completions", mock.base_url());

        let response = client().post(&url).json(&hello("m")).send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "param": null,
                "code": "invalid_api_key",
            }})
        );

        let response = client()
            .post(&url)
            .bearer_auth("sk-wrong")
            .json(&hello("m"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);

        let response = client()
            .post(&url)
            .bearer_auth("sk-test")
            .header("X-Custom", "a")
            .json(&hello("m"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);

        let response = client()
            .get(format!("{}/models", mock.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "every endpoint checks the key");

        let requests = mock.requests();
        assert_eq!(requests.len(), 4);
        assert_eq!(mock.request_count(), 4);
        let ok = &requests[2];
        assert_eq!(ok.method, "POST");
        assert_eq!(ok.path, "/v1/chat/completions");
        assert_eq!(ok.header("Authorization"), Some("Bearer sk-test"));
        assert_eq!(ok.headers["x-custom"], "a");
        assert_eq!(ok.headers["content-type"], "application/json");
        assert_eq!(ok.body, hello("m"));
        assert_eq!(requests[3].method, "GET");
        assert_eq!(requests[3].body, Value::Null);
        assert_eq!(mock.last_request().unwrap().path, "/v1/models");

        mock.clear_requests();
        assert_eq!(mock.request_count(), 0);
    }

    #[tokio::test]
    async fn unprefixed_path_models_and_embeddings() {
        let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
        let root = format!("http://{}", mock.addr());
        assert_eq!(mock.base_url(), format!("{root}/v1"));

        let response = client()
            .post(format!("{root}/chat/completions"))
            .json(&hello("m"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);

        let models: Value = client()
            .get(format!("{root}/v1/models"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(models["object"], "list");
        let ids: Vec<&str> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, LISTED_MODELS);
        assert_eq!(models["data"][0]["object"], "model");

        let embed = |body: Value| {
            let url = format!("{root}/v1/embeddings");
            async move {
                let response = client().post(url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.unwrap()
            }
        };
        let one =
            embed(json!({"model": "text-embedding-3-small", "input": "hello there world"})).await;
        assert_eq!(one["object"], "list");
        assert_eq!(one["model"], "text-embedding-3-small");
        assert_eq!(one["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        let vector = one["data"][0]["embedding"].as_array().unwrap();
        assert_eq!(vector.len(), EMBEDDING_DIMENSIONS);
        assert!(vector.iter().all(|v| v.as_f64().unwrap().abs() <= 0.5));
        assert_eq!(one["data"][0]["object"], "embedding");

        let many = embed(json!({"model": "e", "input": ["hello there world", "b"]})).await;
        assert_eq!(many["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            many["data"][0]["embedding"], one["data"][0]["embedding"],
            "deterministic"
        );
        assert_ne!(many["data"][1]["embedding"], one["data"][0]["embedding"]);
        assert_eq!(many["data"][1]["index"], 1);
        assert_eq!(many["usage"]["prompt_tokens"], 4);

        let tokens = embed(json!({"model": "e", "input": [1, 2, 3, 4, 5]})).await;
        assert_eq!(tokens["data"].as_array().unwrap().len(), 1);
        assert_eq!(tokens["usage"]["prompt_tokens"], 5);

        let b64 =
            embed(json!({"model": "e", "input": "hello there world", "encoding_format": "base64"}))
                .await;
        let encoded = b64["data"][0]["embedding"].as_str().unwrap();
        assert_eq!(encoded.len(), 44, "8 f32 = 32 bytes = 44 base64 chars");
        let floats: Vec<f32> = vector.iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(encoded, base64_f32_le(&floats));
    }

    #[test]
    fn base64_matches_known_vectors() {
        // 1.0f32 = 00 00 80 3f
        assert_eq!(base64_f32_le(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32_le(&[1.0, 1.0]), "AACAPwAAgD8=");
        assert_eq!(base64_f32_le(&[1.0, 1.0, 1.0]), "AACAPwAAgD8AAIA/");
    }

    #[tokio::test]
    async fn drop_stops_the_server_and_open_streams() {
        let mock = MockOpenAi::start(MockConfig {
            chunk_delay: Duration::from_secs(30),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let addr = mock.addr();
        let mut request = hello("m");
        request["stream"] = json!(true);
        let response = chat(&mock, request).await;
        let mut stream = response.bytes_stream();
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.starts_with(b"data: "));

        drop(mock);
        let rest = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the open stream must end when the mock is dropped");
        assert!(matches!(rest, Some(Err(_)) | None), "{rest:?}");
        let connect =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .unwrap();
        assert!(connect.is_err(), "the listener must be closed");
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_server() {
        let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
        let addr = mock.addr();
        assert_eq!(chat(&mock, hello("m")).await.status(), 200);
        mock.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
