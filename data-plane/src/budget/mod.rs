//! Budget admission on the gateway: before a request is routed, its estimated cost is
//! reserved against this node's slice (lease) of every budget that applies — the key's own
//! limit and the org / team / user / tag budgets of the snapshot. After the response the
//! real cost is settled and the rest released.
//!
//! Slices come from the control plane's `BudgetService.Lease`, which never grants more than
//! the budget has left after every node's outstanding slices, so N gateways together stay
//! within the limit. The hot path waits on the control plane only when the local slice is
//! short (the first request of a budget, or the last ones before it is spent); a background
//! renewal tops slices up before they run dry. When the control plane cannot be reached and
//! the slice is spent, the org's policy decides: fail closed (402) or a bounded overdraft.

mod estimate;
mod slices;

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use switchyard_proto::pb;

pub use estimate::{DEFAULT_OUTPUT_TOKENS, estimate_cost};
pub use slices::{Budgets, LeaseFn, Reservation, Shortfall};

/// An org's budgets and lease policy, as the snapshot carries them.
#[derive(Debug, Default, Clone)]
pub struct OrgBudgets {
    pub budgets: Vec<pb::Budget>,
    pub policy: pb::LeasePolicy,
}

impl OrgBudgets {
    /// Output tokens to reserve for `model` when the request sets no `max_tokens`.
    pub fn output_estimate(&self, model: &str) -> u32 {
        self.policy
            .model_output_tokens
            .get(model)
            .copied()
            .filter(|t| *t > 0)
            .unwrap_or(if self.policy.default_output_tokens > 0 {
                self.policy.default_output_tokens
            } else {
                DEFAULT_OUTPUT_TOKENS
            })
    }

    /// Output tokens a request on `model` is assumed to produce: its own bound
    /// (`max_tokens` / `max_completion_tokens`), else the org's estimate. Budget
    /// reservations and provisional stream usage both use it.
    pub fn output_tokens(&self, model: &str, max_output_tokens: Option<u32>) -> u32 {
        max_output_tokens.unwrap_or_else(|| self.output_estimate(model))
    }
}

/// Reads the snapshot's budgets, keyed by org. Budgets of orgs the snapshot does not carry
/// reject it, like any other dangling reference.
pub fn from_snapshot(
    list: &[pb::OrgBudgets],
    known_org: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Arc<OrgBudgets>>, String> {
    let mut out = HashMap::with_capacity(list.len());
    for org in list {
        if !known_org(&org.org_id) {
            return Err(format!("budgets name unknown org `{}`", org.org_id));
        }
        for b in &org.budgets {
            if b.limit_nanos < 0 {
                return Err(format!("budget {} has a negative limit", b.id));
            }
            if !matches!(b.scope_kind.as_str(), "org" | "team" | "user" | "tag") {
                return Err(format!(
                    "budget {} has unknown scope `{}`",
                    b.id, b.scope_kind
                ));
            }
        }
        out.insert(
            org.org_id.clone(),
            Arc::new(OrgBudgets {
                budgets: org.budgets.clone(),
                policy: org.policy.clone().unwrap_or_default(),
            }),
        );
    }
    Ok(out)
}

/// One budget a request must fit in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub budget_id: String,
    pub org_id: Arc<str>,
    pub limit_nanos: i64,
    /// How the 402 message names it: "key limit", "org budget (monthly)", …
    pub label: String,
}

/// The budgets that apply to a request of `key` carrying `tags`.
pub fn needs(
    key: &crate::snapshot::KeyEntry,
    org: Option<&OrgBudgets>,
    tags: &BTreeMap<String, String>,
) -> Vec<Need> {
    let mut out = Vec::new();
    if let Some(limit) = key.limit_nanos {
        let window = if key.limit_reset.is_empty() {
            "lifetime"
        } else {
            key.limit_reset.as_str()
        };
        out.push(Need {
            budget_id: format!("key:{}", key.hash),
            org_id: key.org_id.clone(),
            limit_nanos: limit,
            label: format!("key limit ({window})"),
        });
    }
    for b in org.map(|o| o.budgets.as_slice()).unwrap_or_default() {
        let applies = match b.scope_kind.as_str() {
            "org" => true,
            "team" => key.owner_team_id.as_deref() == Some(b.scope_id.as_str()),
            "user" => key.owner_user_id.as_deref() == Some(b.scope_id.as_str()),
            "tag" => b
                .scope_id
                .split_once('=')
                .is_some_and(|(k, v)| tags.get(k).is_some_and(|t| t == v)),
            _ => false,
        };
        if applies {
            out.push(Need {
                budget_id: b.id.clone(),
                org_id: key.org_id.clone(),
                limit_nanos: b.limit_nanos,
                label: format!("{} budget `{}` ({})", b.scope_kind, b.scope_id, b.window),
            });
        }
    }
    out
}

/// Reserves a request's estimated cost against every budget that applies to it. The
/// estimate is priced with the dearest endpoint among `attempts` (the route may fall back to
/// any of them). `Ok(None)` when no budget applies.
pub async fn admit(
    state: &crate::state::AppState,
    key: &crate::snapshot::KeyEntry,
    org: &OrgBudgets,
    tags: &BTreeMap<String, String>,
    max_output_tokens: Option<u32>,
    prompt_tokens: u64,
    attempts: &[crate::routing::Attempt],
) -> Result<Option<Reservation>, crate::error::ApiError> {
    if needs(key, Some(org), tags).is_empty() {
        return Ok(None);
    }
    let estimate = attempts
        .iter()
        .map(|a| {
            let output = org.output_tokens(&a.model.id, max_output_tokens);
            estimate_cost([&a.endpoint.prices], prompt_tokens, u64::from(output))
        })
        .max()
        .unwrap_or(0);
    admit_estimate(state, key, org, tags, estimate).await
}

/// Reserves an already computed estimate (nano-USD) against every budget that applies.
pub async fn admit_estimate(
    state: &crate::state::AppState,
    key: &crate::snapshot::KeyEntry,
    org: &OrgBudgets,
    tags: &BTreeMap<String, String>,
    estimate: i64,
) -> Result<Option<Reservation>, crate::error::ApiError> {
    let needs = needs(key, Some(org), tags);
    if needs.is_empty() {
        return Ok(None);
    }
    state
        .budgets
        .reserve(&needs, estimate, &org.policy)
        .await
        .map(Some)
        .map_err(crate::error::ApiError::BudgetExceeded)
}

/// Frees a generation's reservation when routing ends without a usage record (the record,
/// when there is one, settles it first; then this is a no-op).
pub struct HoldGuard {
    budgets: Budgets,
    generation: switchyard_proto::GenerationId,
    armed: bool,
}

impl HoldGuard {
    /// Holds `reservation` for `generation` until its usage record settles it.
    pub fn hold(
        budgets: &Budgets,
        generation: switchyard_proto::GenerationId,
        reservation: Option<Reservation>,
    ) -> Self {
        let armed = reservation.is_some();
        if let Some(r) = reservation {
            budgets.hold(generation, r);
        }
        Self {
            budgets: budgets.clone(),
            generation,
            armed,
        }
    }

    /// A provider answered: the usage record will settle the reservation.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        if self.armed {
            self.budgets.release(self.generation);
        }
    }
}

#[cfg(test)]
mod tests;
