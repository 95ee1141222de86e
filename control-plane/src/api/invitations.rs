//! Invitations: `POST/GET /api/v1/orgs/{org}/invitations`,
//! `DELETE /api/v1/orgs/{org}/invitations/{id}`, and the public
//! `POST /api/v1/invitations/accept`.
//!
//! The token is 32 random bytes shown once at creation; only its SHA-256 is stored. Accepting
//! is single-use (a conditional UPDATE claims the row) and only before `expires_at`. A new
//! person chooses a password (policy applies); an existing account proves itself with its
//! password. Either way the response opens a console session.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::audit::{Change, record};
use super::auth::{new_user_id, start_session};
use super::orgs::{check_assign, parse_role};
use super::principal::{Principal, RequestMeta};
use super::timefmt::iso;
use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::identity::ratelimit::{LOCKOUT, MAX_FAILURES};
use crate::identity::session::random_token;
use crate::identity::{Permission, normalize_email, password};
use crate::store::{InvitationRecord, Invitee, NewInvitation, NewUser, Role, StoreError, now_ms};

const DEFAULT_HOURS: i64 = 72;
const MAX_HOURS: i64 = 30 * 24;

fn invitation_json(i: &InvitationRecord) -> Value {
    let now = now_ms();
    let status = if i.accepted_at.is_some() {
        "accepted"
    } else if i.revoked_at.is_some() {
        "revoked"
    } else if i.expires_at <= now {
        "expired"
    } else {
        "pending"
    };
    json!({
        "id": i.id,
        "email": i.email,
        "role": i.role,
        "team_id": i.team_id,
        "status": status,
        "invited_by": i.invited_by,
        "created_at": iso(i.created_at),
        "expires_at": iso(i.expires_at),
        "accepted_at": i.accepted_at.map(iso),
        "accepted_by": i.accepted_by,
    })
}

fn token_hash(token: &str) -> String {
    switchyard_proto::keys::sha256_hex(token)
}

#[derive(Deserialize)]
pub struct CreateInvitation {
    email: String,
    role: Option<String>,
    team_id: Option<String>,
    expires_in_hours: Option<i64>,
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<CreateInvitation>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_org(&org_id)?;
    let role = body
        .role
        .as_deref()
        .map(parse_role)
        .transpose()?
        .unwrap_or(Role::Developer);
    check_assign(&state, &principal, role).await?;
    let email = normalize_email(&body.email)
        .ok_or_else(|| ApiError::BadRequest("`email` is not a valid address".into()))?;
    let hours = body.expires_in_hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError::BadRequest(format!(
            "`expires_in_hours` must be between 1 and {MAX_HOURS}"
        )));
    }
    if let Some(team) = &body.team_id {
        state.store.get_team(&org_id, team).await?;
    }
    let token = random_token();
    let (actor_type, actor_id) = principal.audit_actor();
    let invitation = state
        .store
        .create_invitation(&NewInvitation {
            id: Uuid::now_v7().to_string(),
            token_hash: token_hash(&token),
            org_id,
            email,
            role,
            team_id: body.team_id,
            invited_by: format!("{actor_type}:{actor_id}"),
            expires_at: now_ms() + hours * 3_600_000,
        })
        .await?;
    let data = invitation_json(&invitation);
    record(
        &state,
        &principal,
        Change {
            action: "invitation.create",
            target_type: "invitation",
            target_id: &invitation.id,
            before: None,
            after: Some(&data),
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "data": data,
            "token": token,
            "accept": { "method": "POST", "path": "/api/v1/invitations/accept" },
        })),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::MembersRead)?;
    let list = state.store.list_invitations(&org_id).await?;
    Ok(Json(
        json!({ "data": list.iter().map(invitation_json).collect::<Vec<_>>() }),
    ))
}

pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org_id)?;
    principal.require(Permission::MembersWrite)?;
    let revoked = state.store.revoke_invitation(&org_id, &id).await?;
    let after = invitation_json(&revoked);
    record(
        &state,
        &principal,
        Change {
            action: "invitation.revoke",
            target_type: "invitation",
            target_id: &id,
            before: None,
            after: Some(&after),
        },
    )
    .await?;
    Ok(Json(json!({ "data": after })))
}

#[derive(Deserialize)]
pub struct Accept {
    token: String,
    password: String,
    name: Option<String>,
}

fn invalid_invitation() -> ApiError {
    ApiError::NotFound("invitation not found, already used, revoked or expired".into())
}

pub async fn accept(
    State(state): State<AppState>,
    meta: RequestMeta,
    JsonBody(body): JsonBody<Accept>,
) -> Result<Response, ApiError> {
    if !state.login_limiter.try_acquire(meta.peer) {
        return Err(ApiError::TooManyRequests(
            "too many attempts from this address; wait a minute".into(),
        ));
    }
    let hash = token_hash(body.token.trim());
    let invitation = state
        .store
        .find_invitation(&hash)
        .await?
        .ok_or_else(invalid_invitation)?;
    let now = now_ms();
    if invitation.accepted_at.is_some()
        || invitation.revoked_at.is_some()
        || invitation.expires_at <= now
    {
        return Err(invalid_invitation());
    }
    let existing = state.store.find_user_by_email(&invitation.email).await?;
    let invitee = match &existing {
        Some(user) => {
            if user.locked_until.is_some_and(|t| t > now) {
                return Err(ApiError::TooManyRequests(
                    "this account is locked after repeated failed logins; try again later".into(),
                ));
            }
            if !password::verify(body.password, user.password_hash.clone()).await {
                // Guessing through invitations counts like guessing at login.
                let lock_until = now + i64::try_from(LOCKOUT.as_millis()).unwrap_or(i64::MAX);
                state
                    .store
                    .record_login_failure(&user.id, MAX_FAILURES, lock_until)
                    .await?;
                return Err(ApiError::Unauthorized(
                    "an account with this email exists: give its password to accept".into(),
                ));
            }
            Invitee::Existing {
                user_id: user.id.clone(),
            }
        }
        None => {
            password::check_policy(&body.password, &invitation.email)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let hash = password::hash(body.password)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Invitee::New(NewUser {
                id: new_user_id(),
                email: invitation.email.clone(),
                name: body.name.unwrap_or_default(),
                password_hash: Some(hash),
            })
        }
    };
    let (accepted, user_id) = state
        .store
        .accept_invitation(&hash, &invitee, now)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => invalid_invitation(),
            other => other.into(),
        })?;
    let user = state.store.get_user(&user_id).await?;
    let after = invitation_json(&accepted);
    state
        .store
        .append_audit(&crate::store::NewAuditEntry {
            org_id: accepted.org_id.clone(),
            actor_type: "user".into(),
            actor_id: format!("{} <{}>", user.id, user.email),
            action: "invitation.accept".into(),
            target_type: "invitation".into(),
            target_id: accepted.id.clone(),
            before: None,
            after: Some(after.to_string()),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        })
        .await?;
    start_session(&state, &user, &accepted.org_id, &meta).await
}
