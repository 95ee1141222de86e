//! `switchyard`: the control plane, alone (`control-plane`) or with an embedded gateway on
//! SQLite (`serve`, the zero-setup default).

mod cli;

use clap::Parser;

/// Same allocator as the gateway's (`serve` embeds one).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _otel = cli::init_tracing();
    cli::Cli::parse().run().await
}
