//! API-key authentication against the in-memory snapshot: format check, one SHA-256, one
//! hash-map lookup. No I/O.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName};
use switchyard_proto::keys::{self, KeyHash};

use crate::error::ApiError;
use crate::snapshot::{KeyEntry, KeyKind, Snapshot};

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The presented secret: `Authorization: Bearer …` or Anthropic-style `x-api-key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        return v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim);
    }
    headers
        .get(&X_API_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub fn authenticate(
    snapshot: &Snapshot,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Arc<KeyEntry>, ApiError> {
    let secret = presented_key(headers).ok_or_else(|| {
        ApiError::Unauthorized("missing API key: send `Authorization: Bearer <key>`".into())
    })?;
    keys::validate(secret).map_err(|e| ApiError::Unauthorized(format!("invalid API key: {e}")))?;
    let key = snapshot
        .key(&KeyHash::of(secret))
        .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?;
    if key.disabled {
        return Err(ApiError::Unauthorized("this API key is disabled".into()));
    }
    if key.expires_at_ms.is_some_and(|t| t <= now_ms) {
        return Err(ApiError::Unauthorized("this API key has expired".into()));
    }
    Ok(key.clone())
}

/// Inference routes take inference keys only; management keys are refused.
pub fn inference_key(
    snapshot: &Snapshot,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Arc<KeyEntry>, ApiError> {
    let key = authenticate(snapshot, headers, now_ms)?;
    if key.kind != KeyKind::Inference {
        return Err(ApiError::Forbidden(
            "management keys cannot call inference; use an inference key".into(),
        ));
    }
    Ok(key)
}
