//! Budgets: `GET/POST /api/v1/budgets`, `GET/PATCH/DELETE /api/v1/budgets/{id}`, and the
//! org's budget settings at `GET/PUT /api/v1/budget-settings` (alert webhook, default daily
//! cap of new keys, lease policy for gateways).
//!
//! Reading needs `billing.read`, changing `billing.write`; a management key may do both, as
//! it may move credits. Every change is audit-logged. Spend is summed from the ledger for
//! the budget's current window, never kept as a counter.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::Money;
use uuid::Uuid;

use super::audit::{Change, record};
use super::principal::{Actor, Principal};
use super::timefmt::iso;
use super::{AppState, JsonBody, double_option};
use crate::budgets::{self, Window, alerts::THRESHOLDS};
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{BudgetRow, BudgetSettingsRow, KeyKind, StoreError, now_ms};

const MAX_NAME: usize = 200;
const MAX_TAG_PART: usize = 64;
const MAX_OUTPUT_ESTIMATE: u32 = 1_000_000;
const MAX_MODEL_ESTIMATES: usize = 500;

fn usd(nanos: i64) -> f64 {
    Money::from_nanos(nanos).as_usd_f64()
}

fn is_management_key(principal: &Principal) -> bool {
    matches!(
        principal.actor,
        Actor::Key {
            kind: KeyKind::Management,
            ..
        }
    )
}

fn require_read(principal: &Principal) -> Result<(), ApiError> {
    if is_management_key(principal) {
        return Ok(());
    }
    principal.require(Permission::BillingRead)
}

fn require_write(principal: &Principal) -> Result<(), ApiError> {
    if is_management_key(principal) {
        return Ok(());
    }
    principal.require(Permission::BillingWrite)
}

/// A non-negative USD amount in nano-USD; `field` names it in the error.
fn usd_nanos(field: &str, usd: f64) -> Result<i64, ApiError> {
    if usd.is_nan() || usd < 0.0 {
        return Err(ApiError::BadRequest(format!(
            "`{field}` must be a non-negative number of USD"
        )));
    }
    Money::from_usd_f64(usd)
        .map(Money::nanos)
        .map_err(|e| ApiError::BadRequest(format!("`{field}`: {e}")))
}

fn valid_tag_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TAG_PART
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@/".contains(&b))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBudget {
    /// `org` | `team` | `user` | `tag`.
    scope: String,
    /// Team id, user id, or `key=value` for a tag; omitted for `org`.
    scope_id: Option<String>,
    limit: f64,
    window: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBudget {
    limit: Option<f64>,
    name: Option<String>,
}

async fn budget_json(state: &AppState, b: &BudgetRow) -> Result<Value, ApiError> {
    let now = now_ms();
    let resolved = budgets::resolved_row(b)
        .ok_or_else(|| ApiError::Internal(format!("budget {} is malformed", b.id)))?;
    let spent = budgets::window_spend(&*state.store, &b.org_id, &resolved, now).await?;
    let (start, end) = resolved.window.bounds(now);
    Ok(json!({
        "id": b.id,
        "name": b.name,
        "scope": b.scope_kind,
        "scope_id": b.scope_id,
        "window": b.period,
        "limit": usd(b.limit_nanos),
        "limit_nanos": b.limit_nanos,
        "spent": usd(spent),
        "spent_nanos": spent,
        "remaining": usd((b.limit_nanos - spent).max(0)),
        "percent_used": if b.limit_nanos > 0 { (i128::from(spent) * 10_000 / i128::from(b.limit_nanos)) as f64 / 100.0 } else { 0.0 },
        "window_start": if end == 0 { Value::Null } else { json!(iso(start)) },
        "window_end": if end == 0 { Value::Null } else { json!(iso(end)) },
        "alert_thresholds_percent": THRESHOLDS,
        "created_at": iso(b.created_at),
        "updated_at": iso(b.updated_at),
    }))
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    require_read(&principal)?;
    let rows = state.store.list_budgets(principal.org_id()).await?;
    let mut data = Vec::with_capacity(rows.len());
    for b in &rows {
        data.push(budget_json(&state, b).await?);
    }
    Ok(Json(json!({ "data": data })))
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_read(&principal)?;
    let b = state.store.get_budget(principal.org_id(), &id).await?;
    let mut data = budget_json(&state, &b).await?;
    let leases = state.store.list_leases(principal.org_id(), &id).await?;
    data["leases"] = leases
        .iter()
        .map(|l| {
            json!({
                "node_id": l.node_id,
                "window_start": iso(l.window_start),
                "granted_nanos": l.granted_nanos,
                "consumed_nanos": l.consumed_nanos,
                "expires_at": iso(l.expires_at),
            })
        })
        .collect();
    data["alerts"] = json!(state.store.list_alerts(principal.org_id(), &id).await?);
    Ok(Json(json!({ "data": data })))
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<CreateBudget>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_write(&principal)?;
    let org_id = principal.org_id().to_owned();
    let window = Window::parse(&body.window).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`window` must be one of {}, not `{}`",
            Window::NAMES,
            body.window
        ))
    })?;
    let limit_nanos = usd_nanos("limit", body.limit)?;
    let scope_id = match (body.scope.as_str(), body.scope_id) {
        ("org", None) => org_id.clone(),
        ("org", Some(id)) if id == org_id => id,
        ("org", Some(_)) => {
            return Err(ApiError::BadRequest(
                "an `org` budget covers the calling org; leave `scope_id` out".into(),
            ));
        }
        ("team", Some(team)) => {
            state
                .store
                .get_team(&org_id, &team)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound => {
                        ApiError::BadRequest(format!("`scope_id`: no team {team} in this org"))
                    }
                    other => other.into(),
                })?;
            team
        }
        ("user", Some(user)) => {
            state
                .store
                .get_member(&org_id, &user)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound => {
                        ApiError::BadRequest(format!("`scope_id`: no member {user} in this org"))
                    }
                    other => other.into(),
                })?;
            user
        }
        ("tag", Some(tag)) => {
            match tag.split_once('=') {
                Some((k, v)) if valid_tag_part(k) && valid_tag_part(v) => {}
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "`scope_id` of a tag budget must be `key=value` (each 1-{MAX_TAG_PART} of a-z, A-Z, 0-9, - _ . : @ /), not `{tag}`"
                    )));
                }
            }
            tag
        }
        ("team" | "user" | "tag", None) => {
            return Err(ApiError::BadRequest(format!(
                "`scope_id` is required for a `{}` budget",
                body.scope
            )));
        }
        (other, _) => {
            return Err(ApiError::BadRequest(format!(
                "`scope` must be one of org, team, user or tag, not `{other}`"
            )));
        }
    };
    let name = body.name.unwrap_or_default().trim().to_owned();
    if name.len() > MAX_NAME {
        return Err(ApiError::BadRequest(format!(
            "`name` is longer than {MAX_NAME} characters"
        )));
    }
    let now = now_ms();
    let row = BudgetRow {
        id: Uuid::now_v7().to_string(),
        org_id,
        scope_kind: body.scope,
        scope_id,
        name,
        limit_nanos,
        period: window.as_str().to_owned(),
        created_at: now,
        updated_at: now,
    };
    state.store.create_budget(&row).await.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::Conflict(format!(
            "a {} budget for this {} already exists; change its limit instead",
            row.period, row.scope_kind
        )),
        other => other.into(),
    })?;
    let data = budget_json(&state, &row).await?;
    record(
        &state,
        &principal,
        Change {
            action: "budget.create",
            target_type: "budget",
            target_id: &row.id,
            before: None,
            after: Some(&data),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": data }))))
}

pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBudget>,
) -> Result<Json<Value>, ApiError> {
    require_write(&principal)?;
    let current = state.store.get_budget(principal.org_id(), &id).await?;
    let before = budget_json(&state, &current).await?;
    let limit = body
        .limit
        .map(|l| usd_nanos("limit", l))
        .transpose()?
        .unwrap_or(current.limit_nanos);
    let name = body
        .name
        .map_or(current.name.clone(), |n| n.trim().to_owned());
    if name.len() > MAX_NAME {
        return Err(ApiError::BadRequest(format!(
            "`name` is longer than {MAX_NAME} characters"
        )));
    }
    let row = state
        .store
        .update_budget(principal.org_id(), &id, &name, limit)
        .await?;
    let after = budget_json(&state, &row).await?;
    record(
        &state,
        &principal,
        Change {
            action: "budget.update",
            target_type: "budget",
            target_id: &id,
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
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_write(&principal)?;
    let current = state.store.get_budget(principal.org_id(), &id).await?;
    let before = budget_json(&state, &current).await?;
    state.store.delete_budget(principal.org_id(), &id).await?;
    record(
        &state,
        &principal,
        Change {
            action: "budget.delete",
            target_type: "budget",
            target_id: &id,
            before: Some(&before),
            after: None,
        },
    )
    .await?;
    Ok(Json(json!({ "deleted": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    #[serde(default, deserialize_with = "double_option")]
    alert_webhook_url: Option<Option<String>>,
    /// USD per day for new keys created without a limit; `null` turns it off.
    #[serde(default, deserialize_with = "double_option")]
    default_key_daily_cap: Option<Option<f64>>,
    lease_max_per_gateway: Option<f64>,
    lease_max_per_org: Option<f64>,
    /// `fail_closed` | `overdraft`.
    unreachable_policy: Option<String>,
    overdraft: Option<f64>,
    default_output_tokens: Option<u32>,
    model_output_tokens: Option<BTreeMap<String, u32>>,
}

fn settings_json(s: &BudgetSettingsRow) -> Value {
    let models: Value = serde_json::from_str(&s.model_output_tokens).unwrap_or_else(|_| json!({}));
    json!({
        "alert_webhook_url": s.alert_webhook_url,
        "default_key_daily_cap": s.default_key_daily_cap.map(usd),
        "lease_max_per_gateway": usd(s.lease_max_per_gateway),
        "lease_max_per_org": usd(s.lease_max_per_org),
        "unreachable_policy": s.unreachable_policy,
        "overdraft": usd(s.overdraft_nanos),
        "default_output_tokens": s.default_output_tokens,
        "model_output_tokens": models,
        "updated_at": (s.updated_at > 0).then(|| iso(s.updated_at)),
    })
}

pub async fn get_settings(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    require_read(&principal)?;
    let s = state.store.get_budget_settings(principal.org_id()).await?;
    Ok(Json(json!({ "data": settings_json(&s) })))
}

pub async fn put_settings(
    State(state): State<AppState>,
    policy: Option<axum::Extension<switchyard_gateway::ssrf::UrlPolicy>>,
    principal: Principal,
    JsonBody(body): JsonBody<SettingsBody>,
) -> Result<Json<Value>, ApiError> {
    require_write(&principal)?;
    let current = state.store.get_budget_settings(principal.org_id()).await?;
    let mut next = current.clone();
    if let Some(url) = body.alert_webhook_url {
        let url = url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
        if let Some(u) = &url {
            let policy = policy.map(|p| p.0).unwrap_or_default();
            switchyard_gateway::ssrf::check_url(u, policy)
                .map_err(|why| ApiError::BadRequest(format!("`alert_webhook_url` {why}")))?;
            if u.len() > 2_000 {
                return Err(ApiError::BadRequest(
                    "`alert_webhook_url` is longer than 2000 characters".into(),
                ));
            }
        }
        next.alert_webhook_url = url;
    }
    if let Some(cap) = body.default_key_daily_cap {
        next.default_key_daily_cap = cap
            .map(|c| usd_nanos("default_key_daily_cap", c))
            .transpose()?;
    }
    if let Some(v) = body.lease_max_per_gateway {
        next.lease_max_per_gateway = usd_nanos("lease_max_per_gateway", v)?;
    }
    if let Some(v) = body.lease_max_per_org {
        next.lease_max_per_org = usd_nanos("lease_max_per_org", v)?;
    }
    if let Some(p) = body.unreachable_policy {
        if !matches!(p.as_str(), "fail_closed" | "overdraft") {
            return Err(ApiError::BadRequest(format!(
                "`unreachable_policy` must be fail_closed or overdraft, not `{p}`"
            )));
        }
        next.unreachable_policy = p;
    }
    if let Some(v) = body.overdraft {
        next.overdraft_nanos = usd_nanos("overdraft", v)?;
    }
    if let Some(t) = body.default_output_tokens {
        if t == 0 || t > MAX_OUTPUT_ESTIMATE {
            return Err(ApiError::BadRequest(format!(
                "`default_output_tokens` must be between 1 and {MAX_OUTPUT_ESTIMATE}"
            )));
        }
        next.default_output_tokens = i64::from(t);
    }
    if let Some(models) = body.model_output_tokens {
        if models.len() > MAX_MODEL_ESTIMATES {
            return Err(ApiError::BadRequest(format!(
                "`model_output_tokens` has more than {MAX_MODEL_ESTIMATES} entries"
            )));
        }
        if let Some((m, _)) = models
            .iter()
            .find(|(m, t)| m.is_empty() || m.len() > 200 || **t == 0 || **t > MAX_OUTPUT_ESTIMATE)
        {
            return Err(ApiError::BadRequest(format!(
                "`model_output_tokens`: `{m}` needs a model id of 1-200 characters and 1 to {MAX_OUTPUT_ESTIMATE} tokens"
            )));
        }
        next.model_output_tokens =
            serde_json::to_string(&models).map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    next.updated_at = now_ms();
    state.store.put_budget_settings(&next).await?;
    let before = settings_json(&current);
    let after = settings_json(&next);
    record(
        &state,
        &principal,
        Change {
            action: "budget.settings",
            target_type: "org",
            target_id: principal.org_id(),
            before: Some(&before),
            after: Some(&after),
        },
    )
    .await?;
    Ok(Json(json!({ "data": after })))
}
