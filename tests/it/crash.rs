//! Real-process crash faults (issue #11): a gateway process SIGKILLed mid-stream under load
//! and a control plane process SIGKILLed under load, each restarted on the same spool or
//! database. Afterwards every request that reached the provider (counted at the mock) is in
//! the ledger exactly once: finished ones with their final record, streams cut by the kill
//! settled as estimated from their provisional (write-ahead) record after the grace period.
//! Streams still waiting for the provider's first byte when the gateway dies are billed once
//! as estimated too (the provisional record is written before the upstream request), and a
//! stream whose every attempt failed is billed nothing.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_control_plane::bootstrap::{self, BootstrapOptions, FirstStart};
use switchyard_control_plane::store::{self, accounts};
use switchyard_e2e::harness::{
    ControlPlaneProcess, GatewayProcess, PATIENCE, postgres_test_database,
};
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const GATEWAY_EXE: &str = env!("CARGO_BIN_EXE_switchyard-e2e-gateway");
const CONTROL_PLANE_EXE: &str = env!("CARGO_BIN_EXE_switchyard-e2e-control-plane");
const MODEL: &str = "acme/streamer";
/// How long the ledger may take to show everything after the faults (spool shipping after
/// a restart, plus the grace period and a sweep).
const SETTLE_PATIENCE: Duration = Duration::from_secs(40);

/// A read-only pool on the rig's database, for checking the ledger with the same SQL on
/// either backend.
enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs one query (`$fetch`: `fetch_all` / `fetch_one`) on whichever backend `$db` is.
macro_rules! on_db {
    ($db:expr, $fetch:ident, $query:expr) => {
        match $db {
            Db::Sqlite(pool) => $query.$fetch(pool).await?,
            Db::Postgres(pool) => $query.$fetch(pool).await?,
        }
    };
}

/// A control plane process on a bootstrapped database (SQLite or Postgres), a mock provider
/// with one model on it, and a read-only pool on the database for checking the ledger.
struct Rig {
    dir: TempDir,
    database_url: String,
    secrets: FirstStart,
    cp: ControlPlaneProcess,
    grace: Option<Duration>,
    mock: MockOpenAi,
    db: Db,
    http: reqwest::Client,
}

impl Rig {
    /// On `database_url`, or a fresh SQLite database when `None`.
    async fn start(
        grace: Option<Duration>,
        mock: MockConfig,
        database_url: Option<String>,
    ) -> anyhow::Result<Rig> {
        switchyard_e2e::harness::init_tracing();
        let dir = tempfile::tempdir()?;
        let database_url = database_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("switchyard.db").display()));
        let secrets = {
            let store = store::connect(&database_url).await?;
            bootstrap::ensure(&store, BootstrapOptions::default())
                .await?
                .context("the database was not empty")?
        };
        let any = "127.0.0.1:0".parse()?;
        let cp = ControlPlaneProcess::start(
            Path::new(CONTROL_PLANE_EXE),
            &database_url,
            any,
            any,
            grace,
            dir.path().join("control-plane.log"),
        )
        .await?;
        let mock = MockOpenAi::start(mock).await?;
        let db = if database_url.starts_with("sqlite:") {
            Db::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect(&database_url)
                    .await?,
            )
        } else {
            Db::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&database_url)
                    .await?,
            )
        };
        let rig = Rig {
            dir,
            database_url,
            secrets,
            cp,
            grace,
            mock,
            db,
            http: reqwest::Client::new(),
        };
        rig.add_model().await?;
        Ok(rig)
    }

    /// A mock whose streams send an event every `chunk_delay`.
    fn chunks_every(chunk_delay: Duration) -> MockConfig {
        MockConfig {
            chunk_delay,
            ..MockConfig::default()
        }
    }

    /// Adds `model`, served by the mock's `upstreams` in order (fallbacks).
    async fn add_model_on(&self, model: &str, upstreams: &[&str]) -> anyhow::Result<()> {
        let api = format!("http://{}/api/v1", self.cp.http_addr);
        let endpoints: Vec<Value> = upstreams
            .iter()
            .map(|m| {
                json!({"provider": "mock", "model": m,
                            "pricing": {"prompt": "0.000001", "completion": "0.000002"}})
            })
            .collect();
        let created = self
            .http
            .post(format!("{api}/models"))
            .bearer_auth(self.secrets.management_key.expose())
            .json(&json!({"id": model, "context_length": 128000, "endpoints": endpoints}))
            .send()
            .await?;
        anyhow::ensure!(created.status() == 201, "model: {}", created.text().await?);
        Ok(())
    }

    /// A counter or gauge of the control plane's `/metrics`.
    async fn control_plane_metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.cp.http_addr))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(series, _)| *series == name)
            .and_then(|(_, v)| v.parse().ok())
            .with_context(|| format!("the control plane exports no metric {name}"))
    }

    async fn provisional_rows(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = on_db!(
            &self.db,
            fetch_one,
            sqlx::query_as("SELECT COUNT(*) FROM provisional_usage")
        );
        Ok(n)
    }

    async fn add_model(&self) -> anyhow::Result<()> {
        let api = format!("http://{}/api/v1", self.cp.http_addr);
        let key = self.secrets.management_key.expose();
        let created = self
            .http
            .post(format!("{api}/providers"))
            .bearer_auth(key)
            .json(&json!({"slug": "mock", "kind": "openai_compatible",
                          "base_url": self.mock.base_url(), "api_key": "sk-mock"}))
            .send()
            .await?;
        anyhow::ensure!(
            created.status() == 201,
            "provider: {}",
            created.text().await?
        );
        let created = self
            .http
            .post(format!("{api}/models"))
            .bearer_auth(key)
            .json(
                &json!({"id": MODEL, "context_length": 128000, "endpoints": [{
                "provider": "mock", "model": "gpt-4o",
                "pricing": {"prompt": "0.000001", "completion": "0.000002"}}]}),
            )
            .send()
            .await?;
        anyhow::ensure!(created.status() == 201, "model: {}", created.text().await?);
        Ok(())
    }

    async fn gateway(&self, node_id: &str) -> anyhow::Result<GatewayProcess> {
        GatewayProcess::start(
            Path::new(GATEWAY_EXE),
            self.cp.http_addr,
            self.cp.grpc_addr,
            &self.secrets.node_token,
            node_id,
            self.dir.path().join(format!("spool-{node_id}")),
            self.dir.path().join(format!("{node_id}.log")),
        )
        .await
    }

    /// Starts a new control plane process on the same database and addresses, as a
    /// supervisor would after the old one died.
    async fn restart_control_plane(&mut self) -> anyhow::Result<()> {
        self.cp = ControlPlaneProcess::start(
            Path::new(CONTROL_PLANE_EXE),
            &self.database_url,
            self.cp.http_addr,
            self.cp.grpc_addr,
            self.grace,
            self.dir.path().join("control-plane.log"),
        )
        .await?;
        Ok(())
    }

    /// Chat completions the provider received.
    fn provider_requests(&self) -> usize {
        self.mock
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .count()
    }

    async fn ledger(&self) -> anyhow::Result<Ledger> {
        let org = &self.secrets.org_id;
        let rows: Vec<(String, bool, String, i64)> = on_db!(
            &self.db,
            fetch_all,
            sqlx::query_as(
                "SELECT request_id, estimated, finish_reason, cost_nanos FROM usage_records WHERE org_id = $1",
            )
            .bind(org)
        );
        // CAST: Postgres sums BIGINT into NUMERIC.
        let postings: Vec<(String, i64, i64)> = on_db!(
            &self.db,
            fetch_all,
            sqlx::query_as(
                "SELECT request_id, COUNT(*), CAST(SUM(amount_nanos) AS BIGINT) FROM ledger_entries
                 WHERE org_id = $1 AND kind = 'usage' AND account = $2 GROUP BY request_id",
            )
            .bind(org)
            .bind(accounts::ORG_CREDITS)
        );
        let (provisional,): (i64,) = on_db!(
            &self.db,
            fetch_one,
            sqlx::query_as("SELECT COUNT(*) FROM provisional_usage")
        );
        Ok(Ledger {
            rows: rows
                .into_iter()
                .map(|(id, estimated, finish, cost)| (id, (estimated, finish, cost)))
                .collect(),
            postings: postings
                .into_iter()
                .map(|(id, n, sum)| (id, (n, sum)))
                .collect(),
            provisional,
        })
    }

    /// Waits until the ledger holds one generation per provider request and nothing is
    /// left provisional.
    async fn settled_ledger(&self, expected: usize) -> anyhow::Result<Ledger> {
        let deadline = tokio::time::Instant::now() + SETTLE_PATIENCE;
        loop {
            let ledger = self.ledger().await?;
            if ledger.rows.len() >= expected && ledger.provisional == 0 {
                return Ok(ledger);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "ledger has {} of {expected} generations, {} provisional; control plane log:\n{}",
                ledger.rows.len(),
                ledger.provisional,
                self.cp.process.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Ledger {
    /// request id → (estimated, finish reason, cost)
    rows: HashMap<String, (bool, String, i64)>,
    /// request id → (usage postings on the org's credits, their sum)
    postings: HashMap<String, (i64, i64)>,
    provisional: i64,
}

impl Ledger {
    /// Every generation posted exactly once, at its recorded cost.
    fn assert_exactly_once(&self) {
        assert_eq!(
            self.postings.len(),
            self.rows.len(),
            "one posting set per generation"
        );
        for (id, (_, _, cost)) in &self.rows {
            assert_eq!(
                self.postings.get(id),
                Some(&(1, -cost)),
                "generation {id} debited once at its cost"
            );
        }
    }
}

/// What a client saw of one request.
struct Reply {
    /// The generation's UUID (the ledger's request id).
    id: String,
    /// A streamed answer reached its `[DONE]`; always true for a JSON answer.
    completed: bool,
}

/// Sends one chat completion; `progress` counts the SSE events received so far.
async fn chat(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    prompt: &str,
    stream: bool,
    progress: Option<&AtomicUsize>,
) -> anyhow::Result<Reply> {
    let response = http
        .post(format!("{base}/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": MODEL, "stream": stream,
                      "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "status {}", response.status());
    let generation = response
        .headers()
        .get("x-generation-id")
        .and_then(|v| v.to_str().ok())
        .context("no x-generation-id")?
        .to_owned();
    let id = generation
        .strip_prefix("gen-")
        .context("malformed generation id")?
        .to_owned();
    if !stream {
        let body: Value = response.json().await?;
        anyhow::ensure!(body["id"] == generation.as_str());
        return Ok(Reply {
            id,
            completed: true,
        });
    }
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(piece) = body.next().await {
        // A broken connection (the gateway died) ends the stream unfinished.
        let Ok(piece) = piece else { break };
        let piece = String::from_utf8_lossy(&piece);
        if let Some(progress) = progress {
            progress.fetch_add(piece.matches("data:").count(), Ordering::Relaxed);
        }
        text.push_str(&piece);
    }
    Ok(Reply {
        id,
        completed: text.contains("data: [DONE]"),
    })
}

/// Polls `done` every 10 ms until it holds, for at most `PATIENCE`.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_sigkilled_mid_stream_bills_every_provider_request_exactly_once() {
    gateway_sigkilled_mid_stream(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_sigkilled_mid_stream_bills_every_provider_request_exactly_once_on_postgres() {
    if let Some(url) = postgres_test_database("sy_crash").await.unwrap() {
        gateway_sigkilled_mid_stream(Some(url)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_sigkilled_before_the_providers_first_byte_bills_each_waiting_stream_once() {
    gateway_sigkilled_before_first_byte(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_sigkilled_before_the_providers_first_byte_bills_each_waiting_stream_once_on_postgres()
 {
    if let Some(url) = postgres_test_database("sy_crash").await.unwrap() {
        gateway_sigkilled_before_first_byte(Some(url)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_every_attempt_failed_is_not_billed() {
    stream_with_every_attempt_failed(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_every_attempt_failed_is_not_billed_on_postgres() {
    if let Some(url) = postgres_test_database("sy_crash").await.unwrap() {
        stream_with_every_attempt_failed(Some(url)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_abandoned_before_the_providers_first_byte_is_not_billed() {
    let grace = Duration::from_secs(1);
    let mock = MockConfig {
        delay: Duration::from_secs(120),
        ..MockConfig::default()
    };
    let rig = Rig::start(Some(grace), mock, None).await.unwrap();
    let gateway = rig.gateway("abandoned-gw").await.unwrap();
    let (http, base, key) = (
        rig.http.clone(),
        gateway.base_url(),
        rig.secrets.api_key.expose().to_owned(),
    );
    let client = tokio::spawn(async move {
        http.post(format!("{base}/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": MODEL, "stream": true,
                          "messages": [{"role": "user", "content": "never mind"}]}))
            .send()
            .await
    });
    wait_until("the request at the provider", || {
        rig.provider_requests() == 1
    })
    .await;
    // The client goes away while the provider is still working: its connection closes.
    client.abort();
    assert!(client.await.unwrap_err().is_cancelled());

    // The gateway clears the provisional record with a zero-cost final one, as it billed
    // such a request before write-ahead; were it left, the sweeper would bill an estimate.
    let ledger = rig.settled_ledger(1).await.unwrap();
    let (estimated, finish, cost) = ledger.rows.values().next().unwrap();
    assert!(
        !estimated && finish == "cancelled" && *cost == 0,
        "billed nothing ({estimated}, {finish}, {cost})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_sigkilled_under_load_loses_nothing_and_gateways_keep_serving() {
    control_plane_sigkilled_under_load(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_sigkilled_under_load_loses_nothing_and_gateways_keep_serving_on_postgres()
{
    if let Some(url) = postgres_test_database("sy_crash").await.unwrap() {
        control_plane_sigkilled_under_load(Some(url)).await;
    }
}

#[expect(clippy::print_stdout, reason = "the fault test prints its figures")]
async fn gateway_sigkilled_mid_stream(database_url: Option<String>) {
    let backend = if database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    const WARM: usize = 4;
    const SHORT: usize = 12;
    const LONG: usize = 24;
    const AFTER: usize = 8;
    let grace = Duration::from_secs(2);
    let rig = Rig::start(
        Some(grace),
        Rig::chunks_every(Duration::from_millis(40)),
        database_url,
    )
    .await
    .unwrap();
    let mut gateway = rig.gateway("crash-gw").await.unwrap();
    let key = rig.secrets.api_key.expose().to_owned();
    let base = gateway.base_url();

    let mut finished = HashSet::new();
    for i in 0..WARM {
        let r = chat(&rig.http, &base, &key, &format!("warm {i}"), false, None)
            .await
            .unwrap();
        finished.insert(r.id);
    }
    // Short streams end before the kill; long ones (~60 events, 40 ms apart) are cut by it.
    let shorts: Vec<_> = (0..SHORT)
        .map(|i| {
            let (http, base, key) = (rig.http.clone(), base.clone(), key.clone());
            tokio::spawn(async move {
                chat(&http, &base, &key, &format!("short {i}"), true, None).await
            })
        })
        .collect();
    let progress: Arc<Vec<AtomicUsize>> =
        Arc::new((0..LONG).map(|_| AtomicUsize::new(0)).collect());
    let longs: Vec<_> = (0..LONG)
        .map(|i| {
            let (http, base, key) = (rig.http.clone(), base.clone(), key.clone());
            let progress = progress.clone();
            let prompt = format!("long {i} {}", "word ".repeat(60));
            tokio::spawn(async move {
                chat(&http, &base, &key, &prompt, true, Some(&progress[i])).await
            })
        })
        .collect();
    for short in shorts {
        let r = short.await.unwrap().unwrap();
        assert!(r.completed, "short stream {} did not finish", r.id);
        finished.insert(r.id);
    }
    // Every long stream is mid-flight: it has produced several events since the short ones
    // ended (so the shorts' final records had time to reach the spool too).
    let marks: Vec<usize> = progress.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    wait_until("every long stream in flight", || {
        progress
            .iter()
            .zip(&marks)
            .all(|(p, m)| p.load(Ordering::Relaxed) >= m + 3)
    })
    .await;
    let before_kill = rig.provider_requests();
    gateway.process.sigkill().await.unwrap();

    let mut cut = HashSet::new();
    for long in longs {
        let r = long.await.unwrap().unwrap();
        assert!(
            !r.completed,
            "long stream {} finished before the kill",
            r.id
        );
        cut.insert(r.id);
    }
    assert_eq!(cut.len(), LONG);

    // A new process on the same spool: it ships what the dead one left and keeps serving.
    let gateway = rig.gateway("crash-gw").await.unwrap();
    let base = gateway.base_url();
    for i in 0..AFTER {
        let r = chat(
            &rig.http,
            &base,
            &key,
            &format!("after {i}"),
            i.is_multiple_of(2),
            None,
        )
        .await
        .unwrap();
        assert!(r.completed, "request after the restart");
        finished.insert(r.id);
    }

    let provider = rig.provider_requests();
    assert_eq!(before_kill, WARM + SHORT + LONG);
    assert_eq!(
        provider,
        WARM + SHORT + LONG + AFTER,
        "requests at the provider"
    );
    let ledger = rig.settled_ledger(provider).await.unwrap();
    assert_eq!(
        ledger.rows.len(),
        provider,
        "every request that reached the provider is in the ledger"
    );
    ledger.assert_exactly_once();
    for id in &finished {
        let (estimated, finish, _) = &ledger.rows[id];
        assert!(
            !estimated && finish != "interrupted",
            "{id} has its final record"
        );
    }
    for id in &cut {
        let (estimated, finish, cost) = &ledger.rows[id];
        assert!(
            *estimated && finish == "interrupted" && *cost > 0,
            "{id} was settled as estimated ({estimated}, {finish}, {cost})"
        );
    }
    println!(
        "gateway SIGKILL ({backend}): {provider} requests reached the provider; {} billed from final records, \
         {} streams cut by the kill billed as estimated after the {grace:?} grace period; no duplicates",
        finished.len(),
        cut.len()
    );
}

#[expect(clippy::print_stdout, reason = "the fault test prints its figures")]
async fn control_plane_sigkilled_under_load(database_url: Option<String>) {
    let backend = if database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    const WORKERS: usize = 6;
    const PER_PHASE: usize = 30;
    // Long enough that no provisional record is settled before its final arrives: the final
    // of a generation shipped while the control plane was down comes after its restart.
    let grace = Duration::from_secs(120);
    let mut rig = Rig::start(
        Some(grace),
        Rig::chunks_every(Duration::from_millis(10)),
        database_url,
    )
    .await
    .unwrap();
    let gateway = rig.gateway("steady-gw").await.unwrap();
    let key = rig.secrets.api_key.expose().to_owned();
    let base = gateway.base_url();

    let stop = CancellationToken::new();
    let done = Arc::new(AtomicUsize::new(0));
    let replies: Arc<Mutex<Vec<Result<Reply, String>>>> = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (http, base, key) = (rig.http.clone(), base.clone(), key.clone());
            let (stop, done, replies) = (stop.clone(), done.clone(), replies.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.is_cancelled() {
                    let prompt = format!("worker {w} request {n} of a steady load");
                    let r = chat(&http, &base, &key, &prompt, n.is_multiple_of(2), None).await;
                    replies
                        .lock()
                        .unwrap()
                        .push(r.map_err(|e| format!("worker {w} request {n}: {e:#}")));
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();

    let phase = |from: usize| {
        let done = done.clone();
        async move {
            wait_until("a phase of requests", || {
                done.load(Ordering::Relaxed) >= from + PER_PHASE
            })
            .await;
        }
    };
    phase(0).await;
    rig.cp.process.sigkill().await.unwrap();
    // Served while the control plane is dead: usage waits in the gateway's spool.
    phase(done.load(Ordering::Relaxed)).await;
    let before_restart = done.load(Ordering::Relaxed);
    rig.restart_control_plane().await.unwrap();
    phase(done.load(Ordering::Relaxed)).await;
    stop.cancel();
    for worker in workers {
        worker.await.unwrap();
    }

    let replies = std::mem::take(&mut *replies.lock().unwrap());
    let mut ids = HashSet::new();
    for reply in replies {
        let reply = reply.unwrap();
        assert!(reply.completed, "stream {} did not finish", reply.id);
        ids.insert(reply.id);
    }
    let provider = rig.provider_requests();
    assert_eq!(
        provider,
        ids.len(),
        "every request reached the provider once"
    );
    let ledger = rig.settled_ledger(provider).await.unwrap();
    assert_eq!(
        ledger.rows.keys().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>(),
        "the ledger holds exactly the generations served"
    );
    ledger.assert_exactly_once();
    assert!(
        ledger.rows.values().all(|(estimated, _, _)| !estimated),
        "every generation billed from its final record"
    );
    // The spool drained: nothing left for the control plane to acknowledge.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let pending = gateway
            .metric("switchyard_gateway_spool_pending_records")
            .await
            .unwrap();
        if pending == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} records still pending in the spool"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "control plane SIGKILL ({backend}): {} requests served ({before_restart} before its restart), all 200; \
         {provider} at the provider, {} in the ledger exactly once; spool drained",
        ids.len(),
        ledger.rows.len()
    );
}

/// Output tokens the waiting streams ask for at most: their provisional estimate uses it.
const WAITING_MAX_TOKENS: u64 = 100;

#[expect(clippy::print_stdout, reason = "the fault test prints its figures")]
async fn gateway_sigkilled_before_first_byte(database_url: Option<String>) {
    let backend = if database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    const WAITING: usize = 6;
    let grace = Duration::from_secs(2);
    // The provider takes far longer to answer than the test runs: every request is still
    // waiting for its response headers when the gateway dies.
    let mock = MockConfig {
        delay: Duration::from_secs(120),
        ..MockConfig::default()
    };
    let rig = Rig::start(Some(grace), mock, database_url).await.unwrap();
    let mut gateway = rig.gateway("waiting-gw").await.unwrap();
    let key = rig.secrets.api_key.expose().to_owned();
    let base = gateway.base_url();
    let waiting: Vec<_> = (0..WAITING)
        .map(|i| {
            let (http, base, key) = (rig.http.clone(), base.clone(), key.clone());
            tokio::spawn(async move {
                http.post(format!("{base}/chat/completions"))
                    .bearer_auth(key)
                    .json(&json!({"model": MODEL, "stream": true, "max_tokens": WAITING_MAX_TOKENS,
                                  "messages": [{"role": "user", "content": format!("waiting {i}")}]}))
                    .send()
                    .await
            })
        })
        .collect();
    wait_until("every request at the provider", || {
        rig.provider_requests() == WAITING
    })
    .await;
    // Their write-ahead records reached the control plane: nothing but the kill is left.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while rig.provisional_rows().await.unwrap() < i64::try_from(WAITING).unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "provisional records of the waiting streams never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.process.sigkill().await.unwrap();
    for request in waiting {
        assert!(
            request.await.unwrap().is_err(),
            "no response can come from a dead gateway"
        );
    }

    let ledger = rig.settled_ledger(WAITING).await.unwrap();
    assert_eq!(
        ledger.rows.len(),
        WAITING,
        "each waiting stream billed once"
    );
    ledger.assert_exactly_once();
    // Priced at the endpoint's rates: a few prompt tokens at 1 000 nano-USD and the request's
    // max_tokens at 2 000 each; the org's default output estimate (1 024) would cost 2 048 000.
    let output_cost = i64::try_from(WAITING_MAX_TOKENS).unwrap() * 2_000;
    for (id, (estimated, finish, cost)) in &ledger.rows {
        assert!(
            *estimated && finish == "interrupted",
            "{id} was settled as estimated ({estimated}, {finish})"
        );
        assert!(
            *cost > output_cost && *cost < output_cost + 50_000,
            "{id} estimate follows max_tokens: {cost}"
        );
    }
    let settled = rig
        .control_plane_metric("switchyard_control_plane_usage_provisional_settled_total")
        .await
        .unwrap();
    assert_eq!(
        settled, WAITING as f64,
        "settled provisional records counted"
    );
    println!(
        "gateway SIGKILL before the first byte ({backend}): {WAITING} streams waiting on the provider, \
         each billed once as estimated ({} nano-USD each with max_tokens {WAITING_MAX_TOKENS}) after the {grace:?} grace period",
        ledger.rows.values().map(|(_, _, c)| *c).max().unwrap_or(0)
    );
}

async fn stream_with_every_attempt_failed(database_url: Option<String>) {
    const BROKEN: &str = "acme/broken";
    let grace = Duration::from_secs(1);
    let rig = Rig::start(Some(grace), MockConfig::default(), database_url)
        .await
        .unwrap();
    // Two endpoints, both failing with retryable errors: the gateway tries each.
    rig.add_model_on(BROKEN, &["error-500", "error-503"])
        .await
        .unwrap();
    let gateway = rig.gateway("failing-gw").await.unwrap();
    let response = rig
        .http
        .post(format!("{}/chat/completions", gateway.base_url()))
        .bearer_auth(rig.secrets.api_key.expose())
        .json(&json!({"model": BROKEN, "stream": true,
                      "messages": [{"role": "user", "content": "fail please"}]}))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_server_error(),
        "status {}",
        response.status()
    );
    assert_eq!(rig.provider_requests(), 2, "both endpoints were tried");

    // Its provisional record (written before the first attempt) is cleared by the failure's
    // final record; were it not, the sweeper would bill it as estimated after the grace.
    let ledger = rig.settled_ledger(1).await.unwrap();
    assert_eq!(ledger.rows.len(), 1, "{:?}", ledger.rows);
    let (estimated, finish, cost) = ledger.rows.values().next().unwrap();
    assert!(
        !estimated && finish == "error" && *cost == 0,
        "billed nothing ({estimated}, {finish}, {cost})"
    );
    assert!(ledger.postings.values().all(|(_, sum)| *sum == 0));
    // Past the grace period and a sweep: still nothing settled as estimated.
    let deadline = tokio::time::Instant::now() + grace * 3;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = rig.ledger().await.unwrap();
    assert_eq!(again.rows, ledger.rows, "nothing settled later");
    assert_eq!(
        rig.control_plane_metric("switchyard_control_plane_usage_provisional_settled_total")
            .await
            .unwrap(),
        0.0
    );
}
