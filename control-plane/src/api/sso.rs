//! OIDC single sign-on: per-org settings (`GET/PUT/DELETE /api/v1/orgs/{org}/sso`) and the
//! browser flow (`GET /api/v1/auth/oidc/{org}/login` → issuer → `GET /api/v1/auth/oidc/callback`).
//!
//! Just-in-time membership: a verified email whose domain is in `allowed_domains` joins the
//! org with `default_role` on first login (and gets a password-less account if it has none).
//! Existing members sign in with their current role; anyone else is refused.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::audit::{Change, record};
use super::auth::{new_user_id, start_session};
use super::orgs::{check_assign, parse_role};
use super::principal::{Principal, RequestMeta};
use super::timefmt::iso;
use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::identity::oidc::{self, FLOW_COOKIE, FLOW_TTL_SECS, FlowState, OidcError};
use crate::identity::session::cookie_value;
use crate::identity::{Permission, normalize_email};
use crate::store::{NewAuditEntry, NewUser, OidcConfig, Role, StoreError, now_ms};

const CALLBACK_PATH: &str = "/api/v1/auth/oidc";

fn config_json(c: &OidcConfig) -> Value {
    json!({
        "issuer": c.issuer,
        "client_id": c.client_id,
        "has_client_secret": c.client_secret.is_some(),
        "redirect_uri": c.redirect_uri,
        "allowed_domains": c.domains(),
        "default_role": c.default_role,
        "updated_at": iso(c.updated_at),
    })
}

#[derive(Deserialize)]
pub struct SsoBody {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    /// Where the issuer sends the browser back: this control plane's
    /// `…/api/v1/auth/oidc/callback`, as registered at the issuer.
    redirect_uri: String,
    #[serde(default)]
    allowed_domains: Vec<String>,
    default_role: Option<String>,
}

fn http_url(field: &str, url: &str) -> Result<(), ApiError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(ApiError::BadRequest(format!(
            "`{field}` must be an http(s) URL"
        ))),
    }
}

pub async fn get_config(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org)?;
    principal.require(Permission::MembersRead)?;
    let config = state.store.get_oidc_config(&org).await?;
    Ok(Json(json!({ "data": config.as_ref().map(config_json) })))
}

pub async fn put_config(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<SsoBody>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org)?;
    let role = body
        .default_role
        .as_deref()
        .map(parse_role)
        .transpose()?
        .unwrap_or(Role::Viewer);
    // Whoever configures SSO must be allowed to hand out the role it grants.
    check_assign(&state, &principal, role).await?;
    http_url("issuer", &body.issuer)?;
    http_url("redirect_uri", &body.redirect_uri)?;
    if body.client_id.trim().is_empty() {
        return Err(ApiError::BadRequest("`client_id` is required".into()));
    }
    let mut domains = Vec::with_capacity(body.allowed_domains.len());
    for d in &body.allowed_domains {
        let d = d.trim().trim_start_matches('@').to_lowercase();
        if d.is_empty() || !d.contains('.') || d.contains(char::is_whitespace) {
            return Err(ApiError::BadRequest(format!(
                "`allowed_domains`: `{d}` is not a domain"
            )));
        }
        domains.push(d);
    }
    let before = state
        .store
        .get_oidc_config(&org)
        .await?
        .map(|c| config_json(&c));
    let config = OidcConfig {
        org_id: org.clone(),
        issuer: body.issuer.trim_end_matches('/').to_owned(),
        client_id: body.client_id.trim().to_owned(),
        client_secret: body.client_secret.filter(|s| !s.is_empty()),
        redirect_uri: body.redirect_uri,
        allowed_domains: serde_json::to_string(&domains)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        default_role: role.as_str().to_owned(),
        updated_at: now_ms(),
    };
    state.store.set_oidc_config(&config).await?;
    let after = config_json(&config);
    record(
        &state,
        &principal,
        Change {
            action: "sso.update",
            target_type: "org",
            target_id: &org,
            before: before.as_ref(),
            after: Some(&after),
        },
    )
    .await?;
    Ok(Json(json!({ "data": after })))
}

pub async fn delete_config(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_org(&org)?;
    principal.require(Permission::MembersWrite)?;
    let before = state
        .store
        .get_oidc_config(&org)
        .await?
        .map(|c| config_json(&c));
    state.store.delete_oidc_config(&org).await?;
    record(
        &state,
        &principal,
        Change {
            action: "sso.delete",
            target_type: "org",
            target_id: &org,
            before: before.as_ref(),
            after: None,
        },
    )
    .await?;
    Ok(Json(json!({ "deleted": true })))
}

fn sso_error(e: OidcError) -> ApiError {
    match e {
        OidcError::InvalidToken(m) => ApiError::Unauthorized(format!("single sign-on failed: {m}")),
        other => ApiError::BadRequest(format!("single sign-on failed: {other}")),
    }
}

/// Starts a login at the org's issuer: a redirect with state, nonce and PKCE challenge.
pub async fn login(
    State(state): State<AppState>,
    Path(org): Path<String>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let config = state
        .store
        .get_oidc_config(&org)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("org {org} has no single sign-on")))?;
    let discovery = oidc::discover(&state.http, &config.issuer)
        .await
        .map_err(sso_error)?;
    let flow = FlowState::new(&org, now_ms() / 1000);
    let location = oidc::authorize_url(&discovery, &config.client_id, &config.redirect_uri, &flow)
        .map_err(sso_error)?;
    let token = state
        .sessions
        .sign(&flow)
        .map_err(|_| ApiError::Internal("could not sign the login state".into()))?;
    let secure = if meta.https || state.sessions.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{FLOW_COOKIE}={token}; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age={FLOW_TTL_SECS}{secure}"
    );
    Ok((
        StatusCode::SEE_OTHER,
        AppendHeaders([(LOCATION, location), (SET_COOKIE, cookie)]),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Finishes a login: checks state, redeems the code, verifies the id token, applies JIT
/// membership and opens a console session (same answer as password login).
pub async fn callback(
    State(state): State<AppState>,
    Query(q): Query<Callback>,
    headers: HeaderMap,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    if let Some(error) = q.error {
        return Err(ApiError::Unauthorized(format!(
            "the identity provider refused the login: {error}"
        )));
    }
    let flow: FlowState = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie_value(h, FLOW_COOKIE))
        .and_then(|t| state.sessions.open(t).ok())
        .filter(FlowState::is_flow)
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "no login in progress in this browser (or it expired); start again".into(),
            )
        })?;
    if q.state.as_deref() != Some(flow.state.as_str()) {
        return Err(ApiError::Unauthorized(
            "the login state does not match; start again".into(),
        ));
    }
    let code = q
        .code
        .ok_or_else(|| ApiError::BadRequest("`code` is missing".into()))?;
    let config = state
        .store
        .get_oidc_config(&flow.org)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("org {} has no single sign-on", flow.org)))?;
    let discovery = oidc::discover(&state.http, &config.issuer)
        .await
        .map_err(sso_error)?;
    let id_token = oidc::exchange_code(
        &state.http,
        &discovery,
        &config.client_id,
        config.client_secret.as_deref(),
        &config.redirect_uri,
        &code,
        &flow.verifier,
    )
    .await
    .map_err(sso_error)?;
    let jwks = state
        .jwks
        .keys_for(
            &state.http,
            &discovery,
            oidc::token_kid(&id_token).as_deref(),
        )
        .await
        .map_err(sso_error)?;
    let claims = oidc::verify_id_token(
        &id_token,
        &jwks,
        &config.issuer,
        &config.client_id,
        &flow.nonce,
    )
    .map_err(sso_error)?;
    if claims.email_verified == Some(false) {
        return Err(ApiError::Forbidden(
            "the identity provider has not verified this email address".into(),
        ));
    }
    let email = claims
        .email
        .as_deref()
        .and_then(normalize_email)
        .ok_or_else(|| {
            ApiError::Forbidden("the id token carries no usable email address".into())
        })?;
    let domain_allowed = email
        .rsplit_once('@')
        .is_some_and(|(_, d)| config.domains().iter().any(|a| a == d));
    let user = match state.store.find_user_by_email(&email).await? {
        Some(user) => user,
        None if domain_allowed => {
            let new = NewUser {
                id: new_user_id(),
                email: email.clone(),
                name: String::new(),
                password_hash: None,
            };
            state.store.create_user(&new).await?
        }
        None => {
            return Err(ApiError::Forbidden(format!(
                "{email} is not a member of this org and its domain does not join automatically"
            )));
        }
    };
    if user.disabled {
        return Err(ApiError::Unauthorized("this account is disabled".into()));
    }
    let joined = match state.store.get_member(&flow.org, &user.id).await {
        Ok(_) => false,
        Err(StoreError::NotFound) if domain_allowed => {
            let role = Role::parse(&config.default_role).unwrap_or(Role::Viewer);
            state.store.add_member(&flow.org, &user.id, role).await?;
            true
        }
        Err(StoreError::NotFound) => {
            return Err(ApiError::Forbidden(format!(
                "{email} is not a member of this org"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    state
        .store
        .append_audit(&NewAuditEntry {
            org_id: flow.org.clone(),
            actor_type: "user".into(),
            actor_id: format!("{} <{}>", user.id, user.email),
            action: if joined { "auth.sso_join" } else { "auth.sso_login" }.into(),
            target_type: "user".into(),
            target_id: user.id.clone(),
            before: None,
            after: joined.then(|| json!({ "role": config.default_role, "issuer": config.issuer, "subject": claims.sub }).to_string()),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        })
        .await?;
    let mut response = start_session(&state, &user, &flow.org, &meta).await?;
    let clear = format!("{FLOW_COOKIE}=; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(value) = clear.parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    Ok(response)
}
