//! The audit log: masking secrets out of before/after snapshots, and verifying the hash
//! chain (`switchyard audit verify`). Appending is `crate::store::AuditStore::append_audit`;
//! the HTTP side (recording from handlers, `GET /api/v1/audit`) is `crate::api::audit`.

mod verify;

use serde_json::Value;

pub use verify::{ChainError, VerifyReport, verify_chain};

use crate::store::{AuditStore, NewAuditEntry, SYSTEM_ORG};

/// Audits which gateway node applied (or rejected) which config version. Installation-wide
/// (not any org's), and best effort: a failed append is logged, never fails the ack.
pub async fn record_config_ack(
    store: &dyn AuditStore,
    node_id: &str,
    version: u64,
    ok: bool,
    error: &str,
) {
    let entry = NewAuditEntry {
        org_id: SYSTEM_ORG.to_owned(),
        actor_type: "node".into(),
        actor_id: node_id.to_owned(),
        action: if ok { "config.apply" } else { "config.reject" }.into(),
        target_type: "config_version".into(),
        target_id: version.to_string(),
        before: None,
        after: Some(serde_json::json!({ "ok": ok, "error": error }).to_string()),
        ip: String::new(),
        user_agent: String::new(),
    };
    if let Err(err) = store.append_audit(&entry).await {
        tracing::warn!(error = %err, node_id, version, "could not audit a config ack");
    }
}

/// Field names whose values never enter the audit log, at any depth.
const SECRET_FIELDS: &[&str] = &[
    "api_key",
    "key",
    "secret",
    "password",
    "password_hash",
    "token",
    "node_token",
    "client_secret",
    "credential",
    "authorization",
];

/// `value` with every secret-looking field replaced by `"***"` (`null` stays `null`, so the
/// log still shows whether a credential was set).
pub fn mask_secrets(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let secret = SECRET_FIELDS.contains(&k.to_ascii_lowercase().as_str());
                    let masked = if secret && !v.is_null() {
                        Value::String("***".into())
                    } else {
                        mask_secrets(v)
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_secrets).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn secrets_are_masked_at_any_depth() {
        let v = json!({"name": "p", "api_key": "sk-live", "nested": [{"Password": "x", "ok": 1}], "token": null});
        assert_eq!(
            super::mask_secrets(&v),
            json!({"name": "p", "api_key": "***", "nested": [{"Password": "***", "ok": 1}], "token": null})
        );
    }
}
