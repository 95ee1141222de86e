//! The only place that talks to providers: one pooled HTTP client (TCP_NODELAY, HTTP/2 when
//! offered via ALPN), timeouts, and SSE decoding of streamed replies.

use std::time::Duration;

use axum::http::StatusCode;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;

use crate::chat_request::ChatRequest;
use crate::error::{ApiError, UpstreamFailure};
use crate::providers::{self, Reply, openai};
use crate::snapshot::{EndpointEntry, ProviderKind};

/// Upper bound for a whole non-streaming call, and for the gap between streamed events.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
}

impl Upstream {
    pub fn new() -> Result<Self, crate::GatewayError> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::GatewayError::Config(format!("HTTP client: {e}")))?;
        Ok(Self { client })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends one attempt to one endpoint. Errors are returned before any byte reached the
    /// client, so the caller may try another endpoint.
    pub async fn send(
        &self,
        request: &ChatRequest,
        endpoint: &EndpointEntry,
        model_id: &str,
    ) -> Result<Reply, ApiError> {
        match endpoint.provider.kind {
            ProviderKind::Echo => Ok(if request.stream {
                let chunks = providers::echo::chunks(request, model_id);
                Reply::Stream(Box::pin(futures_util::stream::iter(
                    chunks.into_iter().map(Ok),
                )))
            } else {
                Reply::Complete(providers::echo::complete(request, model_id))
            }),
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                self.send_openai(request, endpoint).await
            }
        }
    }

    async fn send_openai(
        &self,
        request: &ChatRequest,
        endpoint: &EndpointEntry,
    ) -> Result<Reply, ApiError> {
        let provider = &endpoint.provider.slug;
        let upstream = openai::build_request(request, endpoint);
        let mut builder = self
            .client
            .post(&upstream.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(upstream.body);
        if let Some(token) = &upstream.bearer {
            builder = builder.bearer_auth(token);
        }
        if !request.stream {
            builder = builder.timeout(RESPONSE_TIMEOUT);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| transport_failure(&e, provider))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = response.bytes().await.unwrap_or_default();
            let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            return Err(ApiError::Upstream(openai::map_error(
                status,
                &body,
                provider,
                retry_after,
            )));
        }
        if request.stream {
            Ok(Reply::Stream(decode_sse(response, provider.clone())))
        } else {
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_failure(&e, provider))?;
            let value: Value = serde_json::from_slice(&body).map_err(|_| {
                ApiError::Upstream(failure(
                    StatusCode::BAD_GATEWAY,
                    "provider_unavailable",
                    provider,
                    "returned a body that is not JSON",
                ))
            })?;
            Ok(Reply::Complete(value))
        }
    }
}

fn failure(
    status: StatusCode,
    error_type: &'static str,
    provider: &str,
    what: &str,
) -> UpstreamFailure {
    UpstreamFailure {
        status,
        error_type,
        message: format!("provider `{provider}` {what}"),
        provider: provider.to_owned(),
        provider_code: None,
        retry_after_secs: None,
    }
}

fn transport_failure(err: &reqwest::Error, provider: &str) -> ApiError {
    let f = if err.is_timeout() {
        failure(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            provider,
            "timed out",
        )
    } else if err.is_connect() {
        failure(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            provider,
            "could not be reached",
        )
    } else {
        failure(
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            provider,
            "connection failed",
        )
    };
    ApiError::Upstream(f)
}

/// Decodes an OpenAI-format SSE body into chunk objects. Comment lines are ignored by the
/// SSE parser; `[DONE]` ends the stream; an `error` object or a broken connection becomes
/// an error item so the relay can end the client's stream with an error event.
fn decode_sse(response: reqwest::Response, provider: String) -> providers::ChunkStream {
    let events = response.bytes_stream().eventsource();
    let stream = futures_util::stream::unfold(
        (events, provider, false),
        |(mut events, provider, done)| async move {
            if done {
                return None;
            }
            loop {
                let next = tokio::time::timeout(RESPONSE_TIMEOUT, events.next()).await;
                let item = match next {
                    Err(_) => Err(failure(
                        StatusCode::GATEWAY_TIMEOUT,
                        "timeout",
                        &provider,
                        "stopped sending data",
                    )),
                    Ok(None) => Err(failure(
                        StatusCode::BAD_GATEWAY,
                        "provider_unavailable",
                        &provider,
                        "ended the stream before [DONE]",
                    )),
                    Ok(Some(Err(_))) => Err(failure(
                        StatusCode::BAD_GATEWAY,
                        "provider_unavailable",
                        &provider,
                        "broke the stream",
                    )),
                    Ok(Some(Ok(event))) => {
                        let data = event.data.trim();
                        if data.is_empty() {
                            continue;
                        }
                        if data == "[DONE]" {
                            return None;
                        }
                        match serde_json::from_str::<Value>(data) {
                            Ok(v) if v.get("error").is_some_and(|e| !e.is_null()) => {
                                let msg = v
                                    .pointer("/error/message")
                                    .and_then(Value::as_str)
                                    .unwrap_or("stream error")
                                    .to_owned();
                                Err(failure(
                                    StatusCode::BAD_GATEWAY,
                                    "provider_unavailable",
                                    &provider,
                                    &format!("reported an error mid-stream: {msg}"),
                                ))
                            }
                            Ok(v) => return Some((Ok(v), (events, provider, false))),
                            Err(_) => Err(failure(
                                StatusCode::BAD_GATEWAY,
                                "provider_unavailable",
                                &provider,
                                "sent an event that is not JSON",
                            )),
                        }
                    }
                };
                return Some((item.map_err(ApiError::Upstream), (events, provider, true)));
            }
        },
    );
    Box::pin(stream)
}
