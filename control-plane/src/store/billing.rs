//! Persistence of money beyond usage ingestion: ledger postings (grants, refunds, top-ups,
//! re-rating adjustments), credit totals, the effective-dated price book, Stripe Checkout
//! sessions and events, usage tags and analytics. Implemented for both backends by
//! `billing_sql::impl_billing_store!`.
//!
//! Ledger rows are never updated or deleted: a correction is a new posting.

use async_trait::async_trait;
use serde::Serialize;
use sqlx::FromRow;

use super::StoreResult;
use crate::billing::pricebook::{LongContext, PriceVersion};
use switchyard_proto::PriceSheet;

/// Kinds of ledger postings. Usage postings are written by `Store::ingest_usage`.
pub mod posting_kinds {
    pub const USAGE: &str = "usage";
    pub const GRANT: &str = "grant";
    pub const REFUND: &str = "refund";
    pub const TOPUP: &str = "topup";
    pub const ADJUSTMENT: &str = "adjustment";
}

/// Contra accounts of the platform side of non-usage postings.
pub mod platform_accounts {
    pub const GRANTS: &str = "platform:grants";
    pub const STRIPE: &str = "platform:stripe";
}

/// One balanced group of ledger entries (amounts sum to zero).
#[derive(Debug, Clone)]
pub struct Posting {
    pub id: String,
    pub org_id: String,
    pub kind: &'static str,
    pub memo: String,
    pub ref_id: Option<String>,
    pub created_at: i64,
    /// `(account, amount_nanos)`.
    pub legs: Vec<(String, i64)>,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct LedgerEntryRow {
    pub id: i64,
    pub org_id: String,
    pub account: String,
    pub amount_nanos: i64,
    pub kind: String,
    pub request_id: Option<String>,
    pub posting_id: Option<String>,
    pub ref_id: Option<String>,
    pub memo: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct LedgerQuery {
    pub account: Option<String>,
    pub kind: Option<String>,
    /// Entries with a smaller id (newest first paging).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// OpenRouter's `/credits`: what was put in (grants, top-ups) and what was spent (usage,
/// adjustments, minus refunds). `balance = credits - usage`, the credit account's sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CreditTotals {
    pub credits_nanos: i64,
    pub usage_nanos: i64,
    pub balance_nanos: i64,
}

/// A new price version and, optionally, the end of the window it corrects.
#[derive(Debug, Clone)]
pub struct NewPriceVersion {
    pub version: PriceVersion,
    /// When set, the version in effect at this instant before the change resumes there.
    pub effective_to: Option<i64>,
    pub now: i64,
}

impl NewPriceVersion {
    pub fn prices(&self) -> (PriceSheet, Option<LongContext>) {
        (self.version.base(), self.version.long_context())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RerateOutcome {
    pub version_id: String,
    /// Generations in the corrected window.
    pub requests: i64,
    /// Generations whose cost changed (one adjustment posting each).
    pub adjusted: i64,
    /// Sum of the adjustments: positive means the org was charged more.
    pub delta_nanos: i64,
    /// The change reached the current prices, so the gateways' catalog was updated.
    pub catalog_updated: bool,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct AdjustmentRow {
    pub id: String,
    pub org_id: String,
    pub request_id: String,
    pub price_version_id: String,
    pub previous_cost_nanos: i64,
    pub new_cost_nanos: i64,
    pub delta_nanos: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct CheckoutRow {
    pub id: String,
    pub org_id: String,
    pub amount_nanos: i64,
    pub url: String,
    pub created_by: String,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeOutcome {
    /// The org was credited.
    Credited { org_id: String, amount_nanos: i64 },
    /// This event id was processed before.
    DuplicateEvent,
    /// The session was credited by an earlier event (e.g. `async_payment_succeeded`).
    AlreadyCompleted,
    /// Not a session this control plane created.
    UnknownSession,
}

/// One query of `POST /api/v1/analytics/query`, validated by the API layer.
#[derive(Debug, Clone, Default)]
pub struct AnalyticsQuery {
    pub org_id: String,
    /// Dimensions to group by, in order (see `analytics::Dimension`).
    pub group_by: Vec<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    /// `(dimension, value)` equality filters.
    pub filters: Vec<(String, String)>,
    pub limit: i64,
}

/// One group of an analytics answer: the dimension values, in `group_by` order, and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnalyticsRow {
    pub keys: Vec<String>,
    pub requests: i64,
    pub errors: i64,
    pub cost_nanos: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
}

#[async_trait]
pub trait BillingStore: Send + Sync + 'static {
    /// Writes one balanced posting atomically; an unbalanced one is refused.
    async fn post(&self, posting: &Posting) -> StoreResult<()>;
    /// The credit account's totals summed from every one of its postings: the reference
    /// `ConsoleStore::rollup_credit_totals` (what readers use) is checked against.
    async fn credit_totals(&self, org_id: &str) -> StoreResult<CreditTotals>;
    async fn list_ledger(
        &self,
        org_id: &str,
        query: &LedgerQuery,
    ) -> StoreResult<Vec<LedgerEntryRow>>;
    /// Postings of an org whose entries do not sum to zero, with their sums (should be none).
    async fn unbalanced_postings(&self, org_id: &str) -> StoreResult<Vec<(String, i64)>>;
    /// Request ids of the org with other than exactly one usage posting of two entries.
    async fn usage_posting_anomalies(&self, org_id: &str) -> StoreResult<Vec<String>>;

    /// Price versions of a model, optionally of one provider, oldest first.
    async fn price_versions(
        &self,
        org_id: &str,
        model_id: &str,
        provider_id: Option<&str>,
    ) -> StoreResult<Vec<PriceVersion>>;
    /// Adds a version (the first one also records the prices in use until then, from
    /// `effective_from` 0), re-rates the usage it covers with adjustment postings, and
    /// updates the catalog when the current price changed — all in one transaction.
    async fn add_price_version(&self, new: &NewPriceVersion) -> StoreResult<RerateOutcome>;
    async fn list_adjustments(
        &self,
        org_id: &str,
        request_id: &str,
    ) -> StoreResult<Vec<AdjustmentRow>>;

    async fn create_checkout(&self, checkout: &CheckoutRow) -> StoreResult<()>;
    async fn get_checkout(&self, org_id: &str, id: &str) -> StoreResult<CheckoutRow>;
    /// Records a Stripe event once and credits the session's org once.
    async fn complete_checkout(
        &self,
        event_id: &str,
        event_type: &str,
        session_id: &str,
        now: i64,
    ) -> StoreResult<StripeOutcome>;

    /// Tags of generations; a generation's tags are written once (redelivery is a no-op).
    async fn add_usage_tags(
        &self,
        rows: &[(String, String, Vec<(String, String)>)],
    ) -> StoreResult<()>;
    async fn analytics(&self, query: &AnalyticsQuery) -> StoreResult<Vec<AnalyticsRow>>;
}
