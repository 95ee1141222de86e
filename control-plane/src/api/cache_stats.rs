//! `GET /api/v1/cache/stats?key=&session=&days=`: what caching did for an org, a key or one
//! conversation — response-cache hit rate, prompt-cache hit rate, tokens read from and
//! written to provider caches, and the money the provider caches saved (cache-read tokens ×
//! (input price − cache-read price) of the endpoint that served them, at today's catalog
//! prices) — plus the latest reasons sticky routing left a conversation's cache endpoint.
//! An inference key sees only its own usage.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::{Money, pb};

use super::AppState;
use super::principal::Principal;
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{CacheFact, CacheStatsFilter, now_ms};

const DAY_MS: i64 = 86_400_000;
const MAX_DAYS: i64 = 90;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// A key hash of the org (management callers); an inference key is always itself.
    key: Option<String>,
    /// A conversation: the session id / `prompt_cache_key` the client sent, or the
    /// `auto-…` id the gateway derived.
    session: Option<String>,
    /// Look-back window in days (default 30, at most 90).
    days: Option<i64>,
}

/// The caching facts the gateway put on each usage record.
pub fn facts_of(records: &[pb::UsageRecord]) -> Vec<CacheFact> {
    records
        .iter()
        .filter(|r| {
            r.response_cache_hit
                || !r.conversation_id.is_empty()
                || !r.sticky_fallback_reason.is_empty()
        })
        .map(|r| CacheFact {
            request_id: r.request_id.clone(),
            org_id: r.org_id.clone(),
            key_hash: r.key_hash.clone(),
            conversation_id: r.conversation_id.chars().take(256).collect(),
            response_cache_hit: r.response_cache_hit,
            sticky_fallback_reason: r.sticky_fallback_reason.chars().take(512).collect(),
            finished_at: r.finished_at_ms,
        })
        .collect()
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        #[expect(clippy::cast_precision_loss, reason = "a display ratio")]
        let r = part as f64 / whole as f64;
        r
    }
}

pub async fn stats(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<StatsQuery>,
) -> Result<Json<Value>, ApiError> {
    let days = q.days.unwrap_or(30);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::BadRequest(format!(
            "`days` must be from 1 to {MAX_DAYS}, not {days}"
        )));
    }
    let mut key_hash = q.key.unwrap_or_default();
    if principal.is_inference_key() {
        let own = principal.key().map(|k| k.hash.clone()).unwrap_or_default();
        if !key_hash.is_empty() && key_hash != own {
            return Err(ApiError::Forbidden(
                "an inference key can only read its own cache statistics".into(),
            ));
        }
        key_hash = own;
    } else {
        principal.require(Permission::UsageRead)?;
    }
    let filter = CacheStatsFilter {
        org_id: principal.org_id().to_owned(),
        key_hash,
        conversation_id: q.session.unwrap_or_default(),
        since_ms: now_ms() - days * DAY_MS,
    };
    let rows = state.store.cache_stats(&filter).await?;
    let mut total = crate::store::CacheStatsRow::default();
    let mut saved: i128 = 0;
    for row in &rows {
        total.requests += row.requests;
        total.response_cache_hits += row.response_cache_hits;
        total.prompt_cache_hits += row.prompt_cache_hits;
        total.input_tokens += row.input_tokens;
        total.cache_read_tokens += row.cache_read_tokens;
        total.cache_write_tokens += row.cache_write_tokens;
        total.sticky_fallbacks += row.sticky_fallbacks;
        // Prices are nano-USD per million tokens.
        if let Some(prices) = state.store.endpoint_prices(&row.endpoint_id).await? {
            let discount = i128::from(prices.input - prices.cache_read).max(0);
            saved += i128::from(row.cache_read_tokens) * discount / 1_000_000;
        }
    }
    let saved = Money::from_nanos(i64::try_from(saved).unwrap_or(i64::MAX));
    let fallbacks = state.store.recent_sticky_fallbacks(&filter, 10).await?;
    Ok(Json(json!({ "data": {
        "key": (!filter.key_hash.is_empty()).then_some(&filter.key_hash),
        "session": (!filter.conversation_id.is_empty()).then_some(&filter.conversation_id),
        "days": days,
        "requests": total.requests,
        "response_cache": {
            "hits": total.response_cache_hits,
            "hit_rate": ratio(total.response_cache_hits, total.requests),
        },
        "prompt_cache": {
            "requests_reading_cache": total.prompt_cache_hits,
            "hit_rate": ratio(total.prompt_cache_hits, total.requests),
            "input_tokens": total.input_tokens,
            "cache_read_tokens": total.cache_read_tokens,
            "cache_write_tokens": total.cache_write_tokens,
            "read_share_of_input": ratio(total.cache_read_tokens, total.input_tokens),
            "saved_usd": saved.as_usd_f64(),
            "saved_nanos": saved.nanos(),
        },
        "sticky_routing": {
            "fallbacks": total.sticky_fallbacks,
            "recent_fallbacks": fallbacks
                .into_iter()
                .map(|(id, reason)| json!({"generation_id": format!("gen-{id}"), "reason": reason}))
                .collect::<Vec<_>>(),
        },
    }})))
}
