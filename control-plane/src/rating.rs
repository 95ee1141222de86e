//! Rates usage records with the price book. The control plane's rating is what the ledger
//! posts; the gateway computed the same figure from the same prices for the client, and
//! both are kept so a difference (a price changed in between) is visible.
//!
//! The prices a batch needs (price book, catalog prices, the org's platform fee) are cached
//! per config version: every write to any of them bumps the version (`add_price_version`,
//! catalog edits, `set_billing_settings`), in-process or, with Postgres, through the
//! replicas' NOTIFY listener. Reading them per batch was three of the ~nine statements an
//! ingested batch cost.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};

use switchyard_proto::{PriceSheet, UsageDims, pb};
use tokio::sync::watch;
use uuid::Uuid;

use crate::billing::fees;
use crate::billing::pricebook::{self, PriceVersion};
use crate::store::{Posting, Store, StoreResult, UsageRow, now_ms};

/// Entries kept per config version before the cache starts over: the catalog bounds the
/// keys, but records name models and endpoints as the gateway sent them.
const MAX_CACHED: usize = 10_000;

pub struct Rater {
    store: Arc<dyn Store>,
    version: watch::Receiver<u64>,
    cache: Mutex<PriceCache>,
}

type BookKey = (String, String, String);

#[derive(Default)]
struct PriceCache {
    version: u64,
    books: HashMap<BookKey, Arc<[PriceVersion]>>,
    sheets: HashMap<String, Option<PriceSheet>>,
    fee_bps: HashMap<String, i64>,
}

impl PriceCache {
    fn len(&self) -> usize {
        self.books.len() + self.sheets.len() + self.fee_bps.len()
    }
}

impl Rater {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            version: store.config_changes(),
            store,
            cache: Mutex::new(PriceCache::default()),
        }
    }

    /// Looks `get` up in the cache of the current config version (emptied first if the
    /// version moved), and returns that version too. It is read before any price is, so a
    /// price read racing a change is stored under the older version and dropped next time.
    fn cached<T>(&self, get: impl FnOnce(&PriceCache) -> Option<T>) -> (u64, Option<T>) {
        let version = *self.version.borrow();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.version != version || cache.len() > MAX_CACHED {
            *cache = PriceCache {
                version,
                ..PriceCache::default()
            };
        }
        (version, get(&cache))
    }

    fn keep<T>(&self, version: u64, put: impl FnOnce(&mut PriceCache) -> T) -> Option<T> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        (cache.version == version).then(|| put(&mut cache))
    }

    /// The price book of a model at a provider; a failed read is not cached (an empty book
    /// falls back to the catalog's prices).
    async fn book(&self, org_id: &str, model: &str, provider_id: &str) -> Arc<[PriceVersion]> {
        let key = (org_id.to_owned(), model.to_owned(), provider_id.to_owned());
        let (version, hit) = self.cached(|c| c.books.get(&key).cloned());
        if let Some(book) = hit {
            return book;
        }
        match self
            .store
            .price_versions(org_id, model, Some(provider_id))
            .await
        {
            Ok(versions) => {
                let book: Arc<[PriceVersion]> = versions.into();
                self.keep(version, |c| c.books.insert(key, book.clone()));
                book
            }
            Err(err) => {
                tracing::warn!(error = %err, model, "price book lookup failed; using the catalog's prices");
                Arc::from(Vec::new())
            }
        }
    }

    /// The catalog's prices of an endpoint; `None` (not cached) when the read failed.
    async fn sheet(&self, endpoint_id: &str) -> Option<PriceSheet> {
        let (version, hit) = self.cached(|c| c.sheets.get(endpoint_id).copied());
        if let Some(sheet) = hit {
            return sheet;
        }
        match self.store.endpoint_prices(endpoint_id).await {
            Ok(sheet) => {
                self.keep(version, |c| c.sheets.insert(endpoint_id.to_owned(), sheet));
                sheet
            }
            Err(err) => {
                tracing::warn!(error = %err, endpoint = %endpoint_id, "price lookup failed; using the gateway's rating");
                None
            }
        }
    }

    /// An org's platform fee in basis points. A failed read fails the batch (it is sent
    /// again), as charging no fee would be silent under-billing.
    async fn fee_bps(&self, org_id: &str) -> StoreResult<i64> {
        let (version, hit) = self.cached(|c| c.fee_bps.get(org_id).copied());
        if let Some(bps) = hit {
            return Ok(bps);
        }
        let bps = self.store.billing_settings(org_id).await?.platform_fee_bps;
        self.keep(version, |c| c.fee_bps.insert(org_id.to_owned(), bps));
        Ok(bps)
    }

    /// The fee postings of rated rows at each org's current rate (cached per config version).
    pub async fn fee_postings(&self, rows: &[UsageRow]) -> StoreResult<Vec<Posting>> {
        let mut bps: HashMap<&str, i64> = HashMap::new();
        for row in rows {
            if let Entry::Vacant(slot) = bps.entry(&row.org_id) {
                slot.insert(self.fee_bps(&row.org_id).await?);
            }
        }
        Ok(fees::postings_at(rows, |org| {
            bps.get(org).copied().unwrap_or(0)
        }))
    }

    pub async fn rate_batch(&self, node_id: &str, records: &[pb::UsageRecord]) -> Vec<UsageRow> {
        let mut prices: HashMap<&str, Option<PriceSheet>> = HashMap::new();
        let mut books: HashMap<(&str, &str, &str), Arc<[PriceVersion]>> = HashMap::new();
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            if Uuid::parse_str(&r.request_id).is_err() {
                tracing::error!(node_id, request_id = %r.request_id, "dropping a usage record with a malformed request id");
                continue;
            }
            let book_key = (r.org_id.as_str(), r.model.as_str(), r.provider_id.as_str());
            if let Entry::Vacant(slot) = books.entry(book_key) {
                slot.insert(self.book(&r.org_id, &r.model, &r.provider_id).await);
            }
            if let Entry::Vacant(slot) = prices.entry(&r.endpoint_id) {
                slot.insert(self.sheet(&r.endpoint_id).await);
            }
            let dims = r.usage.as_ref().map(UsageDims::from).unwrap_or_default();
            let failed = r.finish_reason == "error";
            // The price in effect when the generation started wins over today's catalog, so
            // late deliveries and re-ratings agree.
            let versioned = books
                .get(&book_key)
                .and_then(|v| pricebook::in_effect(v, r.started_at_ms))
                .map(|v| v.charge(&dims, failed).nanos());
            let cost = versioned.unwrap_or_else(|| {
                prices
                    .get(r.endpoint_id.as_str())
                    .and_then(|p| p.as_ref())
                    .map_or(r.cost_nanos, |p| p.charge(&dims, failed).nanos())
            });
            rows.push(row(node_id, r, &dims, cost));
        }
        rows
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row(node_id: &str, r: &pb::UsageRecord, dims: &UsageDims, cost_nanos: i64) -> UsageRow {
    UsageRow {
        request_id: r.request_id.clone(),
        org_id: r.org_id.clone(),
        key_hash: r.key_hash.clone(),
        model: r.model.clone(),
        endpoint_id: r.endpoint_id.clone(),
        provider_id: r.provider_id.clone(),
        provider_slug: r.provider_slug.clone(),
        upstream_model: r.upstream_model.clone(),
        node_id: if r.node_id.is_empty() {
            node_id.to_owned()
        } else {
            r.node_id.clone()
        },
        config_version: as_i64(r.config_version),
        api: r.api.clone(),
        started_at: r.started_at_ms,
        finished_at: r.finished_at_ms,
        ttft_ms: r.ttft_ms.map(i64::from),
        streamed: r.streamed,
        cancelled: r.cancelled,
        estimated: r.estimated,
        finish_reason: r.finish_reason.clone(),
        native_finish_reason: r.native_finish_reason.clone(),
        http_status: i64::from(r.http_status),
        error_type: r.error_type.clone(),
        input_tokens: as_i64(dims.input_tokens),
        output_tokens: as_i64(dims.output_tokens),
        cache_read_tokens: as_i64(dims.cache_read_tokens),
        cache_write_5m_tokens: as_i64(dims.cache_write_5m_tokens),
        cache_write_1h_tokens: as_i64(dims.cache_write_1h_tokens),
        reasoning_tokens: as_i64(dims.reasoning_tokens),
        cost_nanos,
        gateway_cost_nanos: r.cost_nanos,
        upstream_id: r.upstream_id.clone(),
        ingested_at: now_ms(),
        provider_responses: attempts_json(&r.provider_responses),
    }
}

/// One provider attempt as `/generation` shows it. Serialised straight to text: building a
/// `serde_json::Value` first (a map per attempt) cost ~4 % of ingestion's CPU.
#[derive(serde::Serialize)]
struct AttemptJson<'a> {
    model: &'a str,
    endpoint_id: &'a str,
    provider: &'a str,
    status: u32,
    error_type: Option<&'a str>,
    latency_ms: u32,
}

fn attempts_json(attempts: &[pb::ProviderAttempt]) -> String {
    let list: Vec<AttemptJson<'_>> = attempts
        .iter()
        .map(|a| AttemptJson {
            model: &a.model,
            endpoint_id: &a.endpoint_id,
            provider: &a.provider_slug,
            status: a.status,
            error_type: (!a.error_type.is_empty()).then_some(a.error_type.as_str()),
            latency_ms: a.latency_ms,
        })
        .collect();
    // Serialising borrowed strings and integers cannot fail.
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_stored_as_generation_shows_them() {
        let attempts = [
            pb::ProviderAttempt {
                model: "acme/a".into(),
                endpoint_id: "ep-1".into(),
                provider_slug: "acme".into(),
                status: 429,
                error_type: "rate_limited".into(),
                latency_ms: 12,
            },
            pb::ProviderAttempt {
                model: "acme/b".into(),
                endpoint_id: "ep-2".into(),
                provider_slug: "beta".into(),
                status: 200,
                error_type: String::new(),
                latency_ms: 340,
            },
        ];
        let stored: serde_json::Value = serde_json::from_str(&attempts_json(&attempts)).unwrap();
        assert_eq!(
            stored,
            serde_json::json!([
                {"model": "acme/a", "endpoint_id": "ep-1", "provider": "acme", "status": 429,
                 "error_type": "rate_limited", "latency_ms": 12},
                {"model": "acme/b", "endpoint_id": "ep-2", "provider": "beta", "status": 200,
                 "error_type": null, "latency_ms": 340},
            ])
        );
        assert_eq!(attempts_json(&[]), "[]");
    }
}
