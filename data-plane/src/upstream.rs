//! The only place that talks to providers: one pooled HTTP client (TCP_NODELAY, HTTP/2 when
//! offered via ALPN), timeouts, and SSE decoding of streamed replies.

use std::collections::VecDeque;
use std::time::Duration;

use axum::http::StatusCode;
use eventsource_stream2::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;

use crate::chat_request::ChatRequest;
use crate::error::{ApiError, UpstreamFailure};
use crate::providers::{
    self, ChunkStream, Completion, EmbeddingsRequest, Parsed, Reply, StreamParser, UpstreamRequest,
    Wire,
};
use crate::snapshot::{EndpointEntry, ProviderKind, ProviderTimeouts};

/// Upper bound for a whole non-streaming call, and for the gap between streamed events.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    /// Clients for providers with their own connect timeout (reqwest sets it per client);
    /// keyed by the timeout in ms. A handful at most, each with its own pool.
    by_connect_timeout:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u128, reqwest::Client>>>,
    urls: std::sync::Arc<ParsedUrls>,
}

/// Upstream URLs parsed once: parsing (with IDNA host processing) was ~6 % of the
/// gateway's instructions per request, and a provider's URLs are few and fixed.
#[derive(Default)]
struct ParsedUrls(std::sync::RwLock<std::collections::HashMap<String, reqwest::Url>>);

impl ParsedUrls {
    /// Bounded so per-model URLs (Gemini) of a long-lived node cannot grow without limit.
    const MAX: usize = 4096;

    fn get(&self, raw: &str) -> Option<reqwest::Url> {
        let read = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(url) = read.get(raw) {
            return Some(url.clone());
        }
        drop(read);
        let url = reqwest::Url::parse(raw).ok()?;
        let mut write = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if write.len() >= Self::MAX {
            write.clear();
        }
        write.insert(raw.to_owned(), url.clone());
        Some(url)
    }
}

fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        // A provider answers; it does not redirect. Following one would send the credential
        // to wherever the redirect points, past the SSRF check of the configured base URL.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl Upstream {
    pub fn new() -> Result<Self, crate::GatewayError> {
        let client = build_client(CONNECT_TIMEOUT)
            .map_err(|e| crate::GatewayError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            by_connect_timeout: std::sync::Arc::default(),
            urls: std::sync::Arc::default(),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    fn client_for(&self, timeouts: &ProviderTimeouts) -> reqwest::Client {
        let Some(connect) = timeouts.connect else {
            return self.client.clone();
        };
        let mut clients = self
            .by_connect_timeout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&connect.as_millis()) {
            return c.clone();
        }
        match build_client(connect) {
            Ok(c) => {
                clients.insert(connect.as_millis(), c.clone());
                c
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not build an HTTP client with the provider's connect timeout; using the default");
                self.client.clone()
            }
        }
    }

    /// Sends one attempt to one endpoint. Errors are returned before any byte reached the
    /// client, so the caller may try another endpoint.
    /// `located`: an OpenAI-format provider's answer or chunks are passed on located
    /// (`Completion::OpenAi`) rather than parsed into trees.
    pub async fn send(
        &self,
        request: &ChatRequest,
        endpoint: &EndpointEntry,
        model_id: &str,
        located: bool,
    ) -> Result<Reply, ApiError> {
        match Wire::of(endpoint.provider.kind) {
            None => Ok(if request.stream {
                let chunks = providers::echo::chunks(request, model_id);
                Reply::Stream(Box::pin(futures_util::stream::iter(
                    chunks.into_iter().map(|chunk| Ok(chunk.into())),
                )))
            } else {
                Reply::Complete(providers::echo::complete(request, model_id).into())
            }),
            Some(wire) => {
                let reply = self.send_http(wire, request, endpoint, located);
                attempt("chat", endpoint, reply).await
            }
        }
    }

    async fn send_http(
        &self,
        wire: Wire,
        request: &ChatRequest,
        endpoint: &EndpointEntry,
        located: bool,
    ) -> Result<Reply, ApiError> {
        let provider = &endpoint.provider.slug;
        let timeouts = endpoint.provider.timeouts;
        let upstream = wire.build_request(request, endpoint)?;
        let response = self
            .execute(wire, upstream, provider, &timeouts, !request.stream)
            .await?;
        if request.stream {
            Ok(Reply::Stream(decode_sse(
                response,
                wire.stream_parser(provider, located),
                provider.clone(),
                timeouts.stream_idle.unwrap_or(RESPONSE_TIMEOUT),
            )))
        } else {
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_failure(&e, provider))?;
            Ok(Reply::Complete(
                wire.completion(body, provider, located)
                    .map_err(ApiError::Upstream)?,
            ))
        }
    }

    /// Anthropic's own token count for a messages request; `None` when the endpoint is
    /// not an Anthropic one.
    pub async fn count_tokens(
        &self,
        request: &ChatRequest,
        endpoint: &EndpointEntry,
    ) -> Option<Result<u64, ApiError>> {
        if endpoint.provider.kind != ProviderKind::Anthropic {
            return None;
        }
        let provider = &endpoint.provider.slug;
        Some(
            attempt("count_tokens", endpoint, async {
                let upstream = providers::anthropic::build_count_tokens(request, endpoint)?;
                let response = self
                    .execute(
                        Wire::Anthropic,
                        upstream,
                        provider,
                        &endpoint.provider.timeouts,
                        true,
                    )
                    .await?;
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| transport_failure(&e, provider))?;
                serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("input_tokens").and_then(Value::as_u64))
                    .ok_or_else(|| {
                        ApiError::Upstream(UpstreamFailure::new(
                            StatusCode::BAD_GATEWAY,
                            "provider_unavailable",
                            provider,
                            "returned no input_tokens",
                        ))
                    })
            })
            .await,
        )
    }

    /// One embeddings call; the answer in OpenAI's embeddings shape. `None` when the
    /// endpoint's provider has no embeddings API.
    pub async fn embed(
        &self,
        request: &EmbeddingsRequest,
        endpoint: &EndpointEntry,
    ) -> Option<Result<Value, ApiError>> {
        let provider = &endpoint.provider.slug;
        let (wire, upstream) = match endpoint.provider.kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => (
                Wire::OpenAi,
                Ok(providers::openai::build_embeddings(request, endpoint)),
            ),
            ProviderKind::Gemini => (
                Wire::Gemini,
                providers::gemini::build_embeddings(request, endpoint),
            ),
            ProviderKind::Anthropic | ProviderKind::Echo => return None,
        };
        Some(
            attempt("embeddings", endpoint, async {
                let response = self
                    .execute(wire, upstream?, provider, &endpoint.provider.timeouts, true)
                    .await?;
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| transport_failure(&e, provider))?;
                let value: Value = serde_json::from_slice(&body).map_err(|_| {
                    ApiError::Upstream(UpstreamFailure::new(
                        StatusCode::BAD_GATEWAY,
                        "provider_unavailable",
                        provider,
                        "returned a body that is not JSON",
                    ))
                })?;
                match wire {
                    Wire::Gemini => providers::gemini::parse_embeddings(&value, request, provider)
                        .map_err(ApiError::Upstream),
                    _ => Ok(value),
                }
            })
            .await,
        )
    }

    /// Sends a built request; a non-2xx answer becomes the mapped error, before any byte
    /// reached the client.
    async fn execute(
        &self,
        wire: Wire,
        upstream: UpstreamRequest,
        provider: &str,
        timeouts: &ProviderTimeouts,
        whole_body_timeout: bool,
    ) -> Result<reqwest::Response, ApiError> {
        let url = self.urls.get(&upstream.url).ok_or_else(|| {
            ApiError::Upstream(UpstreamFailure::new(
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                provider,
                "has a base URL that is not a valid URL",
            ))
        })?;
        let mut builder = self.client_for(timeouts).post(url).body(upstream.body);
        for (name, value) in &upstream.headers {
            builder = builder.header(*name, value);
        }
        // W3C trace context of the current (attempt) span; nothing when tracing is off.
        builder = builder.headers(crate::telemetry::otel::inject(&tracing::Span::current()));
        if whole_body_timeout {
            builder = builder.timeout(RESPONSE_TIMEOUT);
        }
        // The first-byte bound covers connecting, sending and waiting for the status line:
        // a provider that accepts the connection and then says nothing is given up on
        // while another endpoint can still be tried.
        let first_byte = timeouts.first_byte.unwrap_or(RESPONSE_TIMEOUT);
        let response = match tokio::time::timeout(first_byte, builder.send()).await {
            Ok(sent) => sent.map_err(|e| transport_failure(&e, provider))?,
            Err(_) => {
                return Err(ApiError::Upstream(UpstreamFailure::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    provider,
                    "sent no response before the first-byte timeout",
                )));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = response.bytes().await.unwrap_or_default();
        let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        Err(ApiError::Upstream(wire.map_error(
            status,
            &body,
            provider,
            retry_after,
        )))
    }
}

/// One provider call inside its own client span, a child of the generation span whose
/// context the provider receives as `traceparent`; a failure is recorded on the span, and
/// the wait counts as provider time, not gateway overhead, in the metrics.
async fn attempt<T>(
    operation: &'static str,
    endpoint: &EndpointEntry,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let started = std::time::Instant::now();
    let span = crate::telemetry::otel::attempt_span(
        operation,
        &endpoint.provider.slug,
        &endpoint.upstream_model,
    );
    let result = tracing::Instrument::instrument(call, span.clone()).await;
    if let Err(err) = &result {
        crate::telemetry::otel::record_attempt_error(
            &span,
            err.status().as_u16(),
            err.error_type(),
        );
    }
    crate::telemetry::add_upstream_time(started.elapsed());
    result
}

fn transport_failure(err: &reqwest::Error, provider: &str) -> ApiError {
    let f = if err.is_timeout() {
        UpstreamFailure::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            provider,
            "timed out",
        )
    } else if err.is_connect() {
        UpstreamFailure::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            provider,
            "could not be reached",
        )
    } else {
        UpstreamFailure::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            provider,
            "connection failed",
        )
    };
    ApiError::Upstream(f)
}

/// Decodes an SSE body into canonical chunks with the format's parser. Comment lines are
/// ignored by the SSE decoder; a failure (reported by the provider, a broken connection,
/// a stall) becomes the last item so the relay can end the client's stream with an error.
fn decode_sse(
    response: reqwest::Response,
    parser: Box<dyn StreamParser>,
    provider: String,
    idle_timeout: Duration,
) -> ChunkStream {
    struct State<E> {
        events: E,
        parser: Box<dyn StreamParser>,
        pending: VecDeque<Completion>,
        finished: bool,
        provider: String,
        idle_timeout: Duration,
    }
    let state = State {
        events: response.bytes_stream().eventsource(),
        parser,
        pending: VecDeque::new(),
        finished: false,
        provider,
        idle_timeout,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(chunk) = st.pending.pop_front() {
                return Some((Ok(chunk), st));
            }
            if st.finished {
                return None;
            }
            let next = tokio::time::timeout(st.idle_timeout, st.events.next()).await;
            let step = match next {
                Err(_) => Err(UpstreamFailure::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    &st.provider,
                    "stopped sending data",
                )),
                Ok(None) => st.parser.closed().map(|chunks| Parsed {
                    chunks: chunks.into_iter().map(Completion::Canonical).collect(),
                    done: true,
                }),
                Ok(Some(Err(_))) => Err(UpstreamFailure::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_unavailable",
                    &st.provider,
                    "broke the stream",
                )),
                Ok(Some(Ok(event))) => st.parser.event(&event.event, &event.data),
            };
            match step {
                Ok(parsed) => {
                    st.pending.extend(parsed.chunks);
                    st.finished = parsed.done;
                }
                Err(failure) => {
                    st.finished = true;
                    st.pending.clear();
                    return Some((Err(ApiError::Upstream(failure)), st));
                }
            }
        }
    });
    Box::pin(stream)
}
