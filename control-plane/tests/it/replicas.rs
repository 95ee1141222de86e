//! Two control-plane replicas on one Postgres database: config changes reach the other
//! replica through NOTIFY, and one made while its listener could not connect is caught up
//! when it reconnects (the rater's price cache and the gateways' snapshots both
//! key on that version). Postgres only: SQLite has one process.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use sqlx::Connection;
use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::store::{self, BillingSettings, Store, now_ms};
use tokio::sync::watch;

async fn reaches(changes: &mut watch::Receiver<u64>, version: u64) {
    let reached =
        tokio::time::timeout(Duration::from_secs(30), changes.wait_for(|v| *v >= version))
            .await
            .map(|r| r.map(|_| ()));
    assert!(
        matches!(reached, Ok(Ok(()))),
        "the other replica is still at version {} (wanted {version}): {reached:?}",
        *changes.borrow()
    );
}

async fn set_fee(store: &dyn Store, org: &str, bps: i64) -> u64 {
    store
        .set_billing_settings(&BillingSettings {
            org_id: org.to_owned(),
            platform_fee_bps: bps,
            updated_at: now_ms(),
            ..BillingSettings::default()
        })
        .await
        .unwrap();
    store.config_version().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_the_listener_was_away_is_caught_up() {
    let Some((a, db)) = crate::common::postgres_store().await else {
        return;
    };
    let b = store::connect(db.url())
        .await
        .expect("open a second replica");
    let org = bootstrap::ensure(&a, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap()
        .org_id;
    let mut a_changes = a.config_changes();

    // Through NOTIFY.
    let version = set_fee(&*b, &org, 100).await;
    reaches(&mut a_changes, version).await;

    // The database stops taking connections and every other connection to it is cut; the
    // change is made and announced while no listener can be there to hear it.
    // A database's connections can only be switched off from another database.
    let server_url = std::env::var(crate::common::PG_URL_ENV).unwrap();
    let mut server = sqlx::PgConnection::connect(&server_url).await.unwrap();
    let mut admin = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let (name,): (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    let allow = |on: bool| format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {on}");
    sqlx::query(&allow(false))
        .execute(&mut server)
        .await
        .unwrap();
    let cut: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(cut.len() >= 2, "both replicas' listeners at least: {cut:?}");
    assert!(cut.iter().all(|(gone,)| *gone), "{cut:?}");
    let (version,): (i64,) = sqlx::query_as(
        "UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('switchyard_config', $1)")
        .bind(version.to_string())
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&allow(true))
        .execute(&mut server)
        .await
        .unwrap();
    reaches(&mut a_changes, u64::try_from(version).unwrap()).await;

    // And the listener still works afterwards.
    let version = set_fee(&*b, &org, 300).await;
    reaches(&mut a_changes, version).await;
}
