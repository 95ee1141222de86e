//! Billing conformance: ledger invariants, the effective-dated price book and re-rating,
//! Stripe top-ups exactly once, analytics with tags — each story on SQLite and on Postgres.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use switchyard_control_plane::billing::pricebook::{LongContext, PriceVersion, VersionIdentity};
use switchyard_control_plane::rating::Rater;
use switchyard_control_plane::store::{
    AnalyticsQuery, BootstrapPlan, CheckoutRow, KeyKind, NewEndpoint, NewKey, NewModel,
    NewPriceVersion, NewProvider, Org, Posting, ProviderPolicy, Store, StoreError, StripeOutcome,
    UsageRow, accounts, now_ms, platform_accounts, posting_kinds,
};
use switchyard_proto::{PriceSheet, pb};

macro_rules! conformance {
    ($($story:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let (store, _dir) = crate::common::sqlite_store().await;
                    super::$story(store).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let Some((store, _db)) = crate::common::postgres_store().await else {
                        return;
                    };
                    super::$story(store).await;
                }
            )*
        }
    };
}

conformance!(
    story_ledger_invariants,
    story_concurrent_postings_and_ingestion,
    story_rerate_a_past_window,
    story_current_price_reaches_the_catalog,
    story_rater_uses_the_price_at_start,
    story_stripe_topup_exactly_once,
    story_analytics_by_three_dimensions_and_tags,
);

const ORG: &str = "org-b";
const KEY_A: &str = "hash-key-a";
const KEY_B: &str = "hash-key-b";
const PROVIDER: &str = "prov-b";
const MODEL: &str = "acme/model-b";
const ENDPOINT: &str = "ep-b";
const USD: i64 = 1_000_000_000;

/// $1 / $2 per million input / output tokens.
fn catalog_prices() -> PriceSheet {
    PriceSheet {
        input: USD,
        output: 2 * USD,
        ..PriceSheet::default()
    }
}

fn key(hash: &str) -> NewKey {
    NewKey {
        hash: hash.to_owned(),
        org_id: ORG.to_owned(),
        name: hash.to_owned(),
        label: hash.to_owned(),
        kind: KeyKind::Inference,
        limit_nanos: None,
        limit_reset: None,
        include_byok_in_limit: false,
        expires_at: None,
    }
}

async fn bootstrap(store: &dyn Store) {
    store
        .bootstrap(&BootstrapPlan {
            org: Org {
                id: ORG.to_owned(),
                name: "Billing Org".to_owned(),
                created_at: 0,
            },
            keys: vec![key(KEY_A), key(KEY_B)],
            providers: vec![NewProvider {
                id: PROVIDER.to_owned(),
                org_id: ORG.to_owned(),
                slug: "acme".to_owned(),
                name: "Acme".to_owned(),
                kind: "openai".to_owned(),
                base_url: "http://127.0.0.1:9".to_owned(),
                api_key: None,
                policy: ProviderPolicy::default(),
            }],
            models: vec![NewModel {
                org_id: ORG.to_owned(),
                id: MODEL.to_owned(),
                name: "Model B".to_owned(),
                description: String::new(),
                context_length: 1_000_000,
                endpoints: vec![NewEndpoint {
                    id: ENDPOINT.to_owned(),
                    provider_id: PROVIDER.to_owned(),
                    upstream_model: "model-b".to_owned(),
                    context_length: 1_000_000,
                    max_output_tokens: 4096,
                    prices: catalog_prices(),
                    quantization: String::new(),
                    supported_parameters: Vec::new(),
                }],
            }],
            node_token_hash: "hash-node".to_owned(),
        })
        .await
        .expect("bootstrap");
}

/// A generation started at `started_at` with `input`/`output` tokens, priced at the catalog.
fn usage(request_id: &str, key: &str, started_at: i64, input: i64, output: i64) -> UsageRow {
    let cost = (input * USD + output * 2 * USD + 500_000) / 1_000_000;
    UsageRow {
        request_id: request_id.to_owned(),
        org_id: ORG.to_owned(),
        key_hash: key.to_owned(),
        model: MODEL.to_owned(),
        endpoint_id: ENDPOINT.to_owned(),
        provider_id: PROVIDER.to_owned(),
        provider_slug: "acme".to_owned(),
        upstream_model: "model-b".to_owned(),
        node_id: "node".to_owned(),
        config_version: 1,
        api: "chat".to_owned(),
        started_at,
        finished_at: started_at + 100,
        ttft_ms: None,
        streamed: false,
        cancelled: false,
        estimated: false,
        finish_reason: "stop".to_owned(),
        native_finish_reason: "stop".to_owned(),
        http_status: 200,
        error_type: String::new(),
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: 0,
        cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: 0,
        cost_nanos: cost,
        gateway_cost_nanos: cost,
        upstream_id: String::new(),
        ingested_at: started_at + 200,
        provider_responses: "[]".to_owned(),
    }
}

fn rid(n: u32) -> String {
    format!("0190c0de-0000-7000-8000-{n:012}")
}

fn grant(id: &str, amount: i64) -> Posting {
    Posting {
        id: id.to_owned(),
        org_id: ORG.to_owned(),
        kind: posting_kinds::GRANT,
        memo: "welcome credits".to_owned(),
        ref_id: None,
        created_at: now_ms(),
        legs: vec![
            (accounts::ORG_CREDITS.to_owned(), amount),
            (platform_accounts::GRANTS.to_owned(), -amount),
        ],
    }
}

async fn assert_ledger_invariants(store: &dyn Store) {
    assert_eq!(
        store.unbalanced_postings(ORG).await.unwrap(),
        Vec::<(String, i64)>::new(),
        "every posting sums to zero"
    );
    assert_eq!(
        store.usage_posting_anomalies(ORG).await.unwrap(),
        Vec::<String>::new(),
        "every usage record posts exactly once"
    );
    let totals = store.credit_totals(ORG).await.unwrap();
    assert_eq!(
        totals.balance_nanos,
        store
            .account_balance(ORG, accounts::ORG_CREDITS)
            .await
            .unwrap(),
        "the balance is derived from the entries"
    );
    assert_eq!(
        totals.balance_nanos,
        totals.credits_nanos - totals.usage_nanos
    );
}

fn version(from: i64, prices: PriceSheet, lc: Option<LongContext>) -> PriceVersion {
    PriceVersion::new(
        VersionIdentity {
            id: format!("pv-{from}"),
            org_id: ORG.to_owned(),
            model_id: MODEL.to_owned(),
            provider_id: PROVIDER.to_owned(),
            effective_from: from,
            note: "corrected list price".to_owned(),
            created_by: "test".to_owned(),
            created_at: now_ms(),
        },
        &prices,
        lc.as_ref(),
    )
}

async fn story_ledger_invariants(store: Arc<dyn Store>) {
    bootstrap(&*store).await;
    let rows = [
        usage(&rid(1), KEY_A, 1_000, 1_000, 500),
        usage(&rid(2), KEY_A, 2_000, 2_000, 0),
        usage(&rid(3), KEY_B, 3_000, 0, 1_000),
    ];
    let first = store.ingest_usage(&rows).await.unwrap();
    assert_eq!(first.inserted, 3);
    // Redelivery of the same and an overlapping batch posts nothing more.
    let again = store.ingest_usage(&rows[1..]).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 2));

    store.post(&grant("g1", 10 * USD)).await.unwrap();
    let refund = Posting {
        id: "r1".to_owned(),
        kind: posting_kinds::REFUND,
        memo: "bad answer".to_owned(),
        ref_id: Some(rid(1)),
        legs: vec![
            (accounts::ORG_CREDITS.to_owned(), 1_000),
            (accounts::PLATFORM_REVENUE.to_owned(), -1_000),
        ],
        ..grant("r1", 0)
    };
    store.post(&refund).await.unwrap();

    // An unbalanced posting is refused and leaves no entry behind.
    let mut broken = grant("bad", USD);
    broken.legs[1].1 = -USD + 1;
    assert!(matches!(
        store.post(&broken).await,
        Err(StoreError::Conflict(_))
    ));
    // A posting id is used once.
    assert!(store.post(&grant("g1", USD)).await.is_err());

    let spent: i64 = rows.iter().map(|r| r.cost_nanos).sum();
    let totals = store.credit_totals(ORG).await.unwrap();
    assert_eq!(totals.credits_nanos, 10 * USD);
    assert_eq!(totals.usage_nanos, spent - 1_000);
    assert_eq!(totals.balance_nanos, 10 * USD - spent + 1_000);
    assert_ledger_invariants(&*store).await;

    let kinds: Vec<String> = store
        .list_ledger(
            ORG,
            &switchyard_control_plane::store::LedgerQuery {
                account: Some(accounts::ORG_CREDITS.into()),
                kind: None,
                before_id: None,
                limit: 100,
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["refund", "grant", "usage", "usage", "usage"]);
    // Other orgs see nothing.
    assert_eq!(
        store
            .credit_totals("org-other")
            .await
            .unwrap()
            .balance_nanos,
        0
    );
}

async fn story_concurrent_postings_and_ingestion(store: Arc<dyn Store>) {
    bootstrap(&*store).await;
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.post(&grant(&format!("g{i}"), USD)).await.unwrap();
            // Every task delivers the same overlapping batches: each record posts once.
            let batch: Vec<UsageRow> = (0..8)
                .map(|n| usage(&rid((i + n) % 20), KEY_A, 1_000 + i64::from(n), 100, 10))
                .collect();
            store.ingest_usage(&batch).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.count_usage(ORG).await.unwrap(), 20);
    let totals = store.credit_totals(ORG).await.unwrap();
    assert_eq!(totals.credits_nanos, 16 * USD);
    assert_ledger_invariants(&*store).await;
}

async fn story_rerate_a_past_window(store: Arc<dyn Store>) {
    bootstrap(&*store).await;
    let config_before = store.config_version().await.unwrap();
    // Three generations at t=1000, 2000, 3000: 1M input + 1M output each → $3.
    let rows: Vec<UsageRow> = (1..=3)
        .map(|n| usage(&rid(n), KEY_A, i64::from(n) * 1_000, 1_000_000, 1_000_000))
        .collect();
    store.ingest_usage(&rows).await.unwrap();
    let before = store.credit_totals(ORG).await.unwrap();
    assert_eq!(before.usage_nanos, 9 * USD);

    // The output price was really $4/M during [1500, 2500).
    let corrected = PriceSheet {
        output: 4 * USD,
        ..catalog_prices()
    };
    let outcome = store
        .add_price_version(&NewPriceVersion {
            version: version(1_500, corrected, None),
            effective_to: Some(2_500),
            now: now_ms(),
        })
        .await
        .unwrap();
    assert_eq!(
        (outcome.requests, outcome.adjusted, outcome.delta_nanos),
        (1, 1, 2 * USD)
    );
    assert!(!outcome.catalog_updated, "the window closed in the past");
    assert_eq!(
        store.config_version().await.unwrap(),
        config_before + 1,
        "the catalog is unchanged, but every price-book change moves the version (the rater's cache)"
    );

    // History is not rewritten: the usage row keeps its first cost, the adjustment says why.
    let row = store.get_usage(ORG, &rid(2)).await.unwrap().unwrap();
    assert_eq!(row.cost_nanos, 3 * USD);
    let adjustments = store.list_adjustments(ORG, &rid(2)).await.unwrap();
    assert_eq!(adjustments.len(), 1);
    assert_eq!(
        (
            adjustments[0].previous_cost_nanos,
            adjustments[0].new_cost_nanos,
            adjustments[0].delta_nanos
        ),
        (3 * USD, 5 * USD, 2 * USD)
    );
    assert!(
        store
            .list_adjustments(ORG, &rid(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_adjustments(ORG, &rid(3))
            .await
            .unwrap()
            .is_empty()
    );
    let after = store.credit_totals(ORG).await.unwrap();
    assert_eq!(after.usage_nanos, 11 * USD);

    // The price book now has: baseline from 0, the correction, the baseline resumed at 2500.
    let versions = store.price_versions(ORG, MODEL, None).await.unwrap();
    let froms: Vec<i64> = versions.iter().map(|v| v.effective_from).collect();
    assert_eq!(froms, [0, 1_500, 2_500]);
    assert_eq!(versions[2].base(), catalog_prices());

    // Same start again: refused, nothing changes.
    assert!(matches!(
        store
            .add_price_version(&NewPriceVersion {
                version: PriceVersion {
                    id: "pv-dup".into(),
                    ..version(1_500, corrected, None)
                },
                effective_to: None,
                now: now_ms(),
            })
            .await,
        Err(StoreError::Conflict(_))
    ));
    // A second correction of the same generation posts only the difference from the first:
    // correcting [1800, 2500) down to $3/M output gives back $1 of the $2.
    let outcome = store
        .add_price_version(&NewPriceVersion {
            version: version(
                1_800,
                PriceSheet {
                    output: 3 * USD,
                    ..catalog_prices()
                },
                None,
            ),
            effective_to: Some(2_500),
            now: now_ms(),
        })
        .await
        .unwrap();
    assert_eq!((outcome.adjusted, outcome.delta_nanos), (1, -USD));
    assert_eq!(
        store.credit_totals(ORG).await.unwrap().usage_nanos,
        10 * USD
    );
    // A window overlapping a later version is refused.
    assert!(
        store
            .add_price_version(&NewPriceVersion {
                version: version(1_000, catalog_prices(), None),
                effective_to: Some(2_000),
                now: now_ms(),
            })
            .await
            .is_err()
    );
    // Re-rating with the price that is already in effect posts nothing.
    let outcome = store
        .add_price_version(&NewPriceVersion {
            version: version(2_500 + 1, catalog_prices(), None),
            effective_to: None,
            now: now_ms(),
        })
        .await
        .unwrap();
    assert_eq!((outcome.requests, outcome.adjusted), (1, 0));
    assert_ledger_invariants(&*store).await;
}

async fn story_current_price_reaches_the_catalog(store: Arc<dyn Store>) {
    bootstrap(&*store).await;
    let now = now_ms();
    let config_before = store.config_version().await.unwrap();
    store
        .ingest_usage(&[
            usage(&rid(1), KEY_A, now - 10_000, 300_000, 0),
            usage(&rid(2), KEY_A, now - 1_000, 300_000, 0),
        ])
        .await
        .unwrap();
    // From now-5s: $2/M input, and $4/M above a 200k-token prompt.
    let lc = LongContext {
        threshold: 200_000,
        prices: PriceSheet {
            input: 4 * USD,
            output: 6 * USD,
            ..PriceSheet::default()
        },
    };
    let outcome = store
        .add_price_version(&NewPriceVersion {
            version: version(
                now - 5_000,
                PriceSheet {
                    input: 2 * USD,
                    ..catalog_prices()
                },
                Some(lc),
            ),
            effective_to: None,
            now,
        })
        .await
        .unwrap();
    // 300k prompt tokens: was $0.30, long-context tier now $1.20.
    assert_eq!(
        (outcome.requests, outcome.adjusted, outcome.delta_nanos),
        (1, 1, 900_000_000)
    );
    assert!(outcome.catalog_updated);
    assert!(store.config_version().await.unwrap() > config_before);
    let prices = store.endpoint_prices(ENDPOINT).await.unwrap().unwrap();
    assert_eq!(prices.input, 2 * USD);
    assert_ledger_invariants(&*store).await;
}

fn record(request_id: &str, started_at_ms: i64, input: u64) -> pb::UsageRecord {
    pb::UsageRecord {
        request_id: request_id.to_owned(),
        org_id: ORG.to_owned(),
        key_hash: KEY_A.to_owned(),
        model: MODEL.to_owned(),
        endpoint_id: ENDPOINT.to_owned(),
        provider_id: PROVIDER.to_owned(),
        provider_slug: "acme".to_owned(),
        started_at_ms,
        finished_at_ms: started_at_ms + 10,
        finish_reason: "stop".to_owned(),
        usage: Some(pb::UsageDimensions {
            input_tokens: input,
            ..pb::UsageDimensions::default()
        }),
        cost_nanos: 42,
        ..pb::UsageRecord::default()
    }
}

async fn story_rater_uses_the_price_at_start(store: Arc<dyn Store>) {
    bootstrap(&*store).await;
    let rater = Rater::new(store.clone());
    // No version yet: the catalog's $1/M.
    let rows = rater
        .rate_batch("n", &[record(&rid(1), 1_000, 1_000_000)])
        .await;
    assert_eq!(rows[0].cost_nanos, USD);
    store
        .add_price_version(&NewPriceVersion {
            version: version(
                5_000,
                PriceSheet {
                    input: 3 * USD,
                    ..catalog_prices()
                },
                None,
            ),
            effective_to: Some(6_000),
            now: now_ms(),
        })
        .await
        .unwrap();
    // A late delivery is rated with the price in effect when it started, not today's.
    let rows = rater
        .rate_batch(
            "n",
            &[
                record(&rid(2), 4_999, 1_000_000),
                record(&rid(3), 5_000, 1_000_000),
                record(&rid(4), 6_000, 1_000_000),
            ],
        )
        .await;
    let costs: Vec<i64> = rows.iter().map(|r| r.cost_nanos).collect();
    assert_eq!(costs, [USD, 3 * USD, USD]);
    assert!(rows.iter().all(|r| r.gateway_cost_nanos == 42));
}

async fn story_stripe_topup_exactly_once(store: Arc<dyn Store>) {
    bootstrap(&*store).await;
    store
        .create_checkout(&CheckoutRow {
            id: "cs_test_1".into(),
            org_id: ORG.into(),
            amount_nanos: 25 * USD,
            url: "https://checkout.stripe.com/c/pay/cs_test_1".into(),
            created_by: "test".into(),
            created_at: now_ms(),
            completed_at: None,
        })
        .await
        .unwrap();
    let done = store
        .complete_checkout("evt_1", "checkout.session.completed", "cs_test_1", now_ms())
        .await
        .unwrap();
    assert_eq!(
        done,
        StripeOutcome::Credited {
            org_id: ORG.into(),
            amount_nanos: 25 * USD
        }
    );
    assert_eq!(
        store
            .complete_checkout("evt_1", "checkout.session.completed", "cs_test_1", now_ms())
            .await
            .unwrap(),
        StripeOutcome::DuplicateEvent
    );
    assert_eq!(
        store
            .complete_checkout(
                "evt_2",
                "checkout.session.async_payment_succeeded",
                "cs_test_1",
                now_ms()
            )
            .await
            .unwrap(),
        StripeOutcome::AlreadyCompleted
    );
    assert_eq!(
        store
            .complete_checkout(
                "evt_3",
                "checkout.session.completed",
                "cs_unknown",
                now_ms()
            )
            .await
            .unwrap(),
        StripeOutcome::UnknownSession
    );
    // Concurrent redeliveries of one event credit once.
    store
        .create_checkout(&CheckoutRow {
            id: "cs_test_2".into(),
            org_id: ORG.into(),
            amount_nanos: 5 * USD,
            url: String::new(),
            created_by: "test".into(),
            created_at: now_ms(),
            completed_at: None,
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .complete_checkout("evt_9", "checkout.session.completed", "cs_test_2", now_ms())
                .await
        }));
    }
    let mut credited = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(StripeOutcome::Credited { .. }) => credited += 1,
            Ok(_) => {}
            // A racing duplicate may lose on the unique event id instead of skipping.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(credited, 1);
    let totals = store.credit_totals(ORG).await.unwrap();
    assert_eq!(totals.credits_nanos, 30 * USD);
    assert!(
        store
            .get_checkout(ORG, "cs_test_1")
            .await
            .unwrap()
            .completed_at
            .is_some()
    );
    assert_ledger_invariants(&*store).await;
}

async fn story_analytics_by_three_dimensions_and_tags(store: Arc<dyn Store>) {
    bootstrap(&*store).await;
    let day = 86_400_000;
    let rows = [
        usage(&rid(1), KEY_A, 10 * day + 1, 1_000, 0),
        usage(&rid(2), KEY_A, 10 * day + 2, 1_000, 0),
        usage(&rid(3), KEY_B, 10 * day + 3, 1_000, 0),
        usage(&rid(4), KEY_B, 11 * day + 4, 1_000, 0),
    ];
    store.ingest_usage(&rows).await.unwrap();
    let tag = |r: u32, team: &str| {
        (
            rid(r),
            ORG.to_owned(),
            vec![
                ("team".to_owned(), team.to_owned()),
                ("user".to_owned(), format!("u{r}")),
            ],
        )
    };
    store
        .add_usage_tags(&[tag(1, "search"), tag(2, "search"), tag(3, "ads")])
        .await
        .unwrap();
    // Redelivered tags change nothing.
    store.add_usage_tags(&[tag(1, "other")]).await.unwrap();

    let q = |group_by: &[&str], filters: Vec<(String, String)>| AnalyticsQuery {
        org_id: ORG.into(),
        group_by: group_by.iter().map(|s| (*s).to_owned()).collect(),
        from_ms: 0,
        to_ms: 100 * day,
        filters,
        limit: 100,
    };
    let mut out = store
        .analytics(&q(&["tag:team", "key", "day"], Vec::new()))
        .await
        .unwrap();
    out.sort_by(|a, b| a.keys.cmp(&b.keys));
    let summary: Vec<(Vec<String>, i64, i64)> = out
        .iter()
        .map(|r| (r.keys.clone(), r.requests, r.cost_nanos))
        .collect();
    let d10 = (10 * day).to_string();
    let d11 = (11 * day).to_string();
    assert_eq!(
        summary,
        vec![
            // 1000 prompt tokens at $1/M: $0.001 each.
            (vec![String::new(), KEY_B.into(), d11.clone()], 1, 1_000_000),
            (vec!["ads".into(), KEY_B.into(), d10.clone()], 1, 1_000_000),
            (
                vec!["search".into(), KEY_A.into(), d10.clone()],
                2,
                2_000_000
            ),
        ]
    );
    let by_model = store
        .analytics(&q(
            &["model", "provider", "hour"],
            vec![("tag:team".into(), "search".into())],
        ))
        .await
        .unwrap();
    assert_eq!(by_model.len(), 1);
    assert_eq!(by_model[0].requests, 2);
    assert_eq!(by_model[0].input_tokens, 2_000);
    // Org-scoped: another org's query sees nothing.
    let other = store
        .analytics(&AnalyticsQuery {
            org_id: "org-other".into(),
            ..q(&["key"], Vec::new())
        })
        .await
        .unwrap();
    assert!(other.is_empty());
    // Totals without dimensions.
    let total = store.analytics(&q(&[], Vec::new())).await.unwrap();
    assert_eq!(total[0].requests, 4);
}
