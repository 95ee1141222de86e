//! Console sessions: `POST /api/v1/auth/login`, `POST /api/v1/auth/logout`,
//! `POST /api/v1/auth/refresh`, `GET /api/v1/auth/me`, `POST /api/v1/auth/switch-org`.
//!
//! Login answers the same 401 for an unknown email and a wrong password (and spends the same
//! hashing time). After `MAX_FAILURES` consecutive failures an account is locked for
//! `LOCKOUT`; each address may try `MAX_ATTEMPTS_PER_WINDOW` logins per minute.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::{AppendHeaders, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::audit::{Change, record_in};
use super::principal::{Principal, RequestMeta};
use super::timefmt::iso;
use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::identity::ratelimit::{LOCKOUT, MAX_FAILURES};
use crate::identity::session::{Claims, SESSION_TTL, TOKEN_TTL, random_token};
use crate::identity::{Permission, normalize_email, password};
use crate::store::{SessionRecord, UserRecord, now_ms};

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
    /// Org to open the session in; defaults to the user's first org.
    org_id: Option<String>,
}

fn bad_login() -> ApiError {
    ApiError::Unauthorized("invalid email or password".into())
}

/// The session cookie pair and the token's expiry for `claims` (bounded by the session's end).
fn session_cookies(
    state: &AppState,
    claims: &mut Claims,
    session_expires_at: i64,
    meta: &RequestMeta,
) -> Result<[(axum::http::HeaderName, String); 2], ApiError> {
    let now = now_ms();
    let token_end = (now + ms(TOKEN_TTL)).min(session_expires_at);
    claims.iat = now / 1000;
    claims.exp = token_end / 1000;
    let token = state
        .sessions
        .issue(claims)
        .map_err(|_| ApiError::Internal("could not sign the session token".into()))?;
    let age = Duration::from_millis(u64::try_from(token_end - now).unwrap_or(0));
    let [a, b] = state
        .sessions
        .cookies(&token, &claims.csrf, age, meta.https);
    Ok([(SET_COOKIE, a), (SET_COOKIE, b)])
}

async fn me_json(state: &AppState, user: &UserRecord, org_id: &str) -> Result<Value, ApiError> {
    let orgs = state.store.list_user_orgs(&user.id).await?;
    let current = orgs.iter().find(|m| m.org_id == org_id);
    let role = current.and_then(|m| m.role());
    let permissions: Vec<&str> = role
        .map(|r| {
            Permission::ALL
                .into_iter()
                .filter(|p| crate::identity::allows(r, *p))
                .map(Permission::as_str)
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "user": { "id": user.id, "email": user.email, "name": user.name },
        "org": current.map(|m| json!({ "id": m.org_id, "name": m.org_name })),
        "role": role,
        "permissions": permissions,
        "orgs": orgs.iter().map(|m| json!({ "id": m.org_id, "name": m.org_name, "role": m.role })).collect::<Vec<_>>(),
    }))
}

/// Opens a session for `user` in `org_id` and answers with its cookies and CSRF token.
pub async fn start_session(
    state: &AppState,
    user: &UserRecord,
    org_id: &str,
    meta: &RequestMeta,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let session = SessionRecord {
        id: random_token(),
        user_id: user.id.clone(),
        org_id: org_id.to_owned(),
        created_at: now,
        expires_at: now + ms(SESSION_TTL),
        revoked_at: None,
    };
    state.store.create_session(&session).await?;
    let mut claims = Claims {
        sub: user.id.clone(),
        sid: session.id.clone(),
        csrf: random_token(),
        iat: 0,
        exp: 0,
    };
    let cookies = session_cookies(state, &mut claims, session.expires_at, meta)?;
    let mut data = me_json(state, user, org_id).await?;
    data["csrf_token"] = json!(claims.csrf);
    data["token_expires_at"] = json!(iso(claims.exp * 1000));
    data["session_expires_at"] = json!(iso(session.expires_at));
    Ok((AppendHeaders(cookies), Json(json!({ "data": data }))).into_response())
}

pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    if !state.login_limiter.try_acquire(meta.peer) {
        return Err(ApiError::TooManyRequests(
            "too many login attempts from this address; wait a minute".into(),
        ));
    }
    let email = normalize_email(&body.email).ok_or_else(bad_login)?;
    let user = state.store.find_user_by_email(&email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let ok = password::verify(body.password, stored).await;
    let Some(user) = user else {
        audit_failed_login(&state, None, "unknown_user", None, &meta).await;
        return Err(bad_login());
    };
    let now = now_ms();
    if user.locked_until.is_some_and(|t| t > now) {
        audit_failed_login(&state, Some(&user), "locked", None, &meta).await;
        return Err(ApiError::TooManyRequests(
            "this account is locked after repeated failed logins; try again later".into(),
        ));
    }
    if !ok {
        let failures = state
            .store
            .record_login_failure(&user.id, MAX_FAILURES, now + ms(LOCKOUT))
            .await?;
        tracing::warn!(user_id = %user.id, failures, "failed console login");
        audit_failed_login(&state, Some(&user), "bad_password", Some(failures), &meta).await;
        return Err(bad_login());
    }
    if user.disabled {
        audit_failed_login(&state, Some(&user), "disabled", None, &meta).await;
        return Err(ApiError::Unauthorized("this account is disabled".into()));
    }
    state.store.record_login_success(&user.id).await?;
    let orgs = state.store.list_user_orgs(&user.id).await?;
    let org = match body.org_id.as_deref() {
        Some(wanted) => orgs.iter().find(|m| m.org_id == wanted),
        None => orgs.first(),
    }
    .ok_or_else(|| ApiError::Forbidden("this account is not a member of that org".into()))?;
    let org_id = org.org_id.clone();
    let response = start_session(&state, &user, &org_id, &meta).await?;
    audit_session_event(&state, &user, &org_id, "auth.login", &meta).await?;
    Ok(response)
}

/// Audits a refused login (`auth.login_failed`) in every org the account belongs to, so each
/// org's admins see attempts on their members, or in the system log when no account has that
/// address. Neither the password nor an unknown address is recorded: users type passwords
/// into the email field. Rate-limited attempts are not audited (that would let a flood fill
/// the log), and a failed audit write does not change the answer, which must not tell
/// accounts apart.
async fn audit_failed_login(
    state: &AppState,
    user: Option<&UserRecord>,
    reason: &str,
    failures: Option<i64>,
    meta: &RequestMeta,
) {
    let orgs = match user {
        Some(user) => match state.store.list_user_orgs(&user.id).await {
            Ok(orgs) if !orgs.is_empty() => orgs.into_iter().map(|m| m.org_id).collect(),
            Ok(_) => vec![crate::store::SYSTEM_ORG.to_owned()],
            Err(err) => {
                tracing::warn!(error = %err, "could not audit a failed login");
                return;
            }
        },
        None => vec![crate::store::SYSTEM_ORG.to_owned()],
    };
    let after = json!({ "reason": reason, "failures": failures }).to_string();
    for org_id in orgs {
        let entry = crate::store::NewAuditEntry {
            org_id,
            actor_type: "anonymous".into(),
            actor_id: String::new(),
            action: "auth.login_failed".into(),
            target_type: "user".into(),
            target_id: user.map(|u| u.id.clone()).unwrap_or_default(),
            before: None,
            after: Some(after.clone()),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        };
        if let Err(err) = state.store.append_audit(&entry).await {
            tracing::warn!(error = %err, "could not audit a failed login");
        }
    }
}

async fn audit_session_event(
    state: &AppState,
    user: &UserRecord,
    org_id: &str,
    action: &str,
    meta: &RequestMeta,
) -> Result<(), ApiError> {
    state
        .store
        .append_audit(&crate::store::NewAuditEntry {
            org_id: org_id.to_owned(),
            actor_type: "user".into(),
            actor_id: format!("{} <{}>", user.id, user.email),
            action: action.to_owned(),
            target_type: "user".into(),
            target_id: user.id.clone(),
            before: None,
            after: None,
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        })
        .await?;
    Ok(())
}

fn session_only(principal: &Principal) -> Result<&Claims, ApiError> {
    principal.claims().ok_or_else(|| {
        ApiError::BadRequest("this route is for console sessions, not API keys".into())
    })
}

pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let claims = session_only(&principal)?;
    state.store.revoke_session(&claims.sid).await?;
    record_in(
        &state,
        &principal,
        principal.org_id(),
        Change {
            action: "auth.logout",
            target_type: "session",
            target_id: &claims.sid[..8],
            before: None,
            after: None,
        },
    )
    .await?;
    let [a, b] = state.sessions.clearing_cookies(principal.meta.https);
    Ok((
        AppendHeaders([(SET_COOKIE, a), (SET_COOKIE, b)]),
        Json(json!({ "data": { "logged_out": true } })),
    )
        .into_response())
}

pub async fn refresh(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let mut claims = session_only(&principal)?.clone();
    let session = state
        .store
        .get_session(&claims.sid)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("your session has ended; log in again".into()))?;
    let cookies = session_cookies(&state, &mut claims, session.expires_at, &principal.meta)?;
    Ok((
        AppendHeaders(cookies),
        Json(json!({ "data": {
            "csrf_token": claims.csrf,
            "token_expires_at": iso(claims.exp * 1000),
            "session_expires_at": iso(session.expires_at),
        } })),
    )
        .into_response())
}

pub async fn me(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let user_id = session_only(&principal)?.sub.clone();
    let user = state.store.get_user(&user_id).await?;
    Ok(Json(
        json!({ "data": me_json(&state, &user, principal.org_id()).await? }),
    ))
}

#[derive(Deserialize)]
pub struct SwitchOrg {
    org_id: String,
}

pub async fn switch_org(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<SwitchOrg>,
) -> Result<Json<Value>, ApiError> {
    let claims = session_only(&principal)?;
    let user = state.store.get_user(&claims.sub).await?;
    // Not a member answers 404 like any other org the caller cannot see.
    state
        .store
        .get_member(&body.org_id, &user.id)
        .await
        .map_err(|_| ApiError::NotFound(format!("org {} not found", body.org_id)))?;
    state
        .store
        .set_session_org(&claims.sid, &body.org_id)
        .await?;
    Ok(Json(
        json!({ "data": me_json(&state, &user, &body.org_id).await? }),
    ))
}

/// A fresh user id (UUIDv7, like every id of the control plane).
pub fn new_user_id() -> String {
    Uuid::now_v7().to_string()
}
