//! Operations: Prometheus metrics on both planes move with traffic; secrets never reach a
//! log line or a metric; the SSRF guard refuses provider URLs aimed at metadata, link-local
//! or (when the operator says so) private addresses.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::{Listeners, RunOptions};
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

/// Parses an OpenMetrics exposition into `(series, value)` pairs, e.g.
/// `("switchyard_gateway_errors_total{route=\"…\",error_type=\"authentication\"}", 1.0)`.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Sum of every series of `name` whose labels contain all of `labels` (`key="value"`).
fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(series, _)| {
            let metric = series.split('{').next().unwrap_or_default();
            metric == name && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn scrape(http: &reqwest::Client, url: String) -> String {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let body = response.text().await.unwrap();
    assert!(
        body.trim_end().ends_with("# EOF"),
        "not OpenMetrics: {body}"
    );
    body
}

async fn gateway_metrics(system: &System) -> String {
    scrape(
        &system.http,
        format!("http://{}/metrics", system.gateway.addr),
    )
    .await
}

async fn control_plane_metrics(system: &System) -> String {
    scrape(
        &system.http,
        format!("http://{}/metrics", system.control_plane.http_addr),
    )
    .await
}

fn chat(model: &str, words: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": words}]})
}

#[tokio::test]
async fn metrics_on_both_planes_move_with_traffic() {
    let system = System::start().await.unwrap();
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    system
        .add_openai_model(&mock.base_url(), "acme/metered", "gpt-4o", "1", "2")
        .await
        .unwrap();
    let before = gateway_metrics(&system).await;
    assert_eq!(
        value(&before, "switchyard_gateway_tokens_total", &[]),
        0.0,
        "{before}"
    );

    for stream in [false, true] {
        let r = system
            .post(
                "/chat/completions",
                system.api_key(),
                &chat("acme/metered", "count these five words", stream),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.text().await.unwrap();
    }
    let unauthorized = system
        .post(
            "/chat/completions",
            "sk-or-v1-not-a-key",
            &chat("acme/metered", "x", false),
        )
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    // One request per minute, then a 429.
    let key_hash = switchyard_proto::keys::KeyHash::of(system.api_key()).into_string();
    let set = system
        .http
        .put(format!("{}/keys/{key_hash}/rate-limit", system.base_url()))
        .bearer_auth(system.management_key())
        .json(&json!({"requests_per_minute": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200, "{}", set.text().await.unwrap());
    system
        .gateway
        .wait_for_config(system.store.config_version().await.unwrap())
        .await
        .unwrap();
    let mut limited = false;
    for _ in 0..3 {
        let r = system
            .post(
                "/chat/completions",
                system.api_key(),
                &chat("switchyard/echo", "hi", false),
            )
            .await
            .unwrap();
        limited |= r.status() == 429;
    }
    assert!(limited, "the rate limit never applied");
    // Two metered generations, the streamed one's provisional record (spooled when the stream
    // starts), and the echo request admitted before the limit hit.
    system.gateway.wait_for_spooled(4).await.unwrap();
    system.wait_for_usage_shipped().await.unwrap();

    let m = gateway_metrics(&system).await;
    let route = r#"route="/api/v1/chat/completions""#;
    assert!(
        value(
            &m,
            "switchyard_gateway_http_requests_total",
            &[route, r#"status="200""#]
        ) >= 2.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "switchyard_gateway_errors_total",
            &[route, r#"error_type="authentication""#]
        ),
        1.0,
        "{m}"
    );
    assert!(
        value(
            &m,
            "switchyard_gateway_rate_limit_rejections_total",
            &[route]
        ) >= 1.0,
        "{m}"
    );
    assert!(
        value(
            &m,
            "switchyard_gateway_errors_total",
            &[r#"error_type="rate_limit_exceeded""#]
        ) >= 1.0
    );
    // Overhead and duration histograms saw every request of the route.
    assert!(value(&m, "switchyard_gateway_overhead_seconds_count", &[route]) >= 4.0);
    assert!(
        value(
            &m,
            "switchyard_gateway_request_duration_seconds_count",
            &[route]
        ) >= 4.0
    );
    let model = r#"model="acme/metered""#;
    // "count these five words" = 4 prompt words, twice.
    assert_eq!(
        value(
            &m,
            "switchyard_gateway_tokens_total",
            &[model, r#"kind="input""#]
        ),
        8.0,
        "{m}"
    );
    assert!(
        value(
            &m,
            "switchyard_gateway_tokens_total",
            &[model, r#"kind="output""#]
        ) > 0.0
    );
    assert!(value(&m, "switchyard_gateway_cost_nano_usd_total", &[model]) > 0.0);
    assert_eq!(
        value(
            &m,
            "switchyard_gateway_time_to_first_token_seconds_count",
            &[model]
        ),
        1.0,
        "only the streamed request has a time to first token: {m}"
    );
    assert!(
        value(
            &m,
            "switchyard_gateway_generations_total",
            &[model, r#"outcome="ok""#]
        ) >= 2.0
    );
    let version = system.store.config_version().await.unwrap() as f64;
    assert_eq!(value(&m, "switchyard_gateway_config_version", &[]), version);
    let spooled = value(&m, "switchyard_gateway_usage_spooled_seq", &[]);
    assert!(spooled >= 4.0, "{m}");
    assert_eq!(
        value(&m, "switchyard_gateway_usage_acked_seq", &[]),
        spooled
    );
    assert_eq!(
        value(&m, "switchyard_gateway_spool_pending_records", &[]),
        0.0
    );
    assert!(value(&m, "switchyard_spool_bytes", &[]) > 0.0, "{m}");

    let cp = control_plane_metrics(&system).await;
    assert_eq!(
        value(&cp, "switchyard_control_plane_config_version", &[]),
        version
    );
    let node = format!(r#"node="test-gateway-{}""#, system.gateway.addr.port());
    assert_eq!(
        value(
            &cp,
            "switchyard_control_plane_node_applied_version",
            &[&node]
        ),
        version,
        "{cp}"
    );
    assert_eq!(
        value(&cp, "switchyard_control_plane_node_version_lag", &[&node]),
        0.0
    );
    assert_eq!(
        value(&cp, "switchyard_control_plane_node_config_ok", &[&node]),
        1.0
    );
    assert_eq!(
        value(
            &cp,
            "switchyard_control_plane_usage_records_inserted_total",
            &[]
        ),
        spooled - 1.0,
        "the provisional record is held off the ledger until its final one: {cp}"
    );
    assert!(value(&cp, "switchyard_control_plane_usage_batches_total", &[]) >= 1.0);
    assert_eq!(
        value(
            &cp,
            "switchyard_control_plane_budget_leases_outstanding",
            &[]
        ),
        0.0,
        "no budget, no lease: {cp}"
    );

    // Lease state: an org budget makes the next request lease a slice, which the control
    // plane reports (read from the store, so every replica agrees).
    let budget = system
        .post(
            "/budgets",
            system.management_key(),
            &json!({"scope": "org", "limit": 25, "window": "monthly", "name": "ops"}),
        )
        .await
        .unwrap();
    assert_eq!(budget.status(), 201, "{}", budget.text().await.unwrap());
    system
        .gateway
        .wait_for_config(system.store.config_version().await.unwrap())
        .await
        .unwrap();
    // A fresh key: the bootstrap one is rate limited above.
    let created = system
        .post(
            "/keys",
            system.management_key(),
            &json!({"name": "ops lease"}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    system
        .gateway
        .wait_for_config(system.store.config_version().await.unwrap())
        .await
        .unwrap();
    let leased = system
        .post(
            "/chat/completions",
            &key,
            &json!({"model": "acme/metered", "max_tokens": 8,
                    "messages": [{"role": "user", "content": "lease"}]}),
        )
        .await
        .unwrap();
    let status = leased.status();
    assert_eq!(status, 200, "{}", leased.text().await.unwrap());
    let cp = control_plane_metrics(&system).await;
    assert_eq!(
        value(
            &cp,
            "switchyard_control_plane_budget_leases_outstanding",
            &[]
        ),
        1.0,
        "{cp}"
    );
    assert!(
        value(
            &cp,
            "switchyard_control_plane_budget_lease_outstanding_nano_usd",
            &[]
        ) > 0.0,
        "{cp}"
    );

    // Every metric the observability checklist names, on the plane that owns it.
    let m = gateway_metrics(&system).await;
    for (what, text, name) in [
        ("requests", &m, "switchyard_gateway_http_requests_total"),
        (
            "errors by error_type",
            &m,
            "switchyard_gateway_errors_total",
        ),
        (
            "gateway overhead histogram",
            &m,
            "switchyard_gateway_overhead_seconds_count",
        ),
        (
            "time to first token",
            &m,
            "switchyard_gateway_time_to_first_token_seconds_count",
        ),
        ("tokens by model", &m, "switchyard_gateway_tokens_total"),
        (
            "cost by model",
            &m,
            "switchyard_gateway_cost_nano_usd_total",
        ),
        ("spool depth", &m, "switchyard_spool_bytes"),
        (
            "rate-limit rejections",
            &m,
            "switchyard_gateway_rate_limit_rejections_total",
        ),
        (
            "config version lag per node",
            &cp,
            "switchyard_control_plane_node_version_lag",
        ),
        (
            "lease state",
            &cp,
            "switchyard_control_plane_budget_leases_outstanding",
        ),
    ] {
        let series: Vec<(String, f64)> = samples(text)
            .into_iter()
            .filter(|(s, _)| s.split('{').next() == Some(name))
            .collect();
        assert!(!series.is_empty(), "{what}: no `{name}` series");
        for (s, v) in &series {
            assert!(v.is_finite() && *v >= 0.0, "{what}: {s} = {v}");
        }
    }
    assert!(
        !m.contains("switchyard_gateway_spool_disk_bytes"),
        "the spool depth has one name"
    );
}

/// Collects every formatted log line written while it is installed.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Runs traffic that carries every kind of secret through both planes — at the most verbose
/// log level, in the production JSON format — then scans each captured line and both
/// `/metrics` pages for them.
///
/// The capturing subscriber is this thread's default and the runtime is single-threaded,
/// so every task of the system logs into it (only `spawn_blocking` threads and SQLite's
/// worker thread log elsewhere); other tests in the binary are not affected.
#[test]
fn secrets_never_reach_logs_or_metrics() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "debug,switchyard_gateway=trace,switchyard_control_plane=trace,tower_http=trace",
        ))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(capture.clone()),
        );
    let guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let secret_tag = uuid::Uuid::now_v7().simple().to_string();
    let provider_key = format!("sk-provider-{secret_tag}");
    let prompt = format!("the launch code is zebra{secret_tag}");
    let wrong_key = format!("sk-or-v1-wrong{secret_tag}");
    let query_secret = format!("qs{secret_tag}");

    let (secrets, metrics) = runtime.block_on(async {
        let system = System::start().await.unwrap();
        let mock = MockOpenAi::start(MockConfig {
            api_key: Some(provider_key.clone()),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let created = system
            .post(
                "/providers",
                system.management_key(),
                &json!({"slug": "secretive", "kind": "openai_compatible",
                        "base_url": mock.base_url(), "api_key": provider_key}),
            )
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let created = system
            .post(
                "/models",
                system.management_key(),
                &json!({"id": "acme/secretive", "context_length": 1000, "endpoints": [{
                    "provider": "secretive", "model": "gpt-4o",
                    "pricing": {"prompt": "1", "completion": "1"}}]}),
            )
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        system
            .gateway
            .wait_for_config(system.store.config_version().await.unwrap())
            .await
            .unwrap();

        for stream in [false, true] {
            let r = system
                .post(
                    "/chat/completions",
                    system.api_key(),
                    &chat("acme/secretive", &prompt, stream),
                )
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.text().await.unwrap().contains("zebra"));
        }
        assert_eq!(
            mock.last_request().unwrap().header("authorization"),
            Some(format!("Bearer {provider_key}").as_str()),
            "the provider key was used"
        );
        let r = system
            .post(
                "/chat/completions",
                &wrong_key,
                &chat("acme/secretive", &prompt, false),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = system
            .post(
                "/messages",
                system.api_key(),
                &json!({"model": "acme/secretive",
                "max_tokens": 5, "messages": [{"role": "user", "content": prompt}]}),
            )
            .await
            .unwrap();
        assert!(r.status().is_success() || r.status().is_client_error());
        let r = system
            .http
            .get(format!("{}/models?key={query_secret}", system.base_url()))
            .bearer_auth(system.api_key())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = system.get("/keys", system.management_key()).await.unwrap();
        assert_eq!(r.status(), 200);
        system.wait_for_usage_shipped().await.unwrap();
        let metrics = format!(
            "{}\n{}",
            gateway_metrics(&system).await,
            control_plane_metrics(&system).await
        );
        let secrets = vec![
            ("provider API key", provider_key.clone()),
            ("inference API key", system.api_key().to_owned()),
            ("management key", system.management_key().to_owned()),
            ("node token", system.secrets.node_token.clone()),
            ("prompt", format!("zebra{secret_tag}")),
            ("rejected key", wrong_key.clone()),
            ("query-string secret", query_secret.clone()),
        ];
        (secrets, metrics)
    });
    drop(runtime);
    drop(guard);

    let captured = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = captured.lines().collect();
    assert!(
        lines.len() > 50,
        "too few log lines captured: {}",
        lines.len()
    );
    let mut with_request_id = 0;
    for line in &lines {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        if parsed["span"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
        {
            with_request_id += 1;
        }
        for (what, secret) in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "{what} in a log line: {line}"
            );
        }
    }
    assert!(with_request_id > 0, "no log line carried a request id");
    for (what, secret) in &secrets {
        assert!(!metrics.contains(secret.as_str()), "{what} in /metrics");
    }
}

async fn provider_with(system_url: &str, key: &str, base_url: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{system_url}/providers"))
        .bearer_auth(key)
        .json(
            &json!({"slug": format!("p-{}", uuid::Uuid::now_v7().simple()),
                      "kind": "openai_compatible", "base_url": base_url, "api_key": "sk-x"}),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn provider_urls_aimed_at_metadata_or_link_local_are_refused() {
    let system = System::start().await.unwrap();
    for url in [
        "http://169.254.169.254/latest",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://[fe80::1]:8080/v1",
        "http://[::ffff:169.254.169.254]/",
    ] {
        let (status, body) = provider_with(&system.base_url(), system.management_key(), url).await;
        assert_eq!(status, 400, "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("`base_url`") && message.contains("never allowed"),
            "{message}"
        );
        assert_eq!(body["error"]["metadata"]["error_type"], "invalid_request");
    }
    // The test system, like `switchyard serve`, allows loopback upstreams.
    let (status, body) = provider_with(
        &system.base_url(),
        system.management_key(),
        "http://127.0.0.1:9/v1",
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn private_upstreams_need_the_operators_consent() {
    // A control plane as `switchyard control-plane` runs it by default.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let store = switchyard_control_plane::store::connect(&url)
        .await
        .unwrap();
    let secrets = bootstrap::ensure(&store, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap();
    let listeners = Listeners {
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let base = format!("http://{}/api/v1", listeners.http.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(switchyard_control_plane::run(
        store,
        listeners,
        RunOptions {
            upstream_policy: switchyard_gateway::ssrf::UrlPolicy {
                allow_private: false,
            },
            ..RunOptions::default()
        },
        shutdown.clone(),
    ));
    let key = secrets.management_key.expose();
    for url in [
        "http://127.0.0.1:11434/v1",
        "http://10.1.2.3/v1",
        "http://192.168.0.10:8000",
        "http://localhost:8000/v1",
    ] {
        let (status, body) = provider_with(&base, key, url).await;
        assert_eq!(status, 400, "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS=true"),
            "{message}"
        );
    }
    let (status, body) = provider_with(&base, key, "https://api.openai.com/v1").await;
    assert_eq!(status, 201, "{body}");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_streams_finish() {
    let mut system = System::start().await.unwrap();
    let mock = MockOpenAi::start(MockConfig {
        chunk_delay: std::time::Duration::from_millis(60),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    system
        .add_openai_model(&mock.base_url(), "acme/slow", "gpt-4o", "1", "1")
        .await
        .unwrap();
    let words = "one two three four five six seven eight nine ten";
    let mut response = system
        .post(
            "/chat/completions",
            system.api_key(),
            &chat("acme/slow", words, true),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The first bytes are out; now shutdown starts while the stream is in flight.
    let first = response.chunk().await.unwrap().unwrap();
    let reader = tokio::spawn(async move {
        let mut body = String::from_utf8_lossy(&first).into_owned();
        while let Some(chunk) = response.chunk().await.unwrap() {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
        body
    });
    let gateway_addr = system.gateway.addr;
    let started = std::time::Instant::now();
    system.stop_gateway().await.unwrap();
    let body = reader.await.unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "shutdown did not wait for the stream"
    );
    let (chunks, done) = crate::sse::chunks(&body);
    assert!(done, "the stream did not end with [DONE]: {body}");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, format!("mock reply to: {words}"));
    assert!(
        chunks.iter().all(|c| c.get("error").is_none()),
        "error event: {body}"
    );
    // Its usage record reached the spool before the gateway stopped.
    assert!(*system.gateway.status.spooled_usage_seq.borrow() >= 1);
    // And the listener is closed.
    assert!(tokio::net::TcpStream::connect(gateway_addr).await.is_err());
}
