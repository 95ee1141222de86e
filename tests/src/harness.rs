//! Starts a whole Switchyard in-process on loopback: a control plane on a fresh SQLite (or a
//! given Postgres) database and a gateway pointed at it, every listener on port 0. Parts can
//! be stopped and restarted on the same addresses and spool to test faults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use switchyard_control_plane::bootstrap::{self, BootstrapOptions, FirstStart};
use switchyard_control_plane::store::{self, Store};
use switchyard_control_plane::{Listeners, RunOptions};
use switchyard_gateway::{GatewayConfig, GatewayStatus, ServeOptions};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen within moments.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct ControlPlane {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), switchyard_control_plane::ControlPlaneError>>>,
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub status: GatewayStatus,
    pub spool_dir: PathBuf,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), switchyard_gateway::GatewayError>>>,
}

pub struct System {
    pub store: Arc<dyn Store>,
    pub database_url: String,
    pub secrets: FirstStart,
    pub control_plane: ControlPlane,
    pub gateway: Gateway,
    pub http: reqwest::Client,
    dir: TempDir,
}

impl System {
    /// A fresh system on SQLite in a temporary directory.
    pub async fn start() -> anyhow::Result<System> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("switchyard.db").display());
        Self::start_on(dir, url).await
    }

    /// A fresh system on the given database (which must be empty).
    pub async fn start_on(dir: TempDir, database_url: String) -> anyhow::Result<System> {
        init_tracing();
        let store = store::connect(&database_url)
            .await
            .context("opening the store")?;
        let secrets = bootstrap::ensure(&store, BootstrapOptions::default())
            .await?
            .context("the database was not empty")?;
        let control_plane = ControlPlane::start(
            store.clone(),
            "127.0.0.1:0".parse()?,
            "127.0.0.1:0".parse()?,
        )
        .await?;
        let spool_dir = dir.path().join("spool");
        let gateway = Gateway::start(
            &control_plane,
            &secrets.node_token,
            spool_dir,
            "127.0.0.1:0".parse()?,
        )
        .await?;
        let system = System {
            store,
            database_url,
            secrets,
            control_plane,
            gateway,
            http: reqwest::Client::new(),
            dir,
        };
        system.gateway.wait_for_config(1).await?;
        Ok(system)
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Base URL clients use: inference and management on one host.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.gateway.addr)
    }

    pub fn api_key(&self) -> &str {
        self.secrets.api_key.expose()
    }

    pub fn management_key(&self) -> &str {
        self.secrets.management_key.expose()
    }

    pub async fn stop_control_plane(&mut self) -> anyhow::Result<()> {
        self.control_plane.stop().await
    }

    /// Restarts the control plane on the same addresses, so the gateway finds it again.
    pub async fn restart_control_plane(&mut self) -> anyhow::Result<()> {
        let (http, grpc) = (self.control_plane.http_addr, self.control_plane.grpc_addr);
        self.control_plane = ControlPlane::start(self.store.clone(), http, grpc).await?;
        Ok(())
    }

    /// Graceful stop: in-flight streams finish and the spool gets a last flush attempt.
    pub async fn stop_gateway(&mut self) -> anyhow::Result<()> {
        self.gateway.stop().await
    }

    /// Kills the gateway task without any drain, like `kill -9` of a gateway process.
    pub async fn kill_gateway(&mut self) -> anyhow::Result<()> {
        self.gateway.kill().await
    }

    /// A new gateway process on the same address and spool directory.
    pub async fn restart_gateway(&mut self) -> anyhow::Result<()> {
        let addr = self.gateway.addr;
        let spool = self.gateway.spool_dir.clone();
        self.gateway =
            Gateway::start(&self.control_plane, &self.secrets.node_token, spool, addr).await?;
        // Applying config happens after the spool is open, so its progress is observable.
        let version = self.store.config_version().await?;
        self.gateway.wait_for_config(version).await
    }

    /// Another gateway on the same control plane, with its own spool.
    pub async fn start_extra_gateway(&self) -> anyhow::Result<Gateway> {
        self.start_extra_gateway_with_redis(None).await
    }

    /// Another gateway, its response cache in the Redis at `redis_url` when given.
    pub async fn start_extra_gateway_with_redis(
        &self,
        redis_url: Option<&str>,
    ) -> anyhow::Result<Gateway> {
        self.start_extra_gateway_with(redis_url, ServeOptions::default())
            .await
    }

    /// Another gateway with its own spool and the given serving options.
    pub async fn start_extra_gateway_with(
        &self,
        redis_url: Option<&str>,
        options: ServeOptions,
    ) -> anyhow::Result<Gateway> {
        let spool = self
            .dir
            .path()
            .join(format!("spool-{}", uuid::Uuid::now_v7().simple()));
        let gateway = Gateway::start_with(
            &self.control_plane,
            &self.secrets.node_token,
            spool,
            "127.0.0.1:0".parse()?,
            redis_url,
            options,
        )
        .await?;
        gateway
            .wait_for_config(self.store.config_version().await?)
            .await?;
        Ok(gateway)
    }

    /// Another org with an owner, a management key and an inference key, created straight in
    /// the store. Returns `(org id, management key, inference key)`.
    pub async fn add_org(&self, name: &str) -> anyhow::Result<(String, String, String)> {
        use switchyard_control_plane::store::{KeyKind, NewKey, NewUser, Org};
        let org_id = uuid::Uuid::now_v7().to_string();
        let user_id = uuid::Uuid::now_v7().to_string();
        self.store
            .create_user(&NewUser {
                id: user_id.clone(),
                email: format!("owner-{user_id}@example.test"),
                name: name.into(),
                password_hash: None,
            })
            .await?;
        self.store
            .create_org(
                &Org {
                    id: org_id.clone(),
                    name: name.into(),
                    created_at: switchyard_control_plane::store::now_ms(),
                },
                &user_id,
            )
            .await?;
        let mut secrets = Vec::new();
        for (kind, label) in [
            (KeyKind::Management, "management"),
            (KeyKind::Inference, "inference"),
        ] {
            let secret = switchyard_proto::ApiKeySecret::generate();
            self.store
                .create_key(&NewKey {
                    hash: secret.hash().into_string(),
                    org_id: org_id.clone(),
                    name: format!("{name} {label}"),
                    label: "sk-sy-v1-...test".into(),
                    kind,
                    limit_nanos: None,
                    limit_reset: None,
                    include_byok_in_limit: false,
                    expires_at: None,
                })
                .await?;
            secrets.push(secret.expose().to_owned());
        }
        self.gateway
            .wait_for_config(self.store.config_version().await?)
            .await?;
        let inference = secrets.pop().unwrap_or_default();
        let management = secrets.pop().unwrap_or_default();
        Ok((org_id, management, inference))
    }

    /// POST JSON to the gateway with a bearer key.
    pub async fn post(
        &self,
        path: &str,
        key: &str,
        body: &Value,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}{path}", self.base_url()))
            .bearer_auth(key)
            .json(body)
            .send()
            .await?)
    }

    pub async fn get(&self, path: &str, key: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base_url()))
            .bearer_auth(key)
            .send()
            .await?)
    }

    /// Registers an OpenAI-compatible provider and one model on it through the REST API,
    /// then waits until the gateway serves the new config.
    pub async fn add_openai_model(
        &self,
        base_url: &str,
        model_id: &str,
        upstream: &str,
        prompt_price: &str,
        completion_price: &str,
    ) -> anyhow::Result<()> {
        let slug = format!("mock-{}", uuid::Uuid::now_v7().simple());
        let created = self
            .post("/providers", self.management_key(), &json!({"slug": slug, "kind": "openai_compatible", "base_url": base_url, "api_key": "sk-mock"}))
            .await?;
        anyhow::ensure!(
            created.status() == 201,
            "creating provider: {}",
            created.text().await?
        );
        let created = self
            .post(
                "/models",
                self.management_key(),
                &json!({"id": model_id, "context_length": 128000, "endpoints": [{
                    "provider": slug, "model": upstream,
                    "pricing": {"prompt": prompt_price, "completion": completion_price}
                }]}),
            )
            .await?;
        anyhow::ensure!(
            created.status() == 201,
            "creating model: {}",
            created.text().await?
        );
        let version = self.store.config_version().await?;
        self.gateway.wait_for_config(version).await
    }

    /// Waits until the control plane has acknowledged every usage record spooled so far.
    pub async fn wait_for_usage_shipped(&self) -> anyhow::Result<()> {
        self.gateway
            .wait_for_acked(|acked, last| acked >= last)
            .await
    }
}

impl ControlPlane {
    pub async fn start(
        store: Arc<dyn Store>,
        http: SocketAddr,
        grpc: SocketAddr,
    ) -> anyhow::Result<ControlPlane> {
        let listeners = Listeners {
            http: TcpListener::bind(http).await?,
            grpc: TcpListener::bind(grpc).await?,
        };
        let http_addr = listeners.http.local_addr()?;
        let grpc_addr = listeners.grpc.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(switchyard_control_plane::run(
            store,
            listeners,
            RunOptions::default(),
            shutdown.clone(),
        ));
        Ok(ControlPlane {
            http_addr,
            grpc_addr,
            shutdown,
            task: Some(task),
        })
    }

    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .context("control plane did not stop")???;
        }
        Ok(())
    }
}

impl Gateway {
    pub async fn start(
        cp: &ControlPlane,
        node_token: &str,
        spool_dir: PathBuf,
        addr: SocketAddr,
    ) -> anyhow::Result<Gateway> {
        Self::start_with_redis(cp, node_token, spool_dir, addr, None).await
    }

    /// A gateway whose response cache lives in the Redis at `redis_url`.
    pub async fn start_with_redis(
        cp: &ControlPlane,
        node_token: &str,
        spool_dir: PathBuf,
        addr: SocketAddr,
        redis_url: Option<&str>,
    ) -> anyhow::Result<Gateway> {
        Self::start_with(
            cp,
            node_token,
            spool_dir,
            addr,
            redis_url,
            ServeOptions::default(),
        )
        .await
    }

    /// A gateway with the given Redis (or none) and serving options.
    pub async fn start_with(
        cp: &ControlPlane,
        node_token: &str,
        spool_dir: PathBuf,
        addr: SocketAddr,
        redis_url: Option<&str>,
        options: ServeOptions,
    ) -> anyhow::Result<Gateway> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let status = GatewayStatus::default();
        let shutdown = CancellationToken::new();
        let config = GatewayConfig {
            node_id: format!("test-gateway-{}", addr.port()),
            control_plane_grpc: format!("http://{}", cp.grpc_addr),
            control_plane_http: Some(format!("http://{}", cp.http_addr)),
            node_token: node_token.to_owned(),
            spool_dir: spool_dir.clone(),
            drain_timeout: PATIENCE,
            status: status.clone(),
            redis_url: redis_url.map(str::to_owned),
        };
        let task = tokio::spawn(switchyard_gateway::run_with(
            config,
            listener,
            shutdown.clone(),
            options,
        ));
        Ok(Gateway {
            addr,
            status,
            spool_dir,
            shutdown,
            task: Some(task),
        })
    }

    pub async fn wait_for_config(&self, version: u64) -> anyhow::Result<()> {
        let mut rx = self.status.applied_version.subscribe();
        tokio::time::timeout(PATIENCE, rx.wait_for(|v| *v >= version))
            .await
            .with_context(|| format!("gateway did not apply config version {version}"))??;
        Ok(())
    }

    /// Waits until the gateway runs config `version` or newer, shared among `count` gateways.
    pub async fn wait_for_gateway_count(&self, count: u32, version: u64) -> anyhow::Result<()> {
        self.wait_for_config(version).await?;
        let mut rx = self.status.gateway_count.subscribe();
        tokio::time::timeout(PATIENCE, rx.wait_for(|n| *n == count))
            .await
            .with_context(|| format!("gateway never saw {count} gateways"))??;
        Ok(())
    }

    /// Waits until at least `seq` usage records are durable in the spool.
    pub async fn wait_for_spooled(&self, seq: u64) -> anyhow::Result<()> {
        let mut rx = self.status.spooled_usage_seq.subscribe();
        tokio::time::timeout(PATIENCE, rx.wait_for(|v| *v >= seq))
            .await
            .context("usage was not spooled in time")??;
        Ok(())
    }

    /// Waits until `done(acked_seq, last_spooled_seq)` holds.
    pub async fn wait_for_acked(&self, done: impl Fn(u64, u64) -> bool) -> anyhow::Result<()> {
        let mut rx = self.status.acked_usage_seq.subscribe();
        let last = self.status.spooled_usage_seq.subscribe();
        tokio::time::timeout(PATIENCE, async {
            loop {
                if done(*rx.borrow_and_update(), *last.borrow()) {
                    return Ok::<_, anyhow::Error>(());
                }
                rx.changed().await?;
            }
        })
        .await
        .context("usage was not acknowledged in time")?
    }

    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .context("gateway did not stop")???;
        }
        Ok(())
    }

    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        // An aborted task releases the spool's lock when its last handle drops, moments later
        // (a process killed with -9 releases it at once, through the OS).
        tokio::time::timeout(PATIENCE, async {
            loop {
                match switchyard_gateway::metering::spool::Spool::open(&self.spool_dir) {
                    Ok(_) => return,
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        })
        .await
        .context("the killed gateway's spool stayed locked")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Logs go to the test's captured output; `SWITCHYARD_LOG` sets the filter (default: warn).
pub fn init_tracing() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
            .unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

impl ControlPlane {
    /// Ends the control plane like `kill -9`: the task is aborted without a drain, so open
    /// connections break and in-flight RPCs get no answer.
    pub async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        // Connection tasks spawned by the servers watch this token; a dead process has none.
        self.shutdown.cancel();
    }
}

impl System {
    /// Kills the control plane (see [`ControlPlane::kill`]) and starts a new one on the same
    /// addresses and store, as a supervisor restarting a crashed process would.
    pub async fn kill_and_restart_control_plane(&mut self) -> anyhow::Result<()> {
        self.control_plane.kill().await;
        self.restart_control_plane().await
    }
}

/// A private, throwaway Postgres cluster (tests/pg/start-postgres.sh) for a test that must
/// restart the server, which would break other tests on the shared cluster. Stopped on drop.
pub struct PrivatePostgres {
    /// Connection URL of the cluster's `postgres` database.
    pub url: String,
    pub datadir: PathBuf,
    state: TempDir,
}

impl PrivatePostgres {
    pub async fn start() -> anyhow::Result<PrivatePostgres> {
        let state = tempfile::tempdir()?;
        let state_file = state.path().join("pg.state");
        let output = tokio::process::Command::new("bash")
            .arg(pg_script("start-postgres.sh"))
            .arg(&state_file)
            .output()
            .await
            .context("running start-postgres.sh")?;
        anyhow::ensure!(
            output.status.success(),
            "start-postgres.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout)?;
        let url = stdout
            .lines()
            .last()
            .context("start-postgres.sh printed no URL")?
            .to_owned();
        let datadir = PathBuf::from(std::fs::read_to_string(&state_file)?.trim());
        Ok(PrivatePostgres {
            url,
            datadir,
            state,
        })
    }

    /// `pg_ctl restart -m fast`: every connection is cut, the server comes back with the same
    /// options (pg_ctl reuses postmaster.opts) on the same socket.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let opts = std::fs::read_to_string(self.datadir.join("postmaster.opts"))?;
        let postgres_bin = opts
            .split_whitespace()
            .next()
            .context("empty postmaster.opts")?;
        let pg_ctl = std::path::Path::new(postgres_bin.trim_matches('"')).with_file_name("pg_ctl");
        let base = self.datadir.parent().context("data dir has no parent")?;
        // The cluster belongs to the postgres user when the tests run as root.
        let mut command = if is_root() {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            tokio::process::Command::new(&pg_ctl)
        };
        // The restarted server must log to the cluster's file: one inheriting pg_ctl's stdio
        // would hold those pipes open for its whole life.
        let log = base.join("postgres.log");
        let status = command
            .current_dir(base)
            .arg("--pgdata")
            .arg(&self.datadir)
            .arg("--log")
            .arg(&log)
            .args([
                "--wait",
                "--timeout=30",
                "--silent",
                "-m",
                "fast",
                "restart",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .context("running pg_ctl restart")?;
        anyhow::ensure!(
            status.success(),
            "pg_ctl restart failed ({status}); see {}",
            log.display()
        );
        Ok(())
    }

    /// A new, empty database on this cluster; returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.url).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let (base, query) = self
            .url
            .split_once('?')
            .context("the cluster URL names its socket dir in the query")?;
        let prefix = base
            .rsplit_once('/')
            .map(|(p, _)| p)
            .context("malformed cluster URL")?;
        Ok(format!("{prefix}/{name}?{query}"))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(pg_script("stop-postgres.sh"))
            .arg(self.state.path().join("pg.state"))
            .output();
    }
}

fn pg_script(name: &str) -> PathBuf {
    crate::crate_dir().join("pg").join(name)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Resident set size of this process in KiB (`VmRSS` in /proc/self/status); the in-process
/// gateway's memory is part of it.
pub fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS line")?
        .parse()?)
}

/// A Switchyard part running as its own OS process (one of the tests' thin bins), for fault
/// tests that kill it for real. Dropping it kills it with SIGKILL.
pub struct ChildProcess {
    child: tokio::process::Child,
    /// Where its stderr (its logs) goes, for a failing test to show.
    pub log: PathBuf,
}

impl ChildProcess {
    /// Spawns `command` with stdout piped and stderr to `log`, and returns the first line it
    /// prints (the bins announce their bound addresses there).
    pub async fn spawn(
        mut command: tokio::process::Command,
        log: PathBuf,
    ) -> anyhow::Result<(ChildProcess, String)> {
        use tokio::io::AsyncBufReadExt as _;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .context("spawning a child process")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .context("the child did not announce itself in time")??;
        let process = ChildProcess { child, log };
        let Some(first) = first else {
            anyhow::bail!(
                "the child exited before announcing itself; log:\n{}",
                process.log_tail()
            );
        };
        // Keep draining, so a chatty child can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((process, first))
    }

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// `kill -9`: no signal handler, no drain, no flush. Waits until the process is gone and
    /// checks that SIGKILL is what ended it.
    pub async fn sigkill(&mut self) -> anyhow::Result<()> {
        use std::os::unix::process::ExitStatusExt as _;
        // tokio's `start_kill` is `kill(pid, SIGKILL)` on Unix.
        self.child.start_kill()?;
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .context("the killed process did not exit")??;
        anyhow::ensure!(
            status.signal() == Some(9),
            "the process ended with {status}, not SIGKILL"
        );
        Ok(())
    }

    /// The last lines of the process's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// A control plane process (`switchyard-e2e-control-plane`) on an existing database.
pub struct ControlPlaneProcess {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub process: ChildProcess,
}

impl ControlPlaneProcess {
    /// Starts `exe` on `database_url`, listening on the given addresses (port 0: any free
    /// one; the same addresses again to restart it where gateways look for it).
    pub async fn start(
        exe: &std::path::Path,
        database_url: &str,
        http: SocketAddr,
        grpc: SocketAddr,
        provisional_grace: Option<Duration>,
        log: PathBuf,
    ) -> anyhow::Result<ControlPlaneProcess> {
        let mut command = tokio::process::Command::new(exe);
        command
            .env("SWITCHYARD_DATABASE_URL", database_url)
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("--grpc-listen")
            .arg(grpc.to_string());
        if let Some(grace) = provisional_grace {
            command
                .arg("--provisional-grace-ms")
                .arg(grace.as_millis().to_string());
        }
        let (process, line) = ChildProcess::spawn(command, log).await?;
        let mut words = line.split_whitespace().skip(1);
        let mut addr = || -> anyhow::Result<SocketAddr> {
            Ok(words
                .next()
                .with_context(|| format!("unexpected announcement {line:?}"))?
                .parse()?)
        };
        Ok(ControlPlaneProcess {
            http_addr: addr()?,
            grpc_addr: addr()?,
            process,
        })
    }
}

/// A gateway process (`switchyard-e2e-gateway`) with its spool in `spool_dir`.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    pub spool_dir: PathBuf,
    pub process: ChildProcess,
}

impl GatewayProcess {
    /// Starts `exe` against the control plane at `cp_http` / `cp_grpc` on a free port and
    /// waits until it serves (its first config snapshot is applied).
    pub async fn start(
        exe: &std::path::Path,
        cp_http: SocketAddr,
        cp_grpc: SocketAddr,
        node_token: &str,
        node_id: &str,
        spool_dir: PathBuf,
        log: PathBuf,
    ) -> anyhow::Result<GatewayProcess> {
        let mut command = tokio::process::Command::new(exe);
        command
            .env("SWITCHYARD_NODE_TOKEN", node_token)
            .arg("--control-plane")
            .arg(format!("http://{cp_grpc}"))
            .arg("--control-plane-http")
            .arg(format!("http://{cp_http}"))
            .arg("--node-id")
            .arg(node_id)
            .arg("--spool-dir")
            .arg(&spool_dir);
        let (process, line) = ChildProcess::spawn(command, log).await?;
        let addr = line
            .strip_prefix("listening ")
            .with_context(|| format!("unexpected announcement {line:?}"))?
            .parse()?;
        let gateway = GatewayProcess {
            addr,
            spool_dir,
            process,
        };
        gateway.wait_ready().await?;
        Ok(gateway)
    }

    /// Base URL clients use.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// Polls `/readyz` until the gateway has a config snapshot.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let url = format!("http://{}/readyz", self.addr);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "gateway at {} never became ready; log:\n{}",
                self.addr,
                self.process.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A gauge or counter of the gateway's `/metrics`, summed over its series; an error if
    /// the gateway does not export it (so a renamed metric cannot pass as zero).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.addr))
            .await?
            .text()
            .await?;
        let values: Vec<f64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| series.split('{').next() == Some(name))
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .collect();
        anyhow::ensure!(!values.is_empty(), "the gateway exports no metric {name}");
        Ok(values.iter().sum())
    }
}

/// A new, empty database on the Postgres server named by `SWITCHYARD_TEST_DATABASE_URL`,
/// its name starting with `prefix`; `None` (with a SKIPPED line on stderr) when the variable
/// is unset, which is an error under `CI=true`.
pub async fn postgres_test_database(prefix: &str) -> anyhow::Result<Option<String>> {
    use sqlx::Connection as _;
    const VAR: &str = "SWITCHYARD_TEST_DATABASE_URL";
    let Some(admin) = std::env::var(VAR).ok().filter(|u| !u.trim().is_empty()) else {
        anyhow::ensure!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Postgres is required under CI=true: export {VAR}=$(bash tests/pg/start-postgres.sh)"
        );
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIPPED (postgres): {VAR} is not set");
        return Ok(None);
    };
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let (base, query) = admin
        .split_once('?')
        .map_or((admin.as_str(), None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let prefix = base[authority..]
        .find('/')
        .map_or(base, |slash| &base[..authority + slash]);
    Ok(Some(match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }))
}
