//! `CacheStatsStore` on both backends (Postgres when `SWITCHYARD_TEST_DATABASE_URL` is set;
//! required under `CI=true`): caching facts ride beside usage records, redelivery does not
//! double them, and statistics filter by key and conversation within one org.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use switchyard_control_plane::api::cache_stats::facts_of;
use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::rating::Rater;
use switchyard_control_plane::store::{CacheStatsFilter, Store, now_ms};
use switchyard_proto::pb;

async fn story(store: Arc<dyn Store>) {
    let first = bootstrap::ensure(&store, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap();
    let org = first.org_id.clone();
    let now = now_ms();
    let record = |n: u32, key: &str, conversation: &str, hit: bool, reason: &str| pb::UsageRecord {
        request_id: uuid::Uuid::now_v7().to_string(),
        org_id: org.clone(),
        key_hash: key.to_owned(),
        model: "switchyard/echo".into(),
        endpoint_id: "no-such-endpoint".into(),
        started_at_ms: now - 100 + i64::from(n),
        finished_at_ms: now + i64::from(n),
        finish_reason: "stop".into(),
        http_status: 200,
        usage: Some(pb::UsageDimensions {
            input_tokens: if hit { 0 } else { 100 },
            cache_read_tokens: if hit || n == 0 { 0 } else { 80 },
            cache_write_5m_tokens: if n == 0 { 90 } else { 0 },
            ..Default::default()
        }),
        response_cache_hit: hit,
        conversation_id: conversation.into(),
        sticky_fallback_reason: reason.into(),
        ..Default::default()
    };
    let key_a = "a".repeat(64);
    let key_b = "b".repeat(64);
    let records = vec![
        record(0, &key_a, "s1", false, ""),
        record(1, &key_a, "s1", false, ""),
        record(2, &key_a, "s1", true, ""),
        record(
            3,
            &key_a,
            "s1",
            false,
            "cache endpoint e1 failed (503 provider_unavailable); fell back",
        ),
        record(4, &key_b, "s2", false, ""),
    ];
    let rows = Rater::new(store.clone()).rate_batch("n1", &records).await;
    // Delivered twice, as after a lost ack.
    for _ in 0..2 {
        store.record_cache_facts(&facts_of(&records)).await.unwrap();
        store.ingest_usage(&rows).await.unwrap();
    }

    let filter = |key: &str, conversation: &str| CacheStatsFilter {
        org_id: org.clone(),
        key_hash: key.into(),
        conversation_id: conversation.into(),
        since_ms: now - 60_000,
    };
    let all = store.cache_stats(&filter("", "")).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].requests, 5);
    assert_eq!(all[0].response_cache_hits, 1);
    assert_eq!(all[0].prompt_cache_hits, 3);
    assert_eq!(all[0].cache_read_tokens, 240);
    assert_eq!(all[0].cache_write_tokens, 90);
    assert_eq!(all[0].sticky_fallbacks, 1);

    let s1 = store.cache_stats(&filter(&key_a, "s1")).await.unwrap();
    assert_eq!(s1[0].requests, 4);
    let b = store.cache_stats(&filter(&key_b, "")).await.unwrap();
    assert_eq!(b[0].requests, 1);
    assert_eq!(b[0].response_cache_hits, 0);
    assert!(
        store
            .cache_stats(&filter(&key_b, "s1"))
            .await
            .unwrap()
            .is_empty()
    );
    let other_org = CacheStatsFilter {
        org_id: "someone-else".into(),
        ..filter("", "")
    };
    assert!(store.cache_stats(&other_org).await.unwrap().is_empty());

    let reasons = store
        .recent_sticky_fallbacks(&filter("", "s1"), 10)
        .await
        .unwrap();
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0].0, records[3].request_id);
    assert!(reasons[0].1.contains("fell back"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stats_on_sqlite() {
    let (store, _dir) = crate::common::sqlite_store().await;
    story(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stats_on_postgres() {
    let Some((store, _db)) = crate::common::postgres_store().await else {
        return;
    };
    story(store).await;
}
