//! Persistence of the hash-chained audit log. Implemented for both backends by
//! `identity_sql::impl_identity_store!`.
//!
//! Entry `n` stores `hash_n = SHA-256(hash_{n-1} ‖ content_n)`, where the content is every
//! stored field in a length-prefixed encoding (no JSON re-serialisation, so the hash never
//! depends on a serialiser's key order). `audit_head` keeps the newest `(seq, hash)`, so
//! deleting entries at the end of the chain is caught as well as in the middle.

use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::FromRow;

use super::StoreResult;

/// Org id of installation-wide entries (gateway config acks), which no org's API lists.
pub const SYSTEM_ORG: &str = "";

#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    pub org_id: String,
    /// `user`, `key`, `node` or `system`.
    pub actor_type: String,
    pub actor_id: String,
    /// `<family>.<verb>`, e.g. `key.create`, `member.update`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// JSON with secrets already masked.
    pub before: Option<String>,
    pub after: Option<String>,
    pub ip: String,
    pub user_agent: String,
}

#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub org_id: String,
    pub at: i64,
    pub actor_type: String,
    pub actor_id: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub ip: String,
    pub user_agent: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// The hash this entry must carry, given its content and `prev_hash`.
    pub fn expected_hash(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(self.prev_hash.as_bytes());
        field(&self.seq.to_be_bytes());
        field(self.org_id.as_bytes());
        field(&self.at.to_be_bytes());
        field(self.actor_type.as_bytes());
        field(self.actor_id.as_bytes());
        field(self.action.as_bytes());
        field(self.target_type.as_bytes());
        field(self.target_id.as_bytes());
        // Absent and empty differ: a presence byte precedes each optional field.
        for opt in [&self.before_json, &self.after_json] {
            match opt {
                Some(text) => {
                    field(&[1]);
                    field(text.as_bytes());
                }
                None => field(&[0]),
            }
        }
        field(self.ip.as_bytes());
        field(self.user_agent.as_bytes());
        hex::encode(h.finalize())
    }
}

/// Filters of `GET /api/v1/audit`; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    /// Exact action, or a family prefix ending in `.` (`key.`).
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    /// Paging cursor: only entries with a smaller seq (listings run newest first).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    async fn append_audit(&self, entry: &NewAuditEntry) -> StoreResult<AuditEntry>;
    /// Entries of one org, newest first.
    async fn list_audit(&self, org_id: &str, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;
    /// The whole chain across orgs in seq order, for verification.
    async fn audit_chain_page(&self, after_seq: i64, limit: i64) -> StoreResult<Vec<AuditEntry>>;
    /// The newest `(seq, hash)`; `(0, "")` for an empty log.
    async fn audit_head(&self) -> StoreResult<(i64, String)>;
}
