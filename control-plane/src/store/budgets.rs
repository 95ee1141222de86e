//! Persistence of budgets: definitions (org / team / user / tag, per window), per-org budget
//! settings (alert webhook, default key cap, lease policy), the leases granted to gateway
//! nodes, and alert deliveries. Spend itself is never stored: `scope_spend` sums
//! `usage_records` for the window, so it is always the ledger's figure.
//! Implemented for both backends by `budgets_sql::impl_budget_store!`.

use async_trait::async_trait;
use serde::Serialize;
use sqlx::FromRow;

use super::StoreResult;

#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct BudgetRow {
    pub id: String,
    pub org_id: String,
    /// `org` | `team` | `user` | `tag`.
    pub scope_kind: String,
    /// The org id, a team id, a user id, or `key=value` for a tag.
    pub scope_id: String,
    pub name: String,
    pub limit_nanos: i64,
    /// `daily` | `weekly` | `monthly` | `lifetime`.
    pub period: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An org's budget settings; an org without a row has the defaults.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct BudgetSettingsRow {
    pub org_id: String,
    /// Where 50/80/100 % alerts are POSTed (validated against SSRF when set).
    pub alert_webhook_url: Option<String>,
    /// Daily cap of keys created without a limit, in nano-USD.
    pub default_key_daily_cap: Option<i64>,
    /// 0 = no cap beyond the budget itself.
    pub lease_max_per_gateway: i64,
    pub lease_max_per_org: i64,
    /// `fail_closed` | `overdraft`.
    pub unreachable_policy: String,
    pub overdraft_nanos: i64,
    pub default_output_tokens: i64,
    /// JSON object: model id -> output tokens.
    pub model_output_tokens: String,
    pub updated_at: i64,
}

impl BudgetSettingsRow {
    pub fn defaults(org_id: &str) -> Self {
        Self {
            org_id: org_id.to_owned(),
            alert_webhook_url: None,
            default_key_daily_cap: None,
            lease_max_per_gateway: 0,
            lease_max_per_org: 0,
            unreachable_policy: "fail_closed".into(),
            overdraft_nanos: 0,
            default_output_tokens: 1024,
            model_output_tokens: "{}".into(),
            updated_at: 0,
        }
    }
}

/// Whose spend a budget counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendScope {
    Key(String),
    Org,
    Team(String),
    User(String),
    Tag { key: String, value: String },
}

impl SpendScope {
    /// The scope of a budget row; `None` for an unknown kind or a malformed tag.
    pub fn of(row: &BudgetRow) -> Option<SpendScope> {
        match row.scope_kind.as_str() {
            "org" => Some(SpendScope::Org),
            "team" => Some(SpendScope::Team(row.scope_id.clone())),
            "user" => Some(SpendScope::User(row.scope_id.clone())),
            "tag" => {
                let (k, v) = row.scope_id.split_once('=')?;
                Some(SpendScope::Tag {
                    key: k.to_owned(),
                    value: v.to_owned(),
                })
            }
            _ => None,
        }
    }
}

/// One node's lease of one budget in one window.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct LeaseRow {
    pub budget_id: String,
    pub window_start: i64,
    pub node_id: String,
    pub org_id: String,
    pub granted_nanos: i64,
    pub consumed_nanos: i64,
    pub expires_at: i64,
    pub updated_at: i64,
}

/// One slice a node asks for, already resolved to a budget (limit, window, scope).
#[derive(Debug, Clone)]
pub struct LeaseAsk {
    pub org_id: String,
    pub budget_id: String,
    pub node_id: String,
    pub scope: SpendScope,
    pub limit_nanos: i64,
    /// The current window `[start, end)` (end 0 = lifetime).
    pub window: (i64, i64),
    /// The window the node's report is about, and its cumulative consumption there.
    pub reported_window: i64,
    pub consumed_nanos: i64,
    pub want_nanos: i64,
    pub release_nanos: i64,
    pub max_per_gateway: i64,
    pub max_per_org: i64,
    pub now: i64,
    pub ttl_ms: i64,
    /// How long after expiry an unrenewed lease is presumed dead and its unused part freed.
    pub dead_after_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseGrant {
    pub window_start: i64,
    pub window_end: i64,
    pub granted_total: i64,
    pub consumed: i64,
    pub expires_at: i64,
    pub spent: i64,
    pub others_outstanding: i64,
    /// Granted by this call.
    pub granted_now: i64,
}

#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct AlertRow {
    pub budget_id: String,
    pub window_start: i64,
    pub threshold: i64,
    pub org_id: String,
    pub spent_nanos: i64,
    pub limit_nanos: i64,
    pub status: String,
    pub attempts: i64,
    pub last_error: String,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

#[async_trait]
pub trait BudgetStore: Send + Sync + 'static {
    /// Creates a budget (a config change: gateways receive it with the next snapshot).
    async fn create_budget(&self, budget: &BudgetRow) -> StoreResult<()>;
    async fn get_budget(&self, org_id: &str, id: &str) -> StoreResult<BudgetRow>;
    async fn list_budgets(&self, org_id: &str) -> StoreResult<Vec<BudgetRow>>;
    /// Every org's budgets, for the config snapshot.
    async fn all_budgets(&self) -> StoreResult<Vec<BudgetRow>>;
    async fn update_budget(
        &self,
        org_id: &str,
        id: &str,
        name: &str,
        limit_nanos: i64,
    ) -> StoreResult<BudgetRow>;
    async fn delete_budget(&self, org_id: &str, id: &str) -> StoreResult<()>;

    /// The org's settings, or the defaults when it never set any.
    async fn get_budget_settings(&self, org_id: &str) -> StoreResult<BudgetSettingsRow>;
    async fn put_budget_settings(&self, settings: &BudgetSettingsRow) -> StoreResult<()>;
    async fn all_budget_settings(&self) -> StoreResult<Vec<BudgetSettingsRow>>;

    /// Spend of a scope since `since_ms`, per gateway node that recorded it.
    async fn scope_spend_by_node(
        &self,
        org_id: &str,
        scope: &SpendScope,
        since_ms: i64,
    ) -> StoreResult<Vec<(String, i64)>>;

    /// Records the node's report and grants what the budget can spare, atomically with
    /// respect to every other lease of the org (see `budgets::lease::grant`).
    async fn lease(&self, ask: &LeaseAsk) -> StoreResult<LeaseGrant>;
    async fn list_leases(&self, org_id: &str, budget_id: &str) -> StoreResult<Vec<LeaseRow>>;
    /// Every org's leases unexpired at `now_ms`: how many, and the nanos they hold granted
    /// but not yet consumed (the lease-state metrics).
    async fn lease_totals(&self, now_ms: i64) -> StoreResult<(i64, i64)>;

    /// Claims an alert: `true` if this (budget, window, threshold) was not claimed before.
    async fn claim_alert(&self, alert: &AlertRow) -> StoreResult<bool>;
    async fn finish_alert(
        &self,
        budget_id: &str,
        window_start: i64,
        threshold: i64,
        status: &str,
        error: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// Alerts not delivered yet, oldest first.
    async fn pending_alerts(&self, limit: i64) -> StoreResult<Vec<AlertRow>>;
    async fn list_alerts(&self, org_id: &str, budget_id: &str) -> StoreResult<Vec<AlertRow>>;
}
