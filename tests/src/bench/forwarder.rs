//! The bare forwarder arm: a hyper server that relays every request, body streamed, to one
//! upstream through a pooled `hyper_util` client, with `TCP_NODELAY` on both sides. No
//! parsing, no auth, no metering: one proxy hop's cost on this machine, which is the floor
//! any gateway is compared with.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Upstream = Client<HttpConnector, Incoming>;
type Body = UnsyncBoxBody<Bytes, hyper::Error>;

pub async fn start(
    listen: SocketAddr,
    upstream: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(4096)
        .build(connector);
    let authority = HeaderValue::from_str(&upstream.to_string())
        .unwrap_or(HeaderValue::from_static("localhost"));
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                },
            };
            let _ = tcp.set_nodelay(true);
            let (client, authority) = (client.clone(), authority.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    forward(client.clone(), upstream, authority.clone(), req)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

async fn forward(
    client: Upstream,
    upstream: SocketAddr,
    authority: HeaderValue,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    match Uri::try_from(format!("http://{upstream}{path}")) {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return Ok(bad_gateway()),
    }
    req.headers_mut().insert(HOST, authority);
    match client.request(req).await {
        Ok(response) => Ok(response.map(BodyExt::boxed_unsync)),
        Err(_) => Ok(bad_gateway()),
    }
}

fn bad_gateway() -> Response<Body> {
    let body = Full::new(Bytes::from_static(b"bad gateway"))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
