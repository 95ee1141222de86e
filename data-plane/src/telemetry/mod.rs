//! Observability shared by both planes: Prometheus metrics, structured logs with request
//! ids, and the HTTP request span.

pub mod logging;
pub mod metrics;
pub mod otel;
mod otlp_http;

pub use logging::{LogFormat, http_trace_layer, init_logging};
pub(crate) use metrics::with_upstream_time;
pub use metrics::{ErrorType, GatewayMetrics, add_upstream_time, metrics_handler};
