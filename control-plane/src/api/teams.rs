//! Teams inside an org (OpenRouter calls them workspaces):
//! `GET/POST /api/v1/orgs/{org}/teams`, `GET/PATCH/DELETE /api/v1/orgs/{org}/teams/{team}`,
//! `PUT/DELETE /api/v1/orgs/{org}/teams/{team}/members/{user}`. Keys may be owned by a team.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::audit::{Change, record};
use super::principal::Principal;
use super::timefmt::iso;
use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{StoreError, TeamRecord, now_ms};

fn team_json(t: &TeamRecord) -> Value {
    json!({ "id": t.id, "name": t.name, "created_at": iso(t.created_at) })
}

#[derive(Deserialize)]
pub struct TeamBody {
    name: String,
}

fn team_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::BadRequest(
            "`name` must be 1 to 200 characters".into(),
        ));
    }
    Ok(name.to_owned())
}

fn name_taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(_) => ApiError::Conflict("a team with this name exists".into()),
        other => other.into(),
    }
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::MembersRead)?;
    let teams = state.store.list_teams(&org_id).await?;
    Ok(Json(
        json!({ "data": teams.iter().map(team_json).collect::<Vec<_>>() }),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<TeamBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::TeamsWrite)?;
    let team = TeamRecord {
        id: Uuid::now_v7().to_string(),
        org_id,
        name: team_name(&body.name)?,
        created_at: now_ms(),
    };
    let team = state.store.create_team(&team).await.map_err(name_taken)?;
    let after = team_json(&team);
    record(
        &state,
        &principal,
        Change {
            action: "team.create",
            target_type: "team",
            target_id: &team.id,
            before: None,
            after: Some(&after),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": after }))))
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, team_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::MembersRead)?;
    let team = state.store.get_team(&org_id, &team_id).await?;
    let members = state.store.list_team_members(&org_id, &team_id).await?;
    let mut data = team_json(&team);
    data["members"] =
        json!(members
        .iter()
        .map(|m| json!({ "user_id": m.user_id, "email": m.email, "added_at": iso(m.created_at) }))
        .collect::<Vec<_>>());
    Ok(Json(json!({ "data": data })))
}

pub async fn rename(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, team_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<TeamBody>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::TeamsWrite)?;
    let before = team_json(&state.store.get_team(&org_id, &team_id).await?);
    let team = state
        .store
        .rename_team(&org_id, &team_id, &team_name(&body.name)?)
        .await
        .map_err(name_taken)?;
    let after = team_json(&team);
    record(
        &state,
        &principal,
        Change {
            action: "team.update",
            target_type: "team",
            target_id: &team_id,
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
    Path((org_id, team_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::TeamsWrite)?;
    let before = team_json(&state.store.get_team(&org_id, &team_id).await?);
    state.store.delete_team(&org_id, &team_id).await?;
    record(
        &state,
        &principal,
        Change {
            action: "team.delete",
            target_type: "team",
            target_id: &team_id,
            before: Some(&before),
            after: None,
        },
    )
    .await?;
    Ok(Json(json!({ "deleted": true })))
}

pub async fn add_member(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, team_id, user_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::TeamsWrite)?;
    state
        .store
        .add_team_member(&org_id, &team_id, &user_id)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::Conflict("already a member of the team".into()),
            StoreError::NotFound => {
                ApiError::NotFound("no such team, or the user is not a member of the org".into())
            }
            other => other.into(),
        })?;
    let after = json!({ "team_id": team_id, "user_id": user_id });
    record(
        &state,
        &principal,
        Change {
            action: "team.member_add",
            target_type: "team",
            target_id: &team_id,
            before: None,
            after: Some(&after),
        },
    )
    .await?;
    Ok(Json(json!({ "data": after })))
}

pub async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, team_id, user_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::TeamsWrite)?;
    state
        .store
        .remove_team_member(&org_id, &team_id, &user_id)
        .await?;
    let before = json!({ "team_id": team_id, "user_id": user_id });
    record(
        &state,
        &principal,
        Change {
            action: "team.member_remove",
            target_type: "team",
            target_id: &team_id,
            before: Some(&before),
            after: None,
        },
    )
    .await?;
    Ok(Json(json!({ "deleted": true })))
}
