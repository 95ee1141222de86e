//! `GET /api/v1/audit` (filters, newest first, cursor paging) and `GET /api/v1/audit/export`
//! (JSON lines), plus `record`, which every mutating handler calls after its change commits.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::principal::Principal;
use super::timefmt::{iso, parse_iso};
use crate::audit::mask_secrets;
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{AuditEntry, AuditFilter, NewAuditEntry};

const PAGE_MAX: i64 = 500;
const EXPORT_MAX: usize = 1_000_000;

/// What changed, for `record`: the target and its before/after state (secrets are masked
/// here, so callers may pass full JSON).
pub struct Change<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub before: Option<&'a Value>,
    pub after: Option<&'a Value>,
}

/// Appends one entry for a committed change made by `principal` in `org_id`.
pub async fn record_in(
    state: &AppState,
    principal: &Principal,
    org_id: &str,
    change: Change<'_>,
) -> Result<(), ApiError> {
    let (actor_type, actor_id) = principal.audit_actor();
    let text = |v: Option<&Value>| v.map(|v| mask_secrets(v).to_string());
    state
        .store
        .append_audit(&NewAuditEntry {
            org_id: org_id.to_owned(),
            actor_type: actor_type.to_owned(),
            actor_id,
            action: change.action.to_owned(),
            target_type: change.target_type.to_owned(),
            target_id: change.target_id.to_owned(),
            before: text(change.before),
            after: text(change.after),
            ip: principal.meta.ip.clone(),
            user_agent: principal.meta.user_agent.clone(),
        })
        .await?;
    Ok(())
}

/// `record_in` the principal's own org.
pub async fn record(
    state: &AppState,
    principal: &Principal,
    change: Change<'_>,
) -> Result<(), ApiError> {
    let org = principal.org_id().to_owned();
    record_in(state, principal, &org, change).await
}

#[derive(Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target_type: Option<String>,
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Cursor from `next_before` of the previous page.
    before: Option<i64>,
    limit: Option<i64>,
}

impl AuditQuery {
    fn filter(self, limit: i64) -> Result<AuditFilter, ApiError> {
        Ok(AuditFilter {
            actor_id: self.actor,
            action: self.action,
            target_type: self.target_type,
            target_id: self.target,
            since: self
                .since
                .as_deref()
                .map(|t| parse_iso("since", t))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|t| parse_iso("until", t))
                .transpose()?,
            before_seq: self.before,
            limit,
        })
    }
}

pub fn entry_json(e: &AuditEntry) -> Value {
    let parse = |t: &Option<String>| {
        t.as_deref().map(|t| {
            serde_json::from_str::<Value>(t).unwrap_or_else(|_| Value::String(t.to_owned()))
        })
    };
    json!({
        "seq": e.seq,
        "at": iso(e.at),
        "org_id": e.org_id,
        "actor": { "type": e.actor_type, "id": e.actor_id },
        "action": e.action,
        "target": { "type": e.target_type, "id": e.target_id },
        "before": parse(&e.before_json),
        "after": parse(&e.after_json),
        "ip": e.ip,
        "user_agent": e.user_agent,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::AuditRead)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "`limit` must be between 1 and {PAGE_MAX}"
        )));
    }
    let entries = state
        .store
        .list_audit(principal.org_id(), &q.filter(limit)?)
        .await?;
    let next = (i64::try_from(entries.len()).unwrap_or(i64::MAX) == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({
        "data": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    principal.require(Permission::AuditRead)?;
    let mut filter = q.filter(PAGE_MAX)?;
    let mut out = String::new();
    let mut lines = 0usize;
    loop {
        let page = state.store.list_audit(principal.org_id(), &filter).await?;
        let Some(last) = page.last() else { break };
        filter.before_seq = Some(last.seq);
        for e in &page {
            out.push_str(&entry_json(e).to_string());
            out.push('\n');
        }
        lines += page.len();
        if lines >= EXPORT_MAX || i64::try_from(page.len()).unwrap_or(0) < PAGE_MAX {
            break;
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"switchyard-audit.jsonl\"",
            ),
        ],
        out,
    )
        .into_response())
}
