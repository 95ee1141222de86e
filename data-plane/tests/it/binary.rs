//! The gateway binary: it starts without a reachable control plane (serving health but not
//! readiness), says where it listens, refuses bad flags clearly, and stops on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn starts_unready_without_a_control_plane_and_stops_on_sigterm() {
    let spool = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind, note it, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-gateway"))
        .args(["--listen", "127.0.0.1:0", "--node-token", "sy-node-test"])
        .args(["--control-plane", &format!("http://{closed}")])
        .arg("--spool-dir")
        .arg(spool.path())
        .env("SWITCHYARD_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("the gateway exited without saying where it listens");
    })
    .await
    .expect("no `listening on` line");
    // Keep draining stderr so the gateway never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let http = raw_get(&addr, "/healthz").await;
    assert!(http.starts_with("HTTP/1.1 200"), "{http}");
    let ready = raw_get(&addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");

    let pid = child.id().unwrap();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("no exit on SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn missing_node_token_is_a_clear_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard-gateway"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("SWITCHYARD_NODE_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--node-token"), "{stderr}");
}

/// A minimal HTTP/1.1 GET over a raw socket: the test needs only the status line.
async fn raw_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
