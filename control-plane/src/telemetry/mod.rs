//! The control plane's Prometheus metrics on `GET /metrics` (OpenMetrics text): the config
//! version, each gateway node's applied version and lag, and usage ingestion. Node rows are
//! read from the store at scrape time, so every replica reports the same fleet view.

pub mod grpc_trace;

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use switchyard_gateway::telemetry::metrics::OPENMETRICS_CONTENT_TYPE;

use crate::api::AppState;
use crate::store::IngestOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

pub struct ControlPlaneMetrics {
    registry: Registry,
    config_version: Gauge,
    nodes: Gauge,
    node_version: Family<NodeLabels, Gauge>,
    node_lag: Family<NodeLabels, Gauge>,
    node_ok: Family<NodeLabels, Gauge>,
    usage_batches: Counter,
    usage_inserted: Counter,
    usage_duplicates: Counter,
    usage_failed_batches: Counter,
    leases_outstanding: Gauge,
    lease_outstanding_nanos: Gauge,
    store_errors: Counter,
    provisional_settled: Counter,
}

impl std::fmt::Debug for ControlPlaneMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneMetrics")
            .finish_non_exhaustive()
    }
}

impl Default for ControlPlaneMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControlPlaneMetrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("switchyard_control_plane");
        fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauge {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        }
        fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        }
        fn family(r: &mut Registry, name: &str, help: &str) -> Family<NodeLabels, Gauge> {
            let f = Family::<NodeLabels, Gauge>::default();
            r.register(name, help, f.clone());
            f
        }
        let config_version = gauge(
            &mut r,
            "config_version",
            "Current config version in the store",
        );
        let nodes = gauge(
            &mut r,
            "gateway_nodes",
            "Gateway nodes known to the control plane",
        );
        let node_version = family(
            &mut r,
            "node_applied_version",
            "Config version each gateway node last reported applying",
        );
        let node_lag = family(
            &mut r,
            "node_version_lag",
            "Config versions each gateway node is behind the store",
        );
        let node_ok = family(
            &mut r,
            "node_config_ok",
            "1 when the node's last config ack succeeded, 0 when it rejected the snapshot",
        );
        let usage_batches = counter(&mut r, "usage_batches", "Usage batches ingested");
        let usage_inserted = counter(
            &mut r,
            "usage_records_inserted",
            "Usage records written to the ledger",
        );
        let usage_duplicates = counter(
            &mut r,
            "usage_records_duplicate",
            "Redelivered usage records skipped (already in the ledger)",
        );
        let usage_failed_batches = counter(
            &mut r,
            "usage_batches_failed",
            "Usage batches not acknowledged because the store failed (the gateway resends)",
        );
        let leases_outstanding = gauge(
            &mut r,
            "budget_leases_outstanding",
            "Budget leases (slices) held by gateways and not yet expired",
        );
        let lease_outstanding_nanos = gauge(
            &mut r,
            "budget_lease_outstanding_nano_usd",
            "Budget granted to gateways in unexpired leases and not yet consumed, in nano-USD",
        );
        let store_errors = counter(
            &mut r,
            "metrics_store_errors",
            "Scrapes that could not read node state from the store",
        );
        let provisional_settled = counter(
            &mut r,
            "usage_provisional_settled",
            "Provisional stream usage records settled as estimated (no final record within the grace period)",
        );
        Self {
            registry: r,
            config_version,
            nodes,
            node_version,
            node_lag,
            node_ok,
            usage_batches,
            usage_inserted,
            usage_duplicates,
            usage_failed_batches,
            leases_outstanding,
            lease_outstanding_nanos,
            store_errors,
            provisional_settled,
        }
    }

    pub fn observe_provisional_settled(&self, rows: u64) {
        self.provisional_settled.inc_by(rows);
    }

    /// Provisional records settled as estimated since start.
    pub fn provisional_settled(&self) -> u64 {
        self.provisional_settled.get()
    }

    pub fn observe_ingest(&self, outcome: &Result<IngestOutcome, crate::store::StoreError>) {
        match outcome {
            Ok(o) => {
                self.usage_batches.inc();
                self.usage_inserted.inc_by(u64::from(o.inserted));
                self.usage_duplicates.inc_by(u64::from(o.duplicates));
            }
            Err(_) => {
                self.usage_failed_batches.inc();
            }
        }
    }

    async fn refresh(&self, state: &AppState) {
        let (version, nodes) = match (
            state.store.config_version().await,
            state.store.list_nodes().await,
        ) {
            (Ok(v), Ok(n)) => (v, n),
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(error = %err, "metrics: could not read node state");
                self.store_errors.inc();
                return;
            }
        };
        // Read at scrape time like the node rows: every replica reports the fleet's leases,
        // whichever replica granted them.
        match state.store.lease_totals(crate::store::now_ms()).await {
            Ok((count, outstanding)) => {
                self.leases_outstanding.set(count);
                self.lease_outstanding_nanos.set(outstanding);
            }
            Err(err) => {
                tracing::warn!(error = %err, "metrics: could not read budget leases");
                self.store_errors.inc();
            }
        }
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.config_version.set(version);
        self.nodes
            .set(i64::try_from(nodes.len()).unwrap_or(i64::MAX));
        self.node_version.clear();
        self.node_lag.clear();
        self.node_ok.clear();
        for node in nodes {
            let labels = NodeLabels { node: node.node_id };
            self.node_version
                .get_or_create(&labels)
                .set(node.applied_version);
            self.node_lag
                .get_or_create(&labels)
                .set(version.saturating_sub(node.applied_version).max(0));
            self.node_ok.get_or_create(&labels).set(i64::from(node.ok));
        }
    }

    pub async fn encode(&self, state: &AppState) -> String {
        self.refresh(state).await;
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %err, "could not encode metrics");
        }
        out
    }
}

/// `GET /metrics`.
pub async fn metrics_handler(
    State(state): State<AppState>,
    metrics: Option<Extension<Arc<ControlPlaneMetrics>>>,
) -> Response {
    match metrics {
        Some(Extension(metrics)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
            )],
            metrics.encode(&state).await,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

/// `GET /readyz`: ready while the database answers (liveness stays on `/healthz`, so a
/// database outage takes replicas out of the load balancer without restarting them).
pub async fn readyz_handler(State(state): State<AppState>) -> Response {
    match state.store.config_version().await {
        Ok(version) => (StatusCode::OK, format!("ready: config version {version}")).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness: the database is unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}
