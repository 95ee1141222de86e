//! Fault suite (bounded in time, loopback only): a control-plane outage compressed into
//! 2000 requests, and upstream faults plus abandoned streams under concurrent load that
//! must leave no task behind.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};

const OUTAGE_REQUESTS: usize = 2000;

/// Alive tasks on this test's runtime.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn control_plane_outage_of_2000_requests_then_the_spool_drains_exactly_once() {
    let mut system = System::start().await.unwrap();
    system.stop_control_plane().await.unwrap();
    let api_key = system.api_key().to_owned();
    let url = format!("{}/chat/completions", system.base_url());
    let http = system.http.clone();
    let ids: Vec<String> = futures_util::stream::iter(0..OUTAGE_REQUESTS)
        .map(|n| {
            let (http, url, api_key) = (http.clone(), url.clone(), api_key.clone());
            async move {
                let response = http
                    .post(url)
                    .bearer_auth(api_key)
                    .json(&json!({"model": "switchyard/echo",
                                  "messages": [{"role": "user", "content": format!("outage {n}")}]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "request {n} during the outage");
                let body: Value = response.json().await.unwrap();
                body["id"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), OUTAGE_REQUESTS);

    system.restart_control_plane().await.unwrap();
    system
        .gateway
        .wait_for_acked(|acked, last| acked >= last && last >= OUTAGE_REQUESTS as u64)
        .await
        .unwrap();
    let org = system.secrets.org_id.clone();
    assert_eq!(
        system.store.count_usage(&org).await.unwrap(),
        OUTAGE_REQUESTS as i64
    );
}

#[tokio::test]
async fn upstream_faults_and_abandoned_streams_leave_no_tasks_behind() {
    let system = System::start().await.unwrap();
    // A provider that refuses connections, and a slow streaming one.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    system
        .add_openai_model(&dead_url, "acme/dead", "gpt-4o", "1", "1")
        .await
        .unwrap();
    let mock = MockOpenAi::start(MockConfig {
        chunk_delay: Duration::from_millis(20),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    system
        .add_openai_model(&mock.base_url(), "acme/slow", "gpt-4o", "1", "1")
        .await
        .unwrap();
    // Warm up pools so the baseline counts connections that stay.
    let _ = system
        .post(
            "/chat/completions",
            system.api_key(),
            &json!({"model": "acme/slow", "messages": [{"role": "user", "content": "warm"}]}),
        )
        .await
        .unwrap()
        .text()
        .await;
    let baseline = alive_tasks();

    let api_key = system.api_key().to_owned();
    let url = format!("{}/chat/completions", system.base_url());
    let http = reqwest::Client::new();
    let statuses: Vec<u16> = futures_util::stream::iter(0..200)
        .map(|n| {
            let (http, url, api_key) = (http.clone(), url.clone(), api_key.clone());
            async move {
                let model = if n % 2 == 0 { "acme/dead" } else { "acme/slow" };
                let response = http
                    .post(url)
                    .bearer_auth(api_key)
                    .json(&json!({"model": model, "stream": true,
                                  "messages": [{"role": "user", "content": "one two three four five six seven eight"}]}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                if status == 200 {
                    // Read the first bytes, then walk away mid-stream.
                    let mut body = response.bytes_stream();
                    let _ = body.next().await;
                }
                status
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed = statuses.iter().filter(|s| **s >= 500).count();
    let streamed = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        failed, 100,
        "every request to the dead provider fails: {statuses:?}"
    );
    assert_eq!(streamed, 100, "{statuses:?}");
    drop(http);

    // Every abandoned stream's relay ends (and is metered); nothing stays stuck.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let alive = alive_tasks();
        if alive <= baseline + 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{alive} tasks alive, baseline {baseline}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every generation is recorded once: failed attempts at zero cost, cancelled streams
    // with what they produced, plus the warm-up request.
    system
        .gateway
        .wait_for_acked(|acked, last| acked >= last && last >= 201)
        .await
        .unwrap();
    let org = system.secrets.org_id.clone();
    assert_eq!(system.store.count_usage(&org).await.unwrap(), 201);
}
