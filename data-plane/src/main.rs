//! `switchyard-gateway`: one data-plane node for split deployments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use switchyard_gateway::GatewayConfig;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "switchyard-gateway",
    version,
    about = "Switchyard data-plane gateway node"
)]
struct Cli {
    /// Address to serve inference on.
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// gRPC URL of the control plane.
    #[arg(
        long,
        env = "SWITCHYARD_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051"
    )]
    control_plane: String,
    /// HTTP URL of the control plane, for forwarded management routes.
    #[arg(long, env = "SWITCHYARD_CONTROL_PLANE_HTTP")]
    control_plane_http: Option<String>,
    /// Token this node presents to the control plane.
    #[arg(long, env = "SWITCHYARD_NODE_TOKEN", hide_env_values = true)]
    node_token: String,
    /// Stable node name; defaults to the host name plus the listen port.
    #[arg(long, env = "SWITCHYARD_NODE_ID")]
    node_id: Option<String>,
    /// Directory of the durable usage spool.
    #[arg(
        long,
        env = "SWITCHYARD_SPOOL_DIR",
        default_value = "./switchyard-spool"
    )]
    spool_dir: PathBuf,
    /// Input limits and TLS of the public listener (`--max-body-bytes`, `--tls-cert`, …).
    #[command(flatten)]
    listener: switchyard_gateway::http_server::ListenerArgs,
    /// PEM CA that signed the control plane's certificate (for an `https://` control plane).
    #[arg(long, env = "SWITCHYARD_CONTROL_PLANE_CA")]
    control_plane_ca: Option<PathBuf>,
    /// PEM client certificate this node presents to the control plane (mutual TLS).
    #[arg(long, env = "SWITCHYARD_CLIENT_CERT")]
    client_cert: Option<PathBuf>,
    /// PEM private key of `--client-cert`.
    #[arg(long, env = "SWITCHYARD_CLIENT_KEY")]
    client_key: Option<PathBuf>,
    /// PEM bundle of private CAs to trust for `https://` providers (a model server behind an
    /// internal CA), in addition to the public roots.
    #[arg(long, env = "SWITCHYARD_PROVIDER_CA")]
    provider_ca: Option<PathBuf>,
    /// Disk cap of the usage spool in bytes (0: none). At the cap new requests get 503
    /// until the control plane acknowledges usage again; nothing served goes unrecorded.
    #[arg(long, env = "SWITCHYARD_SPOOL_MAX_BYTES", default_value_t = switchyard_gateway::metering::spool_cap::DEFAULT_SPOOL_MAX_BYTES)]
    spool_max_bytes: u64,
    /// Milliseconds between fdatasyncs of the usage spool while usage keeps coming (0: every
    /// 2 ms batch). Each batch is written at once and survives a killed gateway; this bounds
    /// what a crash of the whole machine could lose of usage not yet at the control plane.
    #[arg(long, env = "SWITCHYARD_SPOOL_SYNC_MS", default_value_t = switchyard_gateway::metering::meter::DEFAULT_SYNC_MS)]
    spool_sync_ms: u64,
    /// Seconds in-flight streams may run on after SIGTERM.
    #[arg(long, env = "SWITCHYARD_DRAIN_SECONDS", default_value_t = 30)]
    drain_seconds: u64,
    /// Redis for a response cache shared by all gateways (`redis://host:6379/0`); without
    /// it each gateway caches in its own memory.
    #[arg(long, env = "SWITCHYARD_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
}

/// mimalloc: the hot path allocates many small, short-lived JSON and header buffers, which
/// glibc malloc served at ~25 % of the gateway's instructions per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `SWITCHYARD_LOG` sets the filter, `SWITCHYARD_LOG_FORMAT=json` one JSON object per line;
    // `OTEL_EXPORTER_OTLP_ENDPOINT` (and the other `OTEL_*` variables) turn on trace export.
    let _otel =
        switchyard_gateway::telemetry::init_logging("info,tower_http=warn", "switchyard-gateway");
    let cli = Cli::parse();
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let node_id = cli.node_id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "gateway".into());
        format!("{host}:{}", cli.listen.port())
    });
    let config = GatewayConfig {
        node_id,
        control_plane_grpc: cli.control_plane,
        control_plane_http: cli.control_plane_http,
        node_token: cli.node_token,
        spool_dir: cli.spool_dir,
        drain_timeout: Duration::from_secs(cli.drain_seconds),
        status: switchyard_gateway::GatewayStatus::default(),
        redis_url: cli.redis_url,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    let options = switchyard_gateway::ServeOptions {
        limits: cli.listener.limits()?,
        tls: cli.listener.server_tls()?,
        control_plane_tls: switchyard_gateway::tls::ClientTlsFiles::from_parts(
            cli.control_plane_ca,
            cli.client_cert,
            cli.client_key,
        )?,
        spool_max_bytes: cli.spool_max_bytes,
        spool_sync_every: Duration::from_millis(cli.spool_sync_ms),
        provider_ca: cli.provider_ca,
    };
    switchyard_gateway::run_with(config, listener, shutdown, options).await?;
    Ok(())
}

async fn shutdown_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; draining");
    token.cancel();
}
