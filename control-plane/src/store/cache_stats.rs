//! Persistence of caching diagnostics: per usage record, the conversation it belongs to,
//! whether the response cache answered it, and why sticky routing left the conversation's
//! cache endpoint (`usage_cache_facts`); and the statistics read back per key and per
//! conversation. Implemented for both backends by `cache_stats_sql::impl_cache_stats_store!`.

use async_trait::async_trait;
use sqlx::FromRow;

use super::StoreResult;

/// The caching facts of one usage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFact {
    pub request_id: String,
    pub org_id: String,
    pub key_hash: String,
    pub conversation_id: String,
    pub response_cache_hit: bool,
    pub sticky_fallback_reason: String,
    pub finished_at: i64,
}

/// Which usage records a statistics query covers (always one org).
#[derive(Debug, Clone, Default)]
pub struct CacheStatsFilter {
    pub org_id: String,
    /// Empty = every key of the org.
    pub key_hash: String,
    /// Empty = every conversation.
    pub conversation_id: String,
    pub since_ms: i64,
}

/// Totals of the covered records served by one endpoint (prices differ per endpoint).
#[derive(Debug, Clone, Default, FromRow, PartialEq, Eq)]
pub struct CacheStatsRow {
    pub endpoint_id: String,
    pub requests: i64,
    pub response_cache_hits: i64,
    /// Records that read any tokens from the provider's prompt cache.
    pub prompt_cache_hits: i64,
    pub input_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub sticky_fallbacks: i64,
}

#[async_trait]
pub trait CacheStatsStore: Send + Sync + 'static {
    /// Idempotent: a redelivered record's facts are ignored.
    async fn record_cache_facts(&self, facts: &[CacheFact]) -> StoreResult<()>;
    async fn cache_stats(&self, filter: &CacheStatsFilter) -> StoreResult<Vec<CacheStatsRow>>;
    /// The latest sticky-routing fallback reasons of the covered records, newest first.
    async fn recent_sticky_fallbacks(
        &self,
        filter: &CacheStatsFilter,
        limit: i64,
    ) -> StoreResult<Vec<(String, String)>>;
}
