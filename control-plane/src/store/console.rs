//! Read-only queries behind the web console: usage by day, model and key (the overview), and
//! the request log. Implemented for both backends by `impl_console_store!`; every query
//! is scoped by org and bounded by time (the `usage_records_org_time` index).

use async_trait::async_trait;
use sqlx::FromRow;

use super::{StoreResult, UsageRow};

/// Usage of one UTC day (days since the epoch), model and key. Money in nano-USD.
#[derive(Debug, Clone, Default, FromRow, PartialEq, Eq)]
pub struct UsageBucket {
    pub day: i64,
    pub model: String,
    pub key_hash: String,
    pub requests: i64,
    pub errors: i64,
    pub cost_nanos: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// A page of the request log, newest first.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    /// Only rows that finished strictly before this instant (unix ms): the next page's cursor.
    pub before: Option<i64>,
    pub model: Option<String>,
    pub key_hash: Option<String>,
    /// Only failed requests (HTTP status >= 400 or an error type).
    pub errors_only: bool,
    pub limit: i64,
}

#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Usage since `since_ms` grouped by day, model and key, in one pass over the range:
    /// the overview derives its totals, daily series and top lists from these.
    async fn usage_buckets(&self, org_id: &str, since_ms: i64) -> StoreResult<Vec<UsageBucket>>;
    async fn list_usage(&self, org_id: &str, query: &UsageQuery) -> StoreResult<Vec<UsageRow>>;
}

macro_rules! impl_console_store {
    ($store:ident, $db:ty) => {
        mod console_impl {
            use super::$store;
            use $crate::store::console::*;
            use $crate::store::sql::USAGE_COLUMNS;
            use $crate::store::{StoreResult, UsageRow};

            const ERROR: &str = "(http_status >= 400 OR error_type <> '')";

            #[async_trait::async_trait]
            impl ConsoleStore for $store {
                async fn usage_buckets(&self, org_id: &str, since_ms: i64) -> StoreResult<Vec<UsageBucket>> {
                    Ok(sqlx::query_as::<_, UsageBucket>(&format!(
                        "SELECT CAST(finished_at / 86400000 AS BIGINT) AS day, model, key_hash, COUNT(*) AS requests,
                                CAST(COALESCE(SUM(CASE WHEN {ERROR} THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors,
                                CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost_nanos,
                                CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens,
                                CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens
                         FROM usage_records WHERE org_id = $1 AND finished_at >= $2
                         GROUP BY CAST(finished_at / 86400000 AS BIGINT), model, key_hash"
                    ))
                    .bind(org_id)
                    .bind(since_ms)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn list_usage(&self, org_id: &str, q: &UsageQuery) -> StoreResult<Vec<UsageRow>> {
                    Ok(sqlx::query_as::<_, UsageRow>(&format!(
                        "SELECT {USAGE_COLUMNS} FROM usage_records WHERE org_id = $1
                           AND ($2 IS NULL OR finished_at < $2)
                           AND ($3 IS NULL OR model = $3)
                           AND ($4 IS NULL OR key_hash = $4)
                           AND ($5 = FALSE OR {ERROR})
                         ORDER BY finished_at DESC, request_id DESC LIMIT $6"
                    ))
                    .bind(org_id)
                    .bind(q.before)
                    .bind(&q.model)
                    .bind(&q.key_hash)
                    .bind(q.errors_only)
                    .bind(q.limit)
                    .fetch_all(&self.pool)
                    .await?)
                }
            }
        }
    };
}

pub(super) use impl_console_store;
