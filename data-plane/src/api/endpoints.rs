//! `GET /api/v1/models/{author}/{slug}/endpoints`: a model's endpoints with what this
//! gateway measured of them, in OpenRouter's shape (uptime, time-to-first-token
//! percentiles, throughput). Figures are this node's view over the last 5 minutes.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use switchyard_proto::money::nanos_per_mtok_to_per_token_usd;

use super::auth;
use crate::error::ApiError;
use crate::routing::health::Percentiles;
use crate::state::AppState;

fn percentiles(p: Option<Percentiles>) -> Value {
    p.map_or(
        Value::Null,
        |p| json!({"p50": p.p50, "p75": p.p75, "p90": p.p90, "p99": p.p99}),
    )
}

pub async fn list_endpoints(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((author, slug)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let snapshot = state.snapshot()?;
    let key = auth::authenticate(&snapshot, &headers, crate::unix_now_ms())?;
    let catalog = snapshot
        .org(&key.org_id)
        .ok_or_else(|| ApiError::Internal("key without org".into()))?;
    let id = format!("{author}/{slug}");
    let model = catalog
        .model(&id)
        .ok_or_else(|| ApiError::NotFound(format!("model `{id}` not found")))?;
    let now = Instant::now();
    let endpoints: Vec<Value> = model
        .endpoints
        .iter()
        .map(|e| {
            let stats = state.health.stats(&e.id, now);
            json!({
                "name": format!("{} | {}", e.provider.name, e.upstream_model),
                "provider_name": e.provider.slug,
                "tag": e.provider.slug,
                "model_name": model.name,
                "context_length": e.context_length,
                "max_completion_tokens": e.max_output_tokens,
                "max_prompt_tokens": e.context_length,
                "quantization": if e.quantization.is_empty() { Value::Null } else { json!(e.quantization) },
                "supported_parameters": e.supported_parameters,
                "pricing": {
                    "prompt": nanos_per_mtok_to_per_token_usd(e.prices.input),
                    "completion": nanos_per_mtok_to_per_token_usd(e.prices.output),
                    "input_cache_read": nanos_per_mtok_to_per_token_usd(e.prices.cache_read),
                    "input_cache_write": nanos_per_mtok_to_per_token_usd(e.prices.cache_write_5m),
                },
                // OpenRouter's status: 0 ok, -1 degraded (ejected here).
                "status": if stats.ejected { -1 } else { 0 },
                "uptime_last_30s": stats.uptime_last_30s,
                "uptime_last_5m": stats.uptime_last_5m,
                "uptime_last_30m": stats.uptime_last_5m,
                "latency_last_30m": percentiles(stats.ttft_ms),
                "throughput_last_30m": percentiles(stats.throughput_tps),
                "zero_data_retention": e.provider.zero_data_retention,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "data": {
            "id": model.id,
            "name": model.name,
            "created": model.created_at_ms / 1000,
            "description": model.description,
            "endpoints": endpoints,
        }
    })))
}
