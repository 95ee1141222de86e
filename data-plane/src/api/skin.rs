//! An ingress "skin": one client-facing API shape (OpenAI chat, Anthropic messages, …) on
//! top of the one inference pipeline. A skin parses its request into the canonical
//! `ChatRequest`, renders canonical answers in its own shape, and encodes its own stream;
//! authentication, routing, metering, keep-alives and cancellation stay in the pipeline.

use axum::body::Bytes;
use axum::response::Response;
use serde_json::Value;

use crate::chat_request::ChatRequest;
use crate::error::ApiError;
use crate::providers::openai_answer::OpenAiAnswer;

pub trait Skin: Send + Sync + 'static {
    type Encoder: StreamEncoder;

    /// `render` is the identity: an OpenAI-format provider's answer can be patched for this
    /// skin's clients instead of parsed and re-serialised (see `providers::openai_answer`).
    const RENDERS_CANONICAL: bool = false;

    /// The `api` label on usage records.
    fn api(&self) -> &'static str;

    fn parse(&self, body: &Bytes) -> Result<ChatRequest, ApiError>;

    /// A finished canonical `chat.completion` (Switchyard's id, model, provider, normalised
    /// finish reasons and client `usage` already in place) in the skin's shape.
    fn render(&self, completion: Value) -> Value;

    fn encoder(&self, context: StreamContext) -> Self::Encoder;

    /// An error before any byte was sent, in the skin's error shape.
    fn error_response(&self, error: ApiError) -> Response;
}

/// What every stream encoder knows from the start.
#[derive(Debug, Clone)]
pub struct StreamContext {
    /// Switchyard's generation id (`gen-…`).
    pub id: String,
    /// The catalog model id the client asked for.
    pub model: String,
    /// The display name of the provider that serves the stream.
    pub provider: String,
}

/// Encodes one stream for the client. The relay calls `start`, then `chunk` for each
/// canonical chunk, then — unless the client went away — `error` if the upstream failed,
/// `usage` exactly once, and `end`. Encoders append SSE frames to `out`.
pub trait StreamEncoder: Send + 'static {
    /// A frame that keeps the connection alive while nothing else is sent.
    fn keepalive(&self) -> Bytes;

    fn start(&mut self, _out: &mut Vec<Bytes>) {}

    /// A canonical `chat.completion.chunk` with Switchyard's id, model and provider, and
    /// normalised `finish_reason` plus `native_finish_reason` on its choices.
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>);

    /// The client's chunks are OpenAI's: an OpenAI-format provider's chunks reach
    /// `openai_chunk` as its bytes, patched, instead of `chunk` as a tree.
    const PATCHES_OPENAI_CHUNKS: bool = false;

    /// What `chunk` gets, as JSON already written (`json`), with the provider's chunk it was
    /// written from. Only encoders with `PATCHES_OPENAI_CHUNKS` are given this; any other
    /// gets the tree.
    fn openai_chunk(
        &mut self,
        _provider_chunk: &OpenAiAnswer,
        json: Vec<u8>,
        out: &mut Vec<Bytes>,
    ) {
        // The writer only emits valid JSON.
        if let Ok(chunk) = serde_json::from_slice::<Value>(&json) {
            self.chunk(&chunk, out);
        }
    }

    /// The upstream failed after the stream started; the stream must not end cleanly.
    fn error(&mut self, error: &ApiError, native_finish_reason: &str, out: &mut Vec<Bytes>);

    /// The client `usage` object (tokens and cost) of the whole generation.
    fn usage(&mut self, usage: &Value, out: &mut Vec<Bytes>);

    fn end(&mut self, out: &mut Vec<Bytes>);
}

/// One SSE `data:` frame.
pub fn sse_data(value: &Value) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serialising a Value cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// One SSE frame with an `event:` name.
pub fn sse_event(event: &str, value: &Value) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
