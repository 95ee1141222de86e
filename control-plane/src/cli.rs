//! Command-line interface of the `switchyard` binary. Every flag can also be given as an
//! environment variable `SWITCHYARD_<FLAG>`.

mod audit;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use switchyard_control_plane::bootstrap::{self, BootstrapOptions, FirstStart, OpenAiSeed};
use switchyard_control_plane::ingest_runtime::{IngestPriority, IngestRuntime};
use switchyard_control_plane::store::{self, Store};
use switchyard_control_plane::{Listeners, RunOptions};
use switchyard_proto::ApiKeySecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Switchyard: a self-hosted LLM gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Control plane plus an embedded gateway, on SQLite by default.
    Serve(ServeArgs),
    /// The control plane alone, for split deployments with separate `switchyard-gateway` nodes.
    ControlPlane(CommonArgs),
    /// Audit log tools (`switchyard audit verify`).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

#[derive(Args)]
struct CommonArgs {
    /// Where the SQLite database and the embedded gateway's usage spool live.
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./switchyard-data")]
    data_dir: PathBuf,
    /// Control-plane REST API and console.
    #[arg(long, env = "SWITCHYARD_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// gRPC for gateways (config watch, usage reports).
    #[arg(
        long,
        env = "SWITCHYARD_GRPC_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    grpc_listen: SocketAddr,
    /// Input limits and TLS of the listeners (`--max-body-bytes`, `--tls-cert`, …).
    #[command(flatten)]
    listener: switchyard_gateway::http_server::ListenerArgs,
    /// `sqlite://…` or `postgres://…`; defaults to SQLite in the data dir.
    #[arg(long, env = "SWITCHYARD_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Node token accepted from gateways, in addition to the one created at first start.
    #[arg(long, env = "SWITCHYARD_NODE_TOKEN", hide_env_values = true)]
    node_token: Option<String>,
    /// Let provider base URLs point at loopback and private networks (RFC 1918, ULA,
    /// localhost). Default: true for `serve`, false for `control-plane`. Link-local and
    /// cloud-metadata addresses are always refused.
    #[arg(long, env = "SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS")]
    allow_private_upstreams: Option<bool>,
    /// Stripe secret key; with the webhook secret it enables Checkout top-ups.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    stripe_secret_key: Option<String>,
    /// Signing secret of the Stripe webhook endpoint (`whsec_…`) for `/api/v1/stripe/webhook`.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    stripe_webhook_secret: Option<String>,
    /// Stripe API base URL (a fake or proxy in tests).
    #[arg(long, env = "SWITCHYARD_STRIPE_API_BASE", default_value = switchyard_control_plane::billing::stripe::DEFAULT_API_BASE)]
    stripe_api_base: String,
    /// Where Stripe Checkout returns the payer to after paying / cancelling.
    #[arg(
        long,
        env = "SWITCHYARD_STRIPE_SUCCESS_URL",
        default_value = "http://localhost:8080/console/billing?topup=ok"
    )]
    stripe_success_url: String,
    #[arg(
        long,
        env = "SWITCHYARD_STRIPE_CANCEL_URL",
        default_value = "http://localhost:8080/console/billing?topup=cancelled"
    )]
    stripe_cancel_url: String,
    /// Seconds a stream's provisional usage record waits for its final one before it is
    /// billed as estimated (the gateway died mid-stream). Must outlast the longest stream
    /// plus any delay in gateways shipping usage.
    #[arg(long, env = "SWITCHYARD_PROVISIONAL_GRACE_SECONDS", default_value_t = switchyard_control_plane::billing::provisional::DEFAULT_GRACE.as_secs())]
    provisional_grace_seconds: u64,
    /// Scheduling class of usage ingestion (rating and writing the gateways' usage
    /// batches): `normal`, or `idle` (Linux `SCHED_IDLE`: a thread that runs only on CPU
    /// time nothing else wants). For gateways on the same cores as the control plane; under
    /// sustained saturation usage then waits in the gateways' spools.
    #[arg(long, env = "SWITCHYARD_INGEST_PRIORITY", value_enum, default_value_t = IngestPriority::Normal)]
    ingest_priority: IngestPriority,
}

impl CommonArgs {
    /// Stripe top-ups are on when both secrets are given.
    fn stripe(&self) -> Option<switchyard_control_plane::billing::stripe::StripeConfig> {
        let secret_key = self.stripe_secret_key.clone().filter(|k| !k.is_empty())?;
        let webhook_secret = self
            .stripe_webhook_secret
            .clone()
            .filter(|k| !k.is_empty())?;
        Some(switchyard_control_plane::billing::stripe::StripeConfig {
            api_base: self.stripe_api_base.clone(),
            secret_key,
            webhook_secret,
            success_url: self.stripe_success_url.clone(),
            cancel_url: self.stripe_cancel_url.clone(),
        })
    }

    fn upstream_policy(&self, default_allow_private: bool) -> switchyard_gateway::ssrf::UrlPolicy {
        switchyard_gateway::ssrf::UrlPolicy {
            allow_private: self
                .allow_private_upstreams
                .unwrap_or(default_allow_private),
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The embedded gateway's inference endpoint.
    #[arg(
        long,
        env = "SWITCHYARD_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8000"
    )]
    gateway_listen: SocketAddr,
    /// PEM bundle of private CAs the embedded gateway trusts for `https://` providers, in
    /// addition to the public roots.
    #[arg(long, env = "SWITCHYARD_PROVIDER_CA")]
    provider_ca: Option<PathBuf>,
}

/// `SWITCHYARD_LOG` sets the filter, `SWITCHYARD_LOG_FORMAT=json` one JSON object per line.
/// Traces are exported when `OTEL_*` configures them; keep the guard until exit.
pub fn init_tracing() -> Option<switchyard_gateway::telemetry::otel::OtelGuard> {
    switchyard_gateway::telemetry::init_logging("info,sqlx=warn,tower_http=warn", "switchyard")
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => serve(args).await,
            Command::ControlPlane(args) => control_plane(args).await,
            Command::Audit(command) => audit::run(command).await,
        }
    }
}

struct Started {
    /// Must outlive the control plane's run: ingestion's tasks live on it.
    ingest: IngestRuntime,
    store: Arc<dyn Store>,
    first_start: Option<FirstStart>,
    listeners: Listeners,
}

async fn start_control_plane(args: &CommonArgs) -> anyhow::Result<Started> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| sqlite_url(&args.data_dir));
    let ingest = IngestRuntime::start(args.ingest_priority)?;
    let connect = store::ConnectOptions {
        ingest_runtime: ingest.handle(),
    };
    let store = store::connect_with(&url, &connect)
        .await
        .context("opening the database")?;
    let options = BootstrapOptions {
        management_key: bootstrap_key("SWITCHYARD_BOOTSTRAP_MANAGEMENT_KEY")?,
        api_key: bootstrap_key("SWITCHYARD_BOOTSTRAP_API_KEY")?,
        openai: std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(|api_key| OpenAiSeed {
                api_key,
                base_url: std::env::var("OPENAI_BASE_URL")
                    .ok()
                    .filter(|u| !u.is_empty()),
            }),
    };
    let first_start = bootstrap::ensure(&store, options)
        .await
        .context("bootstrapping the database")?;
    if let Some(token) = &args.node_token {
        store
            .add_node_token(&switchyard_proto::keys::sha256_hex(token), "configured")
            .await?;
    }
    let http = TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("binding {}", args.http_listen))?;
    let grpc = TcpListener::bind(args.grpc_listen)
        .await
        .with_context(|| format!("binding {}", args.grpc_listen))?;
    Ok(Started {
        ingest,
        store,
        first_start,
        listeners: Listeners { http, grpc },
    })
}

fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("switchyard.db").display())
}

fn bootstrap_key(var: &str) -> anyhow::Result<Option<ApiKeySecret>> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => ApiKeySecret::parse(&v)
            .map(Some)
            .with_context(|| format!("{var} is not a valid key")),
        _ => Ok(None),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = start_control_plane(&args.common).await?;
    let gateway_listener = TcpListener::bind(args.gateway_listen)
        .await
        .with_context(|| format!("binding {}", args.gateway_listen))?;
    let gateway_addr = gateway_listener.local_addr()?;
    let http_addr = started.listeners.http.local_addr()?;
    let grpc_addr = started.listeners.grpc.local_addr()?;

    // The embedded gateway authenticates with a token that lives only in this process.
    let embedded_token = ApiKeySecret::generate().expose().to_owned();
    let options = RunOptions {
        local_node_token_hashes: vec![switchyard_proto::keys::sha256_hex(&embedded_token)],
        upstream_policy: args.common.upstream_policy(true),
        stripe: args.common.stripe(),
        // TLS, when set, is on the embedded gateway (the public endpoint); the control
        // plane's listeners serve it and the console on this host.
        http_limits: args.common.listener.limits()?,
        provisional_grace: Some(Duration::from_secs(args.common.provisional_grace_seconds)),
        ingest_runtime: started.ingest.handle(),
        ..RunOptions::default()
    };
    let cp_shutdown = CancellationToken::new();
    let gw_shutdown = CancellationToken::new();
    let control_plane = tokio::spawn(switchyard_control_plane::run(
        started.store,
        started.listeners,
        options,
        cp_shutdown.clone(),
    ));
    let gateway_config = switchyard_gateway::GatewayConfig {
        node_id: format!("embedded:{}", gateway_addr.port()),
        control_plane_grpc: format!("http://{}", loopback(grpc_addr)),
        control_plane_http: Some(format!("http://{}", loopback(http_addr))),
        node_token: embedded_token,
        spool_dir: args.common.data_dir.join("spool"),
        drain_timeout: Duration::from_secs(30),
        status: switchyard_gateway::GatewayStatus::default(),
        // The embedded gateway is the only one: Redis only if the operator set it.
        redis_url: std::env::var("SWITCHYARD_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty()),
    };
    let mut applied = gateway_config.status.applied_version.subscribe();
    let gateway = tokio::spawn(switchyard_gateway::run_with(
        gateway_config,
        gateway_listener,
        gw_shutdown.clone(),
        switchyard_gateway::ServeOptions {
            limits: args.common.listener.limits()?,
            tls: args.common.listener.server_tls()?,
            control_plane_tls: None,
            provider_ca: args.provider_ca.clone(),
            ..switchyard_gateway::ServeOptions::default()
        },
    ));

    // The banner's curl must work when it is printed: wait for the first config snapshot.
    if tokio::time::timeout(Duration::from_secs(30), applied.wait_for(|v| *v > 0))
        .await
        .is_err()
    {
        tracing::warn!("the embedded gateway has not received its configuration yet");
    }
    print_banner(gateway_addr, http_addr, started.first_start.as_ref());
    wait_for_signal().await;
    tracing::info!("shutting down: draining the gateway, then the control plane");
    gw_shutdown.cancel();
    gateway.await.context("gateway task")??;
    cp_shutdown.cancel();
    control_plane.await.context("control plane task")??;
    Ok(())
}

async fn control_plane(args: CommonArgs) -> anyhow::Result<()> {
    let started = start_control_plane(&args).await?;
    let http_addr = started.listeners.http.local_addr()?;
    if let Some(first) = &started.first_start {
        write_stdout(&first_start_text(
            first,
            &format!("http://{http_addr}/api/v1"),
            None,
        ));
    }
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(switchyard_control_plane::run(
        started.store,
        started.listeners,
        RunOptions {
            upstream_policy: args.upstream_policy(false),
            stripe: args.stripe(),
            http_limits: args.listener.limits()?,
            tls: args.listener.server_tls()?,
            provisional_grace: Some(Duration::from_secs(args.provisional_grace_seconds)),
            ingest_runtime: started.ingest.handle(),
            ..RunOptions::default()
        },
        shutdown.clone(),
    ));
    wait_for_signal().await;
    shutdown.cancel();
    run.await.context("control plane task")??;
    Ok(())
}

/// A wildcard bind address is reachable on loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// Writes the start-up banner. A closed stdout (`switchyard serve | head`) must not take
/// the server down, so write errors are logged, never fatal.
fn print_banner(gateway: SocketAddr, http: SocketAddr, first: Option<&FirstStart>) {
    let base = format!("http://{}/api/v1", loopback(gateway));
    let cp = format!("http://{}/api/v1", loopback(http));
    let text = match first {
        Some(first) => first_start_text(first, &base, Some(&cp)),
        None => format!(
            "Switchyard is running.\n  Gateway base URL:   {base}\n  Management API:     {base}  (also {cp})\n  \
             Keys were shown at first start; create more with a management key: POST {base}/keys\n"
        ),
    };
    write_stdout(&text);
}

fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!(error = %err, "could not print the start-up banner");
    }
}

fn first_start_text(first: &FirstStart, base: &str, control_plane_url: Option<&str>) -> String {
    let api_key = first.api_key.expose();
    let management = match control_plane_url {
        Some(cp) => format!("{base}  (also {cp})"),
        None => base.to_owned(),
    };
    format!(
        "Switchyard is running. This is the first start: the secrets below are shown only once.\n\n\
         \x20 Gateway base URL:        {base}\n\
         \x20 Management API:          {management}\n\
         \x20 Management key:          {management_key}\n\
         \x20 Inference API key:       {api_key}\n\
         \x20 Node token (gateways):   {node_token}\n\n\
         Try it (works offline with the built-in demo model):\n\n\
         \x20 curl {base}/chat/completions \\\n\
         \x20   -H 'Authorization: Bearer {api_key}' \\\n\
         \x20   -H 'Content-Type: application/json' \\\n\
         \x20   -d '{{\"model\":\"switchyard/echo\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello from Switchyard\"}}]}}'\n\n",
        management_key = first.management_key.expose(),
        node_token = first.node_token,
    )
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
