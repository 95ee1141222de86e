//! SQL of `ChargebackStore`, shared by both backends like `billing_sql.rs`.

pub(super) const SETTINGS_COLUMNS: &str = "org_id, platform_fee_bps, auto_topup_enabled, auto_topup_threshold_nanos, auto_topup_amount_nanos, stripe_customer_id, stripe_payment_method_id, updated_at";
pub(super) const CATALOG_COLUMNS: &str = "org_id, id, name, vendor, host, upstream_model, context_length, max_output_tokens, price_input, price_output, price_cache_read, price_cache_write_5m, price_cache_write_1h, long_context_threshold, lc_price_input, lc_price_output, lc_price_cache_read, lc_price_cache_write_5m, lc_price_cache_write_1h, as_of, source, updated_at";
pub(super) const TOPUP_COLUMNS: &str = "id, org_id, crossing, amount_nanos, balance_nanos, payment_intent_id, status, error, created_at, completed_at";

macro_rules! impl_chargeback_store {
    ($store:ident, $db:ty) => {
        mod chargeback_impl {
            use super::$store;
            use $crate::store::chargeback_sql::{CATALOG_COLUMNS, SETTINGS_COLUMNS, TOPUP_COLUMNS};
            use $crate::store::*;

            type Tx<'a> = sqlx::Transaction<'a, $db>;

            /// Most posting ids per `IN (…)` lookup (padded, `padded_chunks`), and legs per
            /// multi-row INSERT (8 parameters each; in `prepared_chunks`, as a repeated leg
            /// would fail the unique index that settles races between replicas); both far
            /// under SQLite's 32 766 parameters.
            const IDS_PER_LOOKUP: usize = 256;
            const LEGS_PER_STATEMENT: usize = 512;

            /// `ChargebackStore::post_once` inside a caller's transaction: the postings whose
            /// id is not in the ledger yet are written, in id order, each once even if it is
            /// given twice. Two statements per batch, not three per posting: with a platform
            /// fee every ingested generation brings one.
            pub(super) async fn insert_postings_once(tx: &mut Tx<'_>, postings: &[Posting]) -> StoreResult<u32> {
                for p in postings {
                    let sum: i128 = p.legs.iter().map(|(_, a)| i128::from(*a)).sum();
                    if p.legs.len() < 2 || sum != 0 {
                        return Err(StoreError::Conflict(format!("posting {} is not balanced", p.id)));
                    }
                }
                let mut ordered: Vec<&Posting> = postings.iter().collect();
                ordered.sort_by(|a, b| a.id.cmp(&b.id));
                ordered.dedup_by(|a, b| a.id == b.id);
                let mut seen = std::collections::HashSet::new();
                for chunk in $crate::store::chunks::padded_chunks(&ordered, IDS_PER_LOOKUP) {
                    let mut lookup = sqlx::QueryBuilder::<$db>::new("SELECT DISTINCT posting_id FROM ledger_entries WHERE posting_id IN (");
                    let mut ids = lookup.separated(", ");
                    for p in chunk.rows() {
                        ids.push_bind(p.id.as_str());
                    }
                    ids.push_unseparated(")");
                    for row in lookup.build().fetch_all(&mut **tx).await? {
                        seen.insert(sqlx::Row::try_get::<String, _>(&row, 0)?);
                    }
                }
                let fresh: Vec<&Posting> = ordered.into_iter().filter(|p| !seen.contains(&p.id)).collect();
                let legs: Vec<(&Posting, &str, i64)> =
                    fresh.iter().flat_map(|p| p.legs.iter().map(move |(account, amount)| (*p, account.as_str(), *amount))).collect();
                for chunk in $crate::store::chunks::prepared_chunks(&legs, LEGS_PER_STATEMENT) {
                    // The unique (posting_id, account) index settles a race between replicas:
                    // the loser's transaction fails and its batch is redelivered.
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO ledger_entries (org_id, account, amount_nanos, kind, request_id, memo, created_at, posting_id, ref_id) ",
                    );
                    insert.push_values(chunk, |mut b, (p, account, amount)| {
                        b.push_bind(&p.org_id)
                            .push_bind(*account)
                            .push_bind(*amount)
                            .push_bind(p.kind)
                            .push("NULL")
                            .push_bind(&p.memo)
                            .push_bind(p.created_at)
                            .push_bind(&p.id)
                            .push_bind(&p.ref_id);
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                Ok(u32::try_from(fresh.len()).unwrap_or(u32::MAX))
            }

            #[async_trait::async_trait]
            impl ChargebackStore for $store {
                async fn billing_settings(&self, org_id: &str) -> StoreResult<BillingSettings> {
                    let row = sqlx::query_as::<_, BillingSettings>(&format!("SELECT {SETTINGS_COLUMNS} FROM org_billing_settings WHERE org_id = $1"))
                        .bind(org_id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.unwrap_or_else(|| BillingSettings { org_id: org_id.to_owned(), ..BillingSettings::default() }))
                }

                async fn set_billing_settings(&self, s: &BillingSettings) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    // The platform fee travels in the gateway snapshot (the cost gateways
                    // report includes it): a settings change is a config change.
                    let (version,): (i64,) =
                        sqlx::query_as("UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version")
                            .fetch_one(&mut *tx)
                            .await?;
                    sqlx::query(&format!(
                        "INSERT INTO org_billing_settings ({SETTINGS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (org_id) DO UPDATE SET platform_fee_bps = excluded.platform_fee_bps,
                            auto_topup_enabled = excluded.auto_topup_enabled,
                            auto_topup_threshold_nanos = excluded.auto_topup_threshold_nanos,
                            auto_topup_amount_nanos = excluded.auto_topup_amount_nanos,
                            stripe_customer_id = excluded.stripe_customer_id,
                            stripe_payment_method_id = excluded.stripe_payment_method_id,
                            updated_at = excluded.updated_at"
                    ))
                    .bind(&s.org_id)
                    .bind(s.platform_fee_bps)
                    .bind(s.auto_topup_enabled)
                    .bind(s.auto_topup_threshold_nanos)
                    .bind(s.auto_topup_amount_nanos)
                    .bind(&s.stripe_customer_id)
                    .bind(&s.stripe_payment_method_id)
                    .bind(s.updated_at)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE auto_topups SET status = 'dismissed' WHERE org_id = $1 AND status = 'failed'")
                        .bind(&s.org_id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    self.announce(u64::try_from(version).unwrap_or(0));
                    Ok(())
                }

                async fn auto_topup_orgs(&self) -> StoreResult<Vec<BillingSettings>> {
                    Ok(sqlx::query_as::<_, BillingSettings>(&format!(
                        "SELECT {SETTINGS_COLUMNS} FROM org_billing_settings WHERE auto_topup_enabled ORDER BY org_id"
                    ))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn post_once(&self, postings: &[Posting]) -> StoreResult<u32> {
                    if postings.is_empty() {
                        return Ok(0);
                    }
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let fresh = insert_postings_once(&mut tx, postings).await?;
                    tx.commit().await?;
                    Ok(fresh)
                }

                async fn fee_of(&self, org_id: &str, request_id: &str) -> StoreResult<i64> {
                    let (sum,): (Option<i64>,) = sqlx::query_as(
                        "SELECT CAST(SUM(amount_nanos) AS BIGINT) FROM ledger_entries WHERE org_id = $1 AND posting_id = $2 AND account = $3",
                    )
                    .bind(org_id)
                    .bind(format!("fee:{request_id}"))
                    .bind(PLATFORM_FEES)
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(sum.unwrap_or(0))
                }

                async fn list_catalog(&self, org_id: &str) -> StoreResult<Vec<CatalogModel>> {
                    Ok(sqlx::query_as::<_, CatalogModel>(&format!(
                        "SELECT {CATALOG_COLUMNS} FROM catalog_models c
                         WHERE c.org_id = $1 OR (c.org_id = '' AND NOT EXISTS
                            (SELECT 1 FROM catalog_models o WHERE o.org_id = $1 AND o.id = c.id))
                         ORDER BY c.vendor, c.id"
                    ))
                    .bind(org_id)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn get_catalog_model(&self, org_id: &str, id: &str) -> StoreResult<Option<CatalogModel>> {
                    Ok(sqlx::query_as::<_, CatalogModel>(&format!(
                        "SELECT {CATALOG_COLUMNS} FROM catalog_models WHERE id = $2 AND (org_id = $1 OR org_id = '')
                         ORDER BY org_id DESC LIMIT 1"
                    ))
                    .bind(org_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn put_catalog_model(&self, m: &CatalogModel) -> StoreResult<()> {
                    if m.org_id.is_empty() {
                        return Err(StoreError::Conflict("the seeded catalog is read-only; edits belong to an org".into()));
                    }
                    sqlx::query(&format!(
                        "INSERT INTO catalog_models ({CATALOG_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
                         ON CONFLICT (org_id, id) DO UPDATE SET name = excluded.name, vendor = excluded.vendor, host = excluded.host,
                            upstream_model = excluded.upstream_model, context_length = excluded.context_length,
                            max_output_tokens = excluded.max_output_tokens, price_input = excluded.price_input,
                            price_output = excluded.price_output, price_cache_read = excluded.price_cache_read,
                            price_cache_write_5m = excluded.price_cache_write_5m, price_cache_write_1h = excluded.price_cache_write_1h,
                            long_context_threshold = excluded.long_context_threshold, lc_price_input = excluded.lc_price_input,
                            lc_price_output = excluded.lc_price_output, lc_price_cache_read = excluded.lc_price_cache_read,
                            lc_price_cache_write_5m = excluded.lc_price_cache_write_5m, lc_price_cache_write_1h = excluded.lc_price_cache_write_1h,
                            as_of = excluded.as_of, source = excluded.source, updated_at = excluded.updated_at"
                    ))
                    .bind(&m.org_id)
                    .bind(&m.id)
                    .bind(&m.name)
                    .bind(&m.vendor)
                    .bind(&m.host)
                    .bind(&m.upstream_model)
                    .bind(m.context_length)
                    .bind(m.max_output_tokens)
                    .bind(m.price_input)
                    .bind(m.price_output)
                    .bind(m.price_cache_read)
                    .bind(m.price_cache_write_5m)
                    .bind(m.price_cache_write_1h)
                    .bind(m.long_context_threshold)
                    .bind(m.lc_price_input)
                    .bind(m.lc_price_output)
                    .bind(m.lc_price_cache_read)
                    .bind(m.lc_price_cache_write_5m)
                    .bind(m.lc_price_cache_write_1h)
                    .bind(&m.as_of)
                    .bind(&m.source)
                    .bind(m.updated_at)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn credit_balance_before(&self, org_id: &str, at_ms: i64) -> StoreResult<i64> {
                    let (sum,): (Option<i64>,) = sqlx::query_as(
                        "SELECT CAST(SUM(amount_nanos) AS BIGINT) FROM ledger_entries WHERE org_id = $1 AND account = $2 AND created_at < $3",
                    )
                    .bind(org_id)
                    .bind(accounts::ORG_CREDITS)
                    .bind(at_ms)
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(sum.unwrap_or(0))
                }

                async fn credit_lines(&self, org_id: &str, from_ms: i64, to_ms: i64) -> StoreResult<Vec<LedgerLine>> {
                    Ok(sqlx::query_as::<_, LedgerLine>(
                        "SELECT l.id, l.kind, l.amount_nanos, l.memo, l.created_at,
                                COALESCE(l.request_id, u.request_id) AS request_id, l.posting_id,
                                u.model, u.provider_slug, u.key_hash, u.started_at, u.finished_at, u.input_tokens, u.output_tokens
                         FROM ledger_entries l
                         LEFT JOIN usage_records u ON u.request_id = COALESCE(l.request_id, l.ref_id) AND u.org_id = l.org_id
                         WHERE l.org_id = $1 AND l.account = $2 AND l.created_at >= $3 AND l.created_at < $4
                         ORDER BY l.created_at, l.id",
                    )
                    .bind(org_id)
                    .bind(accounts::ORG_CREDITS)
                    .bind(from_ms)
                    .bind(to_ms)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn window_tags(&self, org_id: &str, from_ms: i64, to_ms: i64) -> StoreResult<Vec<(String, String, String)>> {
                    Ok(sqlx::query_as::<_, (String, String, String)>(
                        "SELECT t.request_id, t.tag_key, t.tag_value FROM usage_tags t
                         WHERE t.org_id = $1 AND t.request_id IN (
                            SELECT COALESCE(l.request_id, l.ref_id) FROM ledger_entries l
                            WHERE l.org_id = $1 AND l.account = $2 AND l.created_at >= $3 AND l.created_at < $4
                              AND COALESCE(l.request_id, l.ref_id) IS NOT NULL)
                         ORDER BY t.request_id, t.tag_key",
                    )
                    .bind(org_id)
                    .bind(accounts::ORG_CREDITS)
                    .bind(from_ms)
                    .bind(to_ms)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn begin_auto_topup(&self, org_id: &str, amount_nanos: i64, balance_nanos: i64, now: i64) -> StoreResult<Option<AutoTopupRow>> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    // Write first (a no-op on the org row): SQLite then holds its write lock for the
                    // whole read-then-insert instead of failing the upgrade with SQLITE_BUSY, and
                    // Postgres serialises concurrent checks of one org on the row lock.
                    sqlx::query("UPDATE orgs SET name = name WHERE id = $1")
                        .bind(org_id)
                        .execute(&mut *tx)
                        .await?;
                    let (blocking, crossings): (i64, i64) = sqlx::query_as(
                        "SELECT CAST(COALESCE(SUM(CASE WHEN status IN ('pending', 'failed') THEN 1 ELSE 0 END), 0) AS BIGINT), COUNT(*)
                         FROM auto_topups WHERE org_id = $1",
                    )
                    .bind(org_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if blocking > 0 {
                        return Ok(None);
                    }
                    let row = AutoTopupRow {
                        id: format!("auto-topup:{org_id}:{crossings}"),
                        org_id: org_id.to_owned(),
                        crossing: crossings,
                        amount_nanos,
                        balance_nanos,
                        payment_intent_id: None,
                        status: "pending".into(),
                        error: String::new(),
                        created_at: now,
                        completed_at: None,
                    };
                    let inserted = sqlx::query(&format!(
                        "INSERT INTO auto_topups ({TOPUP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (org_id, crossing) DO NOTHING"
                    ))
                    .bind(&row.id)
                    .bind(&row.org_id)
                    .bind(row.crossing)
                    .bind(row.amount_nanos)
                    .bind(row.balance_nanos)
                    .bind(&row.payment_intent_id)
                    .bind(&row.status)
                    .bind(&row.error)
                    .bind(row.created_at)
                    .bind(row.completed_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    tx.commit().await?;
                    Ok((inserted == 1).then_some(row))
                }

                async fn finish_auto_topup(&self, id: &str, payment_intent_id: Option<&str>, succeeded: bool, error: &str, now: i64) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    // Update before reading: a write first keeps SQLite's lock upgrade from failing.
                    sqlx::query("UPDATE auto_topups SET status = $2, payment_intent_id = $3, error = $4, completed_at = $5 WHERE id = $1 AND status = 'pending'")
                        .bind(id)
                        .bind(if succeeded { "succeeded" } else { "failed" })
                        .bind(payment_intent_id)
                        .bind(error)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let row = sqlx::query_as::<_, AutoTopupRow>(&format!("SELECT {TOPUP_COLUMNS} FROM auto_topups WHERE id = $1"))
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                    if let (true, Some(pi)) = (succeeded, payment_intent_id) {
                        insert_postings_once(&mut tx, std::slice::from_ref(&auto_topup_posting(&row.org_id, pi, row.amount_nanos, now))).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn list_auto_topups(&self, org_id: &str) -> StoreResult<Vec<AutoTopupRow>> {
                    Ok(sqlx::query_as::<_, AutoTopupRow>(&format!(
                        "SELECT {TOPUP_COLUMNS} FROM auto_topups WHERE org_id = $1 ORDER BY crossing"
                    ))
                    .bind(org_id)
                    .fetch_all(&self.pool)
                    .await?)
                }
            }
        }
    };
}

pub(super) use impl_chargeback_store;
