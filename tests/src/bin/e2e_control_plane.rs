//! A control plane as its own OS process for fault tests that must kill it for real
//! (SIGKILL): `switchyard_control_plane::run` on an existing (bootstrapped) database behind a
//! minimal CLI. Prints `listening <http addr> <grpc addr>` on stdout once both listeners are
//! bound. The database URL comes from `SWITCHYARD_DATABASE_URL`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use switchyard_control_plane::{Listeners, RunOptions};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "switchyard-e2e-control-plane")]
struct Args {
    #[arg(long, env = "SWITCHYARD_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    http_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:0")]
    grpc_listen: SocketAddr,
    /// Grace period of provisional usage, in milliseconds (tests compress it).
    #[arg(long)]
    provisional_grace_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let store = switchyard_control_plane::store::connect(&args.database_url)
        .await
        .context("opening the store")?;
    let listeners = Listeners {
        http: tokio::net::TcpListener::bind(args.http_listen)
            .await
            .with_context(|| format!("binding {}", args.http_listen))?,
        grpc: tokio::net::TcpListener::bind(args.grpc_listen)
            .await
            .with_context(|| format!("binding {}", args.grpc_listen))?,
    };
    let line = format!(
        "listening {} {}",
        listeners.http.local_addr()?,
        listeners.grpc.local_addr()?
    );
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    let options = RunOptions {
        provisional_grace: args.provisional_grace_ms.map(Duration::from_millis),
        ..RunOptions::default()
    };
    // Runs until killed: the tests end it with SIGKILL (or drop it, which does the same).
    switchyard_control_plane::run(store, listeners, options, CancellationToken::new()).await?;
    Ok(())
}
