//! Switchyard's control plane: tenants, keys, the model catalog and price book, the usage
//! ledger, and the gRPC services that push config to gateways and take their usage.

pub mod api;
pub mod audit;
pub mod billing;
pub mod bootstrap;
pub mod budgets;
pub mod error;
mod grpc;
pub mod identity;
pub mod ingest_runtime;
pub mod policy;
pub mod rating;
pub mod routing_policy;
pub mod snapshot;
pub mod store;
pub mod telemetry;
mod web;

use std::sync::Arc;

use switchyard_proto::pb::budget_service_server::BudgetServiceServer;
use switchyard_proto::pb::config_service_server::ConfigServiceServer;
use switchyard_proto::pb::usage_service_server::UsageServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("serving HTTP: {0}")]
    Http(#[source] std::io::Error),
    #[error("serving gRPC: {0}")]
    Grpc(#[source] tonic::transport::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("usage ingestion runtime: {0}")]
    Ingest(String),
}

pub struct Listeners {
    pub http: TcpListener,
    pub grpc: TcpListener,
}

#[derive(Default)]
pub struct RunOptions {
    /// SHA-256 hashes of node tokens accepted without a database row (embedded gateway).
    pub local_node_token_hashes: Vec<String>,
    /// Mark console cookies `Secure` even on plain-HTTP requests (TLS terminated in front
    /// without `X-Forwarded-Proto`).
    pub secure_cookies: bool,
    /// Where provider base URLs may point (see `switchyard_gateway::ssrf`). The default
    /// allows private and loopback upstreams, as `switchyard serve` does.
    pub upstream_policy: switchyard_gateway::ssrf::UrlPolicy,
    /// Stripe top-ups (`POST /api/v1/credits/checkout` and the webhook); off when `None`.
    pub stripe: Option<billing::stripe::StripeConfig>,
    /// Limits of the HTTP listener (body size, header size/count, slow-client timeouts).
    pub http_limits: switchyard_gateway::http_server::HttpLimits,
    /// TLS for the HTTP and gRPC listeners; its `client_ca` requires gateways to present a
    /// client certificate on gRPC (mutual TLS).
    pub tls: Option<switchyard_gateway::tls::ServerTlsFiles>,
    /// How long a stream's provisional usage record waits for its final one before it is
    /// settled as estimated; `None` is `billing::provisional::DEFAULT_GRACE`.
    pub provisional_grace: Option<std::time::Duration>,
    /// The runtime usage batches are ingested on (`ingest_runtime`); `None` is the caller's.
    pub ingest_runtime: Option<tokio::runtime::Handle>,
}

/// Serves the REST API and the gateway-facing gRPC services until `shutdown` fires.
pub async fn run(
    store: Arc<dyn Store>,
    listeners: Listeners,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), ControlPlaneError> {
    let ingested = Arc::new(tokio::sync::Notify::new());
    let metrics = Arc::new(telemetry::ControlPlaneMetrics::new());
    let auth = grpc::NodeAuthenticator::new(store.clone(), options.local_node_token_hashes);
    let config_service = grpc::ConfigServiceImpl {
        store: store.clone(),
        cache: Arc::new(snapshot::SnapshotCache::new(store.clone())),
        auth: auth.clone(),
        shutdown: shutdown.clone(),
        watchers: Arc::new(tokio::sync::watch::channel(0).0),
    };
    let budget_service = grpc::BudgetServiceImpl {
        store: store.clone(),
        auth: auth.clone(),
    };
    // Budget alerts are evaluated after each ingested usage batch and every 2 s.
    let alerts = tokio::spawn(budgets::alerts::run(
        store.clone(),
        ingested.clone(),
        budgets::alerts::AlertConfig {
            interval: std::time::Duration::from_secs(2),
            policy: options.upstream_policy,
        },
        shutdown.clone(),
    ));
    // Streams whose gateway died before their final usage record are billed as estimated.
    tokio::spawn(billing::provisional::run(
        store.clone(),
        billing::provisional::Sweeper::new(
            options
                .provisional_grace
                .unwrap_or(billing::provisional::DEFAULT_GRACE),
            metrics.clone(),
        ),
        ingested.clone(),
        shutdown.clone(),
    ));
    let usage_service = grpc::UsageServiceImpl {
        store: store.clone(),
        rater: Arc::new(rating::Rater::new(store.clone())),
        auth,
        ingested: ingested.clone(),
        shutdown: shutdown.clone(),
        metrics: metrics.clone(),
        runtime: options.ingest_runtime,
    };
    let http_addr = listeners
        .http
        .local_addr()
        .map_err(ControlPlaneError::Http)?;
    let grpc_addr = listeners
        .grpc
        .local_addr()
        .map_err(ControlPlaneError::Http)?;
    tracing::info!(%http_addr, %grpc_addr, backend = store.backend(), "control plane listening on {http_addr} (HTTP) and {grpc_addr} (gRPC)");

    let mut grpc = tonic::transport::Server::builder();
    let mut acceptor = None;
    if let Some(files) = &options.tls {
        let tls_error =
            |e: switchyard_gateway::tls::TlsError| ControlPlaneError::Tls(e.to_string());
        // HTTPS for people and SDKs: a client certificate is never asked for there.
        let http_files = switchyard_gateway::tls::ServerTlsFiles {
            client_ca: None,
            ..files.clone()
        };
        acceptor = Some(http_files.acceptor().map_err(tls_error)?);
        grpc = grpc
            .tls_config(files.tonic_config().map_err(tls_error)?)
            .map_err(|e| ControlPlaneError::Tls(e.to_string()))?;
    }
    let grpc = grpc
        .tcp_nodelay(true)
        .layer(telemetry::grpc_trace::grpc_trace_layer())
        .add_service(ConfigServiceServer::new(config_service))
        .add_service(UsageServiceServer::new(usage_service))
        .add_service(BudgetServiceServer::new(budget_service))
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listeners.grpc),
            shutdown.clone().cancelled_owned(),
        );
    let state = api::AppState::new(store, ingested, options.secure_cookies)
        .await?
        .with_stripe(options.stripe);
    // Auto top-ups: a sweep after ingested batches and every minute, until shutdown.
    if let Some(stripe) = state.stripe.clone() {
        tokio::spawn(billing::auto_topup::run(
            state.store.clone(),
            stripe,
            state.ingested.clone(),
            shutdown.clone(),
        ));
    }
    // Requests carry `ConnectInfo<SocketAddr>` (the login rate limiter keys on it).
    let app = api::router(state).layer((
        options.http_limits.layer(),
        axum::Extension(options.upstream_policy),
        axum::Extension(metrics),
    ));
    let http = switchyard_gateway::http_server::serve(
        listeners.http,
        app,
        options.http_limits,
        acceptor,
        shutdown.clone(),
        std::time::Duration::from_secs(30),
    );
    let (grpc, http) = tokio::join!(grpc, http);
    // The alert task ends with `shutdown`; a panic in it is logged, not propagated.
    if let Err(err) = alerts.await {
        tracing::error!(error = %err, "budget alert task failed");
    }
    grpc.map_err(ControlPlaneError::Grpc)?;
    http.map_err(ControlPlaneError::Http)?;
    tracing::info!("control plane stopped");
    Ok(())
}
