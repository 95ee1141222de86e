//! Logs: `SWITCHYARD_LOG` sets the filter (`info`, `switchyard_gateway=debug,warn`, …) and
//! `SWITCHYARD_LOG_FORMAT=json` switches to one JSON object per line, with the request
//! span's `request_id` on every line logged while serving a request.
//!
//! Secrets stay out of logs by construction: the request span records the method, the
//! path (never the query string, which some SDKs use for keys) and the request id; keys,
//! tokens and DSNs are redacted in `Debug`; request and response bodies are never logged.

use axum::http::Request;
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

/// Installs the process-wide subscriber for a binary, logging to stderr.
pub fn init_logging(default_filter: &str) {
    let filter =
        EnvFilter::try_from_env("SWITCHYARD_LOG").unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match LogFormat::from_env() {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// The `request` span: method, path and request id (from `x-request-id`, set by the
/// gateway's request-id layer or the caller).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> tracing::Span {
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = %request_id,
        )
    }
}

/// `TraceLayer` with [`RequestSpan`]; responses and failures are logged at debug / error.
pub fn http_trace_layer() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan> {
    TraceLayer::new_for_http().make_span_with(RequestSpan)
}
