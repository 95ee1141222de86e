//! The public HTTP listener both planes serve on: hyper with explicit limits against bad or
//! slow clients, graceful shutdown, and the peer address for `ConnectInfo`.
//!
//! - `header_read_timeout` closes a connection whose request head (line + headers) does not
//!   arrive in time (slowloris). Hyper starts that timer whenever it waits for a request
//!   head, so it also bounds how long an idle keep-alive connection is kept.
//! - `max_headers` / `max_header_bytes` refuse oversized heads (HTTP/1: 431 or a closed
//!   connection; HTTP/2: the header-list limit).
//! - `body_read_timeout` bounds the gap between body bytes of a slow upload (408).
//! - The body size limit is applied by the router (`DefaultBodyLimit`), so the rejection
//!   is rendered as a JSON error (413) instead of hyper's bare reply.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Hyper's HTTP/1 header count limit when none is set (`proto::h1::role::DEFAULT_MAX_HEADERS`).
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// Limits of one public HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request head; also the keep-alive idle limit.
    pub header_read_timeout: Duration,
    /// Longest pause allowed between chunks of a request body.
    pub body_read_timeout: Duration,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// Largest request head (HTTP/1 read buffer, HTTP/2 header list), in bytes.
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            // Chat bodies carry base64 images and long contexts.
            max_body_bytes: 32 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_headers: HYPER_DEFAULT_MAX_HEADERS,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Why `HttpLimits` could not be read from flags or the environment.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct LimitsError {
    pub name: String,
    pub message: String,
}

impl HttpLimits {
    /// The limits that live in the router, body size and slow-body timeout, as one layer
    /// (the timeout outside the size limit).
    pub fn layer(
        &self,
    ) -> (
        tower_http::timeout::RequestBodyTimeoutLayer,
        axum::extract::DefaultBodyLimit,
    ) {
        (
            tower_http::timeout::RequestBodyTimeoutLayer::new(self.body_read_timeout),
            axum::extract::DefaultBodyLimit::max(self.max_body_bytes),
        )
    }

    /// Checks the limits make sense (a zero timeout would close every connection).
    pub fn validate(&self) -> Result<(), LimitsError> {
        let bad = |name: &str, message: &str| {
            Err(LimitsError {
                name: name.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.max_body_bytes == 0 {
            return bad("max body bytes", "must be at least 1");
        }
        if self.header_read_timeout.is_zero() || self.body_read_timeout.is_zero() {
            return bad("read timeouts", "must be longer than zero");
        }
        if self.max_headers < 8 {
            return bad("max headers", "must be at least 8");
        }
        // Hyper's HTTP/1 read buffer has a floor of 8 KiB.
        if self.max_header_bytes < 8192 {
            return bad("max header bytes", "must be at least 8192");
        }
        Ok(())
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then lets in-flight requests
/// finish (up to `drain`). Each request carries `ConnectInfo<SocketAddr>` of its peer.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    // Hyper parses into an uninitialised stack array of its default size, but fills a
    // freshly built vector of any size that is set explicitly: ~1 % of the gateway's
    // instructions per request for the same default.
    if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        builder.http1().max_headers(limits.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::trace!(error = %err, "could not set TCP_NODELAY");
        }
        let service = router
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let service = TowerToHyperService::new(service.map_err(|e: Infallible| match e {}));
        let builder = builder.clone();
        let graceful_watch = graceful.watcher();
        let first_byte_timeout = limits.header_read_timeout;
        let stopping = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // Hyper's header timer starts only once it knows the protocol, which needs the
            // first bytes: a connection that sends nothing at all is closed here.
            let mut first = [0u8; 1];
            tokio::select! {
                waited = tokio::time::timeout(first_byte_timeout, tcp.peek(&mut first)) => {
                    if !matches!(waited, Ok(Ok(1..))) {
                        tracing::debug!(%peer, "closing a connection that sent nothing");
                        return;
                    }
                }
                () = stopping.cancelled() => return,
            }
            match &tls {
                None => serve_connection(&builder, tcp, service, graceful_watch, peer).await,
                Some(acceptor) => {
                    // The handshake is part of the head: bounded by the same timeout.
                    match tokio::time::timeout(first_byte_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(&builder, stream, service, graceful_watch, peer).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the drain timeout; closing them");
    }
    Ok(())
}

async fn serve_connection<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(err) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %err, "connection closed with an error");
    }
}

/// The peer address type requests carry, for handlers that want it.
pub type PeerAddr = ConnectInfo<SocketAddr>;

/// Flags (and env) for a public listener's limits and TLS, shared by both binaries.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenerArgs {
    /// Largest accepted request body in bytes (larger ones get 413).
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a client may take to send a request head (slowloris guard); also how long
    /// an idle keep-alive connection is kept.
    #[arg(
        long,
        env = "SWITCHYARD_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub header_read_timeout_secs: u64,
    /// Longest pause, in seconds, between chunks of a request body.
    #[arg(long, env = "SWITCHYARD_BODY_READ_TIMEOUT_SECS", default_value_t = 60)]
    pub body_read_timeout_secs: u64,
    /// Most header fields in one request.
    #[arg(long, env = "SWITCHYARD_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,
    /// Largest request head in bytes.
    #[arg(long, env = "SWITCHYARD_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// PEM certificate chain: serve HTTPS (and TLS gRPC on the control plane).
    #[arg(long, env = "SWITCHYARD_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "SWITCHYARD_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS). On the
    /// control plane it applies to gateways on gRPC.
    #[arg(long, env = "SWITCHYARD_CLIENT_CA")]
    pub client_ca: Option<std::path::PathBuf>,
}

impl ListenerArgs {
    pub fn limits(&self) -> Result<HttpLimits, LimitsError> {
        let limits = HttpLimits {
            max_body_bytes: self.max_body_bytes,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            max_headers: self.max_headers,
            max_header_bytes: self.max_header_bytes,
        };
        limits.validate()?;
        Ok(limits)
    }

    pub fn server_tls(&self) -> Result<Option<crate::tls::ServerTlsFiles>, crate::tls::TlsError> {
        crate::tls::ServerTlsFiles::from_parts(
            self.tls_cert.clone(),
            self.tls_key.clone(),
            self.client_ca.clone(),
        )
    }
}
