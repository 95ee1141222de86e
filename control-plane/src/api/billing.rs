//! The effective-dated price book of a model: `GET/POST /api/v1/models/{author}/{slug}/prices`.
//!
//! Posting a version with an `effective_from` in the past re-rates the generations it covers:
//! each changed cost gets an adjustment posting and a row in `rating_adjustments`; the usage
//! rows keep the cost first posted.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::money::{nanos_per_mtok_to_per_token_usd, per_token_usd_to_nanos_per_mtok};
use switchyard_proto::{Money, PriceSheet};
use uuid::Uuid;

use super::audit::{Change, record as audit_record};
use super::principal::Principal;
use super::timefmt::{iso, parse_iso};
use super::{AppState, JsonBody};
use crate::billing::pricebook::{LongContext, PriceVersion, VersionIdentity};
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{NewPriceVersion, now_ms};

/// OpenRouter's `pricing` object: USD per token as decimal strings, `request` USD per call.
#[derive(Deserialize, Default)]
pub struct Pricing {
    prompt: Option<String>,
    completion: Option<String>,
    input_cache_read: Option<String>,
    input_cache_write: Option<String>,
    input_cache_write_1h: Option<String>,
    internal_reasoning: Option<String>,
    request: Option<String>,
}

#[derive(Deserialize)]
pub struct LongContextBody {
    /// Prompts of more than this many input tokens are priced with `pricing`.
    threshold: i64,
    pricing: Pricing,
}

#[derive(Deserialize)]
pub struct AddPrice {
    /// Provider id or slug; optional when the model has endpoints at one provider only.
    provider: Option<String>,
    /// RFC 3339; defaults to now.
    effective_from: Option<String>,
    /// RFC 3339; the prices in effect before resume here (a corrected window).
    effective_to: Option<String>,
    #[serde(default)]
    pricing: Pricing,
    long_context: Option<LongContextBody>,
    #[serde(default)]
    note: String,
}

fn per_token(prefix: &str, field: &str, value: Option<&String>) -> Result<i64, ApiError> {
    value.map_or(Ok(0), |v| {
        per_token_usd_to_nanos_per_mtok(v).map_err(|e| {
            ApiError::BadRequest(format!(
                "`{prefix}{field}` (USD per token, e.g. \"0.00000015\"): {e}"
            ))
        })
    })
}

pub(crate) fn sheet(prefix: &str, p: &Pricing) -> Result<PriceSheet, ApiError> {
    let per_request_nanos = match &p.request {
        None => 0,
        Some(v) => Money::parse_usd(v)
            .map_err(|e| ApiError::BadRequest(format!("`{prefix}request` (USD per request): {e}")))?
            .nanos(),
    };
    if per_request_nanos < 0 {
        return Err(ApiError::BadRequest(format!(
            "`{prefix}request` must not be negative"
        )));
    }
    Ok(PriceSheet {
        input: per_token(prefix, "prompt", p.prompt.as_ref())?,
        output: per_token(prefix, "completion", p.completion.as_ref())?,
        cache_read: per_token(prefix, "input_cache_read", p.input_cache_read.as_ref())?,
        cache_write_5m: per_token(prefix, "input_cache_write", p.input_cache_write.as_ref())?,
        cache_write_1h: per_token(
            prefix,
            "input_cache_write_1h",
            p.input_cache_write_1h.as_ref(),
        )?,
        reasoning: p
            .internal_reasoning
            .as_ref()
            .map(|v| per_token(prefix, "internal_reasoning", Some(v)))
            .transpose()?,
        per_request_nanos,
    })
}

pub(crate) fn pricing_json(p: &PriceSheet) -> Value {
    json!({
        "prompt": nanos_per_mtok_to_per_token_usd(p.input),
        "completion": nanos_per_mtok_to_per_token_usd(p.output),
        "input_cache_read": nanos_per_mtok_to_per_token_usd(p.cache_read),
        "input_cache_write": nanos_per_mtok_to_per_token_usd(p.cache_write_5m),
        "input_cache_write_1h": nanos_per_mtok_to_per_token_usd(p.cache_write_1h),
        "internal_reasoning": p.reasoning.map(nanos_per_mtok_to_per_token_usd),
        "request": Money::from_nanos(p.per_request_nanos).to_string().replace('$', ""),
    })
}

fn version_json(v: &PriceVersion) -> Value {
    json!({
        "id": v.id,
        "provider_id": v.provider_id,
        "effective_from": iso(v.effective_from),
        "pricing": pricing_json(&v.base()),
        "long_context": v.long_context().map(|lc| json!({
            "threshold": lc.threshold,
            "pricing": pricing_json(&lc.prices),
        })),
        "note": v.note,
        "created_by": v.created_by,
        "created_at": iso(v.created_at),
    })
}

pub async fn list_prices(
    State(state): State<AppState>,
    principal: Principal,
    Path((author, slug)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ModelsRead)?;
    let id = format!("{author}/{slug}");
    state.store.get_model(principal.org_id(), &id).await?;
    let versions = state
        .store
        .price_versions(principal.org_id(), &id, None)
        .await?;
    Ok(Json(
        json!({ "data": versions.iter().map(version_json).collect::<Vec<_>>() }),
    ))
}

pub async fn add_price(
    State(state): State<AppState>,
    principal: Principal,
    Path((author, slug)): Path<(String, String)>,
    JsonBody(body): JsonBody<AddPrice>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Permission::ModelsWrite)?;
    let org = principal.org_id().to_owned();
    let model_id = format!("{author}/{slug}");
    let model = state.store.get_model(&org, &model_id).await?;
    let provider_id = match &body.provider {
        Some(p) => {
            state
                .store
                .get_provider(&org, p)
                .await
                .map_err(|_| {
                    ApiError::BadRequest(format!("`provider` `{p}` is not a provider of this org"))
                })?
                .id
        }
        None => {
            let mut ids: Vec<&str> = model
                .endpoints
                .iter()
                .map(|e| e.provider_id.as_str())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            match ids.as_slice() {
                [one] => (*one).to_owned(),
                _ => {
                    return Err(ApiError::BadRequest(
                        "`provider` is required: the model has endpoints at several providers (or none)".into(),
                    ));
                }
            }
        }
    };
    if !model.endpoints.iter().any(|e| e.provider_id == provider_id) {
        return Err(ApiError::BadRequest(format!(
            "model {model_id} has no endpoint at provider `{provider_id}`"
        )));
    }
    let now = now_ms();
    let effective_from = match &body.effective_from {
        Some(t) => parse_iso("effective_from", t)?,
        None => now,
    };
    let effective_to = body
        .effective_to
        .as_deref()
        .map(|t| parse_iso("effective_to", t))
        .transpose()?;
    if effective_from < 0 {
        return Err(ApiError::BadRequest(
            "`effective_from` must not be before 1970".into(),
        ));
    }
    if effective_to.is_some_and(|to| to <= effective_from) {
        return Err(ApiError::BadRequest(
            "`effective_to` must be after `effective_from`".into(),
        ));
    }
    let base = sheet("pricing.", &body.pricing)?;
    let long_context = match &body.long_context {
        None => None,
        Some(lc) if lc.threshold <= 0 => {
            return Err(ApiError::BadRequest(
                "`long_context.threshold` must be a positive number of prompt tokens".into(),
            ));
        }
        Some(lc) => Some(LongContext {
            threshold: lc.threshold,
            prices: sheet("long_context.pricing.", &lc.pricing)?,
        }),
    };
    if body.note.chars().count() > 500 {
        return Err(ApiError::BadRequest(
            "`note` is at most 500 characters".into(),
        ));
    }
    let (actor_type, actor_id) = principal.audit_actor();
    let version = PriceVersion::new(
        VersionIdentity {
            id: Uuid::now_v7().to_string(),
            org_id: org.clone(),
            model_id: model_id.clone(),
            provider_id,
            effective_from,
            note: body.note,
            created_by: format!("{actor_type}:{actor_id}"),
            created_at: now,
        },
        &base,
        long_context.as_ref(),
    );
    let outcome = state
        .store
        .add_price_version(&NewPriceVersion {
            version: version.clone(),
            effective_to,
            now,
        })
        .await?;
    let data = json!({
        "version": version_json(&version),
        "effective_to": effective_to.map(iso),
        "rerated": {
            "requests": outcome.requests,
            "adjusted": outcome.adjusted,
            "delta": Money::from_nanos(outcome.delta_nanos).as_usd_f64(),
            "delta_nanos": outcome.delta_nanos,
        },
        "catalog_updated": outcome.catalog_updated,
    });
    audit_record(
        &state,
        &principal,
        Change {
            action: "model.price_version",
            target_type: "model",
            target_id: &model_id,
            before: None,
            after: Some(&data),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": data }))))
}
