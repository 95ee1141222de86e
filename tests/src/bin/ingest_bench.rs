//! `switchyard-ingest-bench`: the control plane's CPU per usage record it ingests.
//!
//! Starts a release `switchyard control-plane` (a fresh SQLite database, or `--database-url`),
//! then plays a gateway: streams usage batches of each `--batch` size over gRPC on one
//! `UsageService.Report` stream, at most four unacknowledged like the gateway's shipper, and
//! reads the control plane's CPU time from `/proc` around each size. Records look like the
//! bench's chat requests (a conversation id, one provider attempt, token counts), so each one
//! writes what a real request writes: a usage row, two ledger entries, a caching-facts row
//! and the daily rollup. It asserts no timing: it prints figures.
//!
//!     cargo build --release -p switchyard-control-plane -p switchyard-e2e --bins
//!     target/release/switchyard-ingest-bench --records 20000 --batch 1,10,100,500
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use switchyard_e2e::bench::arms::{free_port, wait_for_port};
use switchyard_e2e::bench::procs::{Proc, cpu_seconds};
use switchyard_proto::ApiKeySecret;
use switchyard_proto::pb;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;

#[derive(Parser)]
#[command(name = "switchyard-ingest-bench")]
struct Cli {
    /// Usage records sent at each batch size.
    #[arg(long, default_value_t = 20_000)]
    records: usize,
    /// Batch sizes, comma-separated (the gateway ships up to 500 a batch).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,500")]
    batch: Vec<usize>,
    /// `postgres://…` to ingest into Postgres instead of a fresh SQLite database. Use an
    /// empty database: the control plane bootstraps it.
    #[arg(long)]
    database_url: Option<String>,
    /// Directory holding the release `switchyard` binary [default: this binary's].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Platform fee of the org in basis points (550 = 5.5 %): every record then also posts
    /// a fee (`PUT /api/v1/billing/platform-fee`).
    #[arg(long, default_value_t = 0)]
    platform_fee_bps: u32,
    /// Vary each batch's size by up to this many records either side of `--batch`, as the
    /// gateway's batches vary (whatever its 20 ms linger gathered): every distinct size is
    /// a statement text the control plane has not prepared yet. The sizes follow a fixed
    /// sequence, so runs compare.
    #[arg(long, default_value_t = 0)]
    spread: usize,
    /// Records of streamed answers: each generation's provisional (write-ahead) record goes
    /// one batch before its final, as a gateway sends them for a stream in progress.
    #[arg(long)]
    streamed: bool,
}

/// Unacknowledged batches on the stream, as the gateway's shipper allows.
const MAX_IN_FLIGHT: usize = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.records > 0 && cli.batch.iter().all(|b| *b > cli.spread),
        "--records and every --batch size must be positive, and every --batch larger than --spread"
    );
    let bin_dir = match cli.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .to_owned(),
    };
    let cp_bin = bin_dir.join("switchyard");
    anyhow::ensure!(
        cp_bin.exists(),
        "{} is missing: build it with `cargo build --release -p switchyard-control-plane`",
        cp_bin.display()
    );
    let dir = tempfile::tempdir()?;
    let management = ApiKeySecret::generate();
    let api_key = ApiKeySecret::generate();
    let node_token = ApiKeySecret::generate().expose().to_owned();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mut args = vec![
        "control-plane".to_owned(),
        "--data-dir".to_owned(),
        dir.path().join("data").display().to_string(),
        "--http-listen".to_owned(),
        http.to_string(),
        "--grpc-listen".to_owned(),
        grpc.to_string(),
        "--node-token".to_owned(),
        node_token.clone(),
    ];
    if let Some(url) = &cli.database_url {
        args.extend(["--database-url".to_owned(), url.clone()]);
    }
    let log = dir.path().join("control-plane.log");
    let cp = Proc::spawn(
        "switchyard control-plane",
        &cp_bin,
        &args,
        &[
            (
                "SWITCHYARD_BOOTSTRAP_MANAGEMENT_KEY",
                management.expose().to_owned(),
            ),
            ("SWITCHYARD_BOOTSTRAP_API_KEY", api_key.expose().to_owned()),
            ("SWITCHYARD_LOG", "warn".to_owned()),
        ],
        None,
        &log,
    )?;
    wait_for_port(http, Duration::from_secs(30))
        .await
        .with_context(|| {
            format!(
                "control plane: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
    let orgs: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{http}/api/v1/orgs"))
        .bearer_auth(management.expose())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let org_id = orgs["data"][0]["id"]
        .as_str()
        .context("GET /api/v1/orgs named no org")?
        .to_owned();
    let key_hash = api_key.hash().as_str().to_owned();
    if cli.platform_fee_bps > 0 {
        reqwest::Client::new()
            .put(format!("http://{http}/api/v1/billing/platform-fee"))
            .bearer_auth(management.expose())
            .json(&serde_json::json!({ "bps": cli.platform_fee_bps }))
            .send()
            .await?
            .error_for_status()
            .context("setting the platform fee")?;
    }

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
        .connect()
        .await?;
    let mut client = pb::usage_service_client::UsageServiceClient::new(channel);
    let backend = if cli.database_url.is_some() {
        "Postgres"
    } else {
        "SQLite"
    };
    println!(
        "control plane ingestion ({backend}, platform fee {} bps), {} records per batch size",
        cli.platform_fee_bps, cli.records
    );
    if cli.streamed {
        println!("streamed: each record's provisional record one batch before it");
    }
    if cli.spread > 0 {
        println!("batch sizes vary by up to {} either side", cli.spread);
    }
    println!("| batch | records/s | control plane CPU-µs per record |");
    println!("|---|---|---|");
    let mut seq = 0u64;
    let mut generated = 0u64;
    for &size in &cli.batch {
        let mut finals: Vec<Vec<pb::UsageRecord>> = Vec::new();
        let mut left = cli.records;
        while left > 0 {
            let n = batch_size(size, cli.spread, finals.len()).min(left);
            left -= n;
            finals.push(
                (0..n)
                    .map(|_| {
                        generated += 1;
                        record(generated, &org_id, &key_hash, cli.streamed)
                    })
                    .collect(),
            );
        }
        let records: usize = finals.iter().map(Vec::len).sum();
        let batches = on_the_wire(finals, cli.streamed, &mut seq);
        let last_seq = seq;
        let cpu_before = cpu_seconds(cp.pid);
        let started = Instant::now();
        send(&mut client, &node_token, batches, last_seq).await?;
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(cp.pid) - cpu_before;
        #[expect(clippy::cast_precision_loss, reason = "a printed figure")]
        let records = records as f64;
        println!(
            "| {size} | {:.0} | {:.1} |",
            records / wall,
            cpu * 1e6 / records
        );
    }
    drop(cp);
    Ok(())
}

/// The size of the `i`th batch: `size` ± `spread`, stepping through that range in an order
/// that visits every size before repeating one (37 is prime, so it is coprime with the
/// range's length unless that is a multiple of 37).
fn batch_size(size: usize, spread: usize, i: usize) -> usize {
    if spread == 0 {
        return size;
    }
    let range = 2 * spread + 1;
    size - spread + (i * 37) % range
}

/// The batches as a gateway sends them, numbered in order: with `streamed`, batch k also
/// carries the provisional records of the generations whose finals batch k + 1 carries.
fn on_the_wire(
    finals: Vec<Vec<pb::UsageRecord>>,
    streamed: bool,
    seq: &mut u64,
) -> Vec<pb::UsageBatch> {
    let provisional = |batch: &[pb::UsageRecord]| -> Vec<pb::UsageRecord> {
        batch
            .iter()
            .map(|r| pb::UsageRecord {
                provisional: true,
                ..r.clone()
            })
            .collect()
    };
    let mut out: Vec<Vec<pb::UsageRecord>> = Vec::with_capacity(finals.len() + 1);
    if streamed && let Some(first) = finals.first() {
        out.push(provisional(first));
    }
    for (k, batch) in finals.iter().enumerate() {
        let mut records = Vec::new();
        if streamed && let Some(next) = finals.get(k + 1) {
            records.extend(provisional(next));
        }
        records.extend(batch.iter().cloned());
        out.push(records);
    }
    out.into_iter()
        .map(|mut records| {
            for r in &mut records {
                *seq += 1;
                r.seq = *seq;
            }
            pb::UsageBatch {
                node_id: "ingest-bench".to_owned(),
                records,
            }
        })
        .collect()
}

/// Streams the batches on one `Report` call, keeping at most `MAX_IN_FLIGHT` unacknowledged,
/// until `last_seq` is acknowledged.
async fn send(
    client: &mut pb::usage_service_client::UsageServiceClient<tonic::transport::Channel>,
    node_token: &str,
    batches: Vec<pb::UsageBatch>,
    last_seq: u64,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {node_token}").parse()?);
    let mut pending = batches.into_iter();
    let mut in_flight = 0;
    for batch in pending.by_ref().take(MAX_IN_FLIGHT) {
        tx.send(batch).await?;
        in_flight += 1;
    }
    let mut acks = client.report(request).await?.into_inner();
    while in_flight > 0 {
        let ack = acks
            .next()
            .await
            .context("the control plane closed the stream")??;
        in_flight -= 1;
        if ack.acked_seq == last_seq {
            break;
        }
        if let Some(batch) = pending.next() {
            tx.send(batch).await?;
            in_flight += 1;
        }
    }
    Ok(())
}

/// The `n`th generation's usage record, like the gateway's for the bench's chat request;
/// `on_the_wire` numbers it.
fn record(n: u64, org_id: &str, key_hash: &str, streamed: bool) -> pb::UsageRecord {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX);
    pb::UsageRecord {
        request_id: uuid::Uuid::now_v7().to_string(),
        org_id: org_id.to_owned(),
        key_hash: key_hash.to_owned(),
        model: "bench/model".to_owned(),
        endpoint_id: "ep-bench".to_owned(),
        provider_id: "prov-bench".to_owned(),
        provider_slug: "bench-mock".to_owned(),
        upstream_model: "bench-model".to_owned(),
        config_version: 3,
        started_at_ms: now - 2,
        finished_at_ms: now,
        finish_reason: "stop".to_owned(),
        native_finish_reason: "stop".to_owned(),
        http_status: 200,
        usage: Some(pb::UsageDimensions {
            input_tokens: 24,
            output_tokens: 12,
            ..pb::UsageDimensions::default()
        }),
        cost_nanos: 10_800,
        upstream_id: format!("chatcmpl-{n}"),
        streamed,
        api: "chat".to_owned(),
        node_id: "ingest-bench".to_owned(),
        provider_responses: vec![pb::ProviderAttempt {
            model: "bench/model".to_owned(),
            endpoint_id: "ep-bench".to_owned(),
            provider_slug: "bench-mock".to_owned(),
            status: 200,
            error_type: String::new(),
            latency_ms: 1,
        }],
        conversation_id: format!("{:016x}", n / 4),
        ..pb::UsageRecord::default()
    }
}
