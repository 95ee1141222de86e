//! A gateway as its own OS process for fault tests that must kill it for real (SIGKILL):
//! `switchyard_gateway::run` behind a minimal CLI. Prints `listening <addr>` on stdout once
//! its listener is bound (`--listen 127.0.0.1:0` picks a free port). The node token comes
//! from `SWITCHYARD_NODE_TOKEN`, never argv, so it does not show in process listings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "switchyard-e2e-gateway")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// gRPC URL of the control plane.
    #[arg(long)]
    control_plane: String,
    /// HTTP URL of the control plane, for forwarded management routes.
    #[arg(long)]
    control_plane_http: Option<String>,
    #[arg(long, env = "SWITCHYARD_NODE_TOKEN", hide_env_values = true)]
    node_token: String,
    #[arg(long)]
    node_id: String,
    #[arg(long)]
    spool_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs to stderr (the test points it at a file), filtered by `SWITCHYARD_LOG`.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let config = switchyard_gateway::GatewayConfig {
        node_id: args.node_id,
        control_plane_grpc: args.control_plane,
        control_plane_http: args.control_plane_http,
        node_token: args.node_token,
        spool_dir: args.spool_dir,
        drain_timeout: Duration::from_secs(10),
        status: switchyard_gateway::GatewayStatus::default(),
        redis_url: None,
    };
    announce(&format!("listening {addr}"))?;
    // Runs until killed: the tests end it with SIGKILL (or drop it, which does the same).
    switchyard_gateway::run(config, listener, CancellationToken::new()).await?;
    Ok(())
}

fn announce(line: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
