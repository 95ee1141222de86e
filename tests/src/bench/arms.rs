//! The lab: one mock process and every arm under test, each in its own process, all pointed at
//! that mock.
//!
//! Arms: `direct` (client → mock), `forwarder` (client → bare hyper forwarder → mock),
//! `switchyard` (client → `switchyard-gateway` → mock, with a `switchyard control-plane`
//! process beside it), and, when they install, `litellm` and `portkey`. Running every arm as a
//! child process (rather than in the bench's process) keeps `/proc` CPU and RSS readings clean
//! and lets `--pin` put the proxies on one core and the mock plus load generator on the other.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::json;
use switchyard_proto::ApiKeySecret;

use super::loadgen::Target;
use super::mock::MockSettings;
use super::procs::Proc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArmKind {
    Direct,
    Forwarder,
    Switchyard,
    Litellm,
    Portkey,
}

impl ArmKind {
    pub fn name(self) -> &'static str {
        match self {
            ArmKind::Direct => "direct",
            ArmKind::Forwarder => "forwarder",
            ArmKind::Switchyard => "switchyard",
            ArmKind::Litellm => "litellm",
            ArmKind::Portkey => "portkey",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ArmKind::Direct => "direct (mock)",
            ArmKind::Forwarder => "bare hyper forwarder",
            ArmKind::Switchyard => "switchyard",
            ArmKind::Litellm => "LiteLLM proxy",
            ArmKind::Portkey => "Portkey gateway",
        }
    }
}

/// The requests one arm is measured with.
#[derive(Clone, Debug)]
pub struct Targets {
    /// Non-streaming chat completion against the zero-delay model.
    pub fast: Target,
    /// The same, streaming, with usage requested.
    pub stream: Target,
    /// Non-streaming against the model the mock delays (`slow_delay`).
    pub slow: Target,
}

pub struct Arm {
    pub kind: ArmKind,
    /// Why the arm could not run; `None` when it is up.
    pub unavailable: Option<String>,
    pub targets: Option<Targets>,
    /// Process (tree) whose CPU and memory are the arm's cost; `None` for `direct`.
    pub pid: Option<u32>,
    /// A helper process whose cost is reported separately (the control plane).
    pub aux_pid: Option<u32>,
    pub version: Option<String>,
    /// Management access to the `switchyard` arm, for the feature ladder.
    pub admin: Option<Admin>,
}

/// Reconfigures the running Switchyard through its control plane's REST API.
#[derive(Clone, Debug)]
pub struct Admin {
    api: String,
    management_key: String,
    /// Hash of the inference key the load generator uses.
    pub key_hash: String,
    gateway: SocketAddr,
    http: reqwest::Client,
    /// The control plane's SQLite database, for the write-locked scenario.
    pub database: PathBuf,
}

impl Admin {
    /// Takes SQLite's exclusive write lock on the control plane's database and holds it
    /// until the returned connection is dropped: every ingestion write then waits (and
    /// times out), as with a stalled database server.
    pub async fn lock_database(&self) -> anyhow::Result<sqlx::SqliteConnection> {
        use sqlx::Connection as _;
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", self.database.display()))
                .await
                .with_context(|| format!("opening {}", self.database.display()))?;
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut conn)
            .await
            .context("BEGIN EXCLUSIVE on the control plane's database")?;
        Ok(conn)
    }

    /// The body of the gateway's answer to `GET path`.
    async fn gateway_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("http://{}{path}", self.gateway))
            .send()
            .await?
            .text()
            .await?)
    }

    /// The config version the gateway serves, from `/readyz` ("ready: config version N").
    async fn served_version(&self) -> anyhow::Result<u64> {
        let text = self.gateway_text("/readyz").await?;
        text.rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("unexpected /readyz answer {text:?}"))
    }

    /// Usage records the gateway holds unacknowledged, from its `/metrics`.
    async fn spool_pending(&self) -> anyhow::Result<u64> {
        const GAUGE: &str = "switchyard_gateway_spool_pending_records ";
        let text = self.gateway_text("/metrics").await?;
        text.lines()
            .find_map(|l| l.strip_prefix(GAUGE))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no `{}` in the gateway's /metrics", GAUGE.trim_end()))
    }

    /// Waits until the control plane has acknowledged every usage record the gateway
    /// metered (after an outage, the backlog's ingestion would otherwise load the cores
    /// during the next measurement).
    pub async fn wait_until_shipped(&self, patience: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            let pending = self.spool_pending().await?;
            if pending == 0 {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{pending} usage records still unacknowledged after {patience:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `body` to `path` (under `/api/v1`) and waits until the gateway serves the new
    /// snapshot. Returns the answer's JSON (`null` for an empty body).
    pub async fn apply(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let before = self.served_version().await?;
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.api))
            .bearer_auth(&self.management_key)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "{method} {path}: {status}: {text}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.served_version().await? <= before {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the gateway did not apply {method} {path}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }
}

impl Arm {
    pub fn up(&self) -> bool {
        self.unavailable.is_none() && self.targets.is_some()
    }
}

#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Where `switchyard`, `switchyard-gateway` and this bench live (target/release).
    pub bin_dir: PathBuf,
    pub work_dir: PathBuf,
    pub pin: bool,
    pub mock: MockSettings,
    /// Arms to start besides `direct`.
    pub arms: Vec<ArmKind>,
    pub peers_dir: PathBuf,
    pub peers_script: PathBuf,
    /// The control plane's `--ingest-priority` (`normal` or `idle`).
    pub cp_ingest_priority: String,
}

pub struct Lab {
    pub mock_addr: SocketAddr,
    pub mock_pid: u32,
    pub arms: Vec<Arm>,
    procs: Vec<Proc>,
    /// How the Switchyard arm's control plane was started, to start it again.
    control_plane: Option<ControlPlaneLaunch>,
}

/// A control plane's command line, environment and address: enough to start it again on the
/// same database and ports after [`Lab::stop_control_plane`].
struct ControlPlaneLaunch {
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(&'static str, String)>,
    pin: Option<&'static str>,
    log: PathBuf,
    http: SocketAddr,
}

impl ControlPlaneLaunch {
    fn spawn(&self) -> anyhow::Result<Proc> {
        Proc::spawn(
            CONTROL_PLANE,
            &self.program,
            &self.args,
            &self.envs,
            self.pin,
            &self.log,
        )
    }
}

/// Process names the lab finds its Switchyard children by.
const CONTROL_PLANE: &str = "switchyard control-plane";
const GATEWAY: &str = "switchyard-gateway";

/// CPU lists for `taskset` when pinning: proxies on core 1, everything else on core 0.
pub const PROXY_CPUS: &str = "1";
pub const CLIENT_CPUS: &str = "0";

/// The Switchyard arm's directory under the run's work dir, and its control plane's
/// database and gateway's spool inside it.
const SWITCHYARD_DIR: &str = "switchyard";
const DATA_DIR: &str = "data";
const SPOOL_DIR: &str = "spool";

/// Removes the Switchyard arm's database and spool under `work_dir` once a run is over, and
/// returns the bytes they held: repeated `--full` runs otherwise pile up more than a
/// gigabyte each. The logs next to them stay.
pub fn remove_state(work_dir: &Path) -> std::io::Result<u64> {
    let arm = work_dir.join(SWITCHYARD_DIR);
    let mut freed = 0;
    for dir in [arm.join(DATA_DIR), arm.join(SPOOL_DIR)] {
        if !dir.exists() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            freed += entry?.metadata()?.len();
        }
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(freed)
}

const MESSAGES: &str = r#"[{"role":"system","content":"You are a terse assistant."},{"role":"user","content":"Say hello to the benchmark in one short sentence."}]"#;

fn chat_body(model: &str, stream: bool) -> Bytes {
    let extra = if stream {
        r#","stream":true,"stream_options":{"include_usage":true}"#
    } else {
        ""
    };
    Bytes::from(format!(
        r#"{{"model":"{model}","messages":{MESSAGES},"max_tokens":32{extra}}}"#
    ))
}

fn targets(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    fast_model: &str,
    slow_model: &str,
) -> anyhow::Result<Targets> {
    let fast = Target::new(addr, path, headers, chat_body(fast_model, false))?;
    Ok(Targets {
        stream: fast.with_body(chat_body(fast_model, true)),
        slow: fast.with_body(chat_body(slow_model, false)),
        fast,
    })
}

/// A loopback port nothing listens on right now (for a child process to bind).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts connections on `addr` (a child process is up).
pub async fn wait_for_port(addr: SocketAddr, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Retries one request until it answers 200 (the arm is ready end to end).
async fn wait_until_serving(target: &Target, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    let mut last = String::new();
    while Instant::now() < deadline {
        match super::loadgen::closed_loop(
            target,
            1,
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_secs(5),
        )
        .await
        {
            Ok(block) if block.ok > 0 => return Ok(()),
            Ok(block) => last = block.first_error.unwrap_or_default(),
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("not serving after {patience:?}: {last}")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

impl Lab {
    pub async fn start(options: &LabOptions) -> anyhow::Result<Lab> {
        std::fs::create_dir_all(&options.work_dir)?;
        let me = std::env::current_exe().context("locating the bench binary")?;
        let pin_client = options.pin.then_some(CLIENT_CPUS);
        let pin_proxy = options.pin.then_some(PROXY_CPUS);
        let mut procs = Vec::new();
        let mut control_plane = None;

        super::progress("starting the mock provider");
        let m = &options.mock;
        let (mock, line) = Proc::spawn_reporting(
            "mock",
            &me,
            &[
                "mock".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--chunks".into(),
                m.chunks.to_string(),
                "--chunk-interval-us".into(),
                m.chunk_interval.as_micros().to_string(),
                "--slow-delay-ms".into(),
                m.slow_delay.as_millis().to_string(),
            ],
            pin_client,
            &options.work_dir.join("mock.log"),
        )
        .await?;
        let mock_addr: SocketAddr = line
            .trim()
            .parse()
            .with_context(|| format!("mock reported {line:?}"))?;
        let mock_pid = mock.pid;
        procs.push(mock);
        let mock_base = format!("http://{mock_addr}/v1");

        let mut arms = vec![Arm {
            kind: ArmKind::Direct,
            unavailable: None,
            targets: Some(targets(
                mock_addr,
                "/v1/chat/completions",
                &[("authorization", "Bearer sk-mock".into())],
                "bench-model",
                "bench-slow",
            )?),
            pid: None,
            aux_pid: None,
            version: None,
            admin: None,
        }];
        wait_until_serving(
            &arms[0].targets.as_ref().context("direct")?.fast,
            Duration::from_secs(10),
        )
        .await
        .context("the mock does not answer")?;

        for kind in &options.arms {
            super::progress(&format!("starting arm {}", kind.name()));
            let started = match kind {
                ArmKind::Direct => continue,
                ArmKind::Forwarder => {
                    start_forwarder(&me, mock_addr, pin_proxy, &options.work_dir, &mut procs).await
                }
                ArmKind::Switchyard => {
                    start_switchyard(
                        options,
                        &mock_base,
                        pin_proxy,
                        pin_client,
                        &mut procs,
                        &mut control_plane,
                    )
                    .await
                }
                ArmKind::Litellm | ArmKind::Portkey => {
                    start_peer(*kind, options, &mock_base, pin_proxy, &mut procs).await
                }
            };
            match started {
                Ok(arm) => arms.push(arm),
                Err(err) => {
                    let reason = format!("{err:#}");
                    super::progress(&format!("arm {} unavailable: {reason}", kind.name()));
                    arms.push(Arm {
                        kind: *kind,
                        unavailable: Some(reason),
                        targets: None,
                        pid: None,
                        aux_pid: None,
                        version: None,
                        admin: None,
                    });
                }
            }
        }
        Ok(Lab {
            mock_addr,
            mock_pid,
            arms,
            procs,
            control_plane,
        })
    }

    pub fn arm(&self, kind: ArmKind) -> Option<&Arm> {
        self.arms.iter().find(|a| a.kind == kind)
    }

    /// Stops every child, gateways first so their drains do not hit a dead mock.
    pub async fn stop(mut self) {
        while let Some(proc) = self.procs.pop() {
            proc.stop(Duration::from_secs(5)).await;
        }
    }

    /// Stops only the control plane (the hot path must not notice).
    pub async fn stop_control_plane(&mut self) -> bool {
        if let Some(i) = self.procs.iter().position(|p| p.name == CONTROL_PLANE) {
            let proc = self.procs.remove(i);
            proc.stop(Duration::from_secs(5)).await;
            return true;
        }
        false
    }

    /// Starts the stopped control plane again on its database and ports and waits until it
    /// listens; the gateway reconnects on its own.
    pub async fn start_control_plane(&mut self) -> anyhow::Result<()> {
        let launch = self
            .control_plane
            .as_ref()
            .context("this lab has no control plane")?;
        anyhow::ensure!(
            !self.procs.iter().any(|p| p.name == CONTROL_PLANE),
            "the control plane is running already"
        );
        let proc = launch.spawn()?;
        let pid = proc.pid;
        // Before the gateway, which `stop` then stops first, as on the first start.
        let at = self
            .procs
            .iter()
            .position(|p| p.name == GATEWAY)
            .unwrap_or(self.procs.len());
        self.procs.insert(at, proc);
        wait_for_port(launch.http, Duration::from_secs(30))
            .await
            .with_context(|| format!("control plane: {}", tail(&launch.log, 3)))?;
        if let Some(arm) = self.arms.iter_mut().find(|a| a.kind == ArmKind::Switchyard) {
            arm.aux_pid = Some(pid);
        }
        Ok(())
    }
}

async fn start_forwarder(
    me: &Path,
    mock: SocketAddr,
    pin: Option<&str>,
    work: &Path,
    procs: &mut Vec<Proc>,
) -> anyhow::Result<Arm> {
    let (proc, line) = Proc::spawn_reporting(
        "forwarder",
        me,
        &[
            "forwarder".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--upstream".into(),
            mock.to_string(),
        ],
        pin,
        &work.join("forwarder.log"),
    )
    .await?;
    let addr: SocketAddr = line.trim().parse()?;
    let pid = proc.pid;
    procs.push(proc);
    let targets = targets(
        addr,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-mock".into())],
        "bench-model",
        "bench-slow",
    )?;
    wait_until_serving(&targets.fast, Duration::from_secs(10)).await?;
    Ok(Arm {
        kind: ArmKind::Forwarder,
        unavailable: None,
        targets: Some(targets),
        pid: Some(pid),
        aux_pid: None,
        version: None,
        admin: None,
    })
}

async fn start_switchyard(
    options: &LabOptions,
    mock_base: &str,
    pin_gateway: Option<&str>,
    pin_cp: Option<&'static str>,
    procs: &mut Vec<Proc>,
    control_plane: &mut Option<ControlPlaneLaunch>,
) -> anyhow::Result<Arm> {
    let cp_bin = options.bin_dir.join("switchyard");
    let gw_bin = options.bin_dir.join("switchyard-gateway");
    for bin in [&cp_bin, &gw_bin] {
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: build it with `cargo build --release -p switchyard-control-plane -p switchyard-gateway`",
            bin.display()
        );
    }
    let dir = options.work_dir.join(SWITCHYARD_DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let management = ApiKeySecret::generate();
    let api_key = ApiKeySecret::generate();
    let node_token = ApiKeySecret::generate().expose().to_owned();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let gateway: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;

    let launch = ControlPlaneLaunch {
        program: cp_bin,
        args: vec![
            "control-plane".into(),
            "--data-dir".into(),
            dir.join(DATA_DIR).display().to_string(),
            "--http-listen".into(),
            http.to_string(),
            "--grpc-listen".into(),
            grpc.to_string(),
            "--node-token".into(),
            node_token.clone(),
            "--ingest-priority".into(),
            options.cp_ingest_priority.clone(),
        ],
        envs: vec![
            (
                "SWITCHYARD_BOOTSTRAP_MANAGEMENT_KEY",
                management.expose().to_owned(),
            ),
            ("SWITCHYARD_BOOTSTRAP_API_KEY", api_key.expose().to_owned()),
            ("SWITCHYARD_LOG", "warn".into()),
            // The mock provider listens on loopback, which split deployments refuse by default.
            ("SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS", "true".into()),
        ],
        pin: pin_cp,
        log: dir.join("control-plane.log"),
        http,
    };
    let cp = launch.spawn()?;
    let cp_pid = cp.pid;
    procs.push(cp);
    wait_for_port(http, Duration::from_secs(30))
        .await
        .with_context(|| format!("control plane: {}", tail(&launch.log, 3)))?;
    *control_plane = Some(launch);

    let gw = Proc::spawn(
        GATEWAY,
        &gw_bin,
        &[
            "--listen".into(),
            gateway.to_string(),
            "--control-plane".into(),
            format!("http://{grpc}"),
            "--control-plane-http".into(),
            format!("http://{http}"),
            "--node-token".into(),
            node_token,
            "--node-id".into(),
            "bench-gateway".into(),
            "--spool-dir".into(),
            dir.join(SPOOL_DIR).display().to_string(),
        ],
        &[("SWITCHYARD_LOG", "warn".into())],
        pin_gateway,
        &dir.join("gateway.log"),
    )?;
    let gw_pid = gw.pid;
    procs.push(gw);
    wait_for_port(gateway, Duration::from_secs(30))
        .await
        .with_context(|| format!("gateway: {}", tail(&dir.join("gateway.log"), 3)))?;

    let client = reqwest::Client::new();
    let api = format!("http://{http}/api/v1");
    let post = |path: &str, body: serde_json::Value| {
        let request = client
            .post(format!("{api}{path}"))
            .bearer_auth(management.expose())
            .json(&body);
        async move {
            let response = request.send().await?;
            let status = response.status();
            let text = response.text().await?;
            anyhow::ensure!(status.is_success(), "{status}: {text}");
            Ok::<_, anyhow::Error>(())
        }
    };
    post(
        "/providers",
        json!({"slug": "bench-mock", "kind": "openai_compatible", "base_url": mock_base, "api_key": "sk-mock"}),
    )
    .await
    .context("registering the mock provider")?;
    for (id, upstream) in [("bench/model", "bench-model"), ("bench/slow", "bench-slow")] {
        post(
            "/models",
            json!({"id": id, "context_length": 128000, "endpoints": [{
                "provider": "bench-mock", "model": upstream,
                "pricing": {"prompt": "0.00000015", "completion": "0.0000006"}
            }]}),
        )
        .await
        .with_context(|| format!("registering model {id}"))?;
    }
    let targets = targets(
        gateway,
        "/api/v1/chat/completions",
        &[("authorization", format!("Bearer {}", api_key.expose()))],
        "bench/model",
        "bench/slow",
    )?;
    // The model appears once the gateway has applied the snapshot that carries it.
    wait_until_serving(&targets.fast, Duration::from_secs(30))
        .await
        .with_context(|| format!("gateway: {}", tail(&dir.join("gateway.log"), 3)))?;
    wait_until_serving(&targets.slow, Duration::from_secs(30)).await?;
    let version = std::process::Command::new(&gw_bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    Ok(Arm {
        kind: ArmKind::Switchyard,
        unavailable: None,
        targets: Some(targets),
        pid: Some(gw_pid),
        aux_pid: Some(cp_pid),
        version,
        admin: Some(Admin {
            api,
            management_key: management.expose().to_owned(),
            key_hash: api_key.hash().as_str().to_owned(),
            gateway,
            http: client,
            database: dir.join(DATA_DIR).join("switchyard.db"),
        }),
    })
}

async fn start_peer(
    kind: ArmKind,
    options: &LabOptions,
    mock_base: &str,
    pin: Option<&str>,
    procs: &mut Vec<Proc>,
) -> anyhow::Result<Arm> {
    let name = kind.name();
    let script = &options.peers_script;
    anyhow::ensure!(script.exists(), "{} not found", script.display());
    std::fs::create_dir_all(&options.peers_dir)?;
    let install_log = options.work_dir.join(format!("{name}-install.log"));
    super::progress(&format!(
        "installing {name} into {} (idempotent; may take minutes the first time)",
        options.peers_dir.display()
    ));
    let log = std::fs::File::create(&install_log)?;
    let status = tokio::process::Command::new("bash")
        .arg(script)
        .arg("install")
        .arg(name)
        .arg(&options.peers_dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .await?;
    anyhow::ensure!(
        status.success(),
        "install failed ({status}): {}",
        tail(&install_log, 3)
    );
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let run_log = options.work_dir.join(format!("{name}.log"));
    // LiteLLM refuses to start without a strong master key; it is the clients' bearer token.
    let master_key = format!("sk-bench-{}", ApiKeySecret::generate().hash().as_str());
    let proc = Proc::spawn(
        name,
        Path::new("bash"),
        &[
            script.display().to_string(),
            "start".into(),
            name.into(),
            options.peers_dir.display().to_string(),
            mock_base.into(),
            port.to_string(),
        ],
        &[("LITELLM_MASTER_KEY", master_key.clone())],
        pin,
        &run_log,
    )?;
    let pid = proc.pid;
    procs.push(proc);
    let targets = match kind {
        ArmKind::Portkey => targets(
            addr,
            "/v1/chat/completions",
            &[
                ("authorization", "Bearer sk-mock".into()),
                ("x-portkey-provider", "openai".into()),
                ("x-portkey-custom-host", mock_base.into()),
            ],
            "bench-model",
            "bench-slow",
        )?,
        _ => targets(
            addr,
            "/v1/chat/completions",
            &[("authorization", format!("Bearer {master_key}"))],
            "bench-model",
            "bench-slow",
        )?,
    };
    wait_for_port(addr, Duration::from_secs(120))
        .await
        .with_context(|| format!("{name} did not start: {}", tail(&run_log, 3)))?;
    wait_until_serving(&targets.fast, Duration::from_secs(60))
        .await
        .with_context(|| format!("{name}: {}", tail(&run_log, 3)))?;
    Ok(Arm {
        kind,
        unavailable: None,
        targets: Some(targets),
        pid: Some(pid),
        aux_pid: None,
        version: peer_version(kind, &options.peers_dir),
        admin: None,
    })
}

fn peer_version(kind: ArmKind, dir: &Path) -> Option<String> {
    match kind {
        ArmKind::Litellm => {
            let out = std::process::Command::new(dir.join("litellm-venv/bin/pip"))
                .args(["show", "litellm"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Version: ").map(|v| format!("litellm {v}")))
        }
        ArmKind::Portkey => {
            let text = std::fs::read_to_string(
                dir.join("portkey/node_modules/@portkey-ai/gateway/package.json"),
            )
            .ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(format!("@portkey-ai/gateway {}", v["version"].as_str()?))
        }
        _ => None,
    }
}
