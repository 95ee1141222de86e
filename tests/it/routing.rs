//! Routing you can trust: `models[]` fallbacks, provider preferences with explicit errors,
//! no retry after the first byte, health ejection and recovery, and rate limits held across
//! several gateways.

use serde_json::{Value, json};
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};

use crate::sse;

/// Registers providers (all on `mock`) and one model whose endpoints are
/// `(provider slug, upstream model, prompt price per token, completion price per token)`.
async fn add_model(
    system: &System,
    mock: &MockOpenAi,
    id: &str,
    endpoints: &[(&str, &str, &str, &str)],
) {
    for (slug, ..) in endpoints {
        let existing: Value = system
            .get("/providers", system.management_key())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if existing["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["slug"] == *slug)
        {
            continue;
        }
        let created = system
            .post("/providers", system.management_key(), &json!({"slug": slug, "kind": "openai_compatible", "base_url": mock.base_url(), "api_key": "sk-mock", "trains_on_prompts": false}))
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    }
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(slug, upstream, prompt, completion)| json!({"provider": slug, "model": upstream, "pricing": {"prompt": prompt, "completion": completion}}))
        .collect();
    let created = system
        .post(
            "/models",
            system.management_key(),
            &json!({"id": id, "context_length": 100000, "endpoints": endpoints}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();
}

async fn chat(system: &System, body: Value) -> (u16, Value) {
    let response = system
        .post("/chat/completions", system.api_key(), &body)
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

fn upstream_models(mock: &MockOpenAi) -> Vec<String> {
    mock.requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn models_fallback_in_order_and_the_bill_names_the_model_that_served() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_model(
        &system,
        &mock,
        "r/broken",
        &[("pa", "error-500", "0.000001", "0.000001")],
    )
    .await;
    add_model(
        &system,
        &mock,
        "r/overloaded",
        &[("pa", "error-503", "0.000001", "0.000001")],
    )
    .await;
    add_model(
        &system,
        &mock,
        "r/works",
        &[("pb", "gpt-ok", "0.000002", "0.000002")],
    )
    .await;

    // A provider nobody listens for: connect refused is retried on the next model too.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = system
        .post("/providers", system.management_key(), &json!({"slug": "gone", "kind": "openai_compatible", "base_url": format!("http://{closed}/v1")}))
        .await
        .unwrap();
    assert_eq!(refused.status(), 201);
    let created = system
        .post(
            "/models",
            system.management_key(),
            &json!({"id": "r/unreachable", "endpoints": [{"provider": "gone", "model": "x"}]}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    system
        .gateway
        .wait_for_config(system.store.config_version().await.unwrap())
        .await
        .unwrap();
    let (status, body) = chat(&system, json!({"model": "r/unreachable", "models": ["r/works"], "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "r/works");
    mock.clear_requests();

    let (status, body) = chat(&system, json!({"model": "r/broken", "models": ["r/overloaded", "r/works"], "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "r/works");
    assert_eq!(
        upstream_models(&mock),
        vec!["error-500", "error-503", "gpt-ok"]
    );

    let id = body["id"].as_str().unwrap();
    let generation: Value = system
        .get(&format!("/generation?id={id}"), system.api_key())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(generation["data"]["model"], "r/works");
    assert_eq!(generation["data"]["provider_name"], "pb");
    let attempts: Vec<(String, u64)> = generation["data"]["provider_responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["model"].as_str().unwrap().to_owned(),
                a["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        vec![
            ("r/broken".to_owned(), 502),
            ("r/overloaded".to_owned(), 503),
            ("r/works".to_owned(), 200)
        ],
        "every attempt is on the usage record"
    );
    // Exactly one record per generation (two generations so far), whatever the attempts.
    assert_eq!(
        system
            .store
            .count_usage(&system.secrets.org_id)
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn no_retry_after_the_first_byte() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_model(
        &system,
        &mock,
        "r/cut",
        &[("pa", "cut-stream", "0.000001", "0.000001")],
    )
    .await;
    add_model(
        &system,
        &mock,
        "r/works",
        &[("pb", "gpt-ok", "0.000001", "0.000001")],
    )
    .await;
    let response = system
        .post("/chat/completions", system.api_key(), &json!({"model": "r/cut", "models": ["r/works"], "stream": true, "messages": [{"role": "user", "content": "one two three four"}]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (chunks, _) = sse::chunks(&response.text().await.unwrap());
    assert!(
        chunks.iter().any(|c| c.get("error").is_some()),
        "the stream ends with an error event"
    );
    assert_eq!(
        upstream_models(&mock),
        vec!["cut-stream"],
        "nothing is retried once bytes reached the client"
    );
}

#[tokio::test]
async fn provider_preferences_filter_with_explicit_errors() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    // pa is cheap, pb dear.
    add_model(
        &system,
        &mock,
        "r/two",
        &[
            ("pa", "cheap", "0.000001", "0.000001"),
            ("pb", "dear", "0.00001", "0.00001"),
        ],
    )
    .await;

    let (status, _) = chat(&system, json!({"model": "r/two", "provider": {"sort": "price"}, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 200);
    let (status, _) = chat(&system, json!({"model": "r/two", "provider": {"order": ["pb"]}, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 200);
    let (status, _) = chat(&system, json!({"model": "r/two", "provider": {"only": ["pa"]}, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 200);
    assert_eq!(upstream_models(&mock), vec!["cheap", "dear", "cheap"]);

    // max_price is USD per million tokens: $5/M excludes pb ($10/M) only.
    let (status, body) = chat(&system, json!({"model": "r/two", "provider": {"max_price": {"prompt": 5}}, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = chat(&system, json!({"model": "r/two", "provider": {"max_price": {"prompt": 0.5}}, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["availability"]["code"], "constraint_filtered");
    assert_eq!(
        body["error"]["availability"]["excluded_by"],
        json!(["max_price"])
    );
    assert_eq!(
        body["error"]["availability"]["affected_providers"],
        json!(["pa", "pb"])
    );

    let (status, body) = chat(&system, json!({"model": "r/two", "provider": {"only": ["nobody"]}, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 404);
    assert_eq!(
        body["error"]["availability"]["excluded_by"],
        json!(["allowed_providers"])
    );

    let (status, body) = chat(&system, json!({"model": "r/two", "provider": {"sort": "fastest"}, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("provider.sort")
    );
}

#[tokio::test]
async fn failing_endpoints_are_ejected_and_traffic_moves_to_healthy_ones() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_model(
        &system,
        &mock,
        "r/flaky",
        &[
            ("pa", "error-500", "0.000001", "0.000001"),
            ("pb", "gpt-ok", "0.00001", "0.00001"),
        ],
    )
    .await;
    let sorted = |n: usize| json!({"model": "r/flaky", "provider": {"sort": "price"}, "messages": [{"role": "user", "content": format!("try {n}")}]});
    for n in 0..5 {
        let (status, _) = chat(&system, sorted(n)).await;
        assert_eq!(
            status, 200,
            "the healthy endpoint answers after the failing one"
        );
    }
    let failures = upstream_models(&mock)
        .iter()
        .filter(|m| *m == "error-500")
        .count();
    assert_eq!(failures, 5);
    // Ejected now: the cheap but failing endpoint is skipped while a healthy one exists.
    for n in 5..10 {
        let (status, _) = chat(&system, sorted(n)).await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        upstream_models(&mock)
            .iter()
            .filter(|m| *m == "error-500")
            .count(),
        5
    );

    let endpoints: Value = system
        .get("/models/r/flaky/endpoints", system.api_key())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = endpoints["data"]["endpoints"].as_array().unwrap();
    let failing = list.iter().find(|e| e["provider_name"] == "pa").unwrap();
    let healthy = list.iter().find(|e| e["provider_name"] == "pb").unwrap();
    assert!(failing["uptime_last_5m"].as_f64().unwrap() < 0.01);
    assert!((healthy["uptime_last_5m"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(healthy["latency_last_30m"]["p50"].as_f64().is_some());
}

#[tokio::test]
async fn rate_limits_hold_across_three_gateways() {
    let system = System::start().await.unwrap();
    let key_hash = switchyard_proto::keys::KeyHash::of(system.api_key()).into_string();
    let set = system
        .http
        .put(format!("{}/keys/{key_hash}/rate-limit", system.base_url()))
        .bearer_auth(system.management_key())
        .json(&json!({"requests_per_minute": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200, "{}", set.text().await.unwrap());
    let second = system.start_extra_gateway().await.unwrap();
    let third = system.start_extra_gateway().await.unwrap();
    let version = system.store.config_version().await.unwrap();
    for g in [&system.gateway, &second, &third] {
        g.wait_for_gateway_count(3, version).await.unwrap();
    }

    let gateways = [system.gateway.addr, second.addr, third.addr];
    let mut accepted = 0;
    let mut rejected = 0;
    for n in 0..90 {
        let url = format!("http://{}/api/v1/chat/completions", gateways[n % 3]);
        let response = system
            .http
            .post(url)
            .bearer_auth(system.api_key())
            .json(&hello("switchyard/echo"))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => accepted += 1,
            429 => {
                rejected += 1;
                let h = response.headers();
                assert_eq!(
                    h["x-ratelimit-limit"], "10",
                    "each of 3 gateways holds a third of 30"
                );
                assert_eq!(h["x-ratelimit-remaining"], "0");
                assert!(h.contains_key("x-ratelimit-reset") && h.contains_key("retry-after"));
                let body: Value = response.json().await.unwrap();
                assert_eq!(
                    body["error"]["metadata"]["error_type"],
                    "rate_limit_exceeded"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // The documented bound: N gateways admit at most limit + N - 1 per minute.
    eprintln!(
        "rate limit across 3 gateways: limit 30/min, admitted {accepted}, rejected {rejected}"
    );
    assert!(accepted <= 30 + 2, "admitted {accepted}");
    assert!(
        accepted >= 30,
        "admitted {accepted}: no gateway may undershoot its share"
    );
}

#[tokio::test]
async fn per_provider_timeouts_fail_over_before_the_first_byte_and_end_stalled_streams() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    for (slug, first_byte, idle) in [("hasty", 50, 0), ("patient", 0, 300)] {
        let created = system
            .post(
                "/providers",
                system.management_key(),
                &json!({"slug": slug, "kind": "openai_compatible", "base_url": mock.base_url(),
                        "first_byte_timeout_ms": first_byte, "stream_idle_timeout_ms": idle}),
            )
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    }
    // The mock's `slow` models wait 200 ms before answering: longer than hasty's 50 ms.
    add_model(
        &system,
        &mock,
        "r/slow-then-ok",
        &[
            ("hasty", "slow", "0.000001", "0.000001"),
            ("patient", "gpt-ok", "0.00001", "0.00001"),
        ],
    )
    .await;
    add_model(
        &system,
        &mock,
        "r/stall",
        &[("patient", "stall-stream", "0.000001", "0.000001")],
    )
    .await;

    let (status, body) = chat(&system, json!({"model": "r/slow-then-ok", "provider": {"sort": "price"}, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream_models(&mock), vec!["slow", "gpt-ok"]);

    let response = system
        .post("/chat/completions", system.api_key(), &json!({"model": "r/stall", "stream": true, "messages": [{"role": "user", "content": "a b c d e"}]}))
        .await
        .unwrap();
    let (chunks, _) = sse::chunks(&response.text().await.unwrap());
    let error = chunks
        .iter()
        .find(|c| c.get("error").is_some())
        .expect("a stalled stream ends with an error event");
    assert_eq!(error["error"]["metadata"]["error_type"], "timeout");
    assert_eq!(error["choices"][0]["finish_reason"], "error");
}

#[tokio::test]
async fn a_shared_credential_is_split_fairly_between_orgs() {
    let mock = MockOpenAi::start(MockConfig {
        delay: std::time::Duration::from_millis(150),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let system = System::start().await.unwrap();
    let (_, b_management, b_key) = system.add_org("Org B").await.unwrap();
    // Both orgs configure the same credential with a capacity of 2 concurrent requests.
    for management in [system.management_key().to_owned(), b_management.clone()] {
        let provider = json!({"slug": "shared", "kind": "openai_compatible", "base_url": mock.base_url(), "api_key": "sk-shared", "max_concurrency": 2});
        assert_eq!(
            system
                .post("/providers", &management, &provider)
                .await
                .unwrap()
                .status(),
            201
        );
        let model =
            json!({"id": "s/m", "endpoints": [{"provider": "shared", "model": "gpt-shared"}]});
        assert_eq!(
            system
                .post("/models", &management, &model)
                .await
                .unwrap()
                .status(),
            201
        );
    }
    system
        .gateway
        .wait_for_config(system.store.config_version().await.unwrap())
        .await
        .unwrap();

    // Org A bursts 8 requests, then org B sends 2.
    let (tx, mut done) = tokio::sync::mpsc::unbounded_channel::<(&'static str, u16)>();
    let mut tasks = Vec::new();
    for (org, key, n) in [
        ("a", system.api_key().to_owned(), 8),
        ("b", b_key.clone(), 2),
    ] {
        for _ in 0..n {
            let (http, url, key, tx) = (
                system.http.clone(),
                format!("{}/chat/completions", system.base_url()),
                key.clone(),
                tx.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let response = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&hello("s/m"))
                    .send()
                    .await
                    .unwrap();
                tx.send((org, response.status().as_u16())).unwrap();
            }));
        }
    }
    drop(tx);
    let mut order = Vec::new();
    while let Some((org, status)) = done.recv().await {
        assert_eq!(status, 200);
        order.push(org);
    }
    eprintln!("completion order with a 2-slot shared credential: {order:?}");
    let last_b = order.iter().rposition(|o| *o == "b").unwrap();
    // FIFO would finish B last (positions 8 and 9); fair sharing serves B within the first six.
    assert!(last_b < 6, "org B was starved: {order:?}");
    assert_eq!(order.len(), 10);
}

#[tokio::test]
async fn the_orgs_routing_policy_reaches_the_gateway_and_narrows_requests() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_model(
        &system,
        &mock,
        "r/broken",
        &[("pa", "error-500", "0.000001", "0.000001")],
    )
    .await;
    add_model(
        &system,
        &mock,
        "r/two",
        &[
            ("pa", "cheap", "0.000001", "0.000001"),
            ("pb", "dear", "0.00001", "0.00001"),
        ],
    )
    .await;

    let put = |body: Value| {
        let system = &system;
        async move {
            let response = system
                .http
                .put(format!("{}/routing-policy", system.base_url()))
                .bearer_auth(system.management_key())
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            system
                .gateway
                .wait_for_config(system.store.config_version().await.unwrap())
                .await
                .unwrap();
            (status, text)
        }
    };
    let (status, text) = put(json!({"default_sort": "fastest"})).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("default_sort"));

    // Default fallbacks: a failing model falls back to the org's default without the client
    // listing it. Ignored providers: pb is never used, even when the request orders it first.
    let (status, text) = put(json!({
        "default_fallback_models": ["r/two"],
        "ignored_providers": ["pb"],
        "model_overrides": [{"model": "r/two", "order": ["pa"]}]
    }))
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, body) = chat(&system, hello("r/broken")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "r/two");
    let (status, _) = chat(&system, json!({"model": "r/two", "provider": {"order": ["pb"]}, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 200);
    assert!(
        !upstream_models(&mock).contains(&"dear".to_owned()),
        "the org ignores pb: {:?}",
        upstream_models(&mock)
    );

    let got: Value = system
        .get("/routing-policy", system.management_key())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["data"]["ignored_providers"], json!(["pb"]));
}
