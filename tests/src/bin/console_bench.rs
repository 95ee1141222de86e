//! `switchyard-console-bench`: server time of the console's pages over a large usage table.
//!
//! Fills a fresh SQLite store with `--rows` generations (default 1,000,000) spread over the
//! last 30 days across 20 keys and 8 models (through `Store::ingest_usage`, so each also
//! posts its ledger entries), starts the control plane, signs in and requests each page
//! `--samples` times, printing p50 / p95 / max of the time to the last byte. It asserts no
//! timing: it prints figures.
//!
//!     cargo run --release -p switchyard-e2e --bin switchyard-console-bench -- --rows 1000000
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde_json::json;
use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::store::{self, UsageRow, now_ms};
use switchyard_e2e::harness::ControlPlane;

#[derive(Parser)]
#[command(name = "switchyard-console-bench")]
struct Cli {
    /// Usage rows to create.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 20)]
    samples: usize,
}

const KEYS: usize = 20;
const MODELS: usize = 8;
const DAY_MS: i64 = 86_400_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = store::connect(&url).await?;
    let secrets = bootstrap::ensure(&store, BootstrapOptions::default())
        .await?
        .context("fresh database expected")?;
    let org = secrets.org_id.clone();

    let cp = ControlPlane::start(
        store.clone(),
        "127.0.0.1:0".parse()?,
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let api = format!("http://{}", cp.http_addr);
    let http = reqwest::Client::new();
    let mut key_hashes = Vec::new();
    for i in 0..KEYS {
        let created: serde_json::Value = http
            .post(format!("{api}/api/v1/keys"))
            .bearer_auth(secrets.management_key.expose())
            .json(&json!({ "name": format!("bench-key-{i}") }))
            .send()
            .await?
            .json()
            .await?;
        key_hashes.push(
            created["data"]["hash"]
                .as_str()
                .context("key hash")?
                .to_owned(),
        );
    }
    let password = "bench password 123";
    let added = http
        .post(format!("{api}/api/v1/orgs/{org}/members"))
        .bearer_auth(secrets.management_key.expose())
        .json(&json!({ "email": "bench@example.com", "role": "owner", "password": password }))
        .send()
        .await?;
    anyhow::ensure!(added.status().is_success(), "adding the bench user failed");

    let started = Instant::now();
    let now = now_ms();
    let span = 30 * DAY_MS;
    let batch = 5_000;
    let mut done = 0;
    while done < cli.rows {
        let n = batch.min(cli.rows - done);
        let rows: Vec<UsageRow> = (done..done + n)
            .map(|i| {
                let finished = now - (i as i64 * 7_919 % span);
                UsageRow {
                    request_id: uuid::Uuid::now_v7().to_string(),
                    org_id: org.clone(),
                    key_hash: key_hashes[i % KEYS].clone(),
                    model: format!("bench/model-{}", i % MODELS),
                    endpoint_id: String::new(),
                    provider_id: String::new(),
                    provider_slug: "bench".into(),
                    upstream_model: "m".into(),
                    node_id: "bench-node".into(),
                    config_version: 1,
                    api: "chat".into(),
                    started_at: finished - 800,
                    finished_at: finished,
                    ttft_ms: Some(120),
                    streamed: i % 2 == 0,
                    cancelled: false,
                    estimated: false,
                    finish_reason: "stop".into(),
                    native_finish_reason: "stop".into(),
                    http_status: if i % 50 == 0 { 502 } else { 200 },
                    error_type: String::new(),
                    input_tokens: 500,
                    output_tokens: 200,
                    cache_read_tokens: 0,
                    cache_write_5m_tokens: 0,
                    cache_write_1h_tokens: 0,
                    reasoning_tokens: 0,
                    cost_nanos: 1_000 + (i as i64 % 997) * 10,
                    gateway_cost_nanos: 0,
                    upstream_id: String::new(),
                    ingested_at: now,
                    provider_responses: "[]".into(),
                }
            })
            .collect();
        store.ingest_usage(&rows).await?;
        done += n;
        if done % 100_000 == 0 || done == cli.rows {
            println!("inserted {done} rows ({:.0?})", started.elapsed());
        }
    }

    // The overview's aggregation, before (every generation in `usage_records`) and after
    // (the daily rollup, migration 0009): the same buckets, timed in the store.
    let since = now - 31 * DAY_MS;
    let raw = store.usage_buckets(&org, since).await?;
    let rolled = store.daily_buckets(&org, since).await?;
    let sum = |b: &[switchyard_control_plane::store::console::UsageBucket]| {
        b.iter()
            .map(|x| (x.requests, x.cost_nanos))
            .fold((0, 0), |a, x| (a.0 + x.0, a.1 + x.1))
    };
    anyhow::ensure!(
        sum(&raw) == sum(&rolled),
        "rollup and raw scan disagree: {:?} vs {:?}",
        sum(&raw),
        sum(&rolled)
    );
    println!(
        "\noverview aggregation over {} rows ({} requests, {} buckets), p50 / max of {} runs:",
        cli.rows,
        sum(&rolled).0,
        rolled.len(),
        cli.samples.min(5)
    );
    for (name, rollup) in [
        ("before: raw usage_records scan", false),
        ("after: usage_daily rollup", true),
    ] {
        let mut times = Vec::new();
        for _ in 0..cli.samples.min(5) {
            let t = Instant::now();
            if rollup {
                store.daily_buckets(&org, since).await?;
            } else {
                store.usage_buckets(&org, since).await?;
            }
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{name:<40} {:>9.1?} {:>9.1?}",
            times[times.len() / 2],
            times.last().copied().unwrap_or(Duration::ZERO)
        );
    }

    // The key page's spend (today / a recent range / all time), before (the key's generations in
    // `usage_records`) and after (its `usage_daily` rows): the same figures, timed in the store.
    let today = now.div_euclid(DAY_MS);
    // A day-aligned stand-in for the month start (the figure count and shape are what matter).
    let month = (today - 6) * DAY_MS;
    let raw = store
        .key_spend_since(&org, &key_hashes[0], &[today * DAY_MS, month, 0])
        .await?;
    let rolled = store
        .key_spend_from_days(&org, &key_hashes[0], &[today, month / DAY_MS, i64::MIN])
        .await?;
    anyhow::ensure!(
        raw[2] == rolled[2],
        "key spend: rollup {rolled:?} and raw scan {raw:?} disagree on all time"
    );
    println!(
        "\nkey page spend of one key over {} rows (all time {} nanos), p50 / max of {} runs:",
        cli.rows,
        rolled[2],
        cli.samples.min(5)
    );
    for (name, rollup) in [
        ("before: raw usage_records sums", false),
        ("after: usage_daily rollup", true),
    ] {
        let mut times = Vec::new();
        for _ in 0..cli.samples.min(5) {
            let t = Instant::now();
            if rollup {
                store
                    .key_spend_from_days(&org, &key_hashes[0], &[today, month / DAY_MS, i64::MIN])
                    .await?;
            } else {
                store
                    .key_spend_since(&org, &key_hashes[0], &[today * DAY_MS, month, 0])
                    .await?;
            }
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{name:<40} {:>9.1?} {:>9.1?}",
            times[times.len() / 2],
            times.last().copied().unwrap_or(Duration::ZERO)
        );
    }

    // Sign in like the browser does and keep the session cookie.
    let login = http
        .post(format!("{api}/api/v1/auth/login"))
        .json(&json!({ "email": "bench@example.com", "password": password }))
        .send()
        .await?;
    let cookies: Vec<String> = login
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_owned)
        .collect();
    let cookie = cookies.join("; ");

    println!(
        "\nconsole page server time, {} usage rows, {} samples each (p50 / p95 / max)",
        cli.rows, cli.samples
    );
    let pages = [
        "/",
        "/usage",
        "/usage?group1=model&group2=key",
        "/usage?group1=day&model=bench%2Fmodel-3",
        "/usage.csv?group1=day&group2=key&group3=model",
        "/billing",
        "/teams",
        "/requests",
        "/requests?model=bench%2Fmodel-3",
        "/requests?errors=1",
        "/keys",
        &format!("/keys/{}", key_hashes[0]),
        "/audit",
        "/models",
    ];
    for page in pages {
        let mut times = Vec::with_capacity(cli.samples);
        for _ in 0..cli.samples {
            let t = Instant::now();
            let response = http
                .get(format!("{api}{page}"))
                .header(reqwest::header::COOKIE, &cookie)
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            times.push(t.elapsed());
            anyhow::ensure!(
                status.is_success(),
                "{page} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "{page:<40} {:>9.1?} {:>9.1?} {:>9.1?}",
            at(0.5),
            at(0.95),
            times.last().copied().unwrap_or(Duration::ZERO)
        );
    }
    Ok(())
}
