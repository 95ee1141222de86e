//! The `switchyard` binary as a user runs it: the first start prints the URLs, both keys
//! and a curl that works; a second start on the same data dir reuses it and prints no secrets.

// Helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(30);

fn serve(data_dir: &std::path::Path) -> Child {
    serve_with(data_dir, &[])
}

fn serve_with(data_dir: &std::path::Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .args([
            "--gateway-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .env_remove("OPENAI_API_KEY")
        .env_remove("SWITCHYARD_BOOTSTRAP_API_KEY")
        .env_remove("SWITCHYARD_BOOTSTRAP_MANAGEMENT_KEY")
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting switchyard serve")
}

/// Reads stdout until a line containing `until`, returning everything read.
async fn read_until(child: &mut Child, until: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut out = String::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("reading stdout") {
            out.push_str(&line);
            out.push('\n');
            if line.contains(until) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `{until}` line; got:\n{out}"));
    out
}

fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(label)
                .map(|v| v.split_whitespace().next().unwrap_or_default().to_owned())
        })
        .unwrap_or_else(|| panic!("no `{label}` in:\n{text}"))
}

/// A chat completion with the echo model, as the banner's curl sends it.
async fn chat(http: &reqwest::Client, base: &str, api_key: &str, content: &str) -> Value {
    http.post(format!("{base}/chat/completions"))
        .bearer_auth(api_key)
        .json(&serde_json::json!({"model": "switchyard/echo", "messages": [{"role": "user", "content": content}]}))
        .send()
        .await
        .expect("chat request")
        .json()
        .await
        .expect("chat answer")
}

async fn terminate(mut child: Child) {
    let pid = child.id().expect("running child");
    // SIGTERM exercises the graceful path: the gateway drains, then the control plane stops.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("switchyard did not stop on SIGTERM")
        .expect("wait");
    assert!(exit.success(), "switchyard exited with {exit}");
}

#[tokio::test]
async fn first_start_prints_working_secrets_and_second_start_prints_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = serve(dir.path());
    let banner = read_until(&mut first, "\"model\":\"switchyard/echo\"").await;
    let base = field(&banner, "Gateway base URL:");
    let api_key = field(&banner, "Inference API key:");
    let management_key = field(&banner, "Management key:");
    assert!(api_key.starts_with("sk-sy-v1-") && management_key.starts_with("sk-sy-v1-"));
    assert!(banner.contains("Management API:"));
    assert!(banner.contains(&format!("curl {base}/chat/completions")));
    assert!(banner.contains(&format!("Authorization: Bearer {api_key}")));

    // The printed curl, sent as printed.
    let http = reqwest::Client::new();
    let answer = chat(&http, &base, &api_key, "Hello from Switchyard").await;
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "Hello from Switchyard"
    );
    assert!(answer["usage"]["cost"].as_f64().unwrap() > 0.0);
    let keys = http
        .get(format!("{base}/keys"))
        .bearer_auth(&management_key)
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 200);
    terminate(first).await;

    let mut second = serve(dir.path());
    let banner = read_until(&mut second, "Keys were shown at first start").await;
    assert!(
        !banner.contains("sk-sy-v1-"),
        "second start printed a secret:\n{banner}"
    );
    assert!(
        !banner.contains("sy-node-"),
        "second start printed a node token:\n{banner}"
    );
    // The same database: the first key still works.
    let base = field(&banner, "Gateway base URL:");
    let again = http
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&api_key)
        .json(&serde_json::json!({"model": "switchyard/echo", "messages": [{"role": "user", "content": "again"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    terminate(second).await;
}

#[tokio::test]
async fn bad_bootstrap_key_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--gateway-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .env("SWITCHYARD_BOOTSTRAP_API_KEY", "sk-sy-v1-short")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SWITCHYARD_BOOTSTRAP_API_KEY"), "{stderr}");
}

/// Scheduling policies (field 41 of `stat`) of the process's threads named `name`
/// (`comm`, truncated to 15 bytes by the kernel).
#[cfg(target_os = "linux")]
fn thread_policies(pid: u32, name: &str) -> Vec<u32> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if comm.trim() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
            continue;
        };
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        policies.push(after.split(' ').nth(38).unwrap().parse().unwrap());
    }
    policies
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn idle_ingestion_priority_bills_usage_from_a_sched_idle_thread() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_with(dir.path(), &["--ingest-priority", "idle"]);
    let banner = read_until(&mut child, "\"model\":\"switchyard/echo\"").await;
    let base = field(&banner, "Gateway base URL:");
    let api_key = field(&banner, "Inference API key:");
    let http = reqwest::Client::new();
    let answer = chat(&http, &base, &api_key, "bill me").await;
    let id = answer["id"].as_str().unwrap().to_owned();
    // The generation's record went gateway → spool → gRPC → the idle thread → the ledger.
    let generation: Value = tokio::time::timeout(PATIENCE, async {
        loop {
            // Each lookup waits up to 3 s for the record before answering 404.
            let response = http
                .get(format!("{base}/generation?id={id}"))
                .bearer_auth(&api_key)
                .send()
                .await
                .unwrap();
            if response.status() == 200 {
                return response.json::<Value>().await.unwrap();
            }
            assert_eq!(response.status(), 404, "{}", response.text().await.unwrap());
        }
    })
    .await
    .expect("the generation was not ingested");
    assert_eq!(generation["data"]["id"], id.as_str());
    assert!(generation["data"]["total_cost"].as_f64().unwrap() > 0.0);

    let pid = child.id().unwrap();
    assert_eq!(thread_policies(pid, "usage-ingest"), [SCHED_IDLE]);
    let mut workers = thread_policies(pid, "sqlx-sqlite-wor");
    workers.sort_unstable();
    assert_eq!(
        workers.iter().filter(|p| **p == SCHED_IDLE).count(),
        1,
        "the writer connection's worker, and only it: {workers:?}"
    );
    assert!(
        workers.contains(&SCHED_OTHER),
        "the pool's workers: {workers:?}"
    );
    terminate(child).await;
}
