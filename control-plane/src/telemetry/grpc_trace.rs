//! The span of one gRPC call from a gateway (config watch, usage report, lease): the
//! method, the node's W3C trace context when it sends one, and OTel's RPC attributes, so
//! control-plane work shows in the same traces as the gateway's.

use http::Request;
use tower_http::classify::{GrpcErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, TraceLayer};

#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcSpan;

impl<B> MakeSpan<B> for GrpcSpan {
    fn make_span(&mut self, request: &Request<B>) -> tracing::Span {
        let path = request.uri().path();
        // `/switchyard.v1.UsageService/Report` → service and method.
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let span = tracing::info_span!(
            "grpc",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
        );
        switchyard_gateway::telemetry::otel::adopt_remote_parent(&span, request.headers());
        span
    }
}

/// `TraceLayer` for the tonic server; failures (non-OK gRPC status) are logged at error.
pub fn grpc_trace_layer() -> TraceLayer<SharedClassifier<GrpcErrorsAsFailures>, GrpcSpan> {
    TraceLayer::new_for_grpc().make_span_with(GrpcSpan)
}
