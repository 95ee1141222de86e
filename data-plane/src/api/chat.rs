//! `POST /api/v1/chat/completions`: the OpenAI/OpenRouter skin. The canonical shapes are
//! already OpenAI's, so rendering is the identity and the stream is `data:` chunks, one
//! usage chunk with `choices: []`, then `[DONE]`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::pipeline;
use super::skin::{Skin, StreamContext, StreamEncoder, sse_data};
use crate::chat_request::ChatRequest;
use crate::error::ApiError;
use crate::providers::openai_answer::OpenAiAnswer;
use crate::state::AppState;

const KEEPALIVE: &[u8] = b": SWITCHYARD PROCESSING\n\n";

pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    pipeline::run(state, headers, body, OpenAiChat).await
}

pub struct OpenAiChat;

impl Skin for OpenAiChat {
    type Encoder = ChatEncoder;
    const RENDERS_CANONICAL: bool = true;

    fn api(&self) -> &'static str {
        "chat"
    }

    fn parse(&self, body: &Bytes) -> Result<ChatRequest, ApiError> {
        ChatRequest::parse_bytes(body)
    }

    fn render(&self, completion: Value) -> Value {
        completion
    }

    fn encoder(&self, context: StreamContext) -> ChatEncoder {
        ChatEncoder::new(context, "chat.completion.chunk")
    }

    fn error_response(&self, error: ApiError) -> Response {
        error.into_response()
    }
}

pub struct ChatEncoder {
    context: StreamContext,
    object: &'static str,
    created: Value,
}

impl ChatEncoder {
    pub fn new(context: StreamContext, object: &'static str) -> Self {
        Self {
            context,
            object,
            created: Value::Null,
        }
    }

    /// A frame of this stream with Switchyard's id, model and provider, plus `extra`.
    pub fn frame(&self, extra: Value) -> Value {
        let mut chunk = json!({
            "id": self.context.id, "object": self.object, "created": self.created,
            "model": self.context.model, "provider": self.context.provider,
        });
        if let (Some(c), Value::Object(e)) = (chunk.as_object_mut(), extra) {
            c.extend(e);
        }
        chunk
    }
}

impl StreamEncoder for ChatEncoder {
    fn keepalive(&self) -> Bytes {
        Bytes::from_static(KEEPALIVE)
    }

    fn chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        if self.created.is_null() {
            self.created = chunk.get("created").cloned().unwrap_or(Value::Null);
        }
        out.push(sse_data(chunk));
    }

    const PATCHES_OPENAI_CHUNKS: bool = true;

    fn openai_chunk(&mut self, provider_chunk: &OpenAiAnswer, json: Vec<u8>, out: &mut Vec<Bytes>) {
        if self.created.is_null() {
            self.created = provider_chunk.member("created").unwrap_or(Value::Null);
        }
        let mut frame = Vec::with_capacity(json.len() + 8);
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(&json);
        frame.extend_from_slice(b"\n\n");
        out.push(Bytes::from(frame));
    }

    fn error(&mut self, error: &ApiError, native_finish_reason: &str, out: &mut Vec<Bytes>) {
        out.push(sse_data(&self.frame(json!({
            "error": error.error_object(),
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": native_finish_reason}],
        }))));
    }

    fn usage(&mut self, usage: &Value, out: &mut Vec<Bytes>) {
        out.push(sse_data(
            &self.frame(json!({"choices": [], "usage": usage})),
        ));
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}
