//! OpenRouter-compatible key management: `GET/POST /api/v1/keys`,
//! `GET/PATCH/DELETE /api/v1/keys/{hash}` and `GET /api/v1/key`, plus Switchyard's
//! `POST /api/v1/keys/{hash}/rotate` and per-key ownership (a user or a team) and model /
//! provider allowlists (`allowed_models`, `allowed_providers`; empty = unrestricted).
//!
//! `keys.write` manages every key of the org; `keys.write_own` (developers) creates inference
//! keys owned by the caller and manages only those.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::{ApiKeySecret, Money};

use super::audit::{Change, record};
use super::principal::Principal;
use super::timefmt::{iso, parse_iso, window_starts};
use super::{AppState, JsonBody, double_option};
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{KeyKind, KeyPatch, KeyPolicy, KeyRecord, NewKey, StoreError, now_ms};

/// Default and longest grace period during which a rotated key keeps working.
const DEFAULT_GRACE_SECS: i64 = 24 * 3600;
const MAX_GRACE_SECS: i64 = 30 * 24 * 3600;
const MAX_ALLOWLIST: usize = 1_000;

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
    owner_user_id: Option<String>,
    owner_team_id: Option<String>,
    #[serde(default)]
    allowed_models: Vec<String>,
    #[serde(default)]
    allowed_providers: Vec<String>,
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
    #[serde(default, deserialize_with = "double_option")]
    owner_user_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    owner_team_id: Option<Option<String>>,
    allowed_models: Option<Vec<String>>,
    allowed_providers: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
pub struct RotateKey {
    /// How long the old key keeps working, in seconds (default one day, at most 30 days).
    grace_period_seconds: Option<i64>,
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
    let policy = state.store.get_key_policy(&key.org_id, &key.hash).await?;
    key_json_with(state, key, &policy).await
}

async fn key_json_with(
    state: &AppState,
    key: &KeyRecord,
    policy: &KeyPolicy,
) -> Result<Value, ApiError> {
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
        "owner_user_id": policy.owner_user_id,
        "owner_team_id": policy.owner_team_id,
        "allowed_models": policy.allowed_models,
        "allowed_providers": policy.allowed_providers,
        "rotated_from": policy.rotated_from,
    }))
}

fn clean_list(field: &str, list: Vec<String>) -> Result<Vec<String>, ApiError> {
    if list.len() > MAX_ALLOWLIST {
        return Err(ApiError::BadRequest(format!(
            "`{field}` has more than {MAX_ALLOWLIST} entries"
        )));
    }
    let mut out: Vec<String> = list.into_iter().map(|s| s.trim().to_owned()).collect();
    if out.iter().any(|s| s.is_empty() || s.len() > 200) {
        return Err(ApiError::BadRequest(format!(
            "`{field}` entries must be 1 to 200 characters"
        )));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Owners must belong to the key's org: a user who is a member, or one of its teams.
async fn check_owner(
    state: &AppState,
    org_id: &str,
    user: Option<&str>,
    team: Option<&str>,
) -> Result<(), ApiError> {
    if user.is_some() && team.is_some() {
        return Err(ApiError::BadRequest(
            "a key is owned by a user or by a team, not both".into(),
        ));
    }
    if let Some(user) = user {
        state
            .store
            .get_member(org_id, user)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => {
                    ApiError::BadRequest(format!("`owner_user_id`: no member {user} in this org"))
                }
                other => other.into(),
            })?;
    }
    if let Some(team) = team {
        state
            .store
            .get_team(org_id, team)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => {
                    ApiError::BadRequest(format!("`owner_team_id`: no team {team} in this org"))
                }
                other => other.into(),
            })?;
    }
    Ok(())
}

/// `keys.write`, or `keys.write_own` on a key the caller owns. Other keys answer 404 to
/// holders of `keys.write_own` only if they could not read them anyway; they can, so 403.
fn require_key_write(principal: &Principal, policy: &KeyPolicy) -> Result<(), ApiError> {
    if principal.can(Permission::KeysWrite) {
        return Ok(());
    }
    if principal.can(Permission::KeysWriteOwn)
        && principal.user_id().is_some()
        && policy.owner_user_id.as_deref() == principal.user_id()
    {
        return Ok(());
    }
    principal.require(Permission::KeysWrite)
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let full = principal.can(Permission::KeysWrite);
    if !full {
        principal.require(Permission::KeysWriteOwn)?;
    }
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
    let (owner_user_id, owner_team_id) = if full {
        (body.owner_user_id, body.owner_team_id)
    } else {
        // Developers mint inference keys for themselves only.
        if kind != KeyKind::Inference || body.owner_team_id.is_some() {
            return Err(ApiError::Forbidden(
                "your role may create only inference keys owned by yourself".into(),
            ));
        }
        if body
            .owner_user_id
            .as_deref()
            .is_some_and(|u| Some(u) != principal.user_id())
        {
            return Err(ApiError::Forbidden(
                "your role may create keys owned by yourself only".into(),
            ));
        }
        (principal.user_id().map(str::to_owned), None)
    };
    check_owner(
        &state,
        principal.org_id(),
        owner_user_id.as_deref(),
        owner_team_id.as_deref(),
    )
    .await?;
    let (mut limit, mut reset) = (limit_nanos(body.limit)?, limit_reset(body.limit_reset)?);
    // The org's default daily cap applies to inference keys created without a limit.
    if limit.is_none() && kind == KeyKind::Inference {
        let settings = state.store.get_budget_settings(principal.org_id()).await?;
        if let Some(cap) = settings.default_key_daily_cap {
            (limit, reset) = (Some(cap), Some("daily".to_owned()));
        }
    }
    let secret = ApiKeySecret::generate();
    let new_key = NewKey {
        hash: secret.hash().into_string(),
        org_id: principal.org_id().to_owned(),
        name,
        label: label(secret.expose()),
        kind,
        limit_nanos: limit,
        limit_reset: reset,
        include_byok_in_limit: body.include_byok_in_limit,
        expires_at,
    };
    let policy = KeyPolicy {
        hash: new_key.hash.clone(),
        owner_user_id,
        owner_team_id,
        allowed_models: clean_list("allowed_models", body.allowed_models)?,
        allowed_providers: clean_list("allowed_providers", body.allowed_providers)?,
        rotated_from: None,
    };
    state
        .store
        .create_key_with_policy(&new_key, &policy)
        .await?;
    let key = state.store.get_key(&new_key.org_id, &new_key.hash).await?;
    tracing::info!(org_id = %key.org_id, key_hash = %key.hash, kind = %key.kind, "API key created");
    let data = key_json_with(&state, &key, &policy).await?;
    record(
        &state,
        &principal,
        Change {
            action: "key.create",
            target_type: "key",
            target_id: &key.hash,
            before: None,
            after: Some(&data),
        },
    )
    .await?;
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
    principal.require(Permission::KeysRead)?;
    if q.offset < 0 {
        return Err(ApiError::BadRequest("`offset` must not be negative".into()));
    }
    let keys = state
        .store
        .list_keys(principal.org_id(), q.offset, 100, q.include_disabled)
        .await?;
    let policies = state.store.list_key_policies(principal.org_id()).await?;
    let mut data = Vec::with_capacity(keys.len());
    for key in &keys {
        let policy = policies
            .iter()
            .find(|p| p.hash == key.hash)
            .cloned()
            .unwrap_or_default();
        data.push(key_json_with(&state, key, &policy).await?);
    }
    Ok(Json(json!({ "data": data })))
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::KeysRead)?;
    let key = state.store.get_key(principal.org_id(), &hash).await?;
    Ok(Json(json!({ "data": key_json(&state, &key).await? })))
}

pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
    JsonBody(body): JsonBody<UpdateKey>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::KeysRead)?;
    let current = state.store.get_key(principal.org_id(), &hash).await?;
    let policy = state
        .store
        .get_key_policy(principal.org_id(), &hash)
        .await?;
    require_key_write(&principal, &policy)?;
    let before = key_json_with(&state, &current, &policy).await?;
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
    let owner_change = body.owner_user_id.is_some() || body.owner_team_id.is_some();
    if owner_change {
        principal.require(Permission::KeysWrite)?;
    }
    let mut new_policy = policy.clone();
    if let Some(user) = body.owner_user_id {
        new_policy.owner_user_id = user;
    }
    if let Some(team) = body.owner_team_id {
        new_policy.owner_team_id = team;
    }
    if let Some(models) = body.allowed_models {
        new_policy.allowed_models = clean_list("allowed_models", models)?;
    }
    if let Some(providers) = body.allowed_providers {
        new_policy.allowed_providers = clean_list("allowed_providers", providers)?;
    }
    if owner_change {
        check_owner(
            &state,
            principal.org_id(),
            new_policy.owner_user_id.as_deref(),
            new_policy.owner_team_id.as_deref(),
        )
        .await?;
    }
    let key = state
        .store
        .update_key(principal.org_id(), &hash, &patch)
        .await?;
    if new_policy != policy {
        state
            .store
            .set_key_policy(principal.org_id(), &new_policy)
            .await?;
    }
    let after = key_json_with(&state, &key, &new_policy).await?;
    record(
        &state,
        &principal,
        Change {
            action: "key.update",
            target_type: "key",
            target_id: &hash,
            before: Some(&before),
            after: Some(&after),
        },
    )
    .await?;
    Ok(Json(json!({ "data": after })))
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::KeysRead)?;
    if principal.key().is_some_and(|k| k.hash == hash) {
        return Err(ApiError::BadRequest("a key cannot delete itself".into()));
    }
    let current = state.store.get_key(principal.org_id(), &hash).await?;
    let policy = state
        .store
        .get_key_policy(principal.org_id(), &hash)
        .await?;
    require_key_write(&principal, &policy)?;
    let before = key_json_with(&state, &current, &policy).await?;
    state.store.delete_key(principal.org_id(), &hash).await?;
    record(
        &state,
        &principal,
        Change {
            action: "key.delete",
            target_type: "key",
            target_id: &hash,
            before: Some(&before),
            after: None,
        },
    )
    .await?;
    Ok(Json(json!({ "deleted": true })))
}

/// `GET /api/v1/key`: the calling key, inference or management.
pub async fn current(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let key = principal.key().ok_or_else(|| {
        ApiError::BadRequest(
            "`/key` describes the calling API key; console sessions use /auth/me".into(),
        )
    })?;
    let mut data = key_json(&state, key).await?;
    data["is_free_tier"] = json!(false);
    data["is_management_key"] = json!(key.kind() == Some(KeyKind::Management));
    Ok(Json(json!({ "data": data })))
}

/// `POST /api/v1/keys/{hash}/rotate`: a new secret with the same settings, owner and
/// allowlists; the old key keeps working until the grace period ends, then expires (the
/// gateways stop accepting it from its `expires_at`, without any further action).
pub async fn rotate(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Permission::KeysRead)?;
    // The body is optional: an empty one means the default grace period.
    let body: RotateKey = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKey::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("request body is not valid: {e}")))?
    };
    let grace = body.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECS);
    if !(0..=MAX_GRACE_SECS).contains(&grace) {
        return Err(ApiError::BadRequest(format!(
            "`grace_period_seconds` must be between 0 and {MAX_GRACE_SECS}"
        )));
    }
    let old = state.store.get_key(principal.org_id(), &hash).await?;
    let policy = state
        .store
        .get_key_policy(principal.org_id(), &hash)
        .await?;
    require_key_write(&principal, &policy)?;
    let before = key_json_with(&state, &old, &policy).await?;
    let kind = old
        .kind()
        .ok_or_else(|| ApiError::Internal(format!("key {hash} has an unknown kind")))?;
    let secret = ApiKeySecret::generate();
    let new_key = NewKey {
        hash: secret.hash().into_string(),
        org_id: old.org_id.clone(),
        name: old.name.clone(),
        label: label(secret.expose()),
        kind,
        limit_nanos: old.limit_nanos,
        limit_reset: old.limit_reset.clone(),
        include_byok_in_limit: old.include_byok_in_limit,
        expires_at: old.expires_at,
    };
    let old_expires_at = now_ms() + grace * 1000;
    state
        .store
        .rotate_key(principal.org_id(), &hash, &new_key, old_expires_at)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(what) => ApiError::Conflict(what),
            other => other.into(),
        })?;
    let new = state
        .store
        .get_key(principal.org_id(), &new_key.hash)
        .await?;
    let old = state.store.get_key(principal.org_id(), &hash).await?;
    let data = key_json(&state, &new).await?;
    let old_json = key_json_with(&state, &old, &policy).await?;
    record(
        &state,
        &principal,
        Change {
            action: "key.rotate",
            target_type: "key",
            target_id: &hash,
            before: Some(&before),
            after: Some(&json!({ "old": old_json, "new": data })),
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "data": data,
            "key": secret.expose(),
            "old_key": { "hash": old.hash, "expires_at": old.expires_at.map(iso) },
        })),
    ))
}
