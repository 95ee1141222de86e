//! `switchyard audit verify` against a real database, as an operator runs it: OK on an intact
//! log, a non-zero exit naming the entry once one is modified or deleted, on SQLite (via
//! `--data-dir`) and Postgres (via `--database-url`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use switchyard_control_plane::store::{self, NewAuditEntry, Store};

use crate::identity_store::exec_raw;

async fn verify(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["audit", "verify"])
        .args(args)
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_DATA_DIR")
        .env("SWITCHYARD_LOG", "error")
        .output()
        .await
        .expect("running switchyard audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn append(store: &Arc<dyn Store>, n: usize) {
    for i in 0..n {
        store
            .append_audit(&NewAuditEntry {
                org_id: "org".into(),
                actor_type: "user".into(),
                actor_id: "u1".into(),
                action: "key.update".into(),
                target_type: "key".into(),
                target_id: format!("k{i}"),
                after: Some("{\"disabled\":true}".into()),
                ..NewAuditEntry::default()
            })
            .await
            .unwrap();
    }
}

async fn tamper_story(store: Arc<dyn Store>, url: &str, args: &[&str]) {
    append(&store, 4).await;
    let (ok, text) = verify(args).await;
    assert!(ok, "{text}");
    assert!(text.contains("audit log OK: 4 entries"), "{text}");

    exec_raw(
        url,
        "UPDATE audit_log SET actor_id = 'someone-else' WHERE seq = 2",
    )
    .await;
    let (ok, text) = verify(args).await;
    assert!(!ok, "a modified entry must fail: {text}");
    assert!(text.contains("entry 2 does not match its hash"), "{text}");

    exec_raw(url, "DELETE FROM audit_log WHERE seq = 2").await;
    let (ok, text) = verify(args).await;
    assert!(!ok, "a deleted entry must fail: {text}");
    assert!(text.contains("entry 2 is missing"), "{text}");
}

#[tokio::test]
async fn audit_verify_catches_tampering_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("switchyard.db").display());
    let store = store::connect(&url).await.unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    tamper_story(store, &url, &["--data-dir", &data_dir]).await;
}

#[tokio::test]
async fn audit_verify_catches_tampering_on_postgres() {
    let Some((store, db)) = crate::common::postgres_store().await else {
        return;
    };
    let url = db.url().to_owned();
    tamper_story(store, &url, &["--database-url", &url]).await;
}

#[tokio::test]
async fn audit_verify_refuses_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = verify(&["--data-dir", dir.path().to_str().unwrap()]).await;
    assert!(!ok);
    assert!(text.contains("no database at"), "{text}");
}
