//! Provider wire formats. Adapters are pure: they build upstream requests and parse
//! upstream responses; all I/O lives in `upstream.rs`. Replies are normalised to OpenAI's
//! chat-completion shapes, which the relay rewrites for the client.

pub mod echo;
pub mod openai;

use std::pin::Pin;

use futures_util::Stream;
use serde_json::Value;

use crate::error::ApiError;

/// A provider's answer, in OpenAI chat-completion shapes.
pub enum Reply {
    /// A whole `chat.completion` object.
    Complete(Value),
    /// `chat.completion.chunk` objects as they arrive.
    Stream(ChunkStream),
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Value, ApiError>> + Send>>;
