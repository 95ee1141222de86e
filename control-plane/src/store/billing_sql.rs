//! SQL of `BillingStore`, shared by both backends like `identity_sql.rs`: expanded in a child
//! module of each backend's module so it reaches the pool and `announce`.
//!
//! Money-moving transactions first touch the org row (a no-op UPDATE): SQLite takes its write
//! lock up front and Postgres a row lock, so two re-ratings of one org cannot both read the
//! same "cost so far" and post the same adjustment twice.

pub(super) const LEDGER_COLUMNS: &str =
    "id, org_id, account, amount_nanos, kind, request_id, posting_id, ref_id, memo, created_at";
pub(super) const CHECKOUT_COLUMNS: &str =
    "id, org_id, amount_nanos, url, created_by, created_at, completed_at";
pub(super) const ADJUSTMENT_COLUMNS: &str = "id, org_id, request_id, price_version_id, previous_cost_nanos, new_cost_nanos, delta_nanos, created_at";

macro_rules! impl_billing_store {
    ($store:ident, $db:ty) => {
        mod billing_impl {
            use std::collections::HashMap;

            use sqlx::Row as _;

            use super::$store;
            use $crate::billing::pricebook::{self, PriceVersion, VersionIdentity, PRICE_VERSION_COLUMNS};
            use $crate::store::billing_sql::{ADJUSTMENT_COLUMNS, CHECKOUT_COLUMNS, LEDGER_COLUMNS};
            use $crate::store::sql::{ENDPOINT_COLUMNS, USAGE_COLUMNS};
            use $crate::store::*;

            type Tx<'a> = sqlx::Transaction<'a, $db>;

            /// `(request_id, org_id, tags)`; a tag already stored for the request is kept.
            /// Multi-row statements in `padded_chunks` (4 parameters a tag): a statement
            /// per tag was a round trip to SQLite's thread per tag of every request.
            pub(super) async fn insert_usage_tags(tx: &mut Tx<'_>, rows: &[$crate::billing::tags::TagRow]) -> StoreResult<()> {
                let tags: Vec<(&str, &str, &str, &str)> = rows
                    .iter()
                    .flat_map(|(request_id, org_id, tags)| tags.iter().map(move |(k, v)| (request_id.as_str(), org_id.as_str(), k.as_str(), v.as_str())))
                    .collect();
                for chunk in $crate::store::chunks::padded_chunks(&tags, 256) {
                    let mut insert = $crate::store::values::Values::<$db>::new(
                        "INSERT INTO usage_tags (request_id, org_id, tag_key, tag_value)",
                        chunk.len(),
                        4,
                    );
                    for &(request_id, org_id, k, v) in chunk.rows() {
                        insert.row(|b| {
                            b.bind(request_id).bind(org_id).bind(k).bind(v);
                        });
                    }
                    let (sql, args) = insert.finish(" ON CONFLICT (request_id, tag_key) DO NOTHING")?;
                    sqlx::query_with(&sql, args).execute(&mut **tx).await?;
                }
                Ok(())
            }

            async fn lock_org(tx: &mut Tx<'_>, org_id: &str) -> StoreResult<()> {
                let done = sqlx::query("UPDATE orgs SET name = name WHERE id = $1").bind(org_id).execute(&mut **tx).await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            async fn insert_posting(tx: &mut Tx<'_>, p: &Posting) -> StoreResult<()> {
                let sum: i128 = p.legs.iter().map(|(_, a)| i128::from(*a)).sum();
                if p.legs.len() < 2 || sum != 0 {
                    return Err(StoreError::Conflict(format!("posting {} is not balanced", p.id)));
                }
                for (account, amount) in &p.legs {
                    sqlx::query(
                        "INSERT INTO ledger_entries (org_id, account, amount_nanos, kind, request_id, memo, created_at, posting_id, ref_id)
                         VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8)",
                    )
                    .bind(&p.org_id)
                    .bind(account)
                    .bind(*amount)
                    .bind(p.kind)
                    .bind(&p.memo)
                    .bind(p.created_at)
                    .bind(&p.id)
                    .bind(&p.ref_id)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            async fn insert_version(tx: &mut Tx<'_>, v: &PriceVersion) -> StoreResult<()> {
                sqlx::query(&format!(
                    "INSERT INTO price_versions ({PRICE_VERSION_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
                ))
                .bind(&v.id)
                .bind(&v.org_id)
                .bind(&v.model_id)
                .bind(&v.provider_id)
                .bind(v.effective_from)
                .bind(v.price_input)
                .bind(v.price_output)
                .bind(v.price_cache_read)
                .bind(v.price_cache_write_5m)
                .bind(v.price_cache_write_1h)
                .bind(v.price_reasoning)
                .bind(v.price_per_request)
                .bind(v.long_context_threshold)
                .bind(v.lc_price_input)
                .bind(v.lc_price_output)
                .bind(v.lc_price_cache_read)
                .bind(v.lc_price_cache_write_5m)
                .bind(v.lc_price_cache_write_1h)
                .bind(v.lc_price_reasoning)
                .bind(v.lc_price_per_request)
                .bind(&v.note)
                .bind(&v.created_by)
                .bind(v.created_at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            fn identity_like(v: &PriceVersion, effective_from: i64, note: &str) -> VersionIdentity {
                VersionIdentity {
                    id: uuid::Uuid::now_v7().to_string(),
                    org_id: v.org_id.clone(),
                    model_id: v.model_id.clone(),
                    provider_id: v.provider_id.clone(),
                    effective_from,
                    note: note.to_owned(),
                    created_by: v.created_by.clone(),
                    created_at: v.created_at,
                }
            }

            /// Dimension name → SQL expression over `usage_records u` (tags are joined).
            fn dimension_sql(dim: &str) -> Option<&'static str> {
                Some(match dim {
                    "key" => "u.key_hash",
                    "model" => "u.model",
                    "provider" => "u.provider_slug",
                    "endpoint" => "u.endpoint_id",
                    "api" => "u.api",
                    "finish_reason" => "u.finish_reason",
                    "day" => "CAST((u.started_at / 86400000) * 86400000 AS TEXT)",
                    "hour" => "CAST((u.started_at / 3600000) * 3600000 AS TEXT)",
                    _ => return None,
                })
            }

            #[async_trait::async_trait]
            impl BillingStore for $store {
                async fn post(&self, posting: &Posting) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    lock_org(&mut tx, &posting.org_id).await?;
                    insert_posting(&mut tx, posting).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn credit_totals(&self, org_id: &str) -> StoreResult<CreditTotals> {
                    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
                        "SELECT kind, CAST(SUM(amount_nanos) AS BIGINT) FROM ledger_entries WHERE org_id = $1 AND account = $2 GROUP BY kind",
                    )
                    .bind(org_id)
                    .bind(accounts::ORG_CREDITS)
                    .fetch_all(&self.pool)
                    .await?;
                    let mut t = CreditTotals::default();
                    for (kind, sum) in rows {
                        let sum = sum.unwrap_or(0);
                        match kind.as_str() {
                            posting_kinds::GRANT | posting_kinds::TOPUP => t.credits_nanos = t.credits_nanos.saturating_add(sum),
                            // Usage and adjustments are negative on the credit account; refunds positive.
                            _ => t.usage_nanos = t.usage_nanos.saturating_sub(sum),
                        }
                        t.balance_nanos = t.balance_nanos.saturating_add(sum);
                    }
                    Ok(t)
                }

                async fn list_ledger(&self, org_id: &str, q: &LedgerQuery) -> StoreResult<Vec<LedgerEntryRow>> {
                    Ok(sqlx::query_as::<_, LedgerEntryRow>(&format!(
                        "SELECT {LEDGER_COLUMNS} FROM ledger_entries
                         WHERE org_id = $1 AND ($2 = '' OR account = $2) AND ($3 = '' OR kind = $3) AND id < $4
                         ORDER BY id DESC LIMIT $5"
                    ))
                    .bind(org_id)
                    .bind(q.account.clone().unwrap_or_default())
                    .bind(q.kind.clone().unwrap_or_default())
                    .bind(q.before_id.unwrap_or(i64::MAX))
                    .bind(q.limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn unbalanced_postings(&self, org_id: &str) -> StoreResult<Vec<(String, i64)>> {
                    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
                        "SELECT COALESCE(posting_id, request_id, CAST(id AS TEXT)) AS p, CAST(SUM(amount_nanos) AS BIGINT)
                         FROM ledger_entries WHERE org_id = $1
                         GROUP BY COALESCE(posting_id, request_id, CAST(id AS TEXT))
                         HAVING SUM(amount_nanos) <> 0 ORDER BY 1",
                    )
                    .bind(org_id)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().map(|(p, s)| (p, s.unwrap_or(0))).collect())
                }

                async fn usage_posting_anomalies(&self, org_id: &str) -> StoreResult<Vec<String>> {
                    let rows: Vec<(String,)> = sqlx::query_as(
                        "SELECT u.request_id FROM usage_records u
                         LEFT JOIN ledger_entries l ON l.request_id = u.request_id AND l.kind = 'usage'
                         WHERE u.org_id = $1
                         GROUP BY u.request_id HAVING COUNT(l.id) <> 2 ORDER BY 1",
                    )
                    .bind(org_id)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().map(|(r,)| r).collect())
                }

                async fn price_versions(&self, org_id: &str, model_id: &str, provider_id: Option<&str>) -> StoreResult<Vec<PriceVersion>> {
                    Ok(sqlx::query_as::<_, PriceVersion>(&format!(
                        "SELECT {PRICE_VERSION_COLUMNS} FROM price_versions
                         WHERE org_id = $1 AND model_id = $2 AND ($3 = '' OR provider_id = $3)
                         ORDER BY provider_id, effective_from"
                    ))
                    .bind(org_id)
                    .bind(model_id)
                    .bind(provider_id.unwrap_or_default())
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn add_price_version(&self, new: &NewPriceVersion) -> StoreResult<RerateOutcome> {
                    let v = &new.version;
                    let mut tx = Self::begin_write(&self.pool).await?;
                    lock_org(&mut tx, &v.org_id).await?;
                    let mut versions = sqlx::query_as::<_, PriceVersion>(&format!(
                        "SELECT {PRICE_VERSION_COLUMNS} FROM price_versions WHERE org_id = $1 AND model_id = $2 AND provider_id = $3"
                    ))
                    .bind(&v.org_id)
                    .bind(&v.model_id)
                    .bind(&v.provider_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    let endpoints = sqlx::query_as::<_, EndpointRow>(&format!(
                        "SELECT {ENDPOINT_COLUMNS} FROM model_endpoints WHERE org_id = $1 AND model_id = $2 AND provider_id = $3 ORDER BY position"
                    ))
                    .bind(&v.org_id)
                    .bind(&v.model_id)
                    .bind(&v.provider_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    if versions.is_empty() && v.effective_from > 0 {
                        // Freeze the prices the usage so far was rated with, so the corrected
                        // window ends where the operator says and not at the next catalog edit.
                        let current = endpoints.first().ok_or_else(|| {
                            StoreError::Conflict(format!("model {} has no endpoint at provider {}", v.model_id, v.provider_id))
                        })?;
                        let baseline = PriceVersion::new(identity_like(v, 0, "prices in use before the first version"), &current.prices(), None);
                        insert_version(&mut tx, &baseline).await?;
                        versions.push(baseline);
                    }
                    if let Some(to) = new.effective_to {
                        if versions.iter().any(|x| x.effective_from > v.effective_from && x.effective_from < to) {
                            return Err(StoreError::Conflict(
                                "another price version starts inside the corrected window; correct it piece by piece".into(),
                            ));
                        }
                        if !versions.iter().any(|x| x.effective_from == to) {
                            if let Some(resumed) = pricebook::in_effect(&versions, to).cloned() {
                                let resumed = resumed.restarted(identity_like(v, to, "resumes after a corrected window"));
                                insert_version(&mut tx, &resumed).await?;
                                versions.push(resumed);
                            }
                        }
                    }
                    insert_version(&mut tx, v).await?;
                    versions.push(v.clone());
                    let window_end = versions
                        .iter()
                        .map(|x| x.effective_from)
                        .filter(|&f| f > v.effective_from)
                        .min()
                        .unwrap_or(i64::MAX);

                    let filter = "org_id = $1 AND model = $2 AND provider_id = $3 AND started_at >= $4 AND started_at < $5";
                    let rows = sqlx::query_as::<_, UsageRow>(&format!("SELECT {USAGE_COLUMNS} FROM usage_records WHERE {filter} ORDER BY request_id"))
                        .bind(&v.org_id)
                        .bind(&v.model_id)
                        .bind(&v.provider_id)
                        .bind(v.effective_from)
                        .bind(window_end)
                        .fetch_all(&mut *tx)
                        .await?;
                    let earlier: HashMap<String, i64> = sqlx::query_as::<_, (String, Option<i64>)>(&format!(
                        "SELECT request_id, CAST(SUM(delta_nanos) AS BIGINT) FROM rating_adjustments
                         WHERE request_id IN (SELECT request_id FROM usage_records WHERE {filter}) GROUP BY request_id"
                    ))
                    .bind(&v.org_id)
                    .bind(&v.model_id)
                    .bind(&v.provider_id)
                    .bind(v.effective_from)
                    .bind(window_end)
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|(r, s)| (r, s.unwrap_or(0)))
                    .collect();

                    let mut outcome = RerateOutcome { version_id: v.id.clone(), ..RerateOutcome::default() };
                    // Re-rated cost also moves the console's daily rollup (console.rs).
                    let mut daily = console::DailyDeltas::default();
                    for row in &rows {
                        outcome.requests += 1;
                        let Some((cost, version_id)) = pricebook::rate_row(row, &versions) else { continue };
                        let so_far = row.cost_nanos.saturating_add(earlier.get(&row.request_id).copied().unwrap_or(0));
                        let delta = cost.nanos().saturating_sub(so_far);
                        if delta == 0 {
                            continue;
                        }
                        let id = uuid::Uuid::now_v7().to_string();
                        sqlx::query(&format!(
                            "INSERT INTO rating_adjustments ({ADJUSTMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                        ))
                        .bind(&id)
                        .bind(&v.org_id)
                        .bind(&row.request_id)
                        .bind(&version_id)
                        .bind(so_far)
                        .bind(cost.nanos())
                        .bind(delta)
                        .bind(new.now)
                        .execute(&mut *tx)
                        .await?;
                        insert_posting(&mut tx, &Posting {
                            id,
                            org_id: v.org_id.clone(),
                            kind: posting_kinds::ADJUSTMENT,
                            memo: format!("re-rated {} with price version {version_id}", row.model),
                            ref_id: Some(row.request_id.clone()),
                            created_at: new.now,
                            legs: vec![
                                (accounts::ORG_CREDITS.to_owned(), -delta),
                                (accounts::PLATFORM_REVENUE.to_owned(), delta),
                            ],
                        })
                        .await?;
                        daily.add_cost(row, delta);
                        outcome.adjusted += 1;
                        outcome.delta_nanos = outcome.delta_nanos.saturating_add(delta);
                    }

                    super::console_impl::apply_daily(&mut tx, &daily).await?;

                    // Every price-book change is a config change: the control plane's rater
                    // caches prices per config version (`rating.rs`).
                    let (version,): (i64,) =
                        sqlx::query_as("UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version").fetch_one(&mut *tx).await?;
                    // Gateways quote the catalog's prices; keep them equal to the version now in effect.
                    let current = pricebook::in_effect(&versions, new.now).map(PriceVersion::base);
                    if let Some(p) = current.filter(|p| endpoints.iter().any(|e| e.prices() != *p)) {
                        sqlx::query(
                            "UPDATE model_endpoints SET price_input = $4, price_output = $5, price_cache_read = $6, price_cache_write_5m = $7,
                                price_cache_write_1h = $8, price_reasoning = $9, price_per_request = $10
                             WHERE org_id = $1 AND model_id = $2 AND provider_id = $3",
                        )
                        .bind(&v.org_id)
                        .bind(&v.model_id)
                        .bind(&v.provider_id)
                        .bind(p.input)
                        .bind(p.output)
                        .bind(p.cache_read)
                        .bind(p.cache_write_5m)
                        .bind(p.cache_write_1h)
                        .bind(p.reasoning)
                        .bind(p.per_request_nanos)
                        .execute(&mut *tx)
                        .await?;
                        outcome.catalog_updated = true;
                    }
                    tx.commit().await?;
                    self.announce(u64::try_from(version).unwrap_or(0));
                    Ok(outcome)
                }

                async fn list_adjustments(&self, org_id: &str, request_id: &str) -> StoreResult<Vec<AdjustmentRow>> {
                    Ok(sqlx::query_as::<_, AdjustmentRow>(&format!(
                        "SELECT {ADJUSTMENT_COLUMNS} FROM rating_adjustments WHERE org_id = $1 AND request_id = $2 ORDER BY created_at, id"
                    ))
                    .bind(org_id)
                    .bind(request_id)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn create_checkout(&self, c: &CheckoutRow) -> StoreResult<()> {
                    sqlx::query(&format!("INSERT INTO checkout_sessions ({CHECKOUT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
                        .bind(&c.id)
                        .bind(&c.org_id)
                        .bind(c.amount_nanos)
                        .bind(&c.url)
                        .bind(&c.created_by)
                        .bind(c.created_at)
                        .bind(c.completed_at)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn get_checkout(&self, org_id: &str, id: &str) -> StoreResult<CheckoutRow> {
                    Ok(sqlx::query_as::<_, CheckoutRow>(&format!("SELECT {CHECKOUT_COLUMNS} FROM checkout_sessions WHERE org_id = $1 AND id = $2"))
                        .bind(org_id)
                        .bind(id)
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn complete_checkout(&self, event_id: &str, event_type: &str, session_id: &str, now: i64) -> StoreResult<StripeOutcome> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let fresh = sqlx::query("INSERT INTO stripe_events (event_id, event_type, received_at) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING")
                        .bind(event_id)
                        .bind(event_type)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if fresh == 0 {
                        return Ok(StripeOutcome::DuplicateEvent);
                    }
                    let Some(session) = sqlx::query_as::<_, CheckoutRow>(&format!("SELECT {CHECKOUT_COLUMNS} FROM checkout_sessions WHERE id = $1"))
                        .bind(session_id)
                        .fetch_optional(&mut *tx)
                        .await?
                    else {
                        tx.commit().await?;
                        return Ok(StripeOutcome::UnknownSession);
                    };
                    let claimed = sqlx::query("UPDATE checkout_sessions SET completed_at = $2 WHERE id = $1 AND completed_at IS NULL")
                        .bind(session_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if claimed == 0 {
                        tx.commit().await?;
                        return Ok(StripeOutcome::AlreadyCompleted);
                    }
                    insert_posting(&mut tx, &Posting {
                        id: format!("topup:{session_id}"),
                        org_id: session.org_id.clone(),
                        kind: posting_kinds::TOPUP,
                        memo: format!("Stripe Checkout top-up ({event_type} {event_id})"),
                        ref_id: Some(session_id.to_owned()),
                        created_at: now,
                        legs: vec![
                            (accounts::ORG_CREDITS.to_owned(), session.amount_nanos),
                            (platform_accounts::STRIPE.to_owned(), -session.amount_nanos),
                        ],
                    })
                    .await?;
                    tx.commit().await?;
                    Ok(StripeOutcome::Credited { org_id: session.org_id, amount_nanos: session.amount_nanos })
                }

                async fn add_usage_tags(&self, rows: &[(String, String, Vec<(String, String)>)]) -> StoreResult<()> {
                    if rows.iter().all(|(_, _, tags)| tags.is_empty()) {
                        return Ok(());
                    }
                    let mut tx = Self::begin_write(&self.pool).await?;
                    insert_usage_tags(&mut tx, rows).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn analytics(&self, q: &AnalyticsQuery) -> StoreResult<Vec<AnalyticsRow>> {
                    // Values are bound; only whitelisted expressions and numbered placeholders
                    // are spliced into the SQL text.
                    let mut binds: Vec<String> = Vec::new();
                    let mut joins = String::new();
                    let mut selects = Vec::new();
                    let mut groups = Vec::new();
                    for (i, dim) in q.group_by.iter().enumerate() {
                        let expr = if let Some(tag) = dim.strip_prefix("tag:") {
                            binds.push(tag.to_owned());
                            joins.push_str(&format!(
                                " LEFT JOIN usage_tags t{i} ON t{i}.request_id = u.request_id AND t{i}.tag_key = ${}",
                                binds.len() + 3
                            ));
                            format!("t{i}.tag_value")
                        } else {
                            dimension_sql(dim).ok_or_else(|| StoreError::Conflict(format!("unknown dimension {dim}")))?.to_owned()
                        };
                        selects.push(format!("{expr} AS d{i}"));
                        groups.push(expr);
                    }
                    let mut wheres = String::new();
                    for (dim, value) in &q.filters {
                        if let Some(tag) = dim.strip_prefix("tag:") {
                            binds.push(tag.to_owned());
                            let k = binds.len() + 3;
                            binds.push(value.clone());
                            wheres.push_str(&format!(
                                " AND EXISTS (SELECT 1 FROM usage_tags f WHERE f.request_id = u.request_id AND f.tag_key = ${k} AND f.tag_value = ${})",
                                k + 1
                            ));
                        } else {
                            let expr = dimension_sql(dim).ok_or_else(|| StoreError::Conflict(format!("unknown filter {dim}")))?;
                            binds.push(value.clone());
                            wheres.push_str(&format!(" AND {expr} = ${}", binds.len() + 3));
                        }
                    }
                    let select_keys = if selects.is_empty() { String::new() } else { format!("{}, ", selects.join(", ")) };
                    let group_by = if groups.is_empty() { String::new() } else { format!(" GROUP BY {}", groups.join(", ")) };
                    let sql = format!(
                        "SELECT {select_keys}
                            COUNT(*) AS requests,
                            CAST(SUM(CASE WHEN u.http_status >= 400 OR u.finish_reason = 'error' THEN 1 ELSE 0 END) AS BIGINT) AS errors,
                            CAST(SUM(u.cost_nanos + COALESCE((SELECT SUM(a.delta_nanos) FROM rating_adjustments a WHERE a.request_id = u.request_id), 0)) AS BIGINT) AS cost,
                            CAST(SUM(u.input_tokens) AS BIGINT) AS input_tokens,
                            CAST(SUM(u.output_tokens) AS BIGINT) AS output_tokens,
                            CAST(SUM(u.reasoning_tokens) AS BIGINT) AS reasoning_tokens,
                            CAST(SUM(u.cache_read_tokens) AS BIGINT) AS cache_read_tokens,
                            CAST(SUM(u.cache_write_5m_tokens + u.cache_write_1h_tokens) AS BIGINT) AS cache_write_tokens
                         FROM usage_records u{joins}
                         WHERE u.org_id = $1 AND u.started_at >= $2 AND u.started_at < $3{wheres}{group_by}
                         ORDER BY cost DESC, requests DESC LIMIT {}",
                        q.limit.clamp(1, 10_000)
                    );
                    let mut query = sqlx::query(&sql).bind(&q.org_id).bind(q.from_ms).bind(q.to_ms);
                    for b in &binds {
                        query = query.bind(b);
                    }
                    let rows = query.fetch_all(&self.pool).await?;
                    let n = q.group_by.len();
                    let mut out = Vec::with_capacity(rows.len());
                    for row in rows {
                        let mut keys = Vec::with_capacity(n);
                        for i in 0..n {
                            keys.push(row.try_get::<Option<String>, _>(i)?.unwrap_or_default());
                        }
                        let num = |i: usize| -> StoreResult<i64> { Ok(row.try_get::<Option<i64>, _>(n + i)?.unwrap_or(0)) };
                        out.push(AnalyticsRow {
                            keys,
                            requests: num(0)?,
                            errors: num(1)?,
                            cost_nanos: num(2)?,
                            input_tokens: num(3)?,
                            output_tokens: num(4)?,
                            reasoning_tokens: num(5)?,
                            cache_read_tokens: num(6)?,
                            cache_write_tokens: num(7)?,
                        });
                    }
                    Ok(out)
                }
            }
        }
    };
}

pub(super) use impl_billing_store;
