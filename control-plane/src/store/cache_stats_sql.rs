//! SQL of `CacheStatsStore`, shared by both backends like `budgets_sql.rs`.

macro_rules! impl_cache_stats_store {
    ($store:ident, $db:ty) => {
        mod cache_stats_impl {
            use super::$store;
            use $crate::store::*;

            /// Filters shared by both queries: `$1` org, `$2` key ('' = all), `$3`
            /// conversation ('' = all), `$4` since.
            const FILTER: &str = "u.org_id = $1 AND ($2 = '' OR u.key_hash = $2)
                 AND ($3 = '' OR f.conversation_id = $3) AND u.finished_at >= $4";

            /// Idempotent on the request id. Multi-row statements: a statement per fact was a
            /// round trip to SQLite's thread per request ingested. At most 128 rows (7
            /// parameters each), padded to a few lengths (`padded_chunks`; the conflict
            /// clause skips the repeats).
            pub(super) async fn insert_cache_facts(tx: &mut sqlx::Transaction<'_, $db>, facts: &[CacheFact]) -> StoreResult<()> {
                for chunk in $crate::store::chunks::padded_chunks(facts, 128) {
                    let mut insert = $crate::store::values::Values::<$db>::new(
                        "INSERT INTO usage_cache_facts (request_id, org_id, key_hash, conversation_id, response_cache_hit, sticky_fallback_reason, finished_at)",
                        chunk.len(),
                        7,
                    );
                    for f in chunk.rows() {
                        insert.row(|b| {
                            b.bind(f.request_id.as_str())
                                .bind(f.org_id.as_str())
                                .bind(f.key_hash.as_str())
                                .bind(f.conversation_id.as_str())
                                .bind(f.response_cache_hit)
                                .bind(f.sticky_fallback_reason.as_str())
                                .bind(f.finished_at);
                        });
                    }
                    let (sql, args) = insert.finish(" ON CONFLICT (request_id) DO NOTHING")?;
                    sqlx::query_with(&sql, args).execute(&mut **tx).await?;
                }
                Ok(())
            }

            #[async_trait::async_trait]
            impl CacheStatsStore for $store {
                async fn record_cache_facts(&self, facts: &[CacheFact]) -> StoreResult<()> {
                    if facts.is_empty() {
                        return Ok(());
                    }
                    let mut tx = Self::begin_write(&self.pool).await?;
                    insert_cache_facts(&mut tx, facts).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn cache_stats(&self, filter: &CacheStatsFilter) -> StoreResult<Vec<CacheStatsRow>> {
                    Ok(sqlx::query_as::<_, CacheStatsRow>(&format!(
                        "SELECT u.endpoint_id AS endpoint_id,
                                CAST(COUNT(*) AS BIGINT) AS requests,
                                CAST(COALESCE(SUM(CASE WHEN f.response_cache_hit THEN 1 ELSE 0 END), 0) AS BIGINT) AS response_cache_hits,
                                CAST(COALESCE(SUM(CASE WHEN u.cache_read_tokens > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS prompt_cache_hits,
                                CAST(COALESCE(SUM(u.input_tokens), 0) AS BIGINT) AS input_tokens,
                                CAST(COALESCE(SUM(u.cache_read_tokens), 0) AS BIGINT) AS cache_read_tokens,
                                CAST(COALESCE(SUM(u.cache_write_5m_tokens + u.cache_write_1h_tokens), 0) AS BIGINT) AS cache_write_tokens,
                                CAST(COALESCE(SUM(CASE WHEN f.sticky_fallback_reason <> '' THEN 1 ELSE 0 END), 0) AS BIGINT) AS sticky_fallbacks
                         FROM usage_records u LEFT JOIN usage_cache_facts f ON f.request_id = u.request_id
                         WHERE {FILTER}
                         GROUP BY u.endpoint_id ORDER BY u.endpoint_id"
                    ))
                    .bind(&filter.org_id)
                    .bind(&filter.key_hash)
                    .bind(&filter.conversation_id)
                    .bind(filter.since_ms)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn recent_sticky_fallbacks(
                    &self,
                    filter: &CacheStatsFilter,
                    limit: i64,
                ) -> StoreResult<Vec<(String, String)>> {
                    Ok(sqlx::query_as::<_, (String, String)>(&format!(
                        "SELECT u.request_id, f.sticky_fallback_reason
                         FROM usage_records u JOIN usage_cache_facts f ON f.request_id = u.request_id
                         WHERE {FILTER} AND f.sticky_fallback_reason <> ''
                         ORDER BY u.finished_at DESC, u.request_id DESC LIMIT $5"
                    ))
                    .bind(&filter.org_id)
                    .bind(&filter.key_hash)
                    .bind(&filter.conversation_id)
                    .bind(filter.since_ms)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }
            }
        }
    };
}

pub(super) use impl_cache_stats_store;
