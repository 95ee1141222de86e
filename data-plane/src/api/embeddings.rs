//! `POST /api/v1/embeddings`: authenticate, resolve the model, try the endpoints whose
//! providers have an embeddings API (OpenAI-format and Gemini), and answer in OpenAI's
//! embeddings shape with Switchyard's id, the cost, and exactly one usage record.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchyard_proto::{GenerationId, UsageDims};
use tracing::Instrument as _;

use super::auth;
use super::usage_record::{Metering, Outcome};
use crate::error::ApiError;
use crate::providers::{EmbeddingsRequest, is_retryable};
use crate::state::AppState;
use crate::telemetry::otel;

pub async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // One GenAI span per generation, as chat has; the meter records the usage on it.
    let span = otel::generation_span("embeddings");
    match serve(&state, &headers, &body).instrument(span).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn serve(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let started = Instant::now();
    let snapshot = state.snapshot()?;
    let key = auth::inference_key(&snapshot, headers, crate::unix_now_ms())?;
    // Nothing is served that could not be billed: refused while the spool is at its cap.
    state.meter.admit()?;
    let request = EmbeddingsRequest::parse(body)?;
    otel::record_request("embeddings", &request.model, false);
    let tags = std::sync::Arc::new(super::usage_tags::collect(headers, &request.extra)?);
    let catalog = snapshot
        .org(&key.org_id)
        .ok_or_else(|| ApiError::Internal("key without org".into()))?;
    let model = catalog
        .model(&request.model)
        .cloned()
        .ok_or_else(|| ApiError::ModelNotFound {
            model: request.model.clone(),
        })?;
    // Budget admission: the input's estimated cost at the dearest endpoint (no output);
    // the usage record settles the real cost, and an unanswered request frees it.
    let estimate = crate::budget::estimate_cost(
        model.endpoints.iter().map(|e| &e.prices),
        super::usage_json::estimate_tokens(request.input_chars()),
        0,
    );
    let reservation =
        crate::budget::admit_estimate(state, &key, &catalog.budgets, &tags.tags, estimate).await?;
    let generation = GenerationId::new();
    let _budget_hold = crate::budget::HoldGuard::hold(&state.budgets, generation, reservation);
    let mut last_error = None;
    let endpoints = &model.endpoints;
    for (n, endpoint) in endpoints.iter().enumerate() {
        let Some(result) = state.upstream.embed(&request, endpoint).await else {
            continue;
        };
        let meter = Metering {
            state: state.clone(),
            generation,
            key: key.clone(),
            model: model.clone(),
            endpoint: endpoint.clone(),
            config_version: snapshot.version,
            started,
            started_at_ms: crate::unix_now_ms(),
            streamed: false,
            prompt_chars: request.input_chars(),
            api: "embeddings",
            permit: None,
            earlier_attempts: Vec::new(),
            capacity_slot: None,
            tags: tags.clone(),
            cache: crate::cache::UsageMarks::default(),
        };
        match result {
            Ok(value) => return Ok(respond(value, &meter)),
            Err(err) => {
                let retry = matches!(&err, ApiError::Upstream(f) if is_retryable(f))
                    && n + 1 < endpoints.len();
                tracing::warn!(generation = %generation, provider = %endpoint.provider.slug, error = %err, retry, "embeddings attempt failed");
                if !retry {
                    if matches!(err, ApiError::Upstream(_)) {
                        meter.record_failure(&err);
                    }
                    return Err(err);
                }
                last_error = Some(err);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| ApiError::NoEndpoints {
        model: model.id.clone(),
        reason: "none of its providers serves embeddings".into(),
    }))
}

fn respond(mut value: Value, meter: &Metering) -> Response {
    let reported = value
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .map(|input| UsageDims {
            input_tokens: input,
            ..UsageDims::default()
        });
    let estimated = reported.is_none();
    let dims = reported.unwrap_or_else(|| meter.estimate(0));
    let charge = meter.charge(&dims);
    value["id"] = json!(meter.generation.to_string());
    value["model"] = json!(meter.model.id);
    value["provider"] = json!(meter.endpoint.provider.name);
    value["usage"] = json!({
        "prompt_tokens": dims.input_tokens,
        "total_tokens": dims.input_tokens,
        "cost": charge.total().as_usd_f64(),
        "cost_details": {
            "provider_cost": charge.provider.as_usd_f64(),
            "platform_fee": charge.fee.as_usd_f64(),
            "provider_cost_nanos": charge.provider.nanos(),
            "platform_fee_nanos": charge.fee.nanos(),
        },
    });
    meter.record(Outcome {
        dims,
        estimated,
        cancelled: false,
        finish_reason: "stop".into(),
        native_finish_reason: String::new(),
        http_status: 200,
        error_type: String::new(),
        ttft: Some(meter.started.elapsed()),
        upstream_id: String::new(),
    });
    let mut response = axum::Json(value).into_response();
    response
        .headers_mut()
        .insert("x-generation-id", meter.generation_header());
    response
}
