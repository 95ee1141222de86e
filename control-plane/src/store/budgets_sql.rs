//! SQL of `BudgetStore`, shared by both backends like `billing_sql.rs`: expanded in a child
//! module of each backend's module so it reaches the pool and `announce`.
//!
//! A lease first touches the org row (a no-op UPDATE): SQLite takes its write lock up front
//! and Postgres a row lock, so two control-plane replicas cannot grant the same remainder
//! of a budget to two nodes.

pub(super) const BUDGET_COLUMNS: &str =
    "id, org_id, scope_kind, scope_id, name, limit_nanos, period, created_at, updated_at";
pub(super) const SETTINGS_COLUMNS: &str = "org_id, alert_webhook_url, default_key_daily_cap, lease_max_per_gateway, lease_max_per_org, unreachable_policy, overdraft_nanos, default_output_tokens, model_output_tokens, updated_at";
pub(super) const LEASE_COLUMNS: &str = "budget_id, window_start, node_id, org_id, granted_nanos, consumed_nanos, expires_at, updated_at";
pub(super) const ALERT_COLUMNS: &str = "budget_id, window_start, threshold, org_id, spent_nanos, limit_nanos, status, attempts, last_error, created_at, delivered_at";

macro_rules! impl_budget_store {
    ($store:ident, $db:ty) => {
        mod budgets_impl {
            use std::collections::HashMap;

            use super::$store;
            use $crate::budgets::lease::{self, Caps, NodeLease, Terms};
            use $crate::store::budgets_sql::{ALERT_COLUMNS, BUDGET_COLUMNS, LEASE_COLUMNS, SETTINGS_COLUMNS};
            use $crate::store::*;

            type Tx<'a> = sqlx::Transaction<'a, $db>;

            async fn bump_version(tx: &mut Tx<'_>) -> StoreResult<u64> {
                let (v,): (i64,) =
                    sqlx::query_as("UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version")
                        .fetch_one(&mut **tx)
                        .await?;
                Ok(u64::try_from(v).unwrap_or(0))
            }

            async fn spend_by_node<'e, E>(exec: E, org_id: &str, scope: &SpendScope, since: i64) -> StoreResult<Vec<(String, i64)>>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                const SUM: &str = "SELECT node_id, CAST(SUM(cost_nanos) AS BIGINT) FROM usage_records WHERE org_id = $1 AND finished_at >= $2";
                let rows: Vec<(String, Option<i64>)> = match scope {
                    SpendScope::Org => {
                        sqlx::query_as(&format!("{SUM} GROUP BY node_id")).bind(org_id).bind(since).fetch_all(exec).await?
                    }
                    SpendScope::Key(hash) => {
                        sqlx::query_as(&format!("{SUM} AND key_hash = $3 GROUP BY node_id"))
                            .bind(org_id).bind(since).bind(hash).fetch_all(exec).await?
                    }
                    SpendScope::Team(team) => {
                        sqlx::query_as(&format!(
                            "{SUM} AND key_hash IN (SELECT hash FROM api_keys WHERE org_id = $1 AND owner_team_id = $3) GROUP BY node_id"
                        ))
                        .bind(org_id).bind(since).bind(team).fetch_all(exec).await?
                    }
                    SpendScope::User(user) => {
                        sqlx::query_as(&format!(
                            "{SUM} AND key_hash IN (SELECT hash FROM api_keys WHERE org_id = $1 AND owner_user_id = $3) GROUP BY node_id"
                        ))
                        .bind(org_id).bind(since).bind(user).fetch_all(exec).await?
                    }
                    SpendScope::Tag { key, value } => {
                        sqlx::query_as(&format!(
                            "{SUM} AND request_id IN (SELECT request_id FROM usage_tags WHERE org_id = $1 AND tag_key = $3 AND tag_value = $4) GROUP BY node_id"
                        ))
                        .bind(org_id).bind(since).bind(key).bind(value).fetch_all(exec).await?
                    }
                };
                Ok(rows.into_iter().map(|(n, s)| (n, s.unwrap_or(0))).collect())
            }

            #[async_trait::async_trait]
            impl BudgetStore for $store {
                async fn create_budget(&self, b: &BudgetRow) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let version = bump_version(&mut tx).await?;
                    sqlx::query(&format!(
                        "INSERT INTO budgets ({BUDGET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ))
                    .bind(&b.id)
                    .bind(&b.org_id)
                    .bind(&b.scope_kind)
                    .bind(&b.scope_id)
                    .bind(&b.name)
                    .bind(b.limit_nanos)
                    .bind(&b.period)
                    .bind(b.created_at)
                    .bind(b.updated_at)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    self.announce(version);
                    Ok(())
                }

                async fn get_budget(&self, org_id: &str, id: &str) -> StoreResult<BudgetRow> {
                    Ok(sqlx::query_as::<_, BudgetRow>(&format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE org_id = $1 AND id = $2"))
                        .bind(org_id)
                        .bind(id)
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn list_budgets(&self, org_id: &str) -> StoreResult<Vec<BudgetRow>> {
                    Ok(sqlx::query_as::<_, BudgetRow>(&format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE org_id = $1 ORDER BY created_at, id"))
                        .bind(org_id)
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn all_budgets(&self) -> StoreResult<Vec<BudgetRow>> {
                    Ok(sqlx::query_as::<_, BudgetRow>(&format!("SELECT {BUDGET_COLUMNS} FROM budgets ORDER BY org_id, created_at, id"))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn update_budget(&self, org_id: &str, id: &str, name: &str, limit_nanos: i64) -> StoreResult<BudgetRow> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let version = bump_version(&mut tx).await?;
                    let done = sqlx::query("UPDATE budgets SET name = $3, limit_nanos = $4, updated_at = $5 WHERE org_id = $1 AND id = $2")
                        .bind(org_id)
                        .bind(id)
                        .bind(name)
                        .bind(limit_nanos)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    tx.commit().await?;
                    self.announce(version);
                    self.get_budget(org_id, id).await
                }

                async fn delete_budget(&self, org_id: &str, id: &str) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let version = bump_version(&mut tx).await?;
                    let done = sqlx::query("DELETE FROM budgets WHERE org_id = $1 AND id = $2")
                        .bind(org_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    sqlx::query("DELETE FROM budget_leases WHERE org_id = $1 AND budget_id = $2")
                        .bind(org_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    self.announce(version);
                    Ok(())
                }

                async fn get_budget_settings(&self, org_id: &str) -> StoreResult<BudgetSettingsRow> {
                    let row = sqlx::query_as::<_, BudgetSettingsRow>(&format!("SELECT {SETTINGS_COLUMNS} FROM budget_settings WHERE org_id = $1"))
                        .bind(org_id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.unwrap_or_else(|| BudgetSettingsRow::defaults(org_id)))
                }

                async fn put_budget_settings(&self, s: &BudgetSettingsRow) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let version = bump_version(&mut tx).await?;
                    sqlx::query(&format!(
                        "INSERT INTO budget_settings ({SETTINGS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (org_id) DO UPDATE SET alert_webhook_url = $2, default_key_daily_cap = $3,
                            lease_max_per_gateway = $4, lease_max_per_org = $5, unreachable_policy = $6, overdraft_nanos = $7,
                            default_output_tokens = $8, model_output_tokens = $9, updated_at = $10"
                    ))
                    .bind(&s.org_id)
                    .bind(&s.alert_webhook_url)
                    .bind(s.default_key_daily_cap)
                    .bind(s.lease_max_per_gateway)
                    .bind(s.lease_max_per_org)
                    .bind(&s.unreachable_policy)
                    .bind(s.overdraft_nanos)
                    .bind(s.default_output_tokens)
                    .bind(&s.model_output_tokens)
                    .bind(s.updated_at)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    self.announce(version);
                    Ok(())
                }

                async fn all_budget_settings(&self) -> StoreResult<Vec<BudgetSettingsRow>> {
                    Ok(sqlx::query_as::<_, BudgetSettingsRow>(&format!("SELECT {SETTINGS_COLUMNS} FROM budget_settings ORDER BY org_id"))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn scope_spend_by_node(&self, org_id: &str, scope: &SpendScope, since_ms: i64) -> StoreResult<Vec<(String, i64)>> {
                    spend_by_node(&self.pool, org_id, scope, since_ms).await
                }

                async fn lease(&self, ask: &LeaseAsk) -> StoreResult<LeaseGrant> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let locked = sqlx::query("UPDATE orgs SET name = name WHERE id = $1")
                        .bind(&ask.org_id)
                        .execute(&mut *tx)
                        .await?;
                    if locked.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    let (start, end) = ask.window;
                    // A report about an earlier window still settles that window's lease.
                    if ask.reported_window != start && ask.consumed_nanos > 0 {
                        sqlx::query(
                            "UPDATE budget_leases SET consumed_nanos = CASE WHEN consumed_nanos > $4 THEN consumed_nanos ELSE $4 END, updated_at = $5
                             WHERE budget_id = $1 AND window_start = $2 AND node_id = $3",
                        )
                        .bind(&ask.budget_id)
                        .bind(ask.reported_window)
                        .bind(&ask.node_id)
                        .bind(ask.consumed_nanos)
                        .bind(ask.now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let rows = sqlx::query_as::<_, LeaseRow>(&format!(
                        "SELECT {LEASE_COLUMNS} FROM budget_leases WHERE budget_id = $1 AND window_start = $2"
                    ))
                    .bind(&ask.budget_id)
                    .bind(start)
                    .fetch_all(&mut *tx)
                    .await?;
                    let by_node: HashMap<String, i64> = spend_by_node(&mut *tx, &ask.org_id, &ask.scope, start).await?.into_iter().collect();
                    let spent: i64 = by_node.values().copied().fold(0i64, i64::saturating_add);
                    let node = |r: &LeaseRow| NodeLease {
                        granted: r.granted_nanos,
                        consumed: r.consumed_nanos,
                        expires_at: r.expires_at,
                        ledger_spent: by_node.get(&r.node_id).copied().unwrap_or(0),
                    };
                    let mut me = rows
                        .iter()
                        .find(|r| r.node_id == ask.node_id)
                        .map(node)
                        .unwrap_or(NodeLease { ledger_spent: by_node.get(&ask.node_id).copied().unwrap_or(0), ..NodeLease::default() });
                    let others: Vec<NodeLease> = rows.iter().filter(|r| r.node_id != ask.node_id).map(node).collect();
                    if ask.reported_window == start {
                        me.consumed = me.consumed.max(ask.consumed_nanos);
                    }
                    // Only the unused part of a grant can be handed back.
                    let unused = (me.granted - me.consumed.max(me.ledger_spent)).max(0);
                    me.granted -= ask.release_nanos.clamp(0, unused);
                    let (granted_now, others_outstanding) = lease::grant(
                        &Terms {
                            limit: ask.limit_nanos,
                            spent,
                            want: ask.want_nanos,
                            caps: Caps { per_gateway: ask.max_per_gateway, per_org: ask.max_per_org },
                            now: ask.now,
                            dead_after_ms: ask.dead_after_ms,
                        },
                        &me,
                        &others,
                    );
                    let granted_total = me.granted.saturating_add(granted_now);
                    let expires_at = ask.now.saturating_add(ask.ttl_ms);
                    sqlx::query(&format!(
                        "INSERT INTO budget_leases ({LEASE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (budget_id, window_start, node_id) DO UPDATE SET granted_nanos = $5, consumed_nanos = $6, expires_at = $7, updated_at = $8"
                    ))
                    .bind(&ask.budget_id)
                    .bind(start)
                    .bind(&ask.node_id)
                    .bind(&ask.org_id)
                    .bind(granted_total)
                    .bind(me.consumed)
                    .bind(expires_at)
                    .bind(ask.now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(LeaseGrant {
                        window_start: start,
                        window_end: end,
                        granted_total,
                        consumed: me.consumed,
                        expires_at,
                        spent,
                        others_outstanding,
                        granted_now,
                    })
                }

                async fn list_leases(&self, org_id: &str, budget_id: &str) -> StoreResult<Vec<LeaseRow>> {
                    Ok(sqlx::query_as::<_, LeaseRow>(&format!(
                        "SELECT {LEASE_COLUMNS} FROM budget_leases WHERE org_id = $1 AND budget_id = $2 ORDER BY window_start DESC, node_id"
                    ))
                    .bind(org_id)
                    .bind(budget_id)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn lease_totals(&self, now_ms: i64) -> StoreResult<(i64, i64)> {
                    let (count, outstanding): (i64, Option<i64>) = sqlx::query_as(
                        "SELECT COUNT(*), CAST(SUM(CASE WHEN granted_nanos > consumed_nanos THEN granted_nanos - consumed_nanos ELSE 0 END) AS BIGINT)
                         FROM budget_leases WHERE expires_at > $1",
                    )
                    .bind(now_ms)
                    .fetch_one(&self.pool)
                    .await?;
                    Ok((count, outstanding.unwrap_or(0)))
                }

                async fn claim_alert(&self, a: &AlertRow) -> StoreResult<bool> {
                    let done = sqlx::query(&format!(
                        "INSERT INTO budget_alerts ({ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                         ON CONFLICT (budget_id, window_start, threshold) DO NOTHING"
                    ))
                    .bind(&a.budget_id)
                    .bind(a.window_start)
                    .bind(a.threshold)
                    .bind(&a.org_id)
                    .bind(a.spent_nanos)
                    .bind(a.limit_nanos)
                    .bind(&a.status)
                    .bind(a.attempts)
                    .bind(&a.last_error)
                    .bind(a.created_at)
                    .bind(a.delivered_at)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn finish_alert(&self, budget_id: &str, window_start: i64, threshold: i64, status: &str, error: &str, now: i64) -> StoreResult<()> {
                    sqlx::query(
                        "UPDATE budget_alerts SET status = $4, last_error = $5, attempts = attempts + 1,
                            delivered_at = CASE WHEN $4 = 'delivered' THEN $6 ELSE delivered_at END
                         WHERE budget_id = $1 AND window_start = $2 AND threshold = $3",
                    )
                    .bind(budget_id)
                    .bind(window_start)
                    .bind(threshold)
                    .bind(status)
                    .bind(error)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn pending_alerts(&self, limit: i64) -> StoreResult<Vec<AlertRow>> {
                    Ok(sqlx::query_as::<_, AlertRow>(&format!(
                        "SELECT {ALERT_COLUMNS} FROM budget_alerts WHERE status = 'pending' ORDER BY created_at LIMIT $1"
                    ))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn list_alerts(&self, org_id: &str, budget_id: &str) -> StoreResult<Vec<AlertRow>> {
                    Ok(sqlx::query_as::<_, AlertRow>(&format!(
                        "SELECT {ALERT_COLUMNS} FROM budget_alerts WHERE org_id = $1 AND budget_id = $2 ORDER BY window_start, threshold"
                    ))
                    .bind(org_id)
                    .bind(budget_id)
                    .fetch_all(&self.pool)
                    .await?)
                }
            }
        }
    };
}

pub(super) use impl_budget_store;
