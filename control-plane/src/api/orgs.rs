//! Orgs and memberships: `POST/GET /api/v1/orgs`, `GET /api/v1/orgs/{org}`,
//! `GET/POST /api/v1/orgs/{org}/members`, `PATCH/DELETE /api/v1/orgs/{org}/members/{user}`.
//!
//! Role changes follow `identity::may_assign`: only owners grant or revoke `owner`, and an
//! org always keeps one owner (the store refuses the change that would leave none).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::audit::{Change, record, record_in};
use super::auth::new_user_id;
use super::principal::Principal;
use super::timefmt::iso;
use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::identity::{Permission, may_assign, normalize_email, password};
use crate::store::{MemberRecord, NewUser, Org, Role, StoreError, now_ms};

pub fn member_json(m: &MemberRecord) -> Value {
    json!({
        "user_id": m.user_id,
        "email": m.email,
        "name": m.name,
        "role": m.role,
        "created_at": iso(m.created_at),
    })
}

pub fn parse_role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`role` must be one of owner, admin, billing, developer, viewer, not `{text}`"
        ))
    })
}

/// `principal` may give or take `role`. An org with no owner at all (fresh from bootstrap)
/// may get its first one from an admin, or nobody could ever own it.
pub async fn check_assign(
    state: &AppState,
    principal: &Principal,
    role: Role,
) -> Result<(), ApiError> {
    principal.require(Permission::MembersWrite)?;
    let actor = principal.role.unwrap_or(Role::Viewer);
    if may_assign(actor, role) {
        return Ok(());
    }
    if role == Role::Owner && actor == Role::Admin {
        let members = state.store.list_members(principal.org_id()).await?;
        if !members.iter().any(|m| m.role() == Some(Role::Owner)) {
            return Ok(());
        }
    }
    Err(ApiError::Forbidden(format!(
        "the {actor} role cannot grant or revoke the {role} role"
    )))
}

#[derive(Deserialize)]
pub struct CreateOrg {
    name: String,
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<CreateOrg>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let user_id = principal
        .user_id()
        .ok_or_else(|| {
            ApiError::Forbidden(
                "orgs are created from a console session, not with an API key".into(),
            )
        })?
        .to_owned();
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::BadRequest(
            "`name` must be 1 to 200 characters".into(),
        ));
    }
    let org = Org {
        id: Uuid::now_v7().to_string(),
        name: name.to_owned(),
        created_at: now_ms(),
    };
    state.store.create_org(&org, &user_id).await?;
    let data = json!({ "id": org.id, "name": org.name, "created_at": iso(org.created_at), "role": "owner" });
    record_in(
        &state,
        &principal,
        &org.id,
        Change {
            action: "org.create",
            target_type: "org",
            target_id: &org.id,
            before: None,
            after: Some(&data),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": data }))))
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let data: Vec<Value> = match principal.user_id() {
        Some(user_id) => state
            .store
            .list_user_orgs(user_id)
            .await?
            .iter()
            .map(|m| json!({ "id": m.org_id, "name": m.org_name, "role": m.role }))
            .collect(),
        None => {
            principal.require(Permission::MembersRead)?;
            let org = state.store.get_org(principal.org_id()).await?;
            vec![json!({ "id": org.id, "name": org.name, "role": principal.role })]
        }
    };
    Ok(Json(json!({ "data": data })))
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::MembersRead)?;
    let org = state.store.get_org(&org_id).await?;
    Ok(Json(
        json!({ "data": { "id": org.id, "name": org.name, "created_at": iso(org.created_at), "role": principal.role } }),
    ))
}

pub async fn list_members(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::MembersRead)?;
    let members = state.store.list_members(&org_id).await?;
    Ok(Json(
        json!({ "data": members.iter().map(member_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
pub struct AddMember {
    email: String,
    role: String,
    /// Required when no user has this email yet: creates the account (prefer invitations,
    /// which let the person choose their own password).
    password: Option<String>,
    name: Option<String>,
}

pub async fn add_member(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<AddMember>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_org(&org_id)?;
    let role = parse_role(&body.role)?;
    check_assign(&state, &principal, role).await?;
    let email = normalize_email(&body.email)
        .ok_or_else(|| ApiError::BadRequest("`email` is not a valid address".into()))?;
    let user_id = match state.store.find_user_by_email(&email).await? {
        Some(user) => user.id,
        None => {
            let pw = body.password.ok_or_else(|| {
                ApiError::BadRequest("no user has this email: give a `password` to create the account, or send an invitation".into())
            })?;
            password::check_policy(&pw, &email).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let hash = password::hash(pw)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let user = NewUser {
                id: new_user_id(),
                email,
                name: body.name.unwrap_or_default(),
                password_hash: Some(hash),
            };
            state.store.create_user(&user).await?.id
        }
    };
    state
        .store
        .add_member(&org_id, &user_id, role)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::Conflict("this user is already a member of the org".into())
            }
            other => other.into(),
        })?;
    let member = member_json(&state.store.get_member(&org_id, &user_id).await?);
    record(
        &state,
        &principal,
        Change {
            action: "member.add",
            target_type: "user",
            target_id: &user_id,
            before: None,
            after: Some(&member),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": member }))))
}

#[derive(Deserialize)]
pub struct UpdateMember {
    role: String,
}

pub async fn update_member(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, user_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateMember>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::MembersWrite)?;
    let role = parse_role(&body.role)?;
    let current = state.store.get_member(&org_id, &user_id).await?;
    let current_role = current.role().unwrap_or(Role::Viewer);
    check_assign(&state, &principal, current_role).await?;
    check_assign(&state, &principal, role).await?;
    let updated = state.store.set_member_role(&org_id, &user_id, role).await?;
    let (before, after) = (member_json(&current), member_json(&updated));
    record(
        &state,
        &principal,
        Change {
            action: "member.update",
            target_type: "user",
            target_id: &user_id,
            before: Some(&before),
            after: Some(&after),
        },
    )
    .await?;
    Ok(Json(json!({ "data": after })))
}

pub async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    let current = state.store.get_member(&org_id, &user_id).await?;
    // Anyone may leave an org themselves; removing others needs the right to their role.
    if principal.user_id() != Some(user_id.as_str()) {
        check_assign(&state, &principal, current.role().unwrap_or(Role::Viewer)).await?;
    }
    state.store.remove_member(&org_id, &user_id).await?;
    let before = member_json(&current);
    record(
        &state,
        &principal,
        Change {
            action: "member.remove",
            target_type: "user",
            target_id: &user_id,
            before: Some(&before),
            after: None,
        },
    )
    .await?;
    Ok(Json(json!({ "deleted": true })))
}
