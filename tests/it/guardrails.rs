//! Guardrails enforced in the gateway, configured through the control plane: a block answers
//! 403 naming the rule, a redaction reaches the provider already redacted, and a provider
//! allowlist narrows routing with an explicit error.

use serde_json::{Value, json};
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};

async fn put(system: &System, path: &str, body: &Value) {
    let response = system
        .http
        .put(format!("{}{path}", system.base_url()))
        .bearer_auth(system.management_key())
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    system
        .gateway
        .wait_for_config(system.store.config_version().await.unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn guardrails_block_redact_and_restrict_providers_end_to_end() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    system
        .add_openai_model(
            &mock.base_url(),
            "acme/chat",
            "gpt-ok",
            "0.000001",
            "0.000001",
        )
        .await
        .unwrap();
    let org = system.secrets.org_id.clone();
    put(
        &system,
        &format!("/orgs/{org}/guardrails"),
        &json!({"rules": [
            {"name": "no-cards", "kind": "payment_card", "action": "block"},
            {"name": "emails", "kind": "email", "action": "redact"}
        ]}),
    )
    .await;

    let blocked = system
        .post("/chat/completions", system.api_key(), &json!({"model": "acme/chat", "messages": [{"role": "user", "content": "my card is 4111 1111 1111 1111"}]}))
        .await
        .unwrap();
    assert_eq!(blocked.status(), 403);
    let body: Value = blocked.json().await.unwrap();
    assert_eq!(body["error"]["metadata"]["rule"], "no-cards");
    assert!(
        !body.to_string().contains("4111"),
        "the matched text never echoes back: {body}"
    );
    assert_eq!(
        mock.request_count(),
        0,
        "a blocked request never reaches the provider"
    );

    let ok = system
        .post("/chat/completions", system.api_key(), &json!({"model": "acme/chat", "messages": [{"role": "user", "content": "write to jane.doe@example.com today"}]}))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let sent = mock.last_request().unwrap().body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !sent.contains("jane.doe@example.com"),
        "provider saw: {sent}"
    );
    assert!(
        sent.starts_with("write to ") && sent.ends_with(" today"),
        "provider saw: {sent}"
    );

    // ZDR-only for this key: the mock provider does not promise zero retention.
    let key_hash = switchyard_proto::keys::KeyHash::of(system.api_key()).into_string();
    put(
        &system,
        &format!("/keys/{key_hash}/guardrails"),
        &json!({"zdr_only": true}),
    )
    .await;
    let refused = system
        .post(
            "/chat/completions",
            system.api_key(),
            &json!({"model": "acme/chat", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"]["availability"]["excluded_by"],
        json!(["allowed_providers"])
    );
    // The offline echo provider keeps nothing, so it still serves.
    let echo = system
        .post(
            "/chat/completions",
            system.api_key(),
            &json!({"model": "switchyard/echo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
    assert_eq!(echo.status(), 200);
}
