//! Provisional (write-ahead) usage of streams on both backends: held off the ledger, replaced
//! by the final record whatever the arrival order, settled as estimated exactly once when no
//! final arrives within the grace period, and never billed twice under redelivery.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use switchyard_control_plane::billing::provisional::Sweeper;
use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::store::{
    BillingSettings, IngestOutcome, Store, UsageRow, accounts, now_ms,
};
use switchyard_control_plane::telemetry::ControlPlaneMetrics;

both_backends!(
    final_supersedes_provisional_in_any_order,
    unfinished_provisional_is_settled_once_as_estimated,
    error_final_clears_provisional_in_any_order,
    sweeper_counts_settled_rows_and_posts_their_fees,
    a_failed_fee_posting_leaves_the_row_provisional,
);

const ORG: &str = "org-provisional";

fn row(request_id: &str, cost_nanos: i64, provisional: bool) -> UsageRow {
    let now = now_ms();
    UsageRow {
        request_id: request_id.to_owned(),
        org_id: ORG.to_owned(),
        key_hash: "key".to_owned(),
        model: "acme/model".to_owned(),
        endpoint_id: "ep".to_owned(),
        provider_id: "prov".to_owned(),
        provider_slug: "slug".to_owned(),
        upstream_model: "m".to_owned(),
        node_id: "node".to_owned(),
        config_version: 1,
        api: "chat".to_owned(),
        started_at: now - 1_000,
        finished_at: now,
        ttft_ms: None,
        streamed: true,
        cancelled: false,
        estimated: provisional,
        finish_reason: if provisional { "interrupted" } else { "stop" }.to_owned(),
        native_finish_reason: String::new(),
        http_status: 200,
        error_type: String::new(),
        input_tokens: 10,
        output_tokens: if provisional { 1_000 } else { 20 },
        cache_read_tokens: 0,
        cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: 0,
        cost_nanos,
        gateway_cost_nanos: cost_nanos,
        upstream_id: String::new(),
        ingested_at: now,
        provider_responses: "[]".to_owned(),
    }
}

async fn balance(store: &dyn Store) -> i64 {
    store
        .account_balance(ORG, accounts::ORG_CREDITS)
        .await
        .unwrap()
}

/// Settles everything held, whatever its age.
async fn settle_all(store: &dyn Store) -> Vec<UsageRow> {
    store
        .settle_provisional_usage(now_ms() + 60_000, 100)
        .await
        .unwrap()
}

async fn final_supersedes_provisional_in_any_order(store: &dyn Store, _url: &str) {
    // In order: provisional, then final.
    assert_eq!(
        store
            .hold_provisional_usage(&[row("a", 900, true)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        balance(store).await,
        0,
        "a provisional record is not billed"
    );
    assert_eq!(store.count_provisional_usage().await.unwrap(), 1);
    store.ingest_usage(&[row("a", 50, false)]).await.unwrap();
    assert_eq!(store.count_provisional_usage().await.unwrap(), 0);

    // Reordered: the final first; the late provisional is a no-op.
    store.ingest_usage(&[row("b", 70, false)]).await.unwrap();
    assert_eq!(
        store
            .hold_provisional_usage(&[row("b", 900, true)])
            .await
            .unwrap(),
        0,
        "provisional after final"
    );

    // Redelivery of everything changes nothing.
    store
        .hold_provisional_usage(&[row("a", 900, true), row("b", 900, true)])
        .await
        .unwrap();
    let again = store
        .ingest_usage(&[row("a", 50, false), row("b", 70, false)])
        .await
        .unwrap();
    assert_eq!(
        again,
        IngestOutcome {
            inserted: 0,
            duplicates: 2
        }
    );
    assert!(settle_all(store).await.is_empty(), "nothing left to settle");
    assert_eq!(balance(store).await, -120, "finals billed once each");
    let a = store.get_usage(ORG, "a").await.unwrap().unwrap();
    assert!(!a.estimated && a.cost_nanos == 50, "{a:?}");

    // A provisional row the final did not remove (a concurrent race, or a final not marked
    // streamed) settles as a no-op: the final is already billed.
    store
        .hold_provisional_usage(&[row("c", 900, true)])
        .await
        .unwrap();
    let mut unmarked = row("c", 30, false);
    unmarked.streamed = false;
    store.ingest_usage(&[unmarked]).await.unwrap();
    assert_eq!(store.count_provisional_usage().await.unwrap(), 1);
    assert!(
        settle_all(store).await.is_empty(),
        "settling it posts nothing"
    );
    assert_eq!(store.count_provisional_usage().await.unwrap(), 0);
    assert_eq!(balance(store).await, -150);
}

async fn unfinished_provisional_is_settled_once_as_estimated(store: &dyn Store, _url: &str) {
    store
        .hold_provisional_usage(&[row("lost", 900, true), row("young", 900, true)])
        .await
        .unwrap();
    // Nothing is due before the grace period has run.
    assert!(
        store
            .settle_provisional_usage(now_ms() - 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let settled = settle_all(store).await;
    assert_eq!(settled.len(), 2);
    let lost = store.get_usage(ORG, "lost").await.unwrap().unwrap();
    assert!(lost.estimated, "settled as estimated");
    assert_eq!(lost.output_tokens, 1_000, "with the gateway's estimate");
    assert_eq!(balance(store).await, -1_800);

    // A final arriving after settlement, and a redelivered provisional, bill nothing more.
    let late = store.ingest_usage(&[row("lost", 50, false)]).await.unwrap();
    assert_eq!(late.duplicates, 1);
    store
        .hold_provisional_usage(&[row("lost", 900, true)])
        .await
        .unwrap();
    assert!(settle_all(store).await.is_empty());
    assert_eq!(balance(store).await, -1_800);
    assert_eq!(store.count_provisional_usage().await.unwrap(), 0);
}

/// The final record of a stream whose every attempt failed (or that the client left before
/// any answer): zero cost, marked streamed like every final of a stream.
fn error_final(request_id: &str) -> UsageRow {
    UsageRow {
        finish_reason: "error".to_owned(),
        http_status: 502,
        error_type: "upstream_error".to_owned(),
        input_tokens: 0,
        output_tokens: 0,
        ..row(request_id, 0, false)
    }
}

async fn error_final_clears_provisional_in_any_order(store: &dyn Store, _url: &str) {
    let metrics = Arc::new(ControlPlaneMetrics::new());
    let sweeper = Sweeper::new(Duration::ZERO, metrics.clone());

    // Provisional first (written before the upstream request), then the failure.
    store
        .hold_provisional_usage(&[row("failed", 900, true)])
        .await
        .unwrap();
    store.ingest_usage(&[error_final("failed")]).await.unwrap();
    assert_eq!(store.count_provisional_usage().await.unwrap(), 0);

    // Reordered: the failure first; the late provisional is never held.
    store.ingest_usage(&[error_final("late")]).await.unwrap();
    assert_eq!(
        store
            .hold_provisional_usage(&[row("late", 900, true)])
            .await
            .unwrap(),
        0
    );

    // Left over by a race with the failure: settling it is a no-op, not an estimate.
    let mut raced = row("raced", 900, true);
    raced.ingested_at = now_ms() - 60_000;
    store.hold_provisional_usage(&[raced]).await.unwrap();
    let mut unmarked = error_final("raced");
    unmarked.streamed = false;
    store.ingest_usage(&[unmarked]).await.unwrap();
    assert_eq!(store.count_provisional_usage().await.unwrap(), 1);

    // Sweeping with no grace: nothing is settled as estimated.
    assert_eq!(sweeper.sweep(store).await.unwrap(), 0);
    assert_eq!(store.count_provisional_usage().await.unwrap(), 0);
    assert_eq!(metrics.provisional_settled(), 0);
    assert_eq!(balance(store).await, 0, "a failed stream is billed nothing");
    for id in ["failed", "late", "raced"] {
        let r = store.get_usage(ORG, id).await.unwrap().unwrap();
        assert!(
            !r.estimated && r.cost_nanos == 0 && r.finish_reason == "error",
            "{r:?}"
        );
    }
}

async fn sweeper_counts_settled_rows_and_posts_their_fees(store: &dyn Store, url: &str) {
    // A real org: billing settings reference it (bootstrap wants a shared handle).
    let shared = switchyard_control_plane::store::connect(url).await.unwrap();
    let org = bootstrap::ensure(&shared, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap()
        .org_id;
    store
        .set_billing_settings(&BillingSettings {
            org_id: org.clone(),
            platform_fee_bps: 1_000,
            updated_at: now_ms(),
            ..BillingSettings::default()
        })
        .await
        .unwrap();
    let in_org = |id: &str, ingested_at: i64| UsageRow {
        org_id: org.clone(),
        ingested_at,
        ..row(id, 900, true)
    };
    let org_balance = || async {
        store
            .account_balance(&org, accounts::ORG_CREDITS)
            .await
            .unwrap()
    };
    let before = org_balance().await;
    let metrics = Arc::new(ControlPlaneMetrics::new());
    let sweeper = Sweeper::new(Duration::from_secs(5), metrics.clone());
    store
        .hold_provisional_usage(&[in_org("lost", now_ms() - 60_000), in_org("young", now_ms())])
        .await
        .unwrap();

    assert_eq!(sweeper.sweep(store).await.unwrap(), 1, "only the old one");
    assert_eq!(metrics.provisional_settled(), 1);
    assert_eq!(
        org_balance().await - before,
        -(900 + 90),
        "usage and its 10 % fee"
    );

    // The next sweep settles nothing new and posts nothing twice.
    assert_eq!(sweeper.sweep(store).await.unwrap(), 0);
    assert_eq!(metrics.provisional_settled(), 1);
    assert_eq!(org_balance().await - before, -990);
    assert_eq!(
        store.count_provisional_usage().await.unwrap(),
        1,
        "young waits"
    );
}

/// Makes every fee posting fail (`down`) or succeed again, with a trigger on the ledger.
async fn fees_down(url: &str, down: bool) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let sql = if down {
            "CREATE TRIGGER fees_down BEFORE INSERT ON ledger_entries WHEN NEW.kind = 'fee'
             BEGIN SELECT RAISE(ABORT, 'fees are down'); END"
        } else {
            "DROP TRIGGER fees_down"
        };
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let sql: &[&str] = if down {
            &[
                "CREATE FUNCTION fees_down() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'fees are down'; END $$",
                "CREATE TRIGGER fees_down BEFORE INSERT ON ledger_entries FOR EACH ROW
                 WHEN (NEW.kind = 'fee') EXECUTE FUNCTION fees_down()",
            ]
        } else {
            &[
                "DROP TRIGGER fees_down ON ledger_entries",
                "DROP FUNCTION fees_down()",
            ]
        };
        for q in sql {
            sqlx::query(q).execute(&mut conn).await.unwrap();
        }
    }
}

async fn a_failed_fee_posting_leaves_the_row_provisional(store: &dyn Store, url: &str) {
    let shared = switchyard_control_plane::store::connect(url).await.unwrap();
    let org = bootstrap::ensure(&shared, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap()
        .org_id;
    store
        .set_billing_settings(&BillingSettings {
            org_id: org.clone(),
            platform_fee_bps: 1_000,
            updated_at: now_ms(),
            ..BillingSettings::default()
        })
        .await
        .unwrap();
    let org_balance = || async {
        store
            .account_balance(&org, accounts::ORG_CREDITS)
            .await
            .unwrap()
    };
    let before = org_balance().await;
    let sweeper = Sweeper::new(Duration::from_secs(5), Arc::new(ControlPlaneMetrics::new()));
    let mut lost = UsageRow {
        org_id: org.clone(),
        ..row("fee-lost", 900, true)
    };
    lost.ingested_at = now_ms() - 60_000;
    store.hold_provisional_usage(&[lost]).await.unwrap();

    fees_down(url, true).await;
    let refused = sweeper.sweep(store).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        org_balance().await - before,
        0,
        "neither usage nor fee posted"
    );
    assert_eq!(
        store.count_provisional_usage().await.unwrap(),
        1,
        "still provisional"
    );
    // Still down: still waiting, not dropped.
    assert!(sweeper.sweep(store).await.is_err());
    assert_eq!(store.count_provisional_usage().await.unwrap(), 1);

    fees_down(url, false).await;
    assert_eq!(sweeper.sweep(store).await.unwrap(), 1);
    assert_eq!(
        org_balance().await - before,
        -990,
        "usage and its fee together"
    );
    assert_eq!(store.count_provisional_usage().await.unwrap(), 0);
    assert_eq!(sweeper.sweep(store).await.unwrap(), 0);
    assert_eq!(org_balance().await - before, -990, "posted once");
}
