//! The gateway keeps serving without its control plane, and its spool delivers every usage
//! record exactly once across restarts.

use serde_json::{Value, json};
use switchyard_control_plane::store::accounts;
use switchyard_e2e::harness::System;

async fn echo(system: &System, words: &str) -> String {
    let response = system
        .post(
            "/chat/completions",
            system.api_key(),
            &json!({"model": "switchyard/echo", "messages": [{"role": "user", "content": words}]}),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn gateway_serves_known_keys_while_the_control_plane_is_down() {
    let mut system = System::start().await.unwrap();
    system.stop_control_plane().await.unwrap();

    let id = echo(&system, "still here").await;
    // Management routes need the control plane and say so.
    let down = system.get("/keys", system.management_key()).await.unwrap();
    assert_eq!(down.status(), 503);
    let body: Value = down.json().await.unwrap();
    assert_eq!(
        body["error"]["metadata"]["error_type"],
        "temporarily_unavailable"
    );

    system.restart_control_plane().await.unwrap();
    system.wait_for_usage_shipped().await.unwrap();
    let generation = system
        .get(&format!("/generation?id={id}"), system.api_key())
        .await
        .unwrap();
    assert_eq!(generation.status(), 200);
    assert_eq!(
        system
            .store
            .count_usage(&system.secrets.org_id)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn spooled_usage_survives_a_gateway_restart_and_bills_exactly_once() {
    let mut system = System::start().await.unwrap();
    let org = system.secrets.org_id.clone();
    system.stop_control_plane().await.unwrap();
    for i in 0..5 {
        echo(&system, &format!("request number {i}")).await;
    }
    // Stopped with the control plane unreachable: the final flush cannot happen.
    system.stop_gateway().await.unwrap();
    let copy = system.dir().join("spool-copy");
    copy_dir(&system.gateway.spool_dir, &copy);

    system.restart_control_plane().await.unwrap();
    system.restart_gateway().await.unwrap();
    system.wait_for_usage_shipped().await.unwrap();
    assert_eq!(system.store.count_usage(&org).await.unwrap(), 5);
    let billed = system
        .store
        .account_balance(&org, accounts::ORG_CREDITS)
        .await
        .unwrap();
    // 3 words in, 3 out, $1/M each way: 6000 nano-USD a request.
    assert_eq!(billed, -5 * 6000);

    // Redelivery of the same records (a stale copy of the spool) changes nothing.
    system.stop_gateway().await.unwrap();
    system.gateway.spool_dir = copy;
    system.restart_gateway().await.unwrap();
    system.wait_for_usage_shipped().await.unwrap();
    assert_eq!(system.store.count_usage(&org).await.unwrap(), 5);
    assert_eq!(
        system
            .store
            .account_balance(&org, accounts::ORG_CREDITS)
            .await
            .unwrap(),
        billed
    );
}

#[tokio::test]
async fn a_killed_gateway_loses_no_spooled_usage() {
    let mut system = System::start().await.unwrap();
    let org = system.secrets.org_id.clone();
    system.stop_control_plane().await.unwrap();
    for i in 0..3 {
        echo(&system, &format!("killed {i}")).await;
    }
    system.gateway.wait_for_spooled(3).await.unwrap();
    system.kill_gateway().await.unwrap();
    system.restart_control_plane().await.unwrap();
    system.restart_gateway().await.unwrap();
    system.wait_for_usage_shipped().await.unwrap();
    assert_eq!(system.store.count_usage(&org).await.unwrap(), 3);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
