//! The only place that talks to providers: pooled HTTP clients (TCP_NODELAY, HTTP/2 when
//! offered via ALPN, see `transport`), timeouts, and SSE decoding of streamed replies.

mod transport;

use std::collections::VecDeque;

use foldhash::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
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
use transport::{ResponseBody, Settings, Transport, TransportError};

/// Upper bound for a whole non-streaming call, and for the gap between streamed events.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Upstream {
    transport: Arc<Transport>,
    /// Clients for providers with their own connect timeout (set per connector); keyed by
    /// the timeout in ms. A handful at most, each with its own pool.
    by_connect_timeout: Arc<Mutex<HashMap<u128, Arc<Transport>>>>,
    settings: Arc<Settings>,
    uris: Arc<ParsedUris>,
}

/// Upstream URLs parsed once: a provider's URLs are few and fixed.
#[derive(Default)]
struct ParsedUris(RwLock<HashMap<String, http::Uri>>);

impl ParsedUris {
    /// Bounded so per-model URLs (Gemini) of a long-lived node cannot grow without limit.
    const MAX: usize = 4096;

    fn get(&self, raw: &str) -> Option<http::Uri> {
        let read = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(uri) = read.get(raw) {
            return Some(uri.clone());
        }
        drop(read);
        // `http::Uri` takes ASCII only; a URL with an international host name or
        // unescaped characters gets its WHATWG form (punycode, percent-escapes) first.
        let uri = http::Uri::try_from(raw).ok().or_else(|| {
            let url = reqwest::Url::parse(raw).ok()?;
            http::Uri::try_from(url.as_str()).ok()
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return None;
        }
        let mut write = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if write.len() >= Self::MAX {
            write.clear();
        }
        write.insert(raw.to_owned(), uri.clone());
        Some(uri)
    }
}

impl Upstream {
    /// Clients trusting the public web PKI and, with `provider_ca`, the CAs in that PEM
    /// bundle; through a proxy when the environment names one.
    pub fn new(provider_ca: Option<&std::path::Path>) -> Result<Self, crate::GatewayError> {
        let tls = crate::tls::provider_client_config(provider_ca)
            .map_err(|e| crate::GatewayError::Config(format!("provider TLS: {e}")))?;
        let proxied = transport::proxy_configured(|name| std::env::var(name).ok());
        let settings = Arc::new(Settings::new(tls, proxied));
        let transport = Transport::new(&settings, CONNECT_TIMEOUT)
            .map_err(|e| crate::GatewayError::Config(format!("HTTP client: {e}")))?
            .into();
        Ok(Self {
            transport,
            by_connect_timeout: Arc::default(),
            settings,
            uris: Arc::default(),
        })
    }

    fn transport_for(&self, timeouts: &ProviderTimeouts) -> Arc<Transport> {
        let Some(connect) = timeouts.connect else {
            return self.transport.clone();
        };
        let mut clients = self
            .by_connect_timeout
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&connect.as_millis()) {
            return c.clone();
        }
        match Transport::new(&self.settings, connect) {
            Ok(c) => {
                let c = Arc::new(c);
                clients.insert(connect.as_millis(), c.clone());
                c
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not build an HTTP client with the provider's connect timeout; using the default");
                self.transport.clone()
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
        if request.stream {
            let response = self.execute(wire, upstream, provider, &timeouts).await?;
            Ok(Reply::Stream(decode_sse(
                response.into_body(),
                wire.stream_parser(provider, located),
                provider.clone(),
                timeouts.stream_idle.unwrap_or(RESPONSE_TIMEOUT),
            )))
        } else {
            let body = self.call(wire, upstream, provider, &timeouts).await?;
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
                let body = self
                    .call(
                        Wire::Anthropic,
                        upstream,
                        provider,
                        &endpoint.provider.timeouts,
                    )
                    .await?;
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
                let body = self
                    .call(wire, upstream?, provider, &endpoint.provider.timeouts)
                    .await?;
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

    /// A call whose whole answer is wanted: sent, answered and read within
    /// `RESPONSE_TIMEOUT`.
    async fn call(
        &self,
        wire: Wire,
        upstream: UpstreamRequest,
        provider: &str,
        timeouts: &ProviderTimeouts,
    ) -> Result<Bytes, ApiError> {
        let call = async {
            let response = self.execute(wire, upstream, provider, timeouts).await?;
            transport::read_body(response.into_body())
                .await
                .map_err(|e| transport_failure(e, provider))
        };
        tokio::time::timeout(RESPONSE_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(transport_failure(TransportError::Timeout, provider)))
    }

    /// Sends a built request; a non-2xx answer becomes the mapped error, before any byte
    /// reached the client.
    async fn execute(
        &self,
        wire: Wire,
        upstream: UpstreamRequest,
        provider: &str,
        timeouts: &ProviderTimeouts,
    ) -> Result<http::Response<ResponseBody>, ApiError> {
        let uri = self.uris.get(&upstream.url).ok_or_else(|| {
            ApiError::Upstream(UpstreamFailure::new(
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                provider,
                "has a base URL that is not a valid URL",
            ))
        })?;
        let mut request = http::Request::post(uri)
            .body(Bytes::from(upstream.body))
            .map_err(|_| transport_failure(TransportError::Broken, provider))?;
        let headers = request.headers_mut();
        for (name, value) in &upstream.headers {
            // Values come from the provider's config (keys, versions); one that is not a
            // valid header value is a configuration error the provider would reject too.
            let value = http::HeaderValue::from_str(value).map_err(|_| {
                ApiError::Upstream(UpstreamFailure::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_unavailable",
                    provider,
                    "has a credential or header that is not a valid HTTP header value",
                ))
            })?;
            headers.append(*name, value);
        }
        // W3C trace context of the current (attempt) span; nothing when tracing is off.
        headers.extend(crate::telemetry::otel::inject(&tracing::Span::current()));
        // The first-byte bound covers connecting, sending and waiting for the status line:
        // a provider that accepts the connection and then says nothing is given up on
        // while another endpoint can still be tried.
        let first_byte = timeouts.first_byte.unwrap_or(RESPONSE_TIMEOUT);
        let transport = self.transport_for(timeouts);
        let response = match tokio::time::timeout(first_byte, transport.send(request)).await {
            Ok(sent) => sent.map_err(|e| transport_failure(e, provider))?,
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
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = transport::read_body(response.into_body())
            .await
            .unwrap_or_default();
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

fn transport_failure(err: TransportError, provider: &str) -> ApiError {
    ApiError::Upstream(match err {
        TransportError::Timeout => UpstreamFailure::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            provider,
            "timed out",
        ),
        TransportError::Connect => UpstreamFailure::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            provider,
            "could not be reached",
        ),
        TransportError::Broken => UpstreamFailure::new(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            provider,
            "connection failed",
        ),
    })
}

/// Decodes an SSE body into canonical chunks with the format's parser. Comment lines are
/// ignored by the SSE decoder; a failure (reported by the provider, a broken connection,
/// a stall) becomes the last item so the relay can end the client's stream with an error.
fn decode_sse(
    body: ResponseBody,
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
        events: http_body_util::BodyDataStream::new(body).eventsource(),
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

#[cfg(test)]
mod tests {
    use super::ParsedUris;

    #[test]
    fn provider_urls_parse_once_in_their_ascii_form() {
        let uris = ParsedUris::default();
        let plain = uris.get("https://api.example.com/v1/chat/completions");
        assert_eq!(
            plain.as_ref().and_then(http::Uri::host),
            Some("api.example.com")
        );
        let international = uris.get("https://bücher.example/v1/chat completions");
        assert_eq!(
            international.map(|u| u.to_string()),
            Some("https://xn--bcher-kva.example/v1/chat%20completions".to_owned())
        );
        assert!(uris.get("ftp://files.example/v1").is_none());
        assert!(uris.get("not a url").is_none());
    }
}
