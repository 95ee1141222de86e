//! Budgets and spend limits: per-key limits, org / team / user / tag budgets over UTC
//! windows, the spend leases gateways admit against (`lease`), and 50/80/100 % alerts
//! (`alerts`). Spend is always summed from the usage ledger for the window.

pub mod alerts;
pub mod lease;
pub mod window;

use std::collections::HashMap;

use switchyard_proto::pb;

use crate::store::{BudgetRow, BudgetSettingsRow, SpendScope, Store, StoreError, StoreResult};
pub use window::Window;

/// Budget id of a key's own limit in leases.
pub const KEY_PREFIX: &str = "key:";
/// How long a slice may be used before the node must renew it.
pub const LEASE_TTL_MS: i64 = 30_000;
/// A lease not renewed this long past its expiry belongs to a node presumed gone.
pub const DEAD_AFTER_MS: i64 = 60_000;

/// A budget as a lease sees it: whose spend, how much, over which window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub scope: SpendScope,
    pub limit_nanos: i64,
    pub window: Window,
}

/// Resolves a lease's budget id within `org_id`: `key:<hash>` (the key must have a limit)
/// or a budget row. `NotFound` when it does not exist (or no longer limits anything).
pub async fn resolve(store: &dyn Store, org_id: &str, budget_id: &str) -> StoreResult<Resolved> {
    if let Some(hash) = budget_id.strip_prefix(KEY_PREFIX) {
        let key = store.get_key(org_id, hash).await?;
        let limit = key.limit_nanos.ok_or(StoreError::NotFound)?;
        return Ok(Resolved {
            scope: SpendScope::Key(key.hash),
            limit_nanos: limit,
            window: Window::from_limit_reset(key.limit_reset.as_deref()),
        });
    }
    let row = store.get_budget(org_id, budget_id).await?;
    resolved_row(&row).ok_or(StoreError::NotFound)
}

pub fn resolved_row(row: &BudgetRow) -> Option<Resolved> {
    Some(Resolved {
        scope: SpendScope::of(row)?,
        limit_nanos: row.limit_nanos,
        window: Window::parse(&row.period)?,
    })
}

/// Spend of a budget's current window, from the ledger.
pub async fn window_spend(
    store: &dyn Store,
    org_id: &str,
    resolved: &Resolved,
    now_ms: i64,
) -> StoreResult<i64> {
    let (start, _) = resolved.window.bounds(now_ms);
    Ok(store
        .scope_spend_by_node(org_id, &resolved.scope, start)
        .await?
        .into_iter()
        .map(|(_, s)| s)
        .fold(0, i64::saturating_add))
}

pub fn policy_pb(s: &BudgetSettingsRow) -> pb::LeasePolicy {
    let models: HashMap<String, u32> = serde_json::from_str(&s.model_output_tokens)
        .unwrap_or_else(|err| {
            tracing::error!(org_id = %s.org_id, error = %err, "unreadable model_output_tokens; using the default estimate");
            HashMap::new()
        });
    pb::LeasePolicy {
        overdraft: s.unreachable_policy == "overdraft",
        overdraft_nanos: s.overdraft_nanos,
        max_per_gateway_nanos: s.lease_max_per_gateway,
        max_per_org_nanos: s.lease_max_per_org,
        default_output_tokens: u32::try_from(s.default_output_tokens).unwrap_or(u32::MAX),
        model_output_tokens: models,
    }
}

/// Adds every org's budgets and lease policy to a snapshot. Read after `load_config` like
/// the access policies; every budget change bumps the version, so a matching snapshot
/// follows at once.
pub async fn add_to_snapshot(
    snapshot: &mut pb::ConfigSnapshot,
    store: &dyn Store,
) -> StoreResult<()> {
    let mut by_org: HashMap<String, pb::OrgBudgets> = HashMap::new();
    for s in store.all_budget_settings().await? {
        by_org.insert(
            s.org_id.clone(),
            pb::OrgBudgets {
                org_id: s.org_id.clone(),
                budgets: Vec::new(),
                policy: Some(policy_pb(&s)),
            },
        );
    }
    for b in store.all_budgets().await? {
        let entry = by_org
            .entry(b.org_id.clone())
            .or_insert_with(|| pb::OrgBudgets {
                org_id: b.org_id.clone(),
                budgets: Vec::new(),
                policy: Some(policy_pb(&BudgetSettingsRow::defaults(&b.org_id))),
            });
        entry.budgets.push(pb::Budget {
            id: b.id,
            scope_kind: b.scope_kind,
            scope_id: b.scope_id,
            limit_nanos: b.limit_nanos,
            window: b.period,
        });
    }
    let mut list: Vec<pb::OrgBudgets> = by_org.into_values().collect();
    list.sort_by(|a, b| a.org_id.cmp(&b.org_id));
    snapshot.org_budgets = list;
    Ok(())
}
