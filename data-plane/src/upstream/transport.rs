//! The HTTP client under provider calls: hyper's pooled client over rustls, used directly.
//! reqwest on top of it cost ~26 k of the gateway's 224 k instructions a request
//! (`tests/bench/lab/instructions.sh`, c=1): its redirect policy re-parses the URL even with
//! redirects off, the URL is parsed again on the way to hyper, and retry and redirect
//! layers wrap every call.
//! When the environment names a proxy (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, honouring
//! `NO_PROXY`), calls go through reqwest, which implements those conventions in full.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A provider's answer body, whichever client fetched it.
pub(super) type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

type Direct = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const POOL_MAX_IDLE_PER_HOST: usize = 1024;
const USER_AGENT: &str = concat!("switchyard/", env!("CARGO_PKG_VERSION"));
/// The variables reqwest reads for its proxy (with `NO_PROXY` for exceptions).
const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Why a call produced no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransportError {
    /// Connecting (or, for reqwest, the whole call) ran out of time.
    Timeout,
    /// No connection could be made.
    Connect,
    /// The connection failed or broke mid-answer.
    Broken,
}

/// What every client of a node shares: TLS trust and whether calls go through a proxy.
#[derive(Clone)]
pub(super) struct Settings {
    tls: rustls::ClientConfig,
    proxied: bool,
}

impl Settings {
    pub(super) fn new(tls: rustls::ClientConfig, proxied: bool) -> Self {
        if proxied {
            tracing::info!(
                "a proxy is set in the environment; provider calls go through it (NO_PROXY applies)"
            );
        }
        Self { tls, proxied }
    }
}

/// Whether `var` (the environment, in production) names a proxy for outgoing calls.
pub(super) fn proxy_configured(var: impl Fn(&str) -> Option<String>) -> bool {
    PROXY_VARIABLES
        .iter()
        .any(|name| var(name).is_some_and(|value| !value.trim().is_empty()))
}

/// One pooled client.
pub(super) enum Transport {
    Direct(Box<Direct>),
    Proxied(reqwest::Client),
}

impl Transport {
    pub(super) fn new(settings: &Settings, connect_timeout: Duration) -> Result<Self, String> {
        if settings.proxied {
            // reqwest takes a preconfigured TLS config as it is, ALPN included.
            let mut tls = settings.tls.clone();
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            return reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .tcp_nodelay(true)
                .connect_timeout(connect_timeout)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
                // A provider answers; it does not redirect. Following one would send the
                // credential to wherever it points, past the SSRF check of the base URL.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(USER_AGENT)
                .build()
                .map(Transport::Proxied)
                .map_err(|e| e.to_string());
        }
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.enforce_http(false);
        // Sets ALPN to h2 and http/1.1 (the config must come without).
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(settings.tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        // hyper follows no redirects, so none can carry the credential elsewhere.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Transport::Direct(Box::new(client)))
    }

    /// Sends `request` (user agent and `accept` added) and returns once the status line and
    /// headers are in; the body streams from the returned response.
    pub(super) async fn send(
        &self,
        mut request: http::Request<Bytes>,
    ) -> Result<http::Response<ResponseBody>, TransportError> {
        let headers = request.headers_mut();
        headers
            .entry(http::header::ACCEPT)
            .or_insert(http::HeaderValue::from_static("*/*"));
        match self {
            Transport::Direct(client) => {
                headers
                    .entry(http::header::USER_AGENT)
                    .or_insert(http::HeaderValue::from_static(USER_AGENT));
                let response = client
                    .request(request.map(Full::new))
                    .await
                    .map_err(|e| direct_error(&e))?;
                Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
            Transport::Proxied(client) => {
                let request =
                    reqwest::Request::try_from(request).map_err(|_| TransportError::Broken)?;
                let response = client
                    .execute(request)
                    .await
                    .map_err(|e| reqwest_error(&e))?;
                Ok(http::Response::from(response)
                    .map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
        }
    }
}

/// The whole body of an answer.
pub(super) async fn read_body(body: ResponseBody) -> Result<Bytes, TransportError> {
    body.collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|_| TransportError::Broken)
}

fn direct_error(err: &hyper_util::client::legacy::Error) -> TransportError {
    if !err.is_connect() {
        return TransportError::Broken;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return TransportError::Timeout;
        }
        source = cause.source();
    }
    TransportError::Connect
}

fn reqwest_error(err: &reqwest::Error) -> TransportError {
    if err.is_timeout() {
        TransportError::Timeout
    } else if err.is_connect() {
        TransportError::Connect
    } else {
        TransportError::Broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_in_the_environment_is_noticed_and_blank_values_are_not() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(!proxy_configured(env(&[])));
        assert!(!proxy_configured(env(&[("NO_PROXY", "localhost")])));
        assert!(!proxy_configured(env(&[("HTTPS_PROXY", "  ")])));
        for name in PROXY_VARIABLES {
            let pairs: &'static [(&'static str, &'static str)] =
                Box::leak(Box::new([(name, "http://proxy.internal:3128")]));
            assert!(proxy_configured(env(pairs)), "{name}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_failure_on_both_clients() {
        // A port that was bound and released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let tls = crate::tls::provider_client_config(None).unwrap_or_else(|e| panic!("{e}"));
        for proxied in [false, true] {
            let settings = Settings {
                tls: tls.clone(),
                proxied,
            };
            let transport =
                Transport::new(&settings, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
            let request = http::Request::post(format!("http://127.0.0.1:{port}/v1/chat"))
                .body(Bytes::from_static(b"{}"))
                .unwrap_or_else(|e| panic!("{e}"));
            let err = transport.send(request).await.err();
            assert_eq!(err, Some(TransportError::Connect), "proxied: {proxied}");
        }
    }
}
