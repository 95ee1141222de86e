//! Logs: `SWITCHYARD_LOG` sets the filter (`info`, `switchyard_gateway=debug,warn`, …) and
//! `SWITCHYARD_LOG_FORMAT=json` switches to one JSON object per line, with the request
//! span's `request_id` on every line logged while serving a request.
//!
//! Secrets stay out of logs by construction: the request span records the method, the
//! path (never the query string, which some SDKs use for keys) and the request id; keys,
//! tokens and DSNs are redacted in `Debug`; request and response bodies are never logged.

use axum::http::{HeaderName, Request};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, TraceLayer};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// From `SWITCHYARD_LOG_FORMAT` (`json` or `text`, default text).
    pub fn from_env() -> Self {
        match std::env::var("SWITCHYARD_LOG_FORMAT") {
            Ok(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// Installs the process-wide subscriber for a binary, logging to stderr, plus OpenTelemetry
/// export when the standard `OTEL_*` variables configure it (see [`super::otel`]). Keep
/// the returned guard for the life of the process: dropping it flushes queued spans.
pub fn init_logging(default_filter: &str, service_name: &str) -> Option<super::otel::OtelGuard> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter =
        EnvFilter::try_from_env("SWITCHYARD_LOG").unwrap_or_else(|_| default_filter.into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match LogFormat::from_env() {
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    // A bad OTEL_* setting must not stop the gateway from serving: it is reported (once the
    // logger is up) and tracing stays off.
    let (otel, guard, problem) = match super::otel::OtelConfig::from_env(service_name) {
        Ok(None) => (None, None, None),
        Ok(Some(config)) => match super::otel::layer(&config) {
            Ok((layer, guard)) => (Some(layer), Some(guard), None),
            Err(err) => (None, None, Some(err)),
        },
        Err(err) => (None, None, Some(err)),
    };
    let enabled = otel.is_some();
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if let Some(err) = problem {
        tracing::error!(error = %err, "OpenTelemetry tracing is off: bad configuration");
    } else if enabled {
        tracing::info!("exporting traces over OTLP/gRPC");
    }
    guard
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The `request` span: method, path and request id (from `x-request-id`, set by the
/// gateway's request-id layer or the caller).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> tracing::Span {
        let request_id = request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let span = tracing::info_span!(
            "request",
            otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
            otel.kind = "server",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = %request_id,
        );
        // A caller's W3C trace context makes this request part of its trace.
        super::otel::adopt_remote_parent(&span, request.headers());
        span
    }
}

/// `TraceLayer` with [`RequestSpan`]; responses and failures are logged at debug / error.
pub fn http_trace_layer() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan> {
    TraceLayer::new_for_http().make_span_with(RequestSpan)
}
