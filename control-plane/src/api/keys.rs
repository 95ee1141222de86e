//! OpenRouter-compatible key management: `GET/POST /api/v1/keys`,
//! `GET/PATCH/DELETE /api/v1/keys/{hash}` and `GET /api/v1/key`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::{ApiKeySecret, Money};

use super::principal::Principal;
use super::timefmt::{iso, parse_iso, window_starts};
use super::{AppState, JsonBody, double_option};
use crate::error::ApiError;
use crate::store::{KeyKind, KeyPatch, KeyRecord, NewKey, now_ms};

const LIMIT_RESETS: &[&str] = &["daily", "weekly", "monthly"];

#[derive(Deserialize)]
pub struct CreateKey {
    name: Option<String>,
    limit: Option<f64>,
    limit_reset: Option<String>,
    #[serde(default)]
    include_byok_in_limit: bool,
    expires_at: Option<String>,
    /// Switchyard extension: `inference` (default) or `management`.
    kind: Option<String>,
}

#[derive(Deserialize)]
pub struct UpdateKey {
    name: Option<String>,
    disabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    limit: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    limit_reset: Option<Option<String>>,
    include_byok_in_limit: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    expires_at: Option<Option<String>>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    include_disabled: bool,
}

fn limit_nanos(limit: Option<f64>) -> Result<Option<i64>, ApiError> {
    limit
        .map(|usd| {
            if usd < 0.0 {
                return Err(ApiError::BadRequest("`limit` must not be negative".into()));
            }
            Money::from_usd_f64(usd)
                .map(Money::nanos)
                .map_err(|e| ApiError::BadRequest(format!("`limit`: {e}")))
        })
        .transpose()
}

fn limit_reset(reset: Option<String>) -> Result<Option<String>, ApiError> {
    match reset {
        None => Ok(None),
        Some(r) if LIMIT_RESETS.contains(&r.as_str()) => Ok(Some(r)),
        Some(r) => Err(ApiError::BadRequest(format!(
            "`limit_reset` must be one of daily, weekly, monthly or null, not `{r}`"
        ))),
    }
}

fn label(secret: &str) -> String {
    let tail = &secret[secret.len().saturating_sub(4)..];
    format!("sk-sy-v1-...{tail}")
}

async fn key_json(state: &AppState, key: &KeyRecord) -> Result<Value, ApiError> {
    let [day, week, month] = window_starts(now_ms());
    let spend = state
        .store
        .key_spend_since(&key.org_id, &key.hash, &[0, day, week, month])
        .await?;
    let usd = |nanos: i64| Money::from_nanos(nanos).as_usd_f64();
    let window_spend = match key.limit_reset.as_deref() {
        Some("daily") => spend[1],
        Some("weekly") => spend[2],
        Some("monthly") => spend[3],
        _ => spend[0],
    };
    let limit_remaining = key.limit_nanos.map(|l| usd((l - window_spend).max(0)));
    Ok(json!({
        "hash": key.hash,
        "name": key.name,
        "label": key.label,
        "kind": key.kind,
        "disabled": key.disabled,
        "limit": key.limit_nanos.map(usd),
        "limit_remaining": limit_remaining,
        "limit_reset": key.limit_reset,
        "include_byok_in_limit": key.include_byok_in_limit,
        "usage": usd(spend[0]),
        "usage_daily": usd(spend[1]),
        "usage_weekly": usd(spend[2]),
        "usage_monthly": usd(spend[3]),
        "byok_usage": 0.0,
        "byok_usage_daily": 0.0,
        "byok_usage_weekly": 0.0,
        "byok_usage_monthly": 0.0,
        "created_at": iso(key.created_at),
        "updated_at": iso(key.updated_at),
        "expires_at": key.expires_at.map(iso),
    }))
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_management()?;
    let name = body
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("`name` is required".into()))?;
    if name.len() > 200 {
        return Err(ApiError::BadRequest(
            "`name` is longer than 200 characters".into(),
        ));
    }
    let kind = match body.kind.as_deref() {
        None => KeyKind::Inference,
        Some(k) => KeyKind::parse(k).ok_or_else(|| {
            ApiError::BadRequest(format!("`kind` must be inference or management, not `{k}`"))
        })?,
    };
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|t| parse_iso("expires_at", t))
        .transpose()?;
    if expires_at.is_some_and(|t| t <= now_ms()) {
        return Err(ApiError::BadRequest(
            "`expires_at` must be in the future".into(),
        ));
    }
    let secret = ApiKeySecret::generate();
    let key = state
        .store
        .create_key(&NewKey {
            hash: secret.hash().into_string(),
            org_id: principal.org_id().to_owned(),
            name,
            label: label(secret.expose()),
            kind,
            limit_nanos: limit_nanos(body.limit)?,
            limit_reset: limit_reset(body.limit_reset)?,
            include_byok_in_limit: body.include_byok_in_limit,
            expires_at,
        })
        .await?;
    tracing::info!(org_id = %key.org_id, key_hash = %key.hash, kind = %key.kind, "API key created");
    let data = key_json(&state, &key).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "data": data, "key": secret.expose() })),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require_management()?;
    if q.offset < 0 {
        return Err(ApiError::BadRequest("`offset` must not be negative".into()));
    }
    let keys = state
        .store
        .list_keys(principal.org_id(), q.offset, 100, q.include_disabled)
        .await?;
    let mut data = Vec::with_capacity(keys.len());
    for key in &keys {
        data.push(key_json(&state, key).await?);
    }
    Ok(Json(json!({ "data": data })))
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_management()?;
    let key = state.store.get_key(principal.org_id(), &hash).await?;
    Ok(Json(json!({ "data": key_json(&state, &key).await? })))
}

pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
    JsonBody(body): JsonBody<UpdateKey>,
) -> Result<Json<Value>, ApiError> {
    principal.require_management()?;
    if let Some(name) = &body.name
        && name.trim().is_empty()
    {
        return Err(ApiError::BadRequest("`name` must not be empty".into()));
    }
    let patch = KeyPatch {
        name: body.name.map(|n| n.trim().to_owned()),
        disabled: body.disabled,
        limit_nanos: body.limit.map(limit_nanos).transpose()?,
        limit_reset: body.limit_reset.map(limit_reset).transpose()?,
        include_byok_in_limit: body.include_byok_in_limit,
        expires_at: body
            .expires_at
            .map(|e| e.as_deref().map(|t| parse_iso("expires_at", t)).transpose())
            .transpose()?,
    };
    let key = state
        .store
        .update_key(principal.org_id(), &hash, &patch)
        .await?;
    Ok(Json(json!({ "data": key_json(&state, &key).await? })))
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_management()?;
    if hash == principal.key.hash {
        return Err(ApiError::BadRequest("a key cannot delete itself".into()));
    }
    state.store.delete_key(principal.org_id(), &hash).await?;
    Ok(Json(json!({ "deleted": true })))
}

/// `GET /api/v1/key`: the calling key, inference or management.
pub async fn current(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let mut data = key_json(&state, &principal.key).await?;
    data["is_free_tier"] = json!(false);
    data["is_management_key"] = json!(principal.kind == KeyKind::Management);
    Ok(Json(json!({ "data": data })))
}
