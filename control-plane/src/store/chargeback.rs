//! Persistence of chargeback and money settings (issue #6, second part): per-org billing
//! settings (platform fee, auto top-up), idempotent postings (fees, auto top-ups), the
//! reference catalog of list prices, auto top-up attempts, and the ledger reads behind FOCUS
//! exports and monthly statements. Implemented for both backends by
//! `chargeback_sql::impl_chargeback_store!`.

use async_trait::async_trait;
use serde::Serialize;
use sqlx::FromRow;

use super::{Posting, StoreResult};

/// Kinds of postings added by this module (see also `posting_kinds`).
pub mod chargeback_kinds {
    /// The platform fee on a generation: a separate posting so chargeback can show provider
    /// cost and fee apart.
    pub const FEE: &str = "fee";
}

/// Contra account of fee postings.
pub const PLATFORM_FEES: &str = "platform:fees";

#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow, Serialize)]
pub struct BillingSettings {
    pub org_id: String,
    pub platform_fee_bps: i64,
    pub auto_topup_enabled: bool,
    pub auto_topup_threshold_nanos: i64,
    pub auto_topup_amount_nanos: i64,
    pub stripe_customer_id: String,
    pub stripe_payment_method_id: String,
    pub updated_at: i64,
}

/// One entry of the reference catalog, prices in nano-USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow, Serialize)]
pub struct CatalogModel {
    /// `""` for the seeded list, else the org whose edit or custom model this is.
    pub org_id: String,
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub host: String,
    pub upstream_model: String,
    pub context_length: i64,
    pub max_output_tokens: i64,
    pub price_input: i64,
    pub price_output: i64,
    pub price_cache_read: i64,
    pub price_cache_write_5m: i64,
    pub price_cache_write_1h: i64,
    pub long_context_threshold: i64,
    pub lc_price_input: i64,
    pub lc_price_output: i64,
    pub lc_price_cache_read: i64,
    pub lc_price_cache_write_5m: i64,
    pub lc_price_cache_write_1h: i64,
    pub as_of: String,
    pub source: String,
    pub updated_at: i64,
}

/// An entry of the org's credit account with what it refers to: the generation of a usage,
/// fee, adjustment or refund entry (model, provider, key, times) when there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow, Serialize)]
pub struct LedgerLine {
    pub id: i64,
    pub kind: String,
    pub amount_nanos: i64,
    pub memo: String,
    pub created_at: i64,
    /// The generation (usage: `request_id`; fee/adjustment/refund: `ref_id`).
    pub request_id: Option<String>,
    pub posting_id: Option<String>,
    pub model: Option<String>,
    pub provider_slug: Option<String>,
    pub key_hash: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow, Serialize)]
pub struct AutoTopupRow {
    pub id: String,
    pub org_id: String,
    pub crossing: i64,
    pub amount_nanos: i64,
    pub balance_nanos: i64,
    pub payment_intent_id: Option<String>,
    pub status: String,
    pub error: String,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

#[async_trait]
pub trait ChargebackStore: Send + Sync + 'static {
    /// The org's settings, or the defaults (no fee, no auto top-up) when it has none.
    async fn billing_settings(&self, org_id: &str) -> StoreResult<BillingSettings>;
    /// Replaces the org's settings; failed auto top-ups stop blocking new attempts.
    async fn set_billing_settings(&self, settings: &BillingSettings) -> StoreResult<()>;
    /// Orgs with auto top-up switched on.
    async fn auto_topup_orgs(&self) -> StoreResult<Vec<BillingSettings>>;

    /// Writes balanced postings whose ids may already exist: those are skipped (exactly once
    /// under redelivery). Returns how many were new.
    async fn post_once(&self, postings: &[Posting]) -> StoreResult<u32>;
    /// The fee posted for a generation (0 if none).
    async fn fee_of(&self, org_id: &str, request_id: &str) -> StoreResult<i64>;

    /// The catalog as an org sees it: seeded entries overlaid with the org's own.
    async fn list_catalog(&self, org_id: &str) -> StoreResult<Vec<CatalogModel>>;
    async fn get_catalog_model(&self, org_id: &str, id: &str) -> StoreResult<Option<CatalogModel>>;
    /// Adds or replaces the org's own entry (`model.org_id` must be set).
    async fn put_catalog_model(&self, model: &CatalogModel) -> StoreResult<()>;

    /// Sum of the org's credit account strictly before `at_ms`.
    async fn credit_balance_before(&self, org_id: &str, at_ms: i64) -> StoreResult<i64>;
    /// Entries of the org's credit account posted in `[from_ms, to_ms)`, oldest first.
    async fn credit_lines(
        &self,
        org_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<LedgerLine>>;
    /// `(request_id, key, value)` tags of the generations of `credit_lines` in the window.
    async fn window_tags(
        &self,
        org_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<(String, String, String)>>;

    /// Starts the next auto top-up of an org unless one is pending or failed (a failure waits
    /// for the settings to be saved again). Two replicas racing get one row between them.
    async fn begin_auto_topup(
        &self,
        org_id: &str,
        amount_nanos: i64,
        balance_nanos: i64,
        now: i64,
    ) -> StoreResult<Option<AutoTopupRow>>;
    /// Records the outcome; a success credits the org with the posting
    /// `auto_topup:<payment intent>` (the webhook of the same intent is then a no-op).
    async fn finish_auto_topup(
        &self,
        id: &str,
        payment_intent_id: Option<&str>,
        succeeded: bool,
        error: &str,
        now: i64,
    ) -> StoreResult<()>;
    async fn list_auto_topups(&self, org_id: &str) -> StoreResult<Vec<AutoTopupRow>>;
}

/// The posting that credits an auto top-up; the same id from the webhook path and the direct
/// path makes the credit happen once.
pub fn auto_topup_posting(
    org_id: &str,
    payment_intent_id: &str,
    amount_nanos: i64,
    now: i64,
) -> Posting {
    Posting {
        id: format!("auto_topup:{payment_intent_id}"),
        org_id: org_id.to_owned(),
        // A top-up like Checkout's, so `/credits` counts it as credits.
        kind: super::posting_kinds::TOPUP,
        memo: format!("Stripe auto top-up ({payment_intent_id})"),
        ref_id: Some(payment_intent_id.to_owned()),
        created_at: now,
        legs: vec![
            (super::accounts::ORG_CREDITS.to_owned(), amount_nanos),
            (super::platform_accounts::STRIPE.to_owned(), -amount_nanos),
        ],
    }
}
