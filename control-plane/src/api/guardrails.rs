//! Guardrail policies per scope: `GET/PUT/DELETE /api/v1/orgs/{org}/guardrails`,
//! `…/orgs/{org}/teams/{team}/guardrails` and `/api/v1/keys/{hash}/guardrails`. The body
//! is a `policy::PolicyDoc`. Gateways combine org, team and key policies (allowlists
//! intersect, limits take the minimum, rules add up), so a key policy can only narrow.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::audit::{Change, record};
use super::principal::Principal;
use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::identity::Permission;
use crate::policy::PolicyDoc;

async fn get_scope(
    state: &AppState,
    principal: &Principal,
    kind: &str,
    id: &str,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ModelsRead)?;
    let stored = state
        .store
        .get_guardrail_policy(principal.org_id(), kind, id)
        .await?;
    let doc: Option<PolicyDoc> = stored
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| ApiError::Internal(format!("stored guardrail policy is invalid: {e}")))?;
    Ok(Json(
        json!({ "data": { "scope": kind, "id": id, "policy": doc } }),
    ))
}

async fn put_scope(
    state: &AppState,
    principal: &Principal,
    kind: &str,
    id: &str,
    doc: PolicyDoc,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::GuardrailsWrite)?;
    doc.validate().map_err(ApiError::BadRequest)?;
    let before = state
        .store
        .get_guardrail_policy(principal.org_id(), kind, id)
        .await?;
    let text = serde_json::to_string(&doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .set_guardrail_policy(principal.org_id(), kind, id, Some(&text))
        .await?;
    let before: Option<Value> = before.and_then(|t| serde_json::from_str(&t).ok());
    let after = json!(doc);
    record(
        state,
        principal,
        Change {
            action: "guardrails.update",
            target_type: kind,
            target_id: id,
            before: before.as_ref(),
            after: Some(&after),
        },
    )
    .await?;
    Ok(Json(
        json!({ "data": { "scope": kind, "id": id, "policy": doc } }),
    ))
}

async fn delete_scope(
    state: &AppState,
    principal: &Principal,
    kind: &str,
    id: &str,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::GuardrailsWrite)?;
    let before: Option<Value> = state
        .store
        .get_guardrail_policy(principal.org_id(), kind, id)
        .await?
        .and_then(|t| serde_json::from_str(&t).ok());
    state
        .store
        .set_guardrail_policy(principal.org_id(), kind, id, None)
        .await?;
    record(
        state,
        principal,
        Change {
            action: "guardrails.delete",
            target_type: kind,
            target_id: id,
            before: before.as_ref(),
            after: None,
        },
    )
    .await?;
    Ok(Json(json!({ "deleted": true })))
}

pub async fn get_org(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org)?;
    get_scope(&state, &principal, "org", &org).await
}

pub async fn put_org(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
    JsonBody(doc): JsonBody<PolicyDoc>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org)?;
    put_scope(&state, &principal, "org", &org, doc).await
}

pub async fn delete_org(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org)?;
    delete_scope(&state, &principal, "org", &org).await
}

pub async fn get_team(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, team)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org)?;
    state.store.get_team(&org, &team).await?;
    get_scope(&state, &principal, "team", &team).await
}

pub async fn put_team(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, team)): Path<(String, String)>,
    JsonBody(doc): JsonBody<PolicyDoc>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org)?;
    state.store.get_team(&org, &team).await?;
    put_scope(&state, &principal, "team", &team, doc).await
}

pub async fn delete_team(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, team)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org)?;
    state.store.get_team(&org, &team).await?;
    delete_scope(&state, &principal, "team", &team).await
}

pub async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.store.get_key(principal.org_id(), &hash).await?;
    get_scope(&state, &principal, "key", &hash).await
}

pub async fn put_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
    JsonBody(doc): JsonBody<PolicyDoc>,
) -> Result<Json<Value>, ApiError> {
    state.store.get_key(principal.org_id(), &hash).await?;
    put_scope(&state, &principal, "key", &hash, doc).await
}

pub async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.store.get_key(principal.org_id(), &hash).await?;
    delete_scope(&state, &principal, "key", &hash).await
}
