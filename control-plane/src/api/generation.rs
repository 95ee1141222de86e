//! `GET /api/v1/generation?id=gen-…`: one generation's metadata and cost, readable with the
//! key that made it, or by any principal of the same org holding `usage.read`. A lookup that races the usage
//! pipeline waits briefly for the record instead of answering 404.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::{GenerationId, Money};

use super::AppState;
use super::principal::Principal;
use super::timefmt::iso;
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::UsageRow;

const WAIT_FOR_RECORD: Duration = Duration::from_secs(3);

#[derive(Deserialize)]
pub struct GenerationQuery {
    id: Option<String>,
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<GenerationQuery>,
) -> Result<Json<Value>, ApiError> {
    let text =
        q.id.ok_or_else(|| ApiError::BadRequest("query parameter `id` is required".into()))?;
    let id: GenerationId = text.parse().map_err(|_| {
        ApiError::BadRequest(format!("`{text}` is not a generation id (gen-<uuid>)"))
    })?;
    let request_id = id.uuid().to_string();
    let deadline = tokio::time::Instant::now() + WAIT_FOR_RECORD;
    let row = loop {
        let ingested = state.ingested.notified();
        tokio::pin!(ingested);
        ingested.as_mut().enable();
        if let Some(row) = state
            .store
            .get_usage(principal.org_id(), &request_id)
            .await?
        {
            break row;
        }
        if tokio::time::timeout_at(deadline, ingested).await.is_err() {
            return Err(ApiError::NotFound(format!("generation {id} not found")));
        }
    };
    // An inference key reads only its own generations; everyone else needs `usage.read`.
    let own = principal.key().is_some_and(|k| k.hash == row.key_hash);
    if principal.is_inference_key() && !own {
        return Err(ApiError::NotFound(format!("generation {id} not found")));
    }
    if !principal.is_inference_key() {
        principal.require(Permission::UsageRead)?;
    }
    let fee = state.store.fee_of(principal.org_id(), &request_id).await?;
    Ok(Json(json!({ "data": generation_json(&id, &row, fee) })))
}

fn generation_json(id: &GenerationId, r: &UsageRow, fee_nanos: i64) -> Value {
    let provider_cost = Money::from_nanos(r.cost_nanos).as_usd_f64();
    // The org's platform fee is a separate ledger posting; the total is what the ledger took.
    let cost = Money::from_nanos(r.cost_nanos.saturating_add(fee_nanos)).as_usd_f64();
    json!({
        "id": id.to_string(),
        "upstream_id": r.upstream_id,
        "total_cost": cost,
        "usage": cost,
        "cache_discount": null,
        "cost_details": {
            "provider_cost": provider_cost,
            "platform_fee": Money::from_nanos(fee_nanos).as_usd_f64(),
            "provider_cost_nanos": r.cost_nanos,
            "platform_fee_nanos": fee_nanos,
        },
        "upstream_inference_cost": null,
        "created_at": iso(r.started_at),
        "model": r.model,
        "provider_name": r.provider_slug,
        "api_type": r.api,
        "app_id": null,
        "origin": "",
        "is_byok": false,
        "streamed": r.streamed,
        "cancelled": r.cancelled,
        "latency": r.finished_at - r.started_at,
        "time_to_first_token": r.ttft_ms,
        "generation_time": r.finished_at - r.started_at,
        "moderation_latency": null,
        "finish_reason": r.finish_reason,
        "native_finish_reason": r.native_finish_reason,
        "tokens_prompt": r.input_tokens,
        "tokens_completion": r.output_tokens,
        "native_tokens_prompt": r.input_tokens,
        "native_tokens_completion": r.output_tokens,
        "native_tokens_reasoning": r.reasoning_tokens,
        "native_tokens_cached": r.cache_read_tokens,
        "native_tokens_cache_write": r.cache_write_5m_tokens + r.cache_write_1h_tokens,
        "num_media_prompt": null,
        "num_search_results": null,
        "usage_estimated": r.estimated,
        "http_status": r.http_status,
        "error_type": if r.error_type.is_empty() { Value::Null } else { json!(r.error_type) },
        "gateway_node": r.node_id,
        "provider_responses": serde_json::from_str::<Value>(&r.provider_responses).unwrap_or_else(|_| json!([])),
    })
}
