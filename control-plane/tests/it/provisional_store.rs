//! Provisional (write-ahead) usage of streams on both backends: held off the ledger, replaced
//! by the final record whatever the arrival order, settled as estimated exactly once when no
//! final arrives within the grace period, and never billed twice under redelivery.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use switchyard_control_plane::store::{IngestOutcome, Store, UsageRow, accounts, now_ms};

both_backends!(
    final_supersedes_provisional_in_any_order,
    unfinished_provisional_is_settled_once_as_estimated,
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
