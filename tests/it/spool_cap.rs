//! The spool's disk cap: with the control plane away, unacknowledged usage grows until the
//! cap; a warning is logged at 80 %, new requests then get 503 `spool_full` (every request
//! served so far is recorded), and once the control plane is back the spool drains, requests
//! are admitted again and the ledger holds every served request exactly once.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchyard_e2e::harness::{PATIENCE, System};
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};
use switchyard_gateway::{GatewayConfig, GatewayStatus, ServeOptions};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;

const CAP: u64 = 8 * 1024;

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

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The capturing subscriber is this thread's default and the runtime single-threaded, so
/// the gateway's warning lands in it (as in `ops::secrets_never_reach_logs…`).
#[test]
fn spool_cap_refuses_new_requests_warns_and_drains() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(capture.clone())
            .with_filter(tracing_subscriber::EnvFilter::new("warn")),
    );
    let _default = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut system = System::start().await.unwrap();
        let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
        system
            .add_openai_model(&mock.base_url(), "acme/capped", "gpt-4o", "1", "1")
            .await
            .unwrap();
        let version = system.store.config_version().await.unwrap();

        // A gateway with an 8 KiB cap on its spool.
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = GatewayStatus::default();
        let shutdown = CancellationToken::new();
        let gateway = tokio::spawn(switchyard_gateway::run_with(
            GatewayConfig {
                node_id: "capped".into(),
                control_plane_grpc: format!("http://{}", system.control_plane.grpc_addr),
                control_plane_http: Some(format!("http://{}", system.control_plane.http_addr)),
                node_token: system.secrets.node_token.clone(),
                spool_dir: dir.path().join("spool"),
                drain_timeout: PATIENCE,
                status: status.clone(),
                redis_url: None,
            },
            listener,
            shutdown.clone(),
            ServeOptions {
                spool_max_bytes: CAP,
                ..ServeOptions::default()
            },
        ));
        let mut applied = status.applied_version.subscribe();
        tokio::time::timeout(PATIENCE, applied.wait_for(|v| *v >= version))
            .await
            .unwrap()
            .unwrap();

        system.stop_control_plane().await.unwrap();
        let http = reqwest::Client::new();
        let api_key = system.api_key().to_owned();
        let chat = |n: usize| {
            http.post(format!("http://{addr}/api/v1/chat/completions"))
                .bearer_auth(&api_key)
                .json(&json!({"model": "acme/capped",
                              "messages": [{"role": "user", "content": format!("request {n}")}]}))
                .send()
        };
        let mut served = 0u64;
        let mut refused = None;
        for n in 0..500 {
            let response = chat(n).await.unwrap();
            if response.status() == 200 {
                served += 1;
                // Spooled before the next request is admitted, so the cap is exact here.
                let mut spooled = status.spooled_usage_seq.subscribe();
                tokio::time::timeout(PATIENCE, spooled.wait_for(|s| *s >= served))
                    .await
                    .unwrap()
                    .unwrap();
                continue;
            }
            refused = Some(response);
            break;
        }
        let refused = refused.expect("the cap was never reached in 500 requests");
        assert!(served >= 5, "only {served} requests before the cap");
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()["retry-after"], "5");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(
            body["error"]["metadata"]["error_type"], "spool_full",
            "{body}"
        );
        assert_eq!(
            mock.request_count() as u64,
            served,
            "refused before any provider call"
        );

        let metrics = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            metric(&metrics, "switchyard_gateway_spool_max_bytes"),
            CAP as f64
        );
        assert!(metric(&metrics, "switchyard_gateway_spool_unacked_bytes") >= CAP as f64);
        assert!(metric(&metrics, "switchyard_gateway_spool_full_refusals_total") >= 1.0);
        let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(
            logs.contains("of its disk cap"),
            "no warning near the cap in: {logs}"
        );

        // The control plane returns: the spool drains and requests are admitted again.
        system.restart_control_plane().await.unwrap();
        let mut acked = status.acked_usage_seq.subscribe();
        tokio::time::timeout(Duration::from_secs(30), acked.wait_for(|a| *a >= served))
            .await
            .expect("the spool drained")
            .unwrap();
        let response = chat(1000).await.unwrap();
        assert_eq!(response.status(), 200);
        served += 1;
        let mut acked = status.acked_usage_seq.subscribe();
        tokio::time::timeout(Duration::from_secs(30), acked.wait_for(|a| *a >= served))
            .await
            .unwrap()
            .unwrap();
        // Every served request is in the ledger exactly once (the refused one is not).
        let org = system.secrets.org_id.clone();
        assert_eq!(system.store.count_usage(&org).await.unwrap(), served as i64);
        shutdown.cancel();
        tokio::time::timeout(PATIENCE, gateway)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    });
}
