//! The gateway's Prometheus metrics. One registry per gateway instance (several run in one
//! process in tests and in `switchyard serve`), exposed on `GET /metrics` in the OpenMetrics
//! text format. Labels are low-cardinality on purpose: route templates, `error_type`,
//! catalog model ids — never keys, orgs, prompts or URLs.

use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use switchyard_proto::pb;

use crate::GatewayStatus;
use crate::metering::meter::Backlog;
use crate::metering::shipper::ShipperStats;
use crate::metering::spool::Spool;

/// Marks an error response with its OpenRouter `error_type`, for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorType(pub &'static str);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    route: String,
    error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    model: String,
    provider: String,
    outcome: &'static str,
}

fn overhead_histogram() -> Histogram {
    // 100 µs … ~3.3 s
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 3.3,
    ])
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~80 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.0, 15,
    ))
}

/// Live sources read at scrape time.
struct Sources {
    /// Weak: the spool's file lock must go with the node's tasks, not with the last
    /// connection still holding the router (a killed node must release it).
    spool: Weak<Spool>,
    status: GatewayStatus,
    shipper: Arc<ShipperStats>,
    meter: Backlog,
}

/// Handles into the families, one set per route template or catalog model, found by one
/// foldhash lookup of a borrowed key. `Family::get_or_create` hashes a whole label set with
/// SipHash and needs it owned (string clones): ~3 000 instructions per request for the five
/// or so series a request touches. Both keys are bounded (route templates, catalog ids).
struct Handles<T>(RwLock<foldhash::HashMap<String, Arc<T>>>);

impl<T> Default for Handles<T> {
    fn default() -> Self {
        Self(RwLock::default())
    }
}

impl<T> Handles<T> {
    fn get(&self, key: &str, make: impl FnOnce() -> T) -> Arc<T> {
        let known = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(handles) = known.get(key) {
            return handles.clone();
        }
        drop(known);
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }
}

struct RouteHandles {
    duration: Histogram,
    overhead: Histogram,
    /// `requests` with status 200, per method.
    ok: Handles<Counter>,
}

/// Created on first use, so a series appears only once it has something to count (as with
/// `get_or_create` alone).
#[derive(Default)]
struct ModelHandles {
    tokens: [OnceLock<Counter>; TOKEN_KINDS.len()],
    cost_nanos: OnceLock<Counter>,
    ttft: OnceLock<Histogram>,
    /// `generations` per provider, by outcome.
    generations: Handles<[OnceLock<Counter>; OUTCOMES.len()]>,
}

const TOKEN_KINDS: [&str; 5] = ["input", "output", "cache_read", "cache_write", "reasoning"];
const OUTCOMES: [&str; 3] = ["ok", "error", "cancelled"];

pub struct GatewayMetrics {
    registry: Registry,
    by_route: Handles<RouteHandles>,
    by_model: Handles<ModelHandles>,
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    rate_limited: Family<RouteLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    overhead: Family<RouteLabels, Histogram, fn() -> Histogram>,
    ttft: Family<ModelLabels, Histogram, fn() -> Histogram>,
    tokens: Family<TokenLabels, Counter>,
    cost_nanos: Family<ModelLabels, Counter>,
    generations: Family<OutcomeLabels, Counter>,
    config_version: Gauge,
    gateway_count: Gauge,
    spool_pending: Gauge,
    spool_bytes: Gauge,
    spool_max_bytes: Gauge,
    spool_unacked_bytes: Gauge,
    spool_full_refusals: Counter,
    spooled_seq: Gauge,
    acked_seq: Gauge,
    meter_backlog: Gauge,
    shipped: Gauge,
    shipper_reconnects: Gauge,
    sources: OnceLock<Sources>,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics").finish_non_exhaustive()
    }
}

impl GatewayMetrics {
    pub fn new() -> Self {
        // Spool depth is `switchyard_spool_bytes`, the name operators alert on; every other
        // metric is under `switchyard_gateway_`.
        let mut root = Registry::default();
        let spool_bytes = Gauge::default();
        root.register_with_unit(
            "switchyard_spool",
            "Disk used by the usage spool: its depth, bounded by the spool cap",
            Unit::Bytes,
            spool_bytes.clone(),
        );
        let r = root.sub_registry_with_prefix("switchyard_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        r.register(
            "errors",
            "Error responses by route and OpenRouter error_type",
            errors.clone(),
        );
        let rate_limited = Family::<RouteLabels, Counter>::default();
        r.register(
            "rate_limit_rejections",
            "Requests rejected by a key or org rate limit (429)",
            rate_limited.clone(),
        );
        let duration = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        r.register_with_unit(
            "request_duration",
            "Time from request arrival to response headers",
            Unit::Seconds,
            duration.clone(),
        );
        let overhead = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            overhead_histogram,
        );
        r.register_with_unit(
            "overhead",
            "Gateway overhead: time to response headers minus time spent waiting on providers",
            Unit::Seconds,
            overhead.clone(),
        );
        let ttft = Family::<ModelLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        r.register_with_unit(
            "time_to_first_token",
            "Time to first token of streamed generations, by catalog model",
            Unit::Seconds,
            ttft.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        r.register(
            "tokens",
            "Tokens metered, by catalog model and kind (input, output, cache_read, cache_write, reasoning)",
            tokens.clone(),
        );
        let cost_nanos = Family::<ModelLabels, Counter>::default();
        r.register(
            "cost_nano_usd",
            "Cost shown to clients, in nano-USD, by catalog model",
            cost_nanos.clone(),
        );
        let generations = Family::<OutcomeLabels, Counter>::default();
        r.register(
            "generations",
            "Usage records written (one per request that reached a provider), by model, provider and outcome",
            generations.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let config_version = gauge(
            r,
            "config_version",
            "Version of the config snapshot in use (0 before the first)",
        );
        let gateway_count = gauge(
            r,
            "peer_gateways",
            "Gateways sharing rate limits, per the snapshot in use",
        );
        let spool_pending = gauge(
            r,
            "spool_pending_records",
            "Usage records in the spool not yet acknowledged by the control plane",
        );
        let spool_max_bytes = Gauge::default();
        r.register_with_unit(
            "spool_max",
            "Disk cap of the usage spool (0: none); at the cap new requests get 503",
            Unit::Bytes,
            spool_max_bytes.clone(),
        );
        let spool_unacked_bytes = Gauge::default();
        r.register_with_unit(
            "spool_unacked",
            "Disk used by usage records the control plane has not acknowledged (bounded by the cap)",
            Unit::Bytes,
            spool_unacked_bytes.clone(),
        );
        let spool_full_refusals = Counter::default();
        r.register(
            "spool_full_refusals",
            "Requests refused with 503 because the usage spool was at its disk cap",
            spool_full_refusals.clone(),
        );
        let spooled_seq = gauge(
            r,
            "usage_spooled_seq",
            "Highest usage sequence number durable in the spool",
        );
        let acked_seq = gauge(
            r,
            "usage_acked_seq",
            "Highest usage sequence number acknowledged by the control plane",
        );
        let meter_backlog = gauge(
            r,
            "meter_backlog_records",
            "Usage records handed off but not yet durable in the spool",
        );
        let shipped = gauge(
            r,
            "usage_shipped_records",
            "Usage records sent to the control plane since start",
        );
        let shipper_reconnects = gauge(
            r,
            "usage_shipper_reconnects",
            "Times the usage stream to the control plane was re-opened since start",
        );
        Self {
            registry: root,
            by_route: Handles::default(),
            by_model: Handles::default(),
            requests,
            errors,
            rate_limited,
            duration,
            overhead,
            ttft,
            tokens,
            cost_nanos,
            generations,
            config_version,
            gateway_count,
            spool_pending,
            spool_bytes,
            spool_max_bytes,
            spool_unacked_bytes,
            spool_full_refusals,
            spooled_seq,
            acked_seq,
            meter_backlog,
            shipped,
            shipper_reconnects,
            sources: OnceLock::new(),
        }
    }

    /// Publishes the spool's disk cap; returns the refusal counter for the gate.
    pub(crate) fn spool_cap(&self, max_bytes: u64) -> Counter {
        self.spool_max_bytes
            .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
        self.spool_full_refusals.clone()
    }

    /// Connects the scrape-time gauges to the running node.
    pub(crate) fn attach(
        &self,
        spool: Arc<Spool>,
        status: GatewayStatus,
        shipper: Arc<ShipperStats>,
        meter: Backlog,
    ) {
        let _ = self.sources.set(Sources {
            spool: Arc::downgrade(&spool),
            status,
            shipper,
            meter,
        });
    }

    /// Counts one finished usage record. Called from the meter, off the response path.
    pub fn observe_usage(&self, record: &pb::UsageRecord) {
        let handles = self.by_model.get(&record.model, ModelHandles::default);
        let model = || ModelLabels {
            model: record.model.clone(),
        };
        if let Some(usage) = &record.usage {
            let counts = [
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage
                    .cache_write_5m_tokens
                    .saturating_add(usage.cache_write_1h_tokens),
                usage.reasoning_tokens,
            ];
            for ((n, kind), counter) in counts.into_iter().zip(TOKEN_KINDS).zip(&handles.tokens) {
                if n > 0 {
                    counter
                        .get_or_init(|| {
                            self.tokens
                                .get_or_create(&TokenLabels {
                                    model: record.model.clone(),
                                    kind,
                                })
                                .clone()
                        })
                        .inc_by(n);
                }
            }
        }
        if let Ok(cost) = u64::try_from(record.cost_nanos)
            && cost > 0
        {
            handles
                .cost_nanos
                .get_or_init(|| self.cost_nanos.get_or_create(&model()).clone())
                .inc_by(cost);
        }
        if record.streamed
            && let Some(ttft) = record.ttft_ms
        {
            handles
                .ttft
                .get_or_init(|| self.ttft.get_or_create(&model()).clone())
                .observe(f64::from(ttft) / 1000.0);
        }
        let outcome = if record.cancelled {
            2
        } else if !record.error_type.is_empty() || record.http_status >= 400 {
            1
        } else {
            0
        };
        handles
            .generations
            .get(&record.provider_slug, Default::default)[outcome]
            .get_or_init(|| {
                self.generations
                    .get_or_create(&OutcomeLabels {
                        model: record.model.clone(),
                        provider: record.provider_slug.clone(),
                        outcome: OUTCOMES[outcome],
                    })
                    .clone()
            })
            .inc();
    }

    pub(crate) fn observe_response(
        &self,
        route: &str,
        method: &str,
        status: StatusCode,
        error_type: Option<&'static str>,
        elapsed: Duration,
        upstream: Duration,
    ) {
        let route_labels = || RouteLabels {
            route: route.to_owned(),
        };
        let handles = self.by_route.get(route, || RouteHandles {
            duration: self.duration.get_or_create(&route_labels()).clone(),
            overhead: self.overhead.get_or_create(&route_labels()).clone(),
            ok: Handles::default(),
        });
        let requests = || {
            self.requests
                .get_or_create(&RequestLabels {
                    route: route.to_owned(),
                    method: method.to_owned(),
                    status: status.as_u16(),
                })
                .clone()
        };
        if status == StatusCode::OK {
            handles.ok.get(method, requests).inc();
        } else {
            requests().inc();
        }
        if status.is_client_error() || status.is_server_error() {
            let error_type = error_type.unwrap_or_else(|| error_type_for(status));
            self.errors
                .get_or_create(&ErrorLabels {
                    route: route.to_owned(),
                    error_type: error_type.to_owned(),
                })
                .inc();
            if error_type == "rate_limit_exceeded" {
                self.rate_limited.get_or_create(&route_labels()).inc();
            }
        }
        handles.duration.observe(elapsed.as_secs_f64());
        handles
            .overhead
            .observe(elapsed.saturating_sub(upstream).as_secs_f64());
    }

    fn refresh(&self) {
        let Some(s) = self.sources.get() else { return };
        let set = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.config_version, *s.status.applied_version.borrow());
        set(
            &self.gateway_count,
            u64::from(*s.status.gateway_count.borrow()),
        );
        if let Some(spool) = s.spool.upgrade() {
            set(
                &self.spool_pending,
                u64::try_from(spool.pending_len()).unwrap_or(u64::MAX),
            );
            set(&self.spool_bytes, spool.disk_bytes());
            set(&self.spool_unacked_bytes, spool.pending_bytes());
        }
        set(&self.spooled_seq, *s.status.spooled_usage_seq.borrow());
        set(&self.acked_seq, s.shipper.acked_seq());
        set(&self.meter_backlog, s.meter.get());
        set(&self.shipped, s.shipper.shipped());
        set(&self.shipper_reconnects, s.shipper.reconnects());
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        self.refresh();
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %err, "could not encode metrics");
        }
        out
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// For responses rendered without an `ApiError` (skins with their own envelopes).
fn error_type_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "authentication",
        402 => "payment_required",
        403 => "permission_denied",
        404 => "not_found",
        408 | 504 => "timeout",
        413 => "payload_too_large",
        422 => "unprocessable",
        429 => "rate_limit_exceeded",
        502 => "provider_unavailable",
        503 => "provider_overloaded",
        s if s >= 500 => "server",
        _ => "unmapped",
    }
}

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`, with the registry installed as a request extension by the node.
pub async fn metrics_handler(request: Request) -> Response {
    match request.extensions().get::<Arc<GatewayMetrics>>() {
        Some(metrics) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
            )],
            metrics.encode(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

tokio::task_local! {
    /// Nanoseconds the current request spent waiting on providers.
    static UPSTREAM_NANOS: std::cell::Cell<u64>;
}

/// Adds provider wait time to the current request (no-op outside a tracked request).
pub fn add_upstream_time(elapsed: Duration) {
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    let _ = UPSTREAM_NANOS.try_with(|c| c.set(c.get().saturating_add(nanos)));
}

/// Runs `request` (a future answering it) with provider wait time tracked: returns the
/// response and the time it spent waiting on providers (`add_upstream_time`).
pub(crate) async fn with_upstream_time<F: Future<Output = Response>>(
    request: F,
) -> (Response, Duration) {
    UPSTREAM_NANOS
        .scope(std::cell::Cell::new(0), async move {
            let response = request.await;
            let nanos = UPSTREAM_NANOS.with(std::cell::Cell::get);
            (response, Duration::from_nanos(nanos))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(model: &str, input: u64, output: u64, streamed: bool) -> pb::UsageRecord {
        pb::UsageRecord {
            model: model.into(),
            provider_slug: "mock".into(),
            streamed,
            ttft_ms: streamed.then_some(250),
            cost_nanos: 1_000,
            usage: Some(pb::UsageDimensions {
                input_tokens: input,
                output_tokens: output,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn cached_handles_count_into_the_exposed_series() {
        let metrics = GatewayMetrics::new();
        metrics.observe_usage(&record("a/one", 10, 3, false));
        metrics.observe_usage(&record("a/one", 5, 0, true));
        metrics.observe_usage(&record("b/two", 1, 1, false));
        let mut other_provider = record("c/three", 1, 1, false);
        other_provider.provider_slug = "other".into();
        metrics.observe_usage(&other_provider);
        other_provider.http_status = 502;
        metrics.observe_usage(&other_provider);
        for status in [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            metrics.observe_response(
                "/api/v1/chat/completions",
                "POST",
                status,
                None,
                Duration::from_millis(20),
                Duration::from_millis(15),
            );
        }
        let text = metrics.encode();
        let generations = "switchyard_gateway_generations_total";
        for (labels, count) in [
            (r#"model="a/one",provider="mock",outcome="ok""#, 2),
            (r#"model="c/three",provider="mock",outcome="ok""#, 0),
            (r#"model="c/three",provider="other",outcome="ok""#, 1),
            (r#"model="c/three",provider="other",outcome="error""#, 1),
            (r#"model="b/two",provider="mock",outcome="ok""#, 1),
        ] {
            let series = format!("{generations}{{{labels}}}");
            let expected = format!("{series} {count}");
            // Nothing counted, no series.
            let expected = (count > 0).then_some(expected.as_str());
            assert_eq!(line(&text, &series), expected, "{text}");
        }
        let requests = r#"switchyard_gateway_http_requests_total{route="/api/v1/chat/completions",method="POST",status="#;
        assert_eq!(
            line(&text, &format!(r#"{requests}"200"}}"#)),
            Some(format!(r#"{requests}"200"}} 3"#).as_str()),
            "{text}"
        );
        assert_eq!(
            line(&text, &format!(r#"{requests}"429"}}"#)),
            Some(format!(r#"{requests}"429"}} 1"#).as_str()),
            "{text}"
        );
        let tokens = r#"switchyard_gateway_tokens_total{model="a/one",kind="#;
        assert_eq!(
            line(&text, &format!(r#"{tokens}"input"}}"#)),
            Some(r#"switchyard_gateway_tokens_total{model="a/one",kind="input"} 15"#)
        );
        assert_eq!(
            line(&text, &format!(r#"{tokens}"output"}}"#)),
            Some(r#"switchyard_gateway_tokens_total{model="a/one",kind="output"} 3"#)
        );
        // Nothing counted, no series.
        assert_eq!(line(&text, &format!(r#"{tokens}"reasoning"}}"#)), None);
        assert_eq!(
            line(
                &text,
                r#"switchyard_gateway_cost_nano_usd_total{model="a/one"}"#
            ),
            Some(r#"switchyard_gateway_cost_nano_usd_total{model="a/one"} 2000"#)
        );
        assert!(
            line(
                &text,
                r#"switchyard_gateway_time_to_first_token_seconds_count{model="a/one"}"#
            )
            .is_some_and(|l| l.ends_with(" 1")),
            "{text}"
        );
        assert_eq!(
            line(
                &text,
                r#"switchyard_gateway_time_to_first_token_seconds_count{model="b/two"}"#
            ),
            None
        );
        let route = r#"{route="/api/v1/chat/completions"}"#;
        for family in ["request_duration_seconds", "overhead_seconds"] {
            assert_eq!(
                line(&text, &format!("switchyard_gateway_{family}_count{route}")),
                Some(format!("switchyard_gateway_{family}_count{route} 4").as_str()),
                "{text}"
            );
        }
    }
}
