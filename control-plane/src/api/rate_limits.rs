//! Rate limits of a key or of the whole org: `GET/PUT /api/v1/keys/{hash}/rate-limit` and
//! `GET/PUT /api/v1/rate-limit`. Values are cluster-wide; every gateway enforces its share.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::principal::Principal;
use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::identity::rbac::Permission;
use crate::store::RateLimitRow;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    #[serde(default)]
    requests_per_minute: u32,
    #[serde(default)]
    tokens_per_minute: u64,
    #[serde(default)]
    concurrent_requests: u32,
    /// Org scope: the org's weight when a shared provider credential is saturated.
    #[serde(default)]
    capacity_weight: u32,
}

fn row_json(r: &RateLimitRow) -> Value {
    json!({
        "scope": r.scope_kind,
        "id": r.scope_id,
        "requests_per_minute": r.requests_per_minute,
        "tokens_per_minute": r.tokens_per_minute,
        "concurrent_requests": r.concurrent_requests,
        "capacity_weight": r.capacity_weight,
        "enforcement": "each gateway admits ceil(limit / gateways); N gateways admit at most limit + N - 1 per minute",
    })
}

async fn put(
    state: &AppState,
    principal: &Principal,
    kind: &str,
    id: &str,
    body: RateLimitBody,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::KeysWrite)?;
    let row = RateLimitRow {
        org_id: principal.org_id().to_owned(),
        scope_kind: kind.to_owned(),
        scope_id: id.to_owned(),
        requests_per_minute: i64::from(body.requests_per_minute),
        tokens_per_minute: i64::try_from(body.tokens_per_minute)
            .map_err(|_| ApiError::BadRequest("`tokens_per_minute` is too large".into()))?,
        concurrent_requests: i64::from(body.concurrent_requests),
        capacity_weight: i64::from(body.capacity_weight),
    };
    if kind == "key" && row.capacity_weight != 0 {
        return Err(ApiError::BadRequest(
            "`capacity_weight` is set on the org (PUT /api/v1/rate-limit), not on a key".into(),
        ));
    }
    state.store.set_rate_limit(&row).await?;
    Ok(Json(json!({ "data": row_json(&row) })))
}

pub async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::KeysRead)?;
    state.store.get_key(principal.org_id(), &hash).await?;
    let row = state
        .store
        .get_rate_limit(principal.org_id(), "key", &hash)
        .await?;
    Ok(Json(json!({ "data": row_json(&row) })))
}

pub async fn put_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
    JsonBody(body): JsonBody<RateLimitBody>,
) -> Result<Json<Value>, ApiError> {
    put(&state, &principal, "key", &hash, body).await
}

pub async fn get_org(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::KeysRead)?;
    let row = state
        .store
        .get_rate_limit(principal.org_id(), "org", principal.org_id())
        .await?;
    Ok(Json(json!({ "data": row_json(&row) })))
}

pub async fn put_org(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<RateLimitBody>,
) -> Result<Json<Value>, ApiError> {
    let org = principal.org_id().to_owned();
    put(&state, &principal, "org", &org, body).await
}
