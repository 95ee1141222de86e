//! The gateway's own per-request middleware, innermost in the stack (inside the router, so
//! the route template is known): request metrics and the JSON rendering of 413s.
//!
//! One hand-written layer instead of two `axum::middleware::from_fn`s: each of those boxed
//! the rest of the stack into a fresh `Next` for every request, and the metrics registry
//! went into every request's extensions for the one route that reads it.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use super::body_limit;
use crate::telemetry::{self, ErrorType, GatewayMetrics};

/// The route `GET /metrics` is served on; it reads the registry from the request.
const METRICS_ROUTE: &str = "/metrics";

#[derive(Clone)]
pub(crate) struct EnvelopeLayer {
    metrics: Arc<GatewayMetrics>,
    max_body_bytes: usize,
}

impl EnvelopeLayer {
    pub(crate) fn new(metrics: Arc<GatewayMetrics>, max_body_bytes: usize) -> Self {
        Self {
            metrics,
            max_body_bytes,
        }
    }
}

impl<S> Layer<S> for EnvelopeLayer {
    type Service = Envelope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Envelope {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Envelope<S> {
    inner: S,
    layer: EnvelopeLayer,
}

impl<S> Service<Request> for Envelope<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let EnvelopeLayer {
            metrics,
            max_body_bytes,
        } = self.layer.clone();
        Box::pin(async move {
            let route = request.extensions().get::<MatchedPath>().cloned();
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            if route == METRICS_ROUTE {
                request.extensions_mut().insert(metrics);
                return inner.call(request).await;
            }
            let anthropic = request.uri().path().contains("/messages");
            let method = request.method().clone();
            let started = Instant::now();
            let (response, upstream) = telemetry::with_upstream_time(async move {
                match inner.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            })
            .await;
            let response =
                body_limit::render_payload_too_large(response, anthropic, max_body_bytes);
            let error_type = response.extensions().get::<ErrorType>().map(|e| e.0);
            metrics.observe_response(
                route,
                method.as_str(),
                response.status(),
                error_type,
                started.elapsed(),
                upstream,
            );
            Ok(response)
        })
    }
}
