//! Who is calling the management API: an API key looked up by hash, scoped to its org.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use switchyard_proto::keys::{self, KeyHash};

use super::AppState;
use crate::error::ApiError;
use crate::store::{KeyKind, KeyRecord};

pub struct Principal {
    pub key: KeyRecord,
    pub kind: KeyKind,
}

impl Principal {
    pub fn org_id(&self) -> &str {
        &self.key.org_id
    }

    /// Management routes take management keys only.
    pub fn require_management(&self) -> Result<(), ApiError> {
        if self.kind == KeyKind::Management {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this route needs a management key".into(),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let secret = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized("missing API key: send `Authorization: Bearer <key>`".into())
            })?;
        keys::validate(secret)
            .map_err(|e| ApiError::Unauthorized(format!("invalid API key: {e}")))?;
        let key = state
            .store
            .find_key(KeyHash::of(secret).as_str())
            .await?
            .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?;
        if key.disabled {
            return Err(ApiError::Unauthorized("this API key is disabled".into()));
        }
        if key.expires_at.is_some_and(|t| t <= crate::store::now_ms()) {
            return Err(ApiError::Unauthorized("this API key has expired".into()));
        }
        let kind = key
            .kind()
            .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?;
        Ok(Principal { key, kind })
    }
}
