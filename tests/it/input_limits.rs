//! Input limits on the gateway's public listener: slow clients (slowloris) and idle
//! connections are closed after the header-read timeout, oversized heads are refused, and
//! oversized bodies get a 413 in the skin's JSON error shape.

use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_gateway::http_server::HttpLimits;
use switchyard_gateway::{GatewayConfig, GatewayStatus, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const HEADER_TIMEOUT: Duration = Duration::from_millis(400);

struct Node {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), switchyard_gateway::GatewayError>>,
    _dir: tempfile::TempDir,
}

/// A gateway with short limits. Its control plane is never reached (nothing listens on
/// the port), which these tests do not need: limits act before any route runs.
async fn start() -> Node {
    start_with(HttpLimits {
        max_body_bytes: 4096,
        header_read_timeout: HEADER_TIMEOUT,
        body_read_timeout: Duration::from_millis(400),
        max_headers: 20,
        max_header_bytes: 8192,
    })
    .await
}

async fn start_with(limits: HttpLimits) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_plane = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let config = GatewayConfig {
        node_id: "limits-test".into(),
        control_plane_grpc: control_plane.clone(),
        control_plane_http: Some(control_plane),
        node_token: "test-token".into(),
        spool_dir: dir.path().join("spool"),
        drain_timeout: Duration::from_secs(2),
        status: GatewayStatus::default(),
        redis_url: None,
    };
    let options = ServeOptions {
        limits,
        ..ServeOptions::default()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(switchyard_gateway::run_with(
        config,
        listener,
        shutdown.clone(),
        options,
    ));
    Node {
        addr,
        shutdown,
        task,
        _dir: dir,
    }
}

impl Node {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("gateway stops")
            .unwrap()
            .unwrap();
    }
}

/// Reads until the server closes the connection (or it resets); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slowloris_client_is_disconnected_after_the_header_timeout() {
    let node = start().await;
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"POST /api/v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n")
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    // One header byte every 50 ms, forever: the request head never completes.
    let dribble = async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let header = b"x-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in header.iter().cycle() {
            tick.tick().await;
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
    };
    let closed = async move {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = closed => {}
        () = dribble => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => panic!("slow client still connected after 10 s"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= HEADER_TIMEOUT.mul_f32(0.9),
        "closed too early: {elapsed:?}"
    );
    assert!(
        elapsed < HEADER_TIMEOUT + Duration::from_secs(2),
        "closed late: {elapsed:?}"
    );
    // The listener still serves well-behaved clients.
    let health = reqwest::get(format!("http://{}/healthz", node.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    node.stop().await;
}

#[tokio::test]
async fn idle_connection_is_closed_after_the_header_timeout() {
    let node = start().await;
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut stream))
        .await
        .expect("idle connection still open after 10 s");
    assert!(closed.is_empty() || closed.starts_with(b"HTTP/1.1 408"));
    let elapsed = started.elapsed();
    assert!(elapsed >= HEADER_TIMEOUT.mul_f32(0.9), "{elapsed:?}");
    assert!(
        elapsed < HEADER_TIMEOUT + Duration::from_secs(2),
        "{elapsed:?}"
    );

    // A keep-alive connection that goes idle after a request is closed the same way.
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut stream))
        .await
        .expect("idle keep-alive connection still open after 10 s");
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < HEADER_TIMEOUT + Duration::from_secs(2),
        "{elapsed:?}"
    );
    node.stop().await;
}

/// The default header count is left to hyper (whose default it equals, and which parses
/// faster when none is set): it must still hold.
#[tokio::test]
async fn the_default_header_count_limit_holds() {
    let limits = HttpLimits::default();
    assert_eq!(limits.max_headers, 100);
    let node = start_with(limits).await;
    for (fields, status) in [(100, "HTTP/1.1 200"), (101, "HTTP/1.1 431")] {
        let mut request =
            String::from("GET /healthz HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n");
        for i in 2..fields {
            request.push_str(&format!("x-h{i}: v\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = TcpStream::connect(node.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut stream))
            .await
            .unwrap();
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with(status), "{fields} fields: {reply}");
    }
    node.stop().await;
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let node = start().await;
    // Too many header fields.
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    let mut request = String::from("GET /healthz HTTP/1.1\r\nhost: gateway\r\n");
    for i in 0..40 {
        request.push_str(&format!("x-h{i}: v\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut stream))
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");

    // One huge header.
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: gateway\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The server may close while the head is still being written.
    let _ = stream.write_all(request.as_bytes()).await;
    let reply = tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut stream))
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );

    // Within the limits, the same listener answers.
    let health = reqwest::get(format!("http://{}/healthz", node.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    node.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_in_the_skins_error_shape() {
    let node = start().await;
    let http = reqwest::Client::new();
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(8192)
    );
    let response = http
        .post(format!("http://{}/api/v1/chat/completions", node.addr))
        .bearer_auth("sk-or-v1-whatever")
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4096 bytes"),
        "{body}"
    );

    let response = http
        .post(format!("http://{}/v1/messages", node.addr))
        .header("x-api-key", "sk-or-v1-whatever")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "request_too_large", "{body}");
    node.stop().await;
}
