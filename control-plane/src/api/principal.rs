//! Who is calling the management API, in which org, with which role:
//!
//! - `Authorization: Bearer <API key>`: a management key acts as `admin` of its org; an
//!   inference key holds no management permission (see `crate::identity::rbac`).
//! - the `sy_session` cookie (console): the user's role in the session's current org.
//!   Mutating requests must echo the session's CSRF token in `X-CSRF-Token`.
//!
//! Handlers call `require(permission)` (403 when the role lacks it) and, for paths naming an
//! org, `require_org` (404 for any org but the principal's, so other tenants' ids never leak).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use switchyard_proto::keys::{self, KeyHash};

use super::AppState;
use crate::error::ApiError;
use crate::identity::session::{self, Claims};
use crate::identity::{Permission, allows};
use crate::store::{KeyKind, KeyRecord, Role, now_ms};

pub enum Actor {
    Key {
        key: KeyRecord,
        kind: KeyKind,
    },
    User {
        user_id: String,
        email: String,
        claims: Claims,
    },
}

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: String,
    pub peer: Option<std::net::IpAddr>,
    pub user_agent: String,
    /// Arrived over TLS (directly or per `X-Forwarded-Proto`): cookies get `Secure`.
    pub https: bool,
}

impl RequestMeta {
    pub fn from_parts(parts: &Parts) -> Self {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let header_text = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        // A forwarded address is recorded but never trusted alone: the peer stays beside it.
        let forwarded = header_text("x-forwarded-for")
            .and_then(|v| v.split(',').next())
            .map(str::trim);
        let peer_text = peer.map(|p| p.to_string()).unwrap_or_default();
        let ip = match forwarded {
            Some(f) if !peer_text.is_empty() => format!("{f} via {peer_text}"),
            Some(f) => f.to_owned(),
            None => peer_text,
        };
        let user_agent: String = header_text(header::USER_AGENT.as_str())
            .unwrap_or_default()
            .chars()
            .take(512)
            .collect();
        let https = header_text("x-forwarded-proto")
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
            || parts.uri.scheme_str() == Some("https");
        Self {
            ip: ip.chars().take(200).collect(),
            peer,
            user_agent,
            https,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestMeta::from_parts(parts))
    }
}

pub struct Principal {
    org_id: String,
    /// `None` for inference keys, and for a session whose user left its current org.
    pub role: Option<Role>,
    pub actor: Actor,
    pub meta: RequestMeta,
}

impl Principal {
    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    pub fn can(&self, permission: Permission) -> bool {
        self.role.is_some_and(|r| allows(r, permission))
    }

    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        match self.role {
            Some(role) if allows(role, permission) => Ok(()),
            Some(role) => Err(ApiError::Forbidden(format!(
                "the {role} role does not have the `{permission}` permission"
            ))),
            None if self.is_inference_key() => Err(ApiError::Forbidden(
                "this route needs a management key or a console session".into(),
            )),
            None => Err(ApiError::Forbidden(
                "you are no longer a member of this org; switch to another org".into(),
            )),
        }
    }

    /// A path that names an org must name the caller's; anything else is "not found".
    pub fn require_org(&self, org_id: &str) -> Result<(), ApiError> {
        if org_id == self.org_id {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("org {org_id} not found")))
        }
    }

    pub fn key(&self) -> Option<&KeyRecord> {
        match &self.actor {
            Actor::Key { key, .. } => Some(key),
            Actor::User { .. } => None,
        }
    }

    pub fn is_inference_key(&self) -> bool {
        matches!(
            self.actor,
            Actor::Key {
                kind: KeyKind::Inference,
                ..
            }
        )
    }

    pub fn user_id(&self) -> Option<&str> {
        match &self.actor {
            Actor::User { user_id, .. } => Some(user_id),
            Actor::Key { .. } => None,
        }
    }

    pub fn claims(&self) -> Option<&Claims> {
        match &self.actor {
            Actor::User { claims, .. } => Some(claims),
            Actor::Key { .. } => None,
        }
    }

    /// `(actor_type, actor_id)` for the audit log: the key's hash or the user's id.
    pub fn audit_actor(&self) -> (&'static str, String) {
        match &self.actor {
            Actor::Key { key, .. } => ("key", key.hash.clone()),
            Actor::User { user_id, email, .. } => ("user", format!("{user_id} <{email}>")),
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

async fn from_key(
    state: &AppState,
    secret: &str,
    meta: RequestMeta,
) -> Result<Principal, ApiError> {
    keys::validate(secret).map_err(|e| ApiError::Unauthorized(format!("invalid API key: {e}")))?;
    let key = state
        .store
        .find_key(KeyHash::of(secret).as_str())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?;
    if key.disabled {
        return Err(ApiError::Unauthorized("this API key is disabled".into()));
    }
    if key.expires_at.is_some_and(|t| t <= now_ms()) {
        return Err(ApiError::Unauthorized("this API key has expired".into()));
    }
    let kind = key
        .kind()
        .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?;
    Ok(Principal {
        org_id: key.org_id.clone(),
        role: (kind == KeyKind::Management).then_some(Role::Admin),
        actor: Actor::Key { key, kind },
        meta,
    })
}

/// Resolves a session cookie; `None` when the request carries none.
pub async fn from_session(
    state: &AppState,
    parts: &Parts,
    meta: RequestMeta,
) -> Result<Option<Principal>, ApiError> {
    let Some(token) = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie_value(h, session::COOKIE))
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let expired = || ApiError::Unauthorized("your session has ended; log in again".into());
    let claims = state.sessions.verify(token).map_err(|_| expired())?;
    let row = state
        .store
        .get_session(&claims.sid)
        .await?
        .filter(|s| s.revoked_at.is_none() && s.expires_at > now_ms() && s.user_id == claims.sub)
        .ok_or_else(expired)?;
    let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        let echoed = parts
            .headers
            .get(session::CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        if echoed != Some(claims.csrf.as_str()) {
            return Err(ApiError::Forbidden(
                "missing or wrong CSRF token: send the session's token in X-CSRF-Token".into(),
            ));
        }
    }
    let user = state.store.get_user(&row.user_id).await?;
    if user.disabled {
        return Err(ApiError::Unauthorized("this account is disabled".into()));
    }
    let role = match state.store.get_member(&row.org_id, &user.id).await {
        Ok(member) => member.role(),
        Err(crate::store::StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Some(Principal {
        org_id: row.org_id,
        role,
        actor: Actor::User {
            user_id: user.id,
            email: user.email,
            claims,
        },
        meta,
    }))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let meta = RequestMeta::from_parts(parts);
        if let Some(secret) = bearer(parts) {
            return from_key(state, secret, meta).await;
        }
        from_session(state, parts, meta).await?.ok_or_else(|| {
            ApiError::Unauthorized(
                "missing credentials: send `Authorization: Bearer <key>` or log in".into(),
            )
        })
    }
}
