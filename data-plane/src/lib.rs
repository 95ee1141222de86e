//! Switchyard's data plane: a stateless gateway node. It serves OpenAI/OpenRouter-compatible
//! inference from an in-memory config snapshot pushed by the control plane, meters every
//! request into a durable local spool, and ships usage back until acknowledged.

mod api;
mod auth_interceptor;
pub mod budget;
pub mod cache;
mod chat_request;
mod error;
pub mod fair;
#[doc(hidden)]
pub mod fuzzing;
pub mod guardrails;
pub mod http_server;
pub mod limits;
pub mod metering;
mod providers;
pub mod routing;
pub mod snapshot;
pub mod ssrf;
mod state;
mod sync;
pub mod telemetry;
#[cfg(test)]
mod test_rng;
pub mod tls;
mod upstream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

pub use error::ApiError;
pub use snapshot::Snapshot;

use crate::metering::shipper::{ShipperConfig, run_shipper};
use crate::metering::spool::Spool;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("usage spool: {0}")]
    Spool(#[from] metering::spool::SpoolError),
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
    #[error("starting the usage appender thread: {0}")]
    Appender(#[source] std::io::Error),
}

/// Everything a gateway node needs; secrets are redacted from `Debug`.
#[derive(Clone)]
pub struct GatewayConfig {
    pub node_id: String,
    /// gRPC endpoint of the control plane, e.g. `http://127.0.0.1:50051`.
    pub control_plane_grpc: String,
    /// HTTP base of the control plane for forwarded management routes.
    pub control_plane_http: Option<String>,
    pub node_token: String,
    pub spool_dir: PathBuf,
    /// How long in-flight streams may run on after shutdown is requested.
    pub drain_timeout: Duration,
    /// Progress the node reports (applied config version, acked usage), for probes and tests.
    pub status: GatewayStatus,
    /// Redis URL of a response cache shared by all gateways; `None` caches in memory.
    /// May hold a password, so it is redacted from `Debug`.
    pub redis_url: Option<String>,
}

/// Observable progress of a gateway node.
#[derive(Clone, Debug)]
pub struct GatewayStatus {
    /// Version of the config snapshot in use (0 before the first one).
    pub applied_version: tokio::sync::watch::Sender<u64>,
    /// Highest usage sequence number written durably to the spool.
    pub spooled_usage_seq: tokio::sync::watch::Sender<u64>,
    /// Highest usage sequence number the control plane has acknowledged.
    pub acked_usage_seq: tokio::sync::watch::Sender<u64>,
    /// Gateways sharing the rate limits, per the snapshot in use.
    pub gateway_count: tokio::sync::watch::Sender<u32>,
}

impl Default for GatewayStatus {
    fn default() -> Self {
        let channel = || tokio::sync::watch::channel(0).0;
        Self {
            applied_version: channel(),
            spooled_usage_seq: channel(),
            acked_usage_seq: channel(),
            gateway_count: tokio::sync::watch::channel(0).0,
        }
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("node_id", &self.node_id)
            .field("control_plane_grpc", &self.control_plane_grpc)
            .field("control_plane_http", &self.control_plane_http)
            .field("node_token", &"***")
            .field("spool_dir", &self.spool_dir)
            .finish_non_exhaustive()
    }
}

/// Serves on `listener` until `shutdown` fires, then drains: in-flight streams finish (up
/// to `drain_timeout`), every usage record reaches the spool, and the shipper makes a last
/// flush attempt.
pub async fn run(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    run_with(config, listener, shutdown, ServeOptions::default()).await
}

/// How the public listener serves: input limits against bad and slow clients.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub limits: http_server::HttpLimits,
    /// Serve HTTPS (optionally requiring client certificates) instead of plain HTTP.
    pub tls: Option<tls::ServerTlsFiles>,
    /// TLS (and, with a client certificate, mutual TLS) to an `https://` control plane.
    pub control_plane_tls: Option<tls::ClientTlsFiles>,
    /// Disk cap of the usage spool in bytes (0: none); see `metering::spool_cap`.
    pub spool_max_bytes: u64,
    /// The spool's fdatasync cadence while usage keeps coming (zero: every batch); see
    /// `metering::meter::DEFAULT_SYNC_EVERY`.
    pub spool_sync_every: Duration,
    /// PEM bundle of private CAs trusted for `https://` providers, beside the public roots.
    pub provider_ca: Option<PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            limits: http_server::HttpLimits::default(),
            tls: None,
            control_plane_tls: None,
            spool_max_bytes: metering::spool_cap::DEFAULT_SPOOL_MAX_BYTES,
            spool_sync_every: metering::meter::DEFAULT_SYNC_EVERY,
            provider_ca: None,
        }
    }
}

/// [`run`] with explicit listener options.
pub async fn run_with(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> Result<(), GatewayError> {
    options
        .limits
        .validate()
        .map_err(|e| GatewayError::Config(e.to_string()))?;
    let acceptor = match &options.tls {
        Some(files) => Some(
            files
                .acceptor()
                .map_err(|e| GatewayError::Config(e.to_string()))?,
        ),
        None => None,
    };
    let spool = Arc::new(Spool::open(&config.spool_dir)?);
    config
        .status
        .acked_usage_seq
        .send_replace(spool.acked_seq());
    config
        .status
        .spooled_usage_seq
        .send_replace(spool.last_seq());
    tracing::info!(pending = spool.pending_len(), dir = %config.spool_dir.display(), "usage spool opened");
    let wake = Arc::new(Notify::new());
    let metrics = Arc::new(telemetry::GatewayMetrics::new());
    let (meter, appender) = metering::meter::start_appender(
        spool.clone(),
        wake.clone(),
        config.status.spooled_usage_seq.clone(),
        metrics.clone(),
        options.spool_sync_every,
    )
    .map_err(GatewayError::Appender)?;
    let meter = meter.with_gate(Arc::new(metering::spool_cap::SpoolGate::new(
        Arc::downgrade(&spool),
        options.spool_max_bytes,
        metrics.spool_cap(options.spool_max_bytes),
    )));

    let channel = tonic::transport::Endpoint::from_shared(config.control_plane_grpc.clone())
        .map_err(|e| GatewayError::Config(format!("control plane URL: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30));
    let channel = match &options.control_plane_tls {
        Some(files) => channel
            .tls_config(
                files
                    .tonic_config()
                    .map_err(|e| GatewayError::Config(e.to_string()))?,
            )
            .map_err(|e| GatewayError::Config(format!("control plane TLS: {e}")))?,
        None => channel,
    }
    .connect_lazy();
    let live = Arc::new(ArcSwapOption::<Snapshot>::empty());
    let background = CancellationToken::new();

    // Held as abort-on-drop handles: if this future is dropped (the process is killed), the
    // background tasks die with it instead of running on detached.
    let appender = AbortOnDropHandle::new(appender);
    let sync_task = AbortOnDropHandle::new(tokio::spawn(sync::run_config_sync(
        channel.clone(),
        live.clone(),
        sync::SyncConfig {
            node_id: config.node_id.clone(),
            node_info: concat!("switchyard-gateway/", env!("CARGO_PKG_VERSION")).to_owned(),
            auth: auth_interceptor::NodeAuth::new(&config.node_token)?,
            max_backoff: Duration::from_secs(5),
            applied: config.status.applied_version.clone(),
            gateway_count: config.status.gateway_count.clone(),
        },
        background.clone(),
    )));
    let shipper_stats = Arc::new(metering::shipper::ShipperStats::publishing_acks_to(
        config.status.acked_usage_seq.clone(),
    ));
    metrics.attach(
        spool.clone(),
        config.status.clone(),
        shipper_stats.clone(),
        meter.backlog_gauge(),
    );
    let shipper_stop = CancellationToken::new();
    let channel_for_budgets = channel.clone();
    let shipper = AbortOnDropHandle::new(tokio::spawn(run_shipper(
        spool.clone(),
        channel,
        wake,
        ShipperConfig {
            node_id: config.node_id.clone(),
            node_token: config.node_token.clone(),
            batch_size: 256,
            max_backoff: Duration::from_secs(5),
            stats: shipper_stats,
        },
        shipper_stop.clone(),
    )));

    let tracker = TaskTracker::new();
    let state = state::AppState::new(state::Inner {
        live,
        upstream: upstream::Upstream::new(options.provider_ca.as_deref())?,
        meter,
        node_id: Arc::from(config.node_id.as_str()),
        control_plane_http: config
            .control_plane_http
            .as_deref()
            .map(|base| {
                api::forward::ControlPlaneHttp::new(base, options.control_plane_tls.as_ref())
            })
            .transpose()
            .map_err(|e| GatewayError::Config(e.to_string()))?,
        tracker: tracker.clone(),
        health: routing::HealthTable::default(),
        limiter: limits::RateLimiter::default(),
        budgets: budget::Budgets::grpc(
            channel_for_budgets,
            auth_interceptor::NodeAuth::new(&config.node_token)?,
            Arc::from(config.node_id.as_str()),
        ),
        fair: Arc::default(),
        response_cache: Arc::new(match &config.redis_url {
            Some(url) => cache::ResponseCache::redis(url).map_err(GatewayError::Config)?,
            None => cache::ResponseCache::memory(),
        }),
        sticky: match &config.redis_url {
            Some(url) => routing::sticky::StickyTable::shared(url).map_err(GatewayError::Config)?,
            None => routing::sticky::StickyTable::default(),
        },
        prompt_watch: cache::warning::PromptWatch::default(),
    });
    let limits = options.limits;
    let app = api::router(state, &limits, metrics);
    let addr = listener.local_addr().map_err(GatewayError::Serve)?;
    tracing::info!(%addr, node_id = %config.node_id, "gateway listening on {addr}");
    let served = http_server::serve(
        listener,
        app,
        limits,
        acceptor,
        shutdown.clone(),
        config.drain_timeout,
    )
    .await;

    tracker.close();
    if tokio::time::timeout(config.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight streams did not finish within the drain timeout");
    }
    background.cancel();
    // The router (and every Meter clone with it) is gone; the appender drains and exits.
    if let Err(err) = appender.await {
        tracing::error!(error = %err, "usage appender failed");
    }
    shipper_stop.cancel();
    let _ = shipper.await;
    let _ = sync_task.await;
    tracing::info!(pending = spool.pending_len(), "gateway stopped");
    served.map_err(GatewayError::Serve)
}

pub(crate) fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

pub(crate) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
