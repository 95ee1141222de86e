//! The console's daily usage rollup (`usage_daily`, migration 0009) on both backends: it is
//! maintained in the ingestion transaction exactly once per generation (redelivery and
//! overlapping concurrent batches never count twice, and never deadlock on Postgres), equals
//! an aggregation of the raw rows, answers the usage explorer's filters and groupings, and
//! the migration's backfill SQL rebuilds the same table from `usage_records`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use switchyard_control_plane::store::console::{DAY_MS, Dimension, ExploreQuery};
use switchyard_control_plane::store::{
    Posting, Store, UsageRow, accounts, platform_accounts, posting_kinds,
};

const ORG: &str = "org-rollup";
const BACKFILL_SQLITE: &str = include_str!("../../../migrations/sqlite/0009_usage_daily.sql");
const BACKFILL_PG: &str = include_str!("../../../migrations/postgres/0009_usage_daily.sql");

both_backends!(
    rollup_is_exactly_once_and_matches_raw_rows,
    explorer_filters_and_groups,
    migration_backfill_rebuilds_the_rollup,
    balance_and_posting_lookups_use_the_partial_indexes
);

/// Day 20,000 (2024-10-04) onwards: fixed, so the test does not depend on today.
const DAY0: i64 = 20_000;

fn row(i: i64) -> UsageRow {
    let day = DAY0 + i % 3;
    let started_at = day * DAY_MS + 3_600_000 + i * 1_000;
    UsageRow {
        request_id: format!("req-{i:04}"),
        org_id: ORG.to_owned(),
        key_hash: format!("key-{}", i % 3),
        model: format!("acme/model-{}", i % 2),
        endpoint_id: "ep".to_owned(),
        provider_id: format!("prov-{}", i % 4 / 2),
        provider_slug: format!("slug-{}", i % 4 / 2),
        upstream_model: "m".to_owned(),
        node_id: "node".to_owned(),
        config_version: 1,
        api: "chat".to_owned(),
        started_at,
        finished_at: started_at + 500,
        ttft_ms: Some(50),
        streamed: false,
        cancelled: false,
        estimated: false,
        finish_reason: "stop".to_owned(),
        native_finish_reason: "stop".to_owned(),
        http_status: if i % 7 == 0 { 502 } else { 200 },
        error_type: if i % 11 == 0 {
            "upstream_timeout".to_owned()
        } else {
            String::new()
        },
        input_tokens: 100 + i,
        output_tokens: 10 + i % 5,
        cache_read_tokens: i % 3,
        cache_write_5m_tokens: 1,
        cache_write_1h_tokens: 2,
        reasoning_tokens: i % 2,
        cost_nanos: 1_000 + i * 13,
        gateway_cost_nanos: 0,
        upstream_id: String::new(),
        ingested_at: started_at + 600,
        provider_responses: "[]".to_owned(),
    }
}

/// (requests, errors, input, output, cache read, cache write, reasoning, cost) per key of
/// (day, key, model, provider), computed from the raw rows in Rust.
type Sums = [i64; 8];

fn expected(rows: &[UsageRow]) -> BTreeMap<Vec<String>, Sums> {
    let mut out: BTreeMap<Vec<String>, Sums> = BTreeMap::new();
    for r in rows {
        let k = vec![
            (r.started_at / DAY_MS).to_string(),
            r.key_hash.clone(),
            r.model.clone(),
            r.provider_slug.clone(),
        ];
        let s = out.entry(k).or_default();
        s[0] += 1;
        s[1] += i64::from(r.http_status >= 400 || !r.error_type.is_empty());
        s[2] += r.input_tokens;
        s[3] += r.output_tokens;
        s[4] += r.cache_read_tokens;
        s[5] += r.cache_write_5m_tokens + r.cache_write_1h_tokens;
        s[6] += r.reasoning_tokens;
        s[7] += r.cost_nanos;
    }
    out
}

async fn everything(store: &dyn Store) -> BTreeMap<Vec<String>, Sums> {
    store
        .explore_usage(
            ORG,
            &ExploreQuery {
                from_day: DAY0 - 10,
                to_day: DAY0 + 10,
                group_by: Dimension::ALL.to_vec(),
                limit: 10_000,
                ..ExploreQuery::default()
            },
        )
        .await
        .expect("explore_usage")
        .into_iter()
        .map(|r| {
            (
                r.keys,
                [
                    r.requests,
                    r.errors,
                    r.input_tokens,
                    r.output_tokens,
                    r.cache_read_tokens,
                    r.cache_write_tokens,
                    r.reasoning_tokens,
                    r.cost_nanos,
                ],
            )
        })
        .collect()
}

async fn rollup_is_exactly_once_and_matches_raw_rows(store: &dyn Store, url: &str) {
    let rows: Vec<UsageRow> = (0..120).map(row).collect();
    // Eight overlapping batches, half of them in reverse order, all at once: every row is in
    // six of them. Rollup rows are shared by many batches, the case that deadlocks if
    // writers lock them in different orders.
    let batches: Vec<Vec<UsageRow>> = (0..8_usize)
        .map(|task| {
            let mut b: Vec<UsageRow> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| (i + task) % 4 != 0)
                .map(|(_, r)| r.clone())
                .collect();
            if task % 2 == 1 {
                b.reverse();
            }
            b
        })
        .collect();
    let results =
        futures_util::future::join_all(batches.iter().map(|b| store.ingest_usage(b))).await;
    let inserted: u32 = results
        .into_iter()
        .map(|r| r.expect("concurrent ingestion").inserted)
        .sum();
    assert_eq!(inserted, 120);
    let want = expected(&rows);
    assert_eq!(
        everything(store).await,
        want,
        "rollup = aggregation of the raw rows"
    );

    // Redelivery (with a different cost, which must not count) changes nothing.
    let mut again = rows.clone();
    again[0].cost_nanos = 999_999;
    let outcome = store.ingest_usage(&again).await.expect("redelivery");
    assert_eq!(outcome.inserted, 0);
    assert_eq!(everything(store).await, want, "redelivery is not counted");

    // The overview's read agrees with the raw scan it replaces (these rows start and finish
    // on the same day, the only difference between the two).
    let mut from_rollup = store.daily_buckets(ORG, DAY0 * DAY_MS).await.unwrap();
    let mut from_raw = store.usage_buckets(ORG, DAY0 * DAY_MS).await.unwrap();
    let order = |v: &mut Vec<switchyard_control_plane::store::console::UsageBucket>| {
        v.sort_by(|a, b| (a.day, &a.model, &a.key_hash).cmp(&(b.day, &b.model, &b.key_hash)));
    };
    order(&mut from_rollup);
    order(&mut from_raw);
    assert_eq!(from_rollup, from_raw);
    assert!(!from_rollup.is_empty());
    // The console's credit totals (rollup + non-usage postings) equal the ledger's, before
    // and after a grant.
    assert_eq!(
        store.rollup_credit_totals(ORG).await.unwrap(),
        store.credit_totals(ORG).await.unwrap()
    );
    crate::common::insert_org(url, ORG, "Rollup").await;
    store
        .post(&Posting {
            id: "grant-1".into(),
            org_id: ORG.into(),
            kind: posting_kinds::GRANT,
            memo: "welcome".into(),
            ref_id: None,
            created_at: DAY0 * DAY_MS,
            legs: vec![
                (accounts::ORG_CREDITS.to_owned(), 5_000_000),
                (platform_accounts::GRANTS.to_owned(), -5_000_000),
            ],
        })
        .await
        .expect("grant");
    let totals = store.rollup_credit_totals(ORG).await.unwrap();
    assert_eq!(totals, store.credit_totals(ORG).await.unwrap());
    assert_eq!(totals.credits_nanos, 5_000_000);
    assert_eq!(
        totals.usage_nanos,
        rows.iter().map(|r| r.cost_nanos).sum::<i64>()
    );
    // Another org sees nothing.
    assert!(
        store
            .daily_buckets("org-other", 0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn explorer_filters_and_groups(store: &dyn Store, _url: &str) {
    let rows: Vec<UsageRow> = (0..60).map(row).collect();
    store.ingest_usage(&rows).await.expect("ingest");
    let q = |model: Option<&str>, provider: Option<&str>, group_by: Vec<Dimension>| ExploreQuery {
        from_day: DAY0,
        to_day: DAY0 + 2, // the first two days only
        key_hash: None,
        model: model.map(str::to_owned),
        provider: provider.map(str::to_owned),
        group_by,
        limit: 100,
        ..ExploreQuery::default()
    };
    let in_range = |r: &&UsageRow| r.started_at / DAY_MS < DAY0 + 2;

    // Grouped by day: chronological, one row per day with usage.
    let by_day = store
        .explore_usage(ORG, &q(None, None, vec![Dimension::Day]))
        .await
        .unwrap();
    assert_eq!(
        by_day.iter().map(|r| r.keys[0].clone()).collect::<Vec<_>>(),
        vec![DAY0.to_string(), (DAY0 + 1).to_string()]
    );
    assert_eq!(
        by_day.iter().map(|r| r.requests).sum::<i64>(),
        rows.iter().filter(in_range).count() as i64
    );

    // Filtered by model and provider, grouped by key: largest spend first.
    let filtered = store
        .explore_usage(
            ORG,
            &q(Some("acme/model-1"), Some("slug-0"), vec![Dimension::Key]),
        )
        .await
        .unwrap();
    let want: Vec<&UsageRow> = rows
        .iter()
        .filter(in_range)
        .filter(|r| r.model == "acme/model-1" && r.provider_slug == "slug-0")
        .collect();
    assert_eq!(
        filtered.iter().map(|r| r.requests).sum::<i64>(),
        want.len() as i64
    );
    assert_eq!(
        filtered.iter().map(|r| r.cost_nanos).sum::<i64>(),
        want.iter().map(|r| r.cost_nanos).sum::<i64>()
    );
    assert!(
        filtered
            .windows(2)
            .all(|w| w[0].cost_nanos >= w[1].cost_nanos)
    );

    // No grouping: one total row; a filter that matches nothing: no rows at all.
    let total = store
        .explore_usage(ORG, &q(None, None, vec![]))
        .await
        .unwrap();
    assert_eq!(total.len(), 1);
    assert_eq!(
        total[0].requests,
        rows.iter().filter(in_range).count() as i64
    );
    let none = store
        .explore_usage(ORG, &q(Some("no/such-model"), None, vec![]))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    // Filtered by a tag: only the tagged generations in range, from the raw rows.
    let tagged: Vec<&UsageRow> = rows
        .iter()
        .filter(|r| r.request_id.ends_with('3'))
        .collect();
    let tags: Vec<_> = rows
        .iter()
        .map(|r| {
            let team = if tagged.iter().any(|t| t.request_id == r.request_id) {
                "search"
            } else {
                "ads"
            };
            (
                r.request_id.clone(),
                ORG.to_owned(),
                vec![("team".to_owned(), team.to_owned())],
            )
        })
        .collect();
    store.add_usage_tags(&tags).await.expect("tags");
    let by_tag = store
        .explore_usage(
            ORG,
            &ExploreQuery {
                tag: Some(("team".into(), "search".into())),
                ..q(None, None, vec![Dimension::Day, Dimension::Model])
            },
        )
        .await
        .unwrap();
    let want: Vec<&UsageRow> = tagged.iter().copied().filter(in_range).collect();
    assert!(!want.is_empty());
    assert_eq!(
        by_tag.iter().map(|r| r.requests).sum::<i64>(),
        want.len() as i64
    );
    assert_eq!(
        by_tag.iter().map(|r| r.cost_nanos).sum::<i64>(),
        want.iter().map(|r| r.cost_nanos).sum::<i64>()
    );
    let no_tag = store
        .explore_usage(
            ORG,
            &ExploreQuery {
                tag: Some(("team".into(), "nobody".into())),
                ..q(None, None, vec![])
            },
        )
        .await
        .unwrap();
    assert!(no_tag.is_empty(), "{no_tag:?}");

    let choices = store.explore_choices(ORG, DAY0, DAY0 + 3).await.unwrap();
    assert_eq!(choices.keys, vec!["key-0", "key-1", "key-2"]);
    assert_eq!(choices.models, vec!["acme/model-0", "acme/model-1"]);
    assert_eq!(choices.providers, vec!["slug-0", "slug-1"]);
}

/// The migration's backfill statement: everything after its "Backfill" comment.
fn backfill_sql(migration: &str) -> &str {
    let at = migration.find("-- Backfill").expect("backfill section");
    &migration[at..]
}

async fn migration_backfill_rebuilds_the_rollup(store: &dyn Store, url: &str) {
    let rows: Vec<UsageRow> = (0..90).map(row).collect();
    store.ingest_usage(&rows).await.expect("ingest");
    let maintained = everything(store).await;
    if url.starts_with("sqlite:") {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query("DELETE FROM usage_daily")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::raw_sql(backfill_sql(BACKFILL_SQLITE))
            .execute(&mut c)
            .await
            .unwrap();
    } else {
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("DELETE FROM usage_daily")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::raw_sql(backfill_sql(BACKFILL_PG))
            .execute(&mut c)
            .await
            .unwrap();
    }
    assert_eq!(
        everything(store).await,
        maintained,
        "the backfill computes what ingestion maintains"
    );
}

/// The query plan of `sql` (literals only) as one string.
async fn plan_of(url: &str, sql: &str) -> String {
    use sqlx::Connection as _;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&mut c)
                .await
                .unwrap();
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        // The test tables are tiny, where a sequential scan is cheapest; what is asked here is
        // whether the index can serve the query at all.
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut c)
            .await
            .unwrap();
        let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {sql}"))
            .fetch_all(&mut c)
            .await
            .unwrap();
        rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("; ")
    }
}

/// Migration 0012 keeps usage postings (two per generation) out of two ledger indexes; the
/// credit balance and the posting-id lookups must still be served by those indexes, or they
/// would read every usage posting of an org.
async fn balance_and_posting_lookups_use_the_partial_indexes(store: &dyn Store, url: &str) {
    let rows: Vec<UsageRow> = (0..30).map(row).collect();
    store.ingest_usage(&rows).await.expect("ingest");
    let balance = plan_of(
        url,
        &format!(
            "SELECT kind, CAST(SUM(amount_nanos) AS BIGINT) FROM ledger_entries
             WHERE org_id = '{ORG}' AND account = '{}' AND kind <> 'usage' GROUP BY kind",
            accounts::ORG_CREDITS
        ),
    )
    .await;
    assert!(
        balance.contains("ledger_entries_org_account_kind"),
        "{balance}"
    );
    let posting = plan_of(
        url,
        "SELECT COUNT(*) FROM ledger_entries WHERE posting_id = 'grant-1'",
    )
    .await;
    assert!(posting.contains("ledger_entries_posting"), "{posting}");
    // The batched lookup of `insert_postings_once`.
    let postings = plan_of(
        url,
        "SELECT DISTINCT posting_id FROM ledger_entries WHERE posting_id IN ('fee:a', 'fee:b')",
    )
    .await;
    assert!(postings.contains("ledger_entries_posting"), "{postings}");
    let totals = store.rollup_credit_totals(ORG).await.unwrap();
    assert_eq!(totals, store.credit_totals(ORG).await.unwrap());
    assert_eq!(
        totals.usage_nanos,
        rows.iter().map(|r| r.cost_nanos).sum::<i64>()
    );
}
