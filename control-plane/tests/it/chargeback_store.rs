//! `ChargebackStore` on both backends (Postgres when `SWITCHYARD_TEST_DATABASE_URL` is set;
//! required under `CI=true`): fees post exactly once under redelivery, tags ride with usage,
//! the ledger window reads reconcile, the seeded catalog has ≥30 priced models and org edits
//! overlay it, and auto top-ups start once per threshold crossing.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use switchyard_control_plane::billing::{fees, tags};
use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::rating::Rater;
use switchyard_control_plane::store::{
    BillingSettings, CatalogModel, ModelPatch, NewEndpoint, PLATFORM_FEES, Posting, Store,
    accounts, now_ms, platform_accounts, posting_kinds,
};
use switchyard_proto::pb;

async fn story(store: Arc<dyn Store>) {
    let first = bootstrap::ensure(&store, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap();
    let org = first.org_id.clone();
    let now = now_ms();

    // Defaults: no fee, no auto top-up.
    let s = store.billing_settings(&org).await.unwrap();
    assert_eq!((s.platform_fee_bps, s.auto_topup_enabled), (0, false));
    store
        .set_billing_settings(&BillingSettings {
            org_id: org.clone(),
            platform_fee_bps: 500,
            updated_at: now,
            ..BillingSettings::default()
        })
        .await
        .unwrap();

    // Echo model: $1 per million tokens in and out.
    let record = |n: i64, input: u64| pb::UsageRecord {
        request_id: uuid::Uuid::now_v7().to_string(),
        org_id: org.clone(),
        key_hash: "k".repeat(64),
        model: "switchyard/echo".into(),
        endpoint_id: "no-such-endpoint".into(),
        started_at_ms: now - 100 + n,
        finished_at_ms: now + n,
        finish_reason: "stop".into(),
        http_status: 200,
        cost_nanos: i64::try_from(input).unwrap() * 1_000,
        usage: Some(pb::UsageDimensions {
            input_tokens: input,
            ..Default::default()
        }),
        tags: [("team".to_owned(), format!("t{n}"))].into_iter().collect(),
        user: "u-1".into(),
        ..Default::default()
    };
    let records = vec![record(0, 1_000), record(1, 3_000)];
    let rater = Rater::new(store.clone());
    let rows = rater.rate_batch("n1", &records).await;
    let tag_rows = tags::tag_rows(&records, &rows);
    assert_eq!(tag_rows[0].2.len(), 2, "team and user");
    // Delivered twice, as after a lost ack: fees and tags once.
    let mut fresh = Vec::new();
    for _ in 0..2 {
        store.add_usage_tags(&tag_rows).await.unwrap();
        store.ingest_usage(&rows).await.unwrap();
        let fees = rater.fee_postings(&rows).await.unwrap();
        fresh.push(store.post_once(&fees).await.unwrap());
    }
    assert_eq!(fresh, vec![2, 0]);
    let cost: i64 = rows.iter().map(|r| r.cost_nanos).sum();
    assert_eq!(cost, 4_000_000);
    let fee_total: i64 = rows
        .iter()
        .map(|r| fees::fee_nanos(r.cost_nanos, 500))
        .sum();
    assert_eq!(fee_total, 200_000);
    assert_eq!(
        store.fee_of(&org, &rows[1].request_id).await.unwrap(),
        150_000
    );
    assert_eq!(
        store.account_balance(&org, PLATFORM_FEES).await.unwrap(),
        fee_total
    );
    assert!(store.unbalanced_postings(&org).await.unwrap().is_empty());
    assert!(
        store
            .usage_posting_anomalies(&org)
            .await
            .unwrap()
            .is_empty()
    );
    let totals = store.credit_totals(&org).await.unwrap();
    assert_eq!(totals.usage_nanos, cost + fee_total);

    // A grant, then the window: opening + movements = closing = ledger balance.
    store
        .post(&Posting {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.clone(),
            kind: posting_kinds::GRANT,
            memo: "test".into(),
            ref_id: None,
            created_at: now_ms(),
            legs: vec![
                (accounts::ORG_CREDITS.to_owned(), 10_000_000),
                (platform_accounts::GRANTS.to_owned(), -10_000_000),
            ],
        })
        .await
        .unwrap();
    let (from, to) = (now - 3_600_000, now_ms() + 3_600_000);
    let opening = store.credit_balance_before(&org, from).await.unwrap();
    let lines = store.credit_lines(&org, from, to).await.unwrap();
    assert_eq!(opening, 0);
    assert_eq!(lines.len(), 5, "2 usage + 2 fee + 1 grant: {lines:?}");
    let moved: i64 = lines.iter().map(|l| l.amount_nanos).sum();
    assert_eq!(
        opening + moved,
        store.credit_balance_before(&org, to).await.unwrap()
    );
    let fee_line = lines.iter().find(|l| l.kind == "fee").unwrap();
    assert_eq!(fee_line.model.as_deref(), Some("switchyard/echo"));
    assert!(fee_line.request_id.is_some());
    let window_tags = store.window_tags(&org, from, to).await.unwrap();
    assert_eq!(window_tags.len(), 4, "{window_tags:?}");

    // Catalog: seeded list with prices; an org's edit overlays it for that org only.
    let catalog = store.list_catalog(&org).await.unwrap();
    assert!(catalog.len() >= 30, "{}", catalog.len());
    assert!(
        catalog
            .iter()
            .all(|m| m.price_input > 0 && !m.as_of.is_empty())
    );
    let mut edited: CatalogModel = store
        .get_catalog_model(&org, "openai/gpt-4o")
        .await
        .unwrap()
        .unwrap();
    edited.org_id.clone_from(&org);
    edited.price_input = 1;
    store.put_catalog_model(&edited).await.unwrap();
    assert_eq!(
        store
            .get_catalog_model(&org, "openai/gpt-4o")
            .await
            .unwrap()
            .unwrap()
            .price_input,
        1
    );
    assert_eq!(
        store
            .get_catalog_model("other", "openai/gpt-4o")
            .await
            .unwrap()
            .unwrap()
            .price_input,
        2_500_000_000
    );
    assert_eq!(store.list_catalog(&org).await.unwrap().len(), catalog.len());
    edited.org_id.clear();
    assert!(
        store.put_catalog_model(&edited).await.is_err(),
        "seed is read-only"
    );

    // Auto top-up: one attempt per crossing; a success credits once; a failure blocks until
    // the settings are saved again.
    let a = store
        .begin_auto_topup(&org, 5_000_000_000, 1, now)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .begin_auto_topup(&org, 5_000_000_000, 1, now)
            .await
            .unwrap()
            .is_none()
    );
    store
        .finish_auto_topup(&a.id, Some("pi_1"), true, "", now)
        .await
        .unwrap();
    // The webhook of the same intent changes nothing.
    let again = store
        .post_once(&[switchyard_control_plane::store::auto_topup_posting(
            &org,
            "pi_1",
            5_000_000_000,
            now,
        )])
        .await
        .unwrap();
    assert_eq!(again, 0);
    let b = store
        .begin_auto_topup(&org, 5_000_000_000, 1, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.crossing, 1);
    store
        .finish_auto_topup(&b.id, None, false, "card_declined", now)
        .await
        .unwrap();
    assert!(
        store
            .begin_auto_topup(&org, 5_000_000_000, 1, now)
            .await
            .unwrap()
            .is_none()
    );
    let s = store.billing_settings(&org).await.unwrap();
    store.set_billing_settings(&s).await.unwrap();
    assert_eq!(
        store
            .begin_auto_topup(&org, 5_000_000_000, 1, now)
            .await
            .unwrap()
            .unwrap()
            .crossing,
        2
    );
    let list = store.list_auto_topups(&org).await.unwrap();
    let statuses: Vec<&str> = list.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["succeeded", "dismissed", "pending"]);
    let totals = store.credit_totals(&org).await.unwrap();
    assert_eq!(totals.credits_nanos, 10_000_000 + 5_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chargeback_store_on_sqlite() {
    let (store, _dir) = crate::common::sqlite_store().await;
    story(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chargeback_store_on_postgres() {
    let Some((store, _db)) = crate::common::postgres_store().await else {
        return;
    };
    story(store).await;
}

/// `post_once` with many postings in one call, as ingestion sends a batch's fees: ids already
/// in the ledger are skipped, an id given twice is posted once, and one unbalanced posting
/// refuses the whole call before anything is written.
async fn postings_in_one_call(store: Arc<dyn Store>) {
    let org = bootstrap::ensure(&store, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap()
        .org_id;
    let fee = |n: u32, amount: i64| Posting {
        id: format!("fee:req-{n:04}"),
        org_id: org.clone(),
        kind: "fee",
        memo: "m".into(),
        ref_id: Some(format!("req-{n:04}")),
        created_at: now_ms(),
        legs: vec![
            (accounts::ORG_CREDITS.to_owned(), -amount),
            (PLATFORM_FEES.to_owned(), amount),
        ],
    };
    assert_eq!(store.post_once(&[fee(1, 10)]).await.unwrap(), 1);
    // 700 postings: more than one id lookup and one INSERT per call.
    let mut batch: Vec<Posting> = (0..700).map(|n| fee(n, 1)).collect();
    batch.push(fee(5, 1));
    assert_eq!(
        store.post_once(&batch).await.unwrap(),
        699,
        "fee 1 was posted before and fee 5 is given twice"
    );
    assert_eq!(
        store.account_balance(&org, PLATFORM_FEES).await.unwrap(),
        10 + 699
    );
    let mut unbalanced = fee(900, 3);
    unbalanced.legs[1].1 = 2;
    let refused = store.post_once(&[fee(901, 1), unbalanced]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(store.post_once(&[fee(901, 1)]).await.unwrap(), 1);
    assert!(store.unbalanced_postings(&org).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postings_in_one_call_on_sqlite() {
    let (store, _dir) = crate::common::sqlite_store().await;
    postings_in_one_call(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postings_in_one_call_on_postgres() {
    let Some((store, _db)) = crate::common::postgres_store().await else {
        return;
    };
    postings_in_one_call(store).await;
}

/// The rater caches catalog prices and fee rates per config version: the batch after a
/// catalog edit or a fee change is rated with the new figures.
async fn rater_follows_price_and_fee_changes(store: Arc<dyn Store>) {
    let org = bootstrap::ensure(&store, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap()
        .org_id;
    let echo = store.get_model(&org, "switchyard/echo").await.unwrap();
    let endpoint = echo.endpoints[0].clone();
    let record = || pb::UsageRecord {
        request_id: uuid::Uuid::now_v7().to_string(),
        org_id: org.clone(),
        model: "switchyard/echo".into(),
        endpoint_id: endpoint.id.clone(),
        provider_id: endpoint.provider_id.clone(),
        started_at_ms: now_ms(),
        finished_at_ms: now_ms(),
        finish_reason: "stop".into(),
        usage: Some(pb::UsageDimensions {
            input_tokens: 1_000_000,
            ..Default::default()
        }),
        cost_nanos: 1,
        ..Default::default()
    };
    let rater = Rater::new(store.clone());
    let rows = rater.rate_batch("n1", &[record()]).await;
    let first_cost = endpoint.prices().input;
    assert!(first_cost > 0);
    assert_eq!(rows[0].cost_nanos, first_cost);
    assert!(
        rater.fee_postings(&rows).await.unwrap().is_empty(),
        "no fee by default"
    );

    let mut prices = endpoint.prices();
    prices.input *= 3;
    store
        .update_model(
            &org,
            "switchyard/echo",
            &ModelPatch {
                endpoints: Some(
                    echo.endpoints
                        .iter()
                        .map(|e| NewEndpoint {
                            id: e.id.clone(),
                            provider_id: e.provider_id.clone(),
                            upstream_model: e.upstream_model.clone(),
                            context_length: e.context_length,
                            max_output_tokens: e.max_output_tokens,
                            prices: if e.id == endpoint.id {
                                prices
                            } else {
                                e.prices()
                            },
                            quantization: e.quantization.clone(),
                            supported_parameters: e
                                .supported_parameter_list()
                                .map(str::to_owned)
                                .collect(),
                        })
                        .collect(),
                ),
                ..ModelPatch::default()
            },
        )
        .await
        .unwrap();
    let rows = rater.rate_batch("n1", &[record()]).await;
    assert_eq!(
        rows[0].cost_nanos,
        3 * first_cost,
        "the edited catalog price"
    );

    store
        .set_billing_settings(&BillingSettings {
            org_id: org.clone(),
            platform_fee_bps: 700,
            updated_at: now_ms(),
            ..BillingSettings::default()
        })
        .await
        .unwrap();
    let postings = rater.fee_postings(&rows).await.unwrap();
    assert_eq!(postings.len(), 1);
    assert_eq!(
        postings[0].legs[1],
        (
            PLATFORM_FEES.to_owned(),
            fees::fee_nanos(3 * first_cost, 700)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rater_follows_price_and_fee_changes_on_sqlite() {
    let (store, _dir) = crate::common::sqlite_store().await;
    rater_follows_price_and_fee_changes(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rater_follows_price_and_fee_changes_on_postgres() {
    let Some((store, _db)) = crate::common::postgres_store().await else {
        return;
    };
    rater_follows_price_and_fee_changes(store).await;
}

/// Writers that read before they write (`post_once` looks its ids up first), many at once:
/// each call lands. A deferred SQLite transaction that read a snapshot another connection
/// has since committed past cannot take the write lock (`SQLITE_BUSY`, which no busy
/// timeout waits out), so the store's write transactions take it up front.
async fn concurrent_postings(store: Arc<dyn Store>) {
    let org = bootstrap::ensure(&store, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap()
        .org_id;
    const TASKS: u32 = 8;
    const CALLS: u32 = 25;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, org) = (store.clone(), org.clone());
            tokio::spawn(async move {
                for call in 0..CALLS {
                    let n = task * CALLS + call;
                    let posting = Posting {
                        id: format!("fee:concurrent-{n:04}"),
                        org_id: org.clone(),
                        kind: "fee",
                        memo: "m".into(),
                        ref_id: None,
                        created_at: now_ms(),
                        legs: vec![
                            (accounts::ORG_CREDITS.to_owned(), -1),
                            (PLATFORM_FEES.to_owned(), 1),
                        ],
                    };
                    let posted = store.post_once(&[posting]).await;
                    assert_eq!(posted.unwrap(), 1, "posting {n}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        store.account_balance(&org, PLATFORM_FEES).await.unwrap(),
        i64::from(TASKS * CALLS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_postings_on_sqlite() {
    let (store, _dir) = crate::common::sqlite_store().await;
    concurrent_postings(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_postings_on_postgres() {
    let Some((store, _db)) = crate::common::postgres_store().await else {
        return;
    };
    concurrent_postings(store).await;
}
