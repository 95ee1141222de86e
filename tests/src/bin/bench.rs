//! `switchyard-bench`: Switchyard side by side with a bare hyper forwarder and peer gateways,
//! against one mock provider; see `switchyard_e2e::bench` for the method and
//! `tests/bench/README.md` for how to run it.
//!
//! The same binary also serves as the mock (`mock`) and the bare forwarder (`forwarder`), so
//! each runs in its own process with its own `/proc` accounting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use switchyard_e2e::bench::arms::{ArmKind, CLIENT_CPUS, Lab, LabOptions};
use switchyard_e2e::bench::mock::MockSettings;
use switchyard_e2e::bench::scenarios::{self, Plan};
use switchyard_e2e::bench::{forwarder, mock, progress, report};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "switchyard-bench",
    about = "Added latency, throughput, streaming and resource cost of Switchyard vs a bare forwarder and peers",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmark (the default).
    Run(RunArgs),
    /// Serve the benchmark mock provider; prints the bound address on the first stdout line.
    Mock(MockArgs),
    /// Serve the bare hyper forwarder; prints the bound address on the first stdout line.
    Forwarder(ForwarderArgs),
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Smoke preset: every scenario, short (< 2 minutes without peers). The default.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// The full preset of issue 10 (≈ 20–25 minutes with peers on two cores).
    #[arg(long)]
    full: bool,
    /// Only these scenarios: c1, rates, saturation, frontier, delay, streaming, cpu, ladder,
    /// cp-outage.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip these scenarios (same names as --only).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Override the rounds of the c=1, streaming and control-plane outage scenarios.
    #[arg(long)]
    rounds: Option<usize>,
    /// Override the fixed open-loop rates, e.g. 1000,2000,5000,10000.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Include LiteLLM and Portkey (installed by tests/bench/peers.sh); on by default with --full.
    #[arg(long, conflicts_with = "no_peers")]
    peers: bool,
    #[arg(long)]
    no_peers: bool,
    /// Peers to include when peers are on.
    #[arg(long, value_delimiter = ',', default_value = "litellm,portkey")]
    peer_list: Vec<String>,
    /// Pin proxies to CPU 1 and the mock, load generator and control plane to CPU 0.
    #[arg(long)]
    pin: bool,
    /// Where the JSON and Markdown results go [default: <target>/bench-results].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory holding release `switchyard` and `switchyard-gateway` [default: this binary's].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where peers are installed (kept between runs so they install once).
    #[arg(long)]
    peers_dir: Option<PathBuf>,
    /// Load-generator threads (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Keep the Switchyard arm's database and spool after a finished run (removed by
    /// default: a --full run leaves over 1 GB there; logs are always kept).
    #[arg(long)]
    keep_state: bool,
    /// The Switchyard control plane's `--ingest-priority`: `idle` runs usage ingestion in
    /// Linux's SCHED_IDLE class (for control planes sharing cores with gateways).
    #[arg(long, default_value = "normal", value_parser = ["normal", "idle"])]
    cp_ingest_priority: String,
}

#[derive(Args)]
struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    #[arg(long, default_value_t = 60)]
    slow_delay_ms: u64,
    #[arg(long, default_value_t = 20)]
    chunks: u32,
    #[arg(long, default_value_t = 2_000)]
    chunk_interval_us: u64,
    #[arg(long, default_value_t = 0)]
    error_every: u64,
    #[arg(long, default_value_t = 0)]
    throttle_every: u64,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args)]
struct ForwarderArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads [default: one per core, like the gateway].
    #[arg(long)]
    threads: Option<usize>,
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    Ok(rt)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Mock(args)) => serve_mock(args),
        Some(Command::Forwarder(args)) => serve_forwarder(args),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

#[allow(clippy::print_stdout)]
fn announce(addr: SocketAddr) {
    use std::io::Write as _;
    println!("{addr}");
    let _ = std::io::stdout().flush();
}

async fn until_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

fn serve_mock(args: MockArgs) -> anyhow::Result<()> {
    let settings = MockSettings {
        delay: Duration::from_millis(args.delay_ms),
        slow_delay: Duration::from_millis(args.slow_delay_ms),
        chunks: args.chunks,
        chunk_interval: Duration::from_micros(args.chunk_interval_us),
        error_every: args.error_every,
        throttle_every: args.throttle_every,
    };
    runtime(args.threads)?.block_on(async {
        let stop = CancellationToken::new();
        let (addr, task) = mock::start(args.listen, settings, stop.clone()).await?;
        announce(addr);
        until_signal().await;
        stop.cancel();
        let _ = task.await;
        Ok(())
    })
}

fn serve_forwarder(args: ForwarderArgs) -> anyhow::Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    runtime(threads.max(2))?.block_on(async {
        let stop = CancellationToken::new();
        let (addr, task) = forwarder::start(args.listen, args.upstream, stop.clone()).await?;
        announce(addr);
        until_signal().await;
        stop.cancel();
        let _ = task.await;
        Ok(())
    })
}

fn plan(args: &RunArgs) -> anyhow::Result<Plan> {
    let mut plan = if args.full {
        Plan::full()
    } else {
        Plan::quick()
    };
    if let Some(rounds) = args.rounds {
        plan.rounds = rounds;
        plan.outage_rounds = rounds;
    }
    if !args.rates.is_empty() {
        plan.rates = args.rates.clone();
    }
    const NAMES: [&str; 9] = [
        "c1",
        "rates",
        "saturation",
        "frontier",
        "delay",
        "streaming",
        "cpu",
        "ladder",
        "cp-outage",
    ];
    for name in args.only.iter().chain(&args.skip) {
        anyhow::ensure!(
            NAMES.contains(&name.as_str()),
            "unknown scenario {name:?}; known: {NAMES:?}"
        );
    }
    let on = |name: &str| {
        (args.only.is_empty() || args.only.iter().any(|o| o == name))
            && !args.skip.iter().any(|s| s == name)
    };
    plan.c1 &= on("c1");
    if !on("rates") {
        plan.rates.clear();
    }
    if !on("saturation") {
        plan.saturation_rounds = 0;
    }
    if !on("frontier") {
        plan.frontier.clear();
    }
    if !on("delay") {
        plan.delay_rate = 0.0;
    }
    plan.streaming &= on("streaming");
    if !on("cpu") {
        plan.cpu_rate = 0.0;
    }
    if !on("ladder") {
        plan.ladder_rounds = 0;
    }
    plan.control_plane_outage =
        on("cp-outage") && (args.full || args.only.iter().any(|o| o == "cp-outage"));
    Ok(plan)
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.pin {
        // Threads created from here on inherit the mask.
        let status = std::process::Command::new("taskset")
            .args([
                "-a",
                "-p",
                "-c",
                CLIENT_CPUS,
                &std::process::id().to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running taskset")?;
        anyhow::ensure!(status.success(), "taskset failed: {status}");
    }
    let plan = plan(&args)?;
    let exe = std::env::current_exe()?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => exe
            .parent()
            .context("binary without a directory")?
            .to_path_buf(),
    };
    let out = match &args.out {
        Some(out) => out.clone(),
        None => bin_dir.parent().map_or_else(
            || bin_dir.join("bench-results"),
            |t| t.join("bench-results"),
        ),
    };
    let environment = report::environment(args.pin, &args.cp_ingest_priority);
    let stamp = format!("{}-{}", plan.preset, environment.unix_time);
    let work_dir = out.join(format!("run-{stamp}"));
    let peers_on = (args.peers || args.full) && !args.no_peers;
    let mut arms = vec![ArmKind::Forwarder, ArmKind::Switchyard];
    if peers_on {
        for peer in &args.peer_list {
            arms.push(match peer.as_str() {
                "litellm" => ArmKind::Litellm,
                "portkey" => ArmKind::Portkey,
                other => anyhow::bail!("unknown peer {other:?}"),
            });
        }
    }
    let options = LabOptions {
        bin_dir,
        work_dir: work_dir.clone(),
        pin: args.pin,
        mock: MockSettings::default(),
        arms,
        peers_dir: args
            .peers_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("switchyard-bench-peers")),
        peers_script: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/peers.sh")),
        cp_ingest_priority: args.cp_ingest_priority.clone(),
    };
    progress(&format!(
        "preset {}; logs and state in {}",
        plan.preset,
        work_dir.display()
    ));
    runtime(args.client_threads)?.block_on(async {
        let mut lab = Lab::start(&options).await?;
        // Children live in their own process groups, so an interrupted run must stop them.
        let results = tokio::select! {
            results = scenarios::run(&mut lab, &plan) => results,
            () = until_signal() => {
                progress("interrupted; stopping the arms");
                lab.stop().await;
                anyhow::bail!("interrupted");
            }
        };
        let report = report::build(environment, &plan, &lab, results);
        lab.stop().await;
        let markdown = report::markdown(&report);
        std::fs::create_dir_all(&out)?;
        let json_path = out.join(format!("bench-{stamp}.json"));
        let md_path = out.join(format!("bench-{stamp}.md"));
        std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)?;
        std::fs::write(&md_path, &markdown)?;
        std::fs::copy(&json_path, out.join("latest.json"))?;
        std::fs::copy(&md_path, out.join("latest.md"))?;
        print_report(&markdown);
        progress(&format!(
            "wrote {} and {}",
            json_path.display(),
            md_path.display()
        ));
        if !args.keep_state {
            let freed = switchyard_e2e::bench::arms::remove_state(&work_dir)?;
            progress(&format!(
                "removed the control plane's database and the gateway's spool ({:.0} MiB; --keep-state keeps them); logs stay in {}",
                freed as f64 / (1024.0 * 1024.0),
                work_dir.display()
            ));
        }
        Ok(())
    })
}

#[allow(clippy::print_stdout)]
fn print_report(markdown: &str) {
    println!("{markdown}");
}
