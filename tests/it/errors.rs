//! Bad input and upstream failures get explicit errors in OpenRouter's envelope.

use serde_json::{Value, json};
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};

use crate::sse;

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["code"], status,
        "envelope code equals HTTP status: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (status, body)
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn authentication_failures() {
    let system = System::start().await.unwrap();
    let wrong = format!("sk-sy-v1-{}", "0".repeat(64));
    let (status, body) = error_of(
        system
            .post("/chat/completions", &wrong, &chat("switchyard/echo"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["metadata"]["error_type"], "authentication");

    let (status, _) = error_of(
        system
            .post(
                "/chat/completions",
                "sk-or-v1-abc",
                &chat("switchyard/echo"),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);

    let missing = system
        .http
        .post(format!("{}/chat/completions", system.base_url()))
        .json(&chat("switchyard/echo"))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(missing).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization")
    );

    let (status, body) = error_of(
        system
            .post(
                "/chat/completions",
                system.management_key(),
                &chat("switchyard/echo"),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["metadata"]["error_type"], "permission_denied");

    // And an inference key cannot manage keys.
    let (status, _) = error_of(
        system
            .post("/keys", system.api_key(), &json!({"name": "x"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn bad_requests_name_the_problem() {
    let system = System::start().await.unwrap();
    let (status, body) = error_of(
        system
            .post(
                "/chat/completions",
                system.api_key(),
                &chat("nobody/nothing"),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["availability"]["code"], "model_not_found");
    assert_eq!(
        body["error"]["availability"]["requested_models"],
        json!(["nobody/nothing"])
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody/nothing")
    );

    let malformed = system
        .http
        .post(format!("{}/chat/completions", system.base_url()))
        .bearer_auth(system.api_key())
        .header("content-type", "application/json")
        .body(r#"{"model": "switchyard/echo", "messages": [ "#)
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(malformed).await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not valid JSON") && message.contains("line 1"),
        "{message}"
    );

    let (status, body) = error_of(
        system
            .post(
                "/chat/completions",
                system.api_key(),
                &json!({"model": "switchyard/echo", "messages": "hi"}),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages")
    );

    let (status, body) = error_of(
        system
            .post(
                "/keys",
                system.management_key(),
                &json!({"name": "x", "limit_reset": "hourly"}),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit_reset")
    );

    let (status, _) = error_of(system.get("/nope", system.api_key()).await.unwrap()).await;
    assert_eq!(status, 404);

    // Nothing that was rejected before reaching a provider is billed.
    assert_eq!(
        system
            .store
            .count_usage(&system.secrets.org_id)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn upstream_failures_map_to_typed_errors() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    for model in ["error-500", "error-429", "cut-stream"] {
        system
            .add_openai_model(
                &mock.base_url(),
                &format!("mock/{model}"),
                model,
                "0.000001",
                "0.000001",
            )
            .await
            .unwrap();
    }

    let (status, body) = error_of(
        system
            .post(
                "/chat/completions",
                system.api_key(),
                &chat("mock/error-500"),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(
        body["error"]["metadata"]["error_type"],
        "provider_unavailable"
    );

    let response = system
        .post(
            "/chat/completions",
            system.api_key(),
            &chat("mock/error-429"),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, body) = error_of(response).await;
    assert_eq!(status, 429);
    assert_eq!(
        body["error"]["metadata"]["error_type"],
        "rate_limit_exceeded"
    );

    // A stream cut after the first bytes ends with an error event, never a clean end.
    let response = system
        .post("/chat/completions", system.api_key(), &json!({"model": "mock/cut-stream", "stream": true, "messages": [{"role": "user", "content": "a b c d"}]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let generation = response.headers()["x-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    let (chunks, _) = sse::chunks(&text);
    let error_chunk = chunks
        .iter()
        .find(|c| c.get("error").is_some())
        .unwrap_or_else(|| panic!("no error event in {text}"));
    assert_eq!(error_chunk["choices"][0]["finish_reason"], "error");
    assert!(chunks.iter().any(|c| {
        c.pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    }));

    // What was generated before the cut is metered (estimated, as the provider never said).
    let row: Value = system
        .get(&format!("/generation?id={generation}"), system.api_key())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(row["data"]["finish_reason"], "error");
    assert_eq!(row["data"]["usage_estimated"], true);
    assert!(row["data"]["tokens_completion"].as_i64().unwrap() > 0);
}
