//! Rates usage records with the price book. The control plane's rating is what the ledger
//! posts; the gateway computed the same figure from the same prices for the client, and
//! both are kept so a difference (a price changed in between) is visible.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use switchyard_proto::{PriceSheet, UsageDims, pb};
use uuid::Uuid;

use crate::billing::pricebook::{self, PriceVersion};
use crate::store::{Store, UsageRow, now_ms};

pub struct Rater {
    store: Arc<dyn Store>,
}

impl Rater {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub async fn rate_batch(&self, node_id: &str, records: &[pb::UsageRecord]) -> Vec<UsageRow> {
        let mut prices: HashMap<&str, Option<PriceSheet>> = HashMap::new();
        let mut books: HashMap<(&str, &str, &str), Vec<PriceVersion>> = HashMap::new();
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            if Uuid::parse_str(&r.request_id).is_err() {
                tracing::error!(node_id, request_id = %r.request_id, "dropping a usage record with a malformed request id");
                continue;
            }
            let book_key = (r.org_id.as_str(), r.model.as_str(), r.provider_id.as_str());
            if let Entry::Vacant(slot) = books.entry(book_key) {
                let versions = match self
                    .store
                    .price_versions(&r.org_id, &r.model, Some(&r.provider_id))
                    .await
                {
                    Ok(versions) => versions,
                    Err(err) => {
                        tracing::warn!(error = %err, model = %r.model, "price book lookup failed; using the catalog's prices");
                        Vec::new()
                    }
                };
                slot.insert(versions);
            }
            if !prices.contains_key(r.endpoint_id.as_str()) {
                let sheet = match self.store.endpoint_prices(&r.endpoint_id).await {
                    Ok(sheet) => sheet,
                    Err(err) => {
                        tracing::warn!(error = %err, endpoint = %r.endpoint_id, "price lookup failed; using the gateway's rating");
                        None
                    }
                };
                prices.insert(&r.endpoint_id, sheet);
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

fn attempts_json(attempts: &[pb::ProviderAttempt]) -> String {
    let list: Vec<serde_json::Value> = attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "model": a.model,
                "endpoint_id": a.endpoint_id,
                "provider": a.provider_slug,
                "status": a.status,
                "error_type": if a.error_type.is_empty() { serde_json::Value::Null } else { serde_json::json!(a.error_type) },
                "latency_ms": a.latency_ms,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}
