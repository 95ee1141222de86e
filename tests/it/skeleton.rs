//! The walking skeleton: a key created through the REST API, a plain and a streaming chat
//! completion through the gateway to an OpenAI-format provider, exactly one ledger record
//! per request with the right cost, and `/generation` returning it.

use std::time::Instant;

use serde_json::{Value, json};
use switchyard_control_plane::store::accounts;
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};
use switchyard_proto::GenerationId;

use crate::sse;

/// $0.15 / $0.60 per million tokens, as OpenRouter's per-token strings.
const PROMPT_PRICE: &str = "0.00000015";
const COMPLETION_PRICE: &str = "0.0000006";

fn expected_cost_nanos(prompt: u64, completion: u64) -> i64 {
    // 150 and 600 nano-USD per token, exactly.
    i64::try_from(prompt * 150 + completion * 600).unwrap()
}

#[tokio::test]
async fn key_created_over_rest_drives_plain_and_streaming_calls_into_the_ledger() {
    let mock = MockOpenAi::start(MockConfig {
        api_key: Some("sk-mock".into()),
        fixed_usage: Some((12, 7)),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let system = System::start().await.unwrap();
    system
        .add_openai_model(
            &mock.base_url(),
            "acme/mini",
            "gpt-4o-mini",
            PROMPT_PRICE,
            COMPLETION_PRICE,
        )
        .await
        .unwrap();

    // A new key through the OpenRouter-compatible management API, via the gateway's base URL.
    let created = system
        .post("/keys", system.management_key(), &json!({"name": "ci key"}))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-sy-v1-") && key.len() == 9 + 64);
    let hash = created["data"]["hash"].as_str().unwrap().to_owned();
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();

    // Plain.
    let response = system
        .post("/chat/completions", &key, &json!({"model": "acme/mini", "messages": [{"role": "user", "content": "hello there"}], "temperature": 0.1}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header_id = response.headers()["x-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(id, header_id);
    let gen_id: GenerationId = id.parse().unwrap();
    assert_eq!(gen_id.uuid().get_version_num(), 7);
    assert_eq!(body["model"], "acme/mini");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "mock reply to: hello there"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 12);
    assert_eq!(body["usage"]["completion_tokens"], 7);
    assert_eq!(body["usage"]["total_tokens"], 19);
    let plain_cost = expected_cost_nanos(12, 7);
    assert!((body["usage"]["cost"].as_f64().unwrap() - plain_cost as f64 / 1e9).abs() < 1e-15);

    // What the provider received: the upstream model name, the provider credential, the
    // client's sampling parameter, and none of the gateway's own fields.
    let upstream = mock.last_request().unwrap();
    assert_eq!(upstream.body["model"], "gpt-4o-mini");
    assert_eq!(upstream.header("authorization"), Some("Bearer sk-mock"));
    assert_eq!(upstream.body["temperature"], 0.1);

    // `/generation` answers within a second of the response, for the key that made it.
    let started = Instant::now();
    let generation = system
        .get(&format!("/generation?id={id}"), &key)
        .await
        .unwrap();
    assert_eq!(generation.status(), 200);
    assert!(
        started.elapsed().as_millis() < 1000,
        "generation took {:?}",
        started.elapsed()
    );
    let generation: Value = generation.json().await.unwrap();
    assert_eq!(generation["data"]["id"], id);
    assert_eq!(generation["data"]["model"], "acme/mini");
    assert_eq!(generation["data"]["tokens_prompt"], 12);
    assert_eq!(generation["data"]["streamed"], false);
    assert_eq!(generation["data"]["total_cost"], body["usage"]["cost"]);

    // Streaming.
    let response = system
        .post("/chat/completions", &key, &json!({"model": "acme/mini", "stream": true, "messages": [{"role": "user", "content": "stream me please"}]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let stream_id = response.headers()["x-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    let (chunks, done) = sse::chunks(&text);
    assert!(done, "stream did not end with [DONE]: {text}");
    assert!(
        chunks
            .iter()
            .all(|c| c["id"] == stream_id && c["model"] == "acme/mini")
    );
    let content: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(content, "mock reply to: stream me please");
    let usage_chunks: Vec<&Value> = chunks
        .iter()
        .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
        .collect();
    assert_eq!(usage_chunks.len(), 1, "exactly one usage chunk");
    assert_eq!(usage_chunks[0]["choices"], json!([]));
    assert!(
        std::ptr::eq(*usage_chunks.last().unwrap(), chunks.last().unwrap()),
        "usage chunk is last before [DONE]"
    );
    assert_eq!(usage_chunks[0]["usage"]["completion_tokens"], 7);
    // The gateway asked the provider for streamed usage.
    assert_eq!(
        mock.last_request().unwrap().body["stream_options"]["include_usage"],
        true
    );

    let generation: Value = system
        .get(
            &format!("/generation?id={stream_id}"),
            system.management_key(),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(generation["data"]["streamed"], true);

    // Exactly one ledger record per request, each with the exact cost.
    let org = &system.secrets.org_id;
    assert_eq!(system.store.count_usage(org).await.unwrap(), 2);
    for gen_text in [&id, &stream_id] {
        let gen_id: GenerationId = gen_text.parse().unwrap();
        let row = system
            .store
            .get_usage(org, &gen_id.uuid().to_string())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.cost_nanos, plain_cost);
        assert_eq!(row.gateway_cost_nanos, plain_cost);
        assert_eq!(row.key_hash, hash);
    }
    assert_eq!(
        system
            .store
            .account_balance(org, accounts::ORG_CREDITS)
            .await
            .unwrap(),
        -2 * plain_cost
    );
    assert_eq!(
        system
            .store
            .account_balance(org, accounts::PLATFORM_REVENUE)
            .await
            .unwrap(),
        2 * plain_cost
    );

    // The key's own view shows the spend.
    let me: Value = system
        .get("/key", &key)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!((me["data"]["usage"].as_f64().unwrap() - 2.0 * plain_cost as f64 / 1e9).abs() < 1e-15);
}

#[tokio::test]
async fn echo_model_works_offline_with_its_demo_price() {
    let system = System::start().await.unwrap();
    let body: Value = system
        .post("/chat/completions", system.api_key(), &json!({"model": "switchyard/echo", "messages": [{"role": "user", "content": "one two three"}]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "one two three");
    // $1 per million tokens in and out: 6 tokens = 6000 nano-USD.
    assert!((body["usage"]["cost"].as_f64().unwrap() - 6e-6).abs() < 1e-15);

    let models: Value = system
        .get("/models", system.api_key())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let echo = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "switchyard/echo")
        .unwrap();
    assert_eq!(echo["pricing"]["prompt"], "0.000001");
}

#[tokio::test]
async fn config_changes_reach_the_gateway_within_a_second() {
    let system = System::start().await.unwrap();
    let started = Instant::now();
    let created: Value = system
        .post("/keys", system.management_key(), &json!({"name": "fresh"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();
    assert!(
        started.elapsed().as_millis() < 1000,
        "config took {:?} to arrive",
        started.elapsed()
    );
    let key = created["key"].as_str().unwrap();
    let ok = system
        .post(
            "/chat/completions",
            key,
            &json!({"model": "switchyard/echo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // Disabling the key takes effect the same way.
    let hash = created["data"]["hash"].as_str().unwrap();
    let patched = system
        .http
        .patch(format!("{}/keys/{hash}", system.base_url()))
        .bearer_auth(system.management_key())
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    system
        .gateway
        .wait_for_config(system.store.config_version().await.unwrap())
        .await
        .unwrap();
    let refused = system
        .post(
            "/chat/completions",
            key,
            &json!({"model": "switchyard/echo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
