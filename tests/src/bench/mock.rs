//! The benchmark's upstream: a lean OpenAI-format mock on bare hyper. Unlike
//! [`crate::mock_openai`] it records nothing and parses nothing (bodies are pre-serialised;
//! the request is only scanned for a few byte patterns), so the mock costs the same small,
//! constant amount in every arm and never grows in memory under load.
//!
//! Per request, decided from the raw body:
//! - `"stream":true` (or `"stream": true`): SSE with a role chunk, `chunks` content chunks
//!   `chunk_interval` apart, a finish chunk, a usage chunk and `[DONE]`. Each content chunk's
//!   text is the wall-clock send time in microseconds since the epoch plus a space, so the
//!   client can measure every chunk's transit time through an arm (all processes share the
//!   clock of one machine).
//! - the model name contains `slow`: waits `slow_delay` first (pool-under-load scenarios).
//! - every `error_every`-th request answers 500, every `throttle_every`-th 429.
//!
//! Usage counts are fixed (`prompt_tokens` 12, `completion_tokens` 9) so metering is
//! deterministic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const PROMPT_TOKENS: u64 = 12;
pub const COMPLETION_TOKENS: u64 = 9;

#[derive(Clone, Debug)]
pub struct MockSettings {
    /// Added before every answer.
    pub delay: Duration,
    /// Added, on top of `delay`, when the requested model's name contains `slow`.
    pub slow_delay: Duration,
    /// Content chunks per streamed answer.
    pub chunks: u32,
    pub chunk_interval: Duration,
    /// Every N-th request answers 500 (0: never).
    pub error_every: u64,
    /// Every N-th request answers 429 (0: never).
    pub throttle_every: u64,
}

impl Default for MockSettings {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            slow_delay: Duration::from_millis(60),
            chunks: 20,
            chunk_interval: Duration::from_millis(2),
            error_every: 0,
            throttle_every: 0,
        }
    }
}

type MockBody = Either<
    Full<Bytes>,
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>,
>;

struct Shared {
    settings: MockSettings,
    completion: Bytes,
    counter: AtomicU64,
}

/// Serves until `shutdown` fires. Binds before returning the address, so callers can connect
/// as soon as they have it.
pub async fn start(
    listen: SocketAddr,
    settings: MockSettings,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        settings,
        completion: Bytes::from(completion_body()),
        counter: AtomicU64::new(0),
    });
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(%err, "mock accept failed");
                        continue;
                    }
                },
            };
            // Nagle plus delayed ACK would add 40 ms steps to small responses.
            let _ = tcp.set_nodelay(true);
            let shared = shared.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(shared.clone(), req));
                let conn = http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
                tokio::select! {
                    _ = conn => {}
                    () = stop.cancelled() => {}
                }
            });
        }
    });
    Ok((addr, task))
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    use http_body_util::BodyExt as _;
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let s = &shared.settings;
    let mut delay = s.delay;
    if contains(&body, b"slow") {
        delay += s.slow_delay;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if s.error_every > 0 && n.is_multiple_of(s.error_every) {
        return Ok(json(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(
                br#"{"error":{"message":"mock failure","type":"server_error","param":null,"code":null}}"#,
            ),
        ));
    }
    if s.throttle_every > 0 && n.is_multiple_of(s.throttle_every) {
        let mut response = json(
            StatusCode::TOO_MANY_REQUESTS,
            Bytes::from_static(
                br#"{"error":{"message":"Rate limit reached","type":"rate_limit_exceeded","param":null,"code":"rate_limit_exceeded"}}"#,
            ),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(response);
    }
    if contains(&body, b"\"stream\":true") || contains(&body, b"\"stream\": true") {
        return Ok(sse(s.chunks, s.chunk_interval));
    }
    Ok(json(StatusCode::OK, shared.completion.clone()))
}

fn json(status: StatusCode, body: Bytes) -> Response<MockBody> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn sse(chunks: u32, interval: Duration) -> Response<MockBody> {
    let start = tokio::time::Instant::now();
    // Event k (0-based): 0 = role, 1..=chunks = content, then finish, usage, [DONE].
    let total = chunks + 4;
    let events = stream::unfold(0u32, move |k| async move {
        if k >= total {
            return None;
        }
        let bytes = if k == 0 {
            Bytes::from_static(ROLE_CHUNK.as_bytes())
        } else if k <= chunks {
            if k > 1 {
                tokio::time::sleep_until(start + interval * (k - 1)).await;
            }
            Bytes::from(content_chunk(unix_micros()))
        } else if k == chunks + 1 {
            Bytes::from_static(FINISH_CHUNK.as_bytes())
        } else if k == chunks + 2 {
            Bytes::from(usage_chunk())
        } else {
            Bytes::from_static(b"data: [DONE]\n\n")
        };
        Some((Ok(Frame::data(bytes)), k + 1))
    });
    let body: futures_util::stream::BoxStream<'static, _> = Box::pin(events);
    let mut response = Response::new(Either::Right(StreamBody::new(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

const ROLE_CHUNK: &str = "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-model\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n";

const FINISH_CHUNK: &str = "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-model\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";

fn content_chunk(sent_us: u64) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-model\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{sent_us} \"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
    )
}

fn usage_chunk() -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-model\",\"system_fingerprint\":\"fp_bench\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{PROMPT_TOKENS},\"completion_tokens\":{COMPLETION_TOKENS},\"total_tokens\":{}}}}}\n\n",
        PROMPT_TOKENS + COMPLETION_TOKENS
    )
}

fn completion_body() -> String {
    format!(
        "{{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"bench-model\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"The quick brown fox jumps over the lazy dog.\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":{PROMPT_TOKENS},\"completion_tokens\":{COMPLETION_TOKENS},\"total_tokens\":{},\"prompt_tokens_details\":{{\"cached_tokens\":0,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}",
        PROMPT_TOKENS + COMPLETION_TOKENS
    )
}

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_serialised_bodies_are_valid_json() {
        let body: serde_json::Value = serde_json::from_str(&completion_body()).unwrap();
        assert_eq!(body["usage"]["total_tokens"], 21);
        for event in [
            ROLE_CHUNK.to_owned(),
            FINISH_CHUNK.to_owned(),
            content_chunk(1234),
            usage_chunk(),
        ] {
            let data = event
                .strip_prefix("data: ")
                .and_then(|e| e.strip_suffix("\n\n"))
                .unwrap();
            let _: serde_json::Value = serde_json::from_str(data).unwrap();
        }
        assert!(content_chunk(1234).contains("\"content\":\"1234 \""));
    }
}
