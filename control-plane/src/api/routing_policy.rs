//! `GET/PUT/DELETE /api/v1/routing-policy`: the org's routing defaults, pushed to every
//! gateway with the config snapshot.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::principal::Principal;
use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::identity::rbac::Permission;
use crate::routing_policy::RoutingPolicy;

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ModelsRead)?;
    let stored = state.store.get_routing_policy(principal.org_id()).await?;
    let policy: RoutingPolicy = match stored {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| ApiError::Internal(format!("stored routing policy: {e}")))?,
        None => RoutingPolicy::default(),
    };
    Ok(Json(json!({ "data": policy })))
}

pub async fn put(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(policy): JsonBody<RoutingPolicy>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ModelsWrite)?;
    policy.validate().map_err(ApiError::BadRequest)?;
    let text = serde_json::to_string(&policy).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .set_routing_policy(principal.org_id(), Some(&text))
        .await?;
    Ok(Json(json!({ "data": policy })))
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ModelsWrite)?;
    state
        .store
        .set_routing_policy(principal.org_id(), None)
        .await?;
    Ok(Json(json!({ "deleted": true })))
}
