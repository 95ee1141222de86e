//! Read-only queries behind the web console, and the daily usage rollup (`usage_daily`,
//! migration 0009) they read: the overview and the usage explorer aggregate days × keys ×
//! models × providers instead of every generation. The request log still reads
//! `usage_records`. Implemented for both backends by `impl_console_store!`; every query is
//! scoped by org and bounded by time.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::FromRow;

use super::{CreditTotals, StoreResult, UsageRow};

pub const DAY_MS: i64 = 86_400_000;

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

/// A dimension the usage explorer groups by (the rollup's key columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Day,
    Key,
    Model,
    Provider,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::Day,
        Dimension::Key,
        Dimension::Model,
        Dimension::Provider,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Day => "day",
            Dimension::Key => "key",
            Dimension::Model => "model",
            Dimension::Provider => "provider",
        }
    }

    pub fn parse(name: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The SQL expression of this dimension over `usage_daily` (a fixed whitelist).
    pub(crate) fn column(self) -> &'static str {
        match self {
            Dimension::Day => "CAST(day AS TEXT)",
            Dimension::Key => "key_hash",
            Dimension::Model => "model",
            Dimension::Provider => "provider_slug",
        }
    }
}

/// What the usage explorer asks of the rollup: whole UTC days `[from_day, to_day)`.
#[derive(Debug, Clone, Default)]
pub struct ExploreQuery {
    pub from_day: i64,
    pub to_day: i64,
    pub key_hash: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    /// Only keys owned by this user (`api_keys.owner_user_id`).
    pub owner_user: Option<String>,
    /// Only keys owned by this team (`api_keys.owner_team_id`).
    pub owner_team: Option<String>,
    /// Only generations carrying this tag (`usage_tags`): read from the raw usage rows, as
    /// the rollup has no tag dimension; the date range bounds the scan.
    pub tag: Option<(String, String)>,
    pub group_by: Vec<Dimension>,
    pub limit: i64,
}

/// One group of the explorer: `keys` in the order of `group_by` (days as day numbers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExploreRow {
    pub keys: Vec<String>,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_nanos: i64,
}

/// The distinct values the explorer's filters offer for a date range.
#[derive(Debug, Clone, Default)]
pub struct ExploreChoices {
    pub keys: Vec<String>,
    pub models: Vec<String>,
    pub providers: Vec<String>,
}

/// Primary key of a `usage_daily` row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DailyKey {
    pub org_id: String,
    pub day: i64,
    pub key_hash: String,
    pub model: String,
    pub provider_slug: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DailySums {
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_nanos: i64,
    /// Cost as posted at ingestion (re-rating moves only `cost_nanos`).
    pub posted_nanos: i64,
}

/// Changes to the rollup made by one transaction, applied in key order at its end: every
/// writer then locks rollup rows in the same order, so concurrent ingestion batches (and
/// re-rating) cannot deadlock on Postgres, and a batch touches each row once.
#[derive(Debug, Default)]
pub(crate) struct DailyDeltas(pub BTreeMap<DailyKey, DailySums>);

pub(crate) fn daily_key(r: &UsageRow) -> DailyKey {
    DailyKey {
        org_id: r.org_id.clone(),
        day: r.started_at.div_euclid(DAY_MS),
        key_hash: r.key_hash.clone(),
        model: r.model.clone(),
        provider_slug: r.provider_slug.clone(),
    }
}

impl DailyDeltas {
    /// A newly inserted generation (never a duplicate: the caller checked the insert).
    pub fn add_row(&mut self, r: &UsageRow) {
        let s = self.0.entry(daily_key(r)).or_default();
        s.requests += 1;
        s.errors += i64::from(r.http_status >= 400 || !r.error_type.is_empty());
        s.input_tokens = s.input_tokens.saturating_add(r.input_tokens);
        s.output_tokens = s.output_tokens.saturating_add(r.output_tokens);
        s.cache_read_tokens = s.cache_read_tokens.saturating_add(r.cache_read_tokens);
        s.cache_write_tokens = s.cache_write_tokens.saturating_add(
            r.cache_write_5m_tokens
                .saturating_add(r.cache_write_1h_tokens),
        );
        s.reasoning_tokens = s.reasoning_tokens.saturating_add(r.reasoning_tokens);
        s.cost_nanos = s.cost_nanos.saturating_add(r.cost_nanos);
        s.posted_nanos = s.posted_nanos.saturating_add(r.cost_nanos);
    }

    /// A re-rating adjustment of a stored generation's cost.
    pub fn add_cost(&mut self, r: &UsageRow, delta_nanos: i64) {
        let s = self.0.entry(daily_key(r)).or_default();
        s.cost_nanos = s.cost_nanos.saturating_add(delta_nanos);
    }
}

#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Usage since `since_ms` grouped by day, model and key, aggregated from every stored
    /// generation (`usage_records`). Kept for comparison and checks; pages use `daily_buckets`.
    async fn usage_buckets(&self, org_id: &str, since_ms: i64) -> StoreResult<Vec<UsageBucket>>;
    /// The same grouping read from the daily rollup, from the UTC day of `since_ms` on.
    async fn daily_buckets(&self, org_id: &str, since_ms: i64) -> StoreResult<Vec<UsageBucket>>;
    /// The usage explorer: rollup rows filtered and grouped, largest spend first.
    async fn explore_usage(&self, org_id: &str, q: &ExploreQuery) -> StoreResult<Vec<ExploreRow>>;
    /// Keys, models and providers with usage in `[from_day, to_day)`.
    async fn explore_choices(
        &self,
        org_id: &str,
        from_day: i64,
        to_day: i64,
    ) -> StoreResult<ExploreChoices>;
    async fn list_usage(&self, org_id: &str, query: &UsageQuery) -> StoreResult<Vec<UsageRow>>;
    /// `BillingStore::credit_totals` without reading every usage posting: the credit
    /// account's other postings (the partial index ledger_entries_org_account_kind) plus the
    /// rollup's posted usage cost. What every reader of a balance uses (the console, `/credits`,
    /// auto top-up after each ingested batch); its cost does not grow with the usage history.
    async fn rollup_credit_totals(&self, org_id: &str) -> StoreResult<CreditTotals>;
    /// A key's spend from each of the UTC days `from_days` (days since the epoch) on, read
    /// from the rollup: the key page's today / this month / all time without scanning the
    /// key's generations (its rollup rows are a few per day; today's is kept current at ingestion).
    async fn key_spend_from_days(
        &self,
        org_id: &str,
        hash: &str,
        from_days: &[i64],
    ) -> StoreResult<Vec<i64>>;
}

macro_rules! impl_console_store {
    ($store:ident, $db:ty) => {
        mod console_impl {
            use sqlx::Row as _;

            use super::$store;
            use $crate::store::console::*;
            use $crate::store::sql::USAGE_COLUMNS;
            use $crate::store::{CreditTotals, StoreResult, UsageRow, accounts, posting_kinds};

            const ERROR: &str = "(http_status >= 400 OR error_type <> '')";
            const SUMS: &str = "CAST(SUM(requests) AS BIGINT), CAST(SUM(errors) AS BIGINT),
                CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT),
                CAST(SUM(cache_read_tokens) AS BIGINT), CAST(SUM(cache_write_tokens) AS BIGINT),
                CAST(SUM(reasoning_tokens) AS BIGINT), CAST(SUM(cost_nanos) AS BIGINT)";

            /// Adds a transaction's rollup changes (see `DailyDeltas`) inside that transaction.
            pub(super) async fn apply_daily(
                tx: &mut sqlx::Transaction<'_, $db>,
                deltas: &DailyDeltas,
            ) -> StoreResult<()> {
                for (k, s) in &deltas.0 {
                    sqlx::query(
                        "INSERT INTO usage_daily (org_id, day, key_hash, model, provider_slug, requests, errors, input_tokens,
                            output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_nanos, posted_nanos)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                         ON CONFLICT (org_id, day, key_hash, model, provider_slug) DO UPDATE SET
                            requests = usage_daily.requests + excluded.requests,
                            errors = usage_daily.errors + excluded.errors,
                            input_tokens = usage_daily.input_tokens + excluded.input_tokens,
                            output_tokens = usage_daily.output_tokens + excluded.output_tokens,
                            cache_read_tokens = usage_daily.cache_read_tokens + excluded.cache_read_tokens,
                            cache_write_tokens = usage_daily.cache_write_tokens + excluded.cache_write_tokens,
                            reasoning_tokens = usage_daily.reasoning_tokens + excluded.reasoning_tokens,
                            cost_nanos = usage_daily.cost_nanos + excluded.cost_nanos,
                            posted_nanos = usage_daily.posted_nanos + excluded.posted_nanos",
                    )
                    .bind(&k.org_id)
                    .bind(k.day)
                    .bind(&k.key_hash)
                    .bind(&k.model)
                    .bind(&k.provider_slug)
                    .bind(s.requests)
                    .bind(s.errors)
                    .bind(s.input_tokens)
                    .bind(s.output_tokens)
                    .bind(s.cache_read_tokens)
                    .bind(s.cache_write_tokens)
                    .bind(s.reasoning_tokens)
                    .bind(s.cost_nanos)
                    .bind(s.posted_nanos)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            /// The tagged generations in the rollup's shape (one row each, day of start), so
            /// `filters` and the sums apply unchanged; `$9`/`$10` are the tag key and value.
            /// Costs are the generations' rated costs (re-rating adjustments are not per tag).
            const TAGGED_DAYS: &str = "(SELECT u.org_id, CAST(u.started_at / 86400000 AS BIGINT) AS day, u.key_hash, u.model,
                    u.provider_slug, 1 AS requests, CASE WHEN (u.http_status >= 400 OR u.error_type <> '') THEN 1 ELSE 0 END AS errors,
                    u.input_tokens, u.output_tokens, u.cache_read_tokens,
                    u.cache_write_5m_tokens + u.cache_write_1h_tokens AS cache_write_tokens, u.reasoning_tokens, u.cost_nanos
                FROM usage_records u
                JOIN usage_tags t ON t.request_id = u.request_id
                WHERE u.org_id = $1 AND u.started_at >= $2 * 86400000 AND u.started_at < $3 * 86400000
                  AND t.org_id = $1 AND t.tag_key = $9 AND t.tag_value = $10) AS tagged";

            fn filters(first: usize) -> String {
                format!(
                    "org_id = $1 AND day >= $2 AND day < $3
                     AND (${a} = '' OR key_hash = ${a}) AND (${b} = '' OR model = ${b}) AND (${c} = '' OR provider_slug = ${c})
                     AND (${d} = '' OR key_hash IN (SELECT hash FROM api_keys WHERE org_id = $1 AND owner_user_id = ${d}))
                     AND (${e} = '' OR key_hash IN (SELECT hash FROM api_keys WHERE org_id = $1 AND owner_team_id = ${e}))",
                    a = first,
                    b = first + 1,
                    c = first + 2,
                    d = first + 3,
                    e = first + 4
                )
            }

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

                async fn daily_buckets(&self, org_id: &str, since_ms: i64) -> StoreResult<Vec<UsageBucket>> {
                    Ok(sqlx::query_as::<_, UsageBucket>(
                        "SELECT day, model, key_hash, CAST(SUM(requests) AS BIGINT) AS requests,
                                CAST(SUM(errors) AS BIGINT) AS errors, CAST(SUM(cost_nanos) AS BIGINT) AS cost_nanos,
                                CAST(SUM(input_tokens) AS BIGINT) AS input_tokens,
                                CAST(SUM(output_tokens) AS BIGINT) AS output_tokens
                         FROM usage_daily WHERE org_id = $1 AND day >= $2
                         GROUP BY day, model, key_hash",
                    )
                    .bind(org_id)
                    .bind(since_ms.div_euclid(DAY_MS))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn explore_usage(&self, org_id: &str, q: &ExploreQuery) -> StoreResult<Vec<ExploreRow>> {
                    // Only whitelisted column expressions are spliced in; values are bound.
                    let cols: Vec<&str> = q.group_by.iter().map(|d| d.column()).collect();
                    let select_keys = cols.iter().enumerate().map(|(i, c)| format!("{c} AS d{i}, ")).collect::<String>();
                    let group = if cols.is_empty() { String::new() } else { format!(" GROUP BY {}", cols.join(", ")) };
                    // A daily series reads in date order; any other grouping by spend (the
                    // last sum; columns are numbered from 1), then its first key.
                    let order = if cols.is_empty() {
                        String::new()
                    } else if q.group_by == [Dimension::Day] {
                        " ORDER BY d0".to_owned()
                    } else {
                        format!(" ORDER BY {} DESC, 1", cols.len() + 8)
                    };
                    let sql = format!(
                        "SELECT {select_keys}{SUMS} FROM {} WHERE {}{group}{order} LIMIT {}",
                        if q.tag.is_some() { TAGGED_DAYS } else { "usage_daily" },
                        filters(4),
                        q.limit.clamp(1, 10_000)
                    );
                    let mut query = sqlx::query(&sql)
                        .bind(org_id)
                        .bind(q.from_day)
                        .bind(q.to_day)
                        .bind(q.key_hash.clone().unwrap_or_default())
                        .bind(q.model.clone().unwrap_or_default())
                        .bind(q.provider.clone().unwrap_or_default())
                        .bind(q.owner_user.clone().unwrap_or_default())
                        .bind(q.owner_team.clone().unwrap_or_default());
                    if let Some((key, value)) = &q.tag {
                        query = query.bind(key.clone()).bind(value.clone());
                    }
                    let rows = query.fetch_all(&self.pool).await?;
                    let n = cols.len();
                    let mut out = Vec::with_capacity(rows.len());
                    for row in rows {
                        let mut keys = Vec::with_capacity(n);
                        for i in 0..n {
                            keys.push(row.try_get::<Option<String>, _>(i)?.unwrap_or_default());
                        }
                        let num = |i: usize| -> StoreResult<i64> { Ok(row.try_get::<Option<i64>, _>(n + i)?.unwrap_or(0)) };
                        if num(0)? == 0 && n == 0 {
                            // SUM over no rows: an empty answer, not one row of zeros.
                            continue;
                        }
                        out.push(ExploreRow {
                            keys,
                            requests: num(0)?,
                            errors: num(1)?,
                            input_tokens: num(2)?,
                            output_tokens: num(3)?,
                            cache_read_tokens: num(4)?,
                            cache_write_tokens: num(5)?,
                            reasoning_tokens: num(6)?,
                            cost_nanos: num(7)?,
                        });
                    }
                    Ok(out)
                }

                async fn explore_choices(&self, org_id: &str, from_day: i64, to_day: i64) -> StoreResult<ExploreChoices> {
                    let mut choices = ExploreChoices::default();
                    for (col, out) in [
                        ("key_hash", &mut choices.keys),
                        ("model", &mut choices.models),
                        ("provider_slug", &mut choices.providers),
                    ] {
                        let rows: Vec<(String,)> = sqlx::query_as(&format!(
                            "SELECT DISTINCT {col} FROM usage_daily WHERE org_id = $1 AND day >= $2 AND day < $3 ORDER BY 1 LIMIT 500"
                        ))
                        .bind(org_id)
                        .bind(from_day)
                        .bind(to_day)
                        .fetch_all(&self.pool)
                        .await?;
                        *out = rows.into_iter().map(|(v,)| v).collect();
                    }
                    Ok(choices)
                }

                async fn rollup_credit_totals(&self, org_id: &str) -> StoreResult<CreditTotals> {
                    // `kind <> 'usage'` spelled as in the partial index
                    // ledger_entries_org_account_kind (which holds no usage postings), so both
                    // databases read that index rather than every usage posting.
                    let mut rows: Vec<(String, Option<i64>)> = sqlx::query_as(
                        "SELECT kind, CAST(SUM(amount_nanos) AS BIGINT) FROM ledger_entries
                         WHERE org_id = $1 AND account = $2 AND kind <> 'usage' GROUP BY kind",
                    )
                    .bind(org_id)
                    .bind(accounts::ORG_CREDITS)
                    .fetch_all(&self.pool)
                    .await?;
                    // Usage postings debit the credit account by the posted cost of each row.
                    let (posted,): (Option<i64>,) =
                        sqlx::query_as("SELECT CAST(SUM(posted_nanos) AS BIGINT) FROM usage_daily WHERE org_id = $1")
                            .bind(org_id)
                            .fetch_one(&self.pool)
                            .await?;
                    if let Some(p) = posted {
                        rows.push((posting_kinds::USAGE.to_owned(), Some(-p)));
                    }
                    // The same classification as `BillingStore::credit_totals`.
                    let mut t = CreditTotals::default();
                    for (kind, sum) in rows {
                        let sum = sum.unwrap_or(0);
                        match kind.as_str() {
                            posting_kinds::GRANT | posting_kinds::TOPUP => t.credits_nanos = t.credits_nanos.saturating_add(sum),
                            _ => t.usage_nanos = t.usage_nanos.saturating_sub(sum),
                        }
                        t.balance_nanos = t.balance_nanos.saturating_add(sum);
                    }
                    Ok(t)
                }

                async fn key_spend_from_days(&self, org_id: &str, hash: &str, from_days: &[i64]) -> StoreResult<Vec<i64>> {
                    // One grouped read, then a suffix sum per requested start day.
                    let days: Vec<(i64, Option<i64>)> = sqlx::query_as(
                        "SELECT day, CAST(SUM(cost_nanos) AS BIGINT) FROM usage_daily
                         WHERE org_id = $1 AND key_hash = $2 GROUP BY day",
                    )
                    .bind(org_id)
                    .bind(hash)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(from_days
                        .iter()
                        .map(|from| {
                            days.iter()
                                .filter(|(day, _)| day >= from)
                                .fold(0i64, |acc, (_, sum)| acc.saturating_add(sum.unwrap_or(0)))
                        })
                        .collect())
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
