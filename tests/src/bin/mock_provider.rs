//! Standalone mock OpenAI-format provider for manual testing and benchmarks; see
//! `switchyard_e2e::mock_openai` for its behaviour.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard-mock-provider",
    about = "Mock OpenAI-format LLM provider"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18001", env = "MOCK_PROVIDER_LISTEN")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer <KEY>` on every request.
    #[arg(long, env = "MOCK_PROVIDER_API_KEY")]
    api_key: Option<String>,
    /// Delay between consecutive SSE events of a stream, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Fixed delay before answering every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Send an SSE comment `: keep-alive` before the first chunk of every stream.
    #[arg(long)]
    keepalive_comment: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config = MockConfig {
        api_key: args.api_key,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        delay: Duration::from_millis(args.delay_ms),
        fixed_usage: None,
        keepalive_comment: args.keepalive_comment,
    };
    let mock = MockOpenAi::start_on(args.listen, config).await?;
    let addr = mock.addr();
    tracing::info!(base_url = %mock.base_url(), "listening on {addr}");
    shutdown_signal().await?;
    tracing::info!("shutting down");
    mock.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
