//! `GET /api/v1/models`: the calling org's catalog in OpenRouter's model shape.

use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use switchyard_proto::money::nanos_per_mtok_to_per_token_usd;

use super::auth;
use crate::error::ApiError;
use crate::snapshot::ModelEntry;
use crate::state::AppState;

pub async fn list_models(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let snapshot = state.snapshot()?;
    let key = auth::authenticate(&snapshot, &headers, crate::unix_now_ms())?;
    let catalog = snapshot
        .org(&key.org_id)
        .ok_or_else(|| ApiError::Internal("key without org".into()))?;
    let data: Vec<Value> = catalog.models.iter().map(|m| model_json(m)).collect();
    Ok(axum::Json(
        json!({ "data": data, "total_count": catalog.models.len() }),
    ))
}

fn model_json(m: &ModelEntry) -> Value {
    // The catalog shows the first endpoint's terms, as OpenRouter shows its top provider.
    let top = m.endpoints.first();
    let price = |f: fn(&switchyard_proto::PriceSheet) -> i64| {
        top.map_or_else(
            || "0".to_owned(),
            |e| nanos_per_mtok_to_per_token_usd(f(&e.prices)),
        )
    };
    let per_request = top.map_or(0, |e| e.prices.per_request_nanos);
    json!({
        "id": m.id,
        "canonical_slug": m.id,
        "name": m.name,
        "created": m.created_at_ms / 1000,
        "description": m.description,
        "context_length": m.context_length,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": null,
        },
        "pricing": {
            "prompt": price(|p| p.input),
            "completion": price(|p| p.output),
            "request": switchyard_proto::Money::from_nanos(per_request).to_string().replace('$', ""),
            "image": "0",
            "web_search": "0",
            "internal_reasoning": price(|p| p.reasoning.unwrap_or(p.output)),
            "input_cache_read": price(|p| p.cache_read),
            "input_cache_write": price(|p| p.cache_write_5m),
        },
        "top_provider": {
            "context_length": top.map_or(m.context_length, |e| e.context_length),
            "max_completion_tokens": top.map(|e| e.max_output_tokens),
            "is_moderated": false,
        },
        "per_request_limits": null,
        "supported_parameters": ["max_tokens", "temperature", "top_p", "stop", "seed", "stream", "tools", "tool_choice", "response_format"],
        // OpenAI SDKs read these two fields from /models.
        "object": "model",
        "owned_by": m.id.split('/').next().unwrap_or_default(),
    })
}
