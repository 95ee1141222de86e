//! Identity through the whole system: a rotated key keeps working at the gateway for its
//! grace period and stops when it ends (the gateway enforces the snapshot's expiry), every
//! config a gateway applies is audited, and the audit chain of a live system verifies.

use serde_json::{Value, json};
use switchyard_control_plane::audit::verify_chain;
use switchyard_e2e::harness::{PATIENCE, System};

fn chat() -> Value {
    json!({ "model": "switchyard/echo", "messages": [{ "role": "user", "content": "hello" }] })
}

async fn status_of_chat(system: &System, key: &str) -> u16 {
    system
        .post("/chat/completions", key, &chat())
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn rotate(system: &System, hash: &str, grace: i64) -> Value {
    let r = system
        .post(
            &format!("/keys/{hash}/rotate"),
            system.management_key(),
            &json!({ "grace_period_seconds": grace }),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();
    body
}

#[tokio::test]
async fn a_rotated_key_works_at_the_gateway_during_its_grace_period_only() {
    let system = System::start().await.unwrap();
    let created = system
        .post("/keys", system.management_key(), &json!({ "name": "svc" }))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let first = created["key"].as_str().unwrap().to_owned();
    let first_hash = created["data"]["hash"].as_str().unwrap().to_owned();
    system
        .gateway
        .wait_for_config(system.store.config_version().await.unwrap())
        .await
        .unwrap();
    assert_eq!(status_of_chat(&system, &first).await, 200);

    // An hour of grace: the gateway accepts both secrets.
    let second = rotate(&system, &first_hash, 3600).await;
    let second_key = second["key"].as_str().unwrap().to_owned();
    assert_eq!(status_of_chat(&system, &first).await, 200);
    assert_eq!(status_of_chat(&system, &second_key).await, 200);

    // No grace: the secret it replaced stops at once at the gateway, the new one works.
    let second_hash = second["data"]["hash"].as_str().unwrap().to_owned();
    let third = rotate(&system, &second_hash, 0).await;
    assert_eq!(status_of_chat(&system, &second_key).await, 401);
    assert_eq!(
        status_of_chat(&system, third["key"].as_str().unwrap()).await,
        200
    );
}

#[tokio::test]
async fn gateway_config_acks_are_audited_and_the_chain_verifies() {
    let system = System::start().await.unwrap();
    let created = system
        .post(
            "/keys",
            system.management_key(),
            &json!({ "name": "audited" }),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();
    // The ack follows the apply; wait for its entry (bounded, event-free polling of the log).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let acked = loop {
        let entries = system.store.audit_chain_page(0, 1000).await.unwrap();
        if let Some(e) = entries
            .iter()
            .find(|e| e.action == "config.apply" && e.target_id == version.to_string())
        {
            break e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no audit entry for the ack of version {version}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(acked.actor_type, "node");
    assert!(!acked.actor_id.is_empty());
    assert_eq!(acked.org_id, "", "installation-wide, not any org's");
    let entries = system.store.audit_chain_page(0, 1000).await.unwrap();
    assert!(entries.iter().any(|e| e.action == "key.create"));
    let report = verify_chain(&*system.store).await.unwrap();
    assert!(report.entries >= 2);
}
