//! The SQL both backends share. SQLite and Postgres accept the same `$n` placeholders,
//! `ON CONFLICT`, and `RETURNING`, so one body serves both; backend-specific SQL stays in
//! `sqlite.rs` / `postgres.rs`.
//!
//! Write transactions start with a write (the config-version bump or an insert) so that
//! SQLite takes its write lock up front instead of failing on a lock upgrade.

pub(super) const KEY_COLUMNS: &str = "hash, org_id, name, label, kind, disabled, limit_nanos, limit_reset, include_byok_in_limit, expires_at, created_at, updated_at";
pub(super) const PROVIDER_COLUMNS: &str = "id, org_id, slug, name, kind, base_url, api_key, created_at, updated_at, zero_data_retention, trains_on_prompts, connect_timeout_ms, first_byte_timeout_ms, stream_idle_timeout_ms, max_concurrency";
pub(super) const MODEL_COLUMNS: &str =
    "org_id, id, name, description, context_length, created_at, updated_at";
pub(super) const ENDPOINT_COLUMNS: &str = "id, org_id, model_id, provider_id, upstream_model, context_length, max_output_tokens, price_input, price_output, price_cache_read, price_cache_write_5m, price_cache_write_1h, price_reasoning, price_per_request, position, quantization, supported_parameters";
pub(super) const USAGE_COLUMNS: &str = "request_id, org_id, key_hash, model, endpoint_id, provider_id, provider_slug, upstream_model, node_id, config_version, api, started_at, finished_at, ttft_ms, streamed, cancelled, estimated, finish_reason, native_finish_reason, http_status, error_type, input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens, cost_nanos, gateway_cost_nanos, upstream_id, ingested_at, provider_responses";
pub(super) const USAGE_COLUMN_COUNT: usize = count_columns(USAGE_COLUMNS);

/// The columns of a comma-separated list.
const fn count_columns(list: &str) -> usize {
    let bytes = list.as_bytes();
    let (mut i, mut n) = (0, 1);
    while i < bytes.len() {
        if bytes[i] == b',' {
            n += 1;
        }
        i += 1;
    }
    n
}

macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        use $crate::store::sql::{ENDPOINT_COLUMNS, KEY_COLUMNS, MODEL_COLUMNS, PROVIDER_COLUMNS, USAGE_COLUMN_COUNT, USAGE_COLUMNS};
        use $crate::store::*;
        use $crate::store::chunks::padded_chunks;
        use $crate::store::values::Values;

        type Tx<'a> = sqlx::Transaction<'a, $db>;

        async fn bump_version(tx: &mut Tx<'_>) -> StoreResult<u64> {
            let (v,): (i64,) =
                sqlx::query_as("UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version")
                    .fetch_one(&mut **tx)
                    .await?;
            Ok(u64::try_from(v).unwrap_or(0))
        }

        /// Binds a usage row's values in `USAGE_COLUMNS` order.
        fn push_usage<'q>(b: &mut $crate::store::values::Row<'_, 'q, $db>, r: &'q UsageRow) {
            b.bind(r.request_id.as_str())
                .bind(r.org_id.as_str())
                .bind(r.key_hash.as_str())
                .bind(r.model.as_str())
                .bind(r.endpoint_id.as_str())
                .bind(r.provider_id.as_str())
                .bind(r.provider_slug.as_str())
                .bind(r.upstream_model.as_str())
                .bind(r.node_id.as_str())
                .bind(r.config_version)
                .bind(r.api.as_str())
                .bind(r.started_at)
                .bind(r.finished_at)
                .bind(r.ttft_ms)
                .bind(r.streamed)
                .bind(r.cancelled)
                .bind(r.estimated)
                .bind(r.finish_reason.as_str())
                .bind(r.native_finish_reason.as_str())
                .bind(r.http_status)
                .bind(r.error_type.as_str())
                .bind(r.input_tokens)
                .bind(r.output_tokens)
                .bind(r.cache_read_tokens)
                .bind(r.cache_write_5m_tokens)
                .bind(r.cache_write_1h_tokens)
                .bind(r.reasoning_tokens)
                .bind(r.cost_nanos)
                .bind(r.gateway_cost_nanos)
                .bind(r.upstream_id.as_str())
                .bind(r.ingested_at)
                .bind(r.provider_responses.as_str());
        }

        /// Most rows per multi-row usage INSERT (32 parameters each, far under SQLite's
        /// 32 766); a half of the gateway's largest batch.
        const USAGE_ROWS_PER_STATEMENT: usize = 128;
        /// Most ledger postings per multi-row INSERT (7 parameters each): two per row.
        const POSTINGS_PER_STATEMENT: usize = 256;

        /// Inserts a batch of usage rows and the ledger postings of the new ones, a few
        /// statements per batch rather than three per row: on SQLite every statement is a
        /// round trip to sqlx's database thread, and per-row statements made ingestion cost
        /// more CPU than serving the request (`switchyard-bench`, control plane at 2k req/s).
        /// Returns the rows that were new; a request id already present is skipped
        /// (redelivery never bills twice). `rows` must be sorted by request id and unique.
        ///
        /// The statements are built with `QueryBuilder`, which writes SQLite's anonymous `?`
        /// placeholders: with numbered `$n` ones SQLite looks each parameter's name up in a
        /// list (`sqlite3_bind_parameter_name`, called by sqlx per bind), quadratic in the
        /// parameters of a statement — 73 % of the control plane's CPU at 200 rows. Runs are
        /// padded to a few lengths (`padded_chunks`), so their texts stay prepared; the
        /// padding repeats a row, which the conflict clauses skip.
        async fn insert_usage_rows<'r>(tx: &mut Tx<'_>, rows: &[&'r UsageRow]) -> StoreResult<Vec<&'r UsageRow>> {
            let mut new = Vec::with_capacity(rows.len());
            for chunk in padded_chunks(rows, USAGE_ROWS_PER_STATEMENT) {
                let mut insert = Values::<$db>::new(&format!("INSERT INTO usage_records ({USAGE_COLUMNS})"), chunk.len(), USAGE_COLUMN_COUNT);
                for r in chunk.rows() {
                    insert.row(|b| push_usage(b, r));
                }
                let (sql, args) = insert.finish(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id")?;
                let mut inserted = std::collections::HashSet::new();
                for row in sqlx::query_with(&sql, args).fetch_all(&mut **tx).await? {
                    inserted.insert(sqlx::Row::try_get::<String, _>(&row, 0)?);
                }
                new.extend(chunk.items().iter().copied().filter(|r| inserted.contains(&r.request_id)));
            }
            let postings: Vec<(&UsageRow, &str, i64)> = new
                .iter()
                .flat_map(|r| [(*r, accounts::ORG_CREDITS, -r.cost_nanos), (*r, accounts::PLATFORM_REVENUE, r.cost_nanos)])
                .collect();
            for chunk in padded_chunks(&postings, POSTINGS_PER_STATEMENT) {
                let mut insert = Values::<$db>::new(
                    "INSERT INTO ledger_entries (org_id, account, amount_nanos, kind, request_id, memo, created_at)",
                    chunk.len(),
                    7,
                );
                for &(r, account, amount) in chunk.rows() {
                    insert.row(|b| {
                        b.bind(r.org_id.as_str())
                            .bind(account)
                            .bind(amount)
                            .literal("'usage'")
                            .bind(r.request_id.as_str())
                            .bind(r.model.as_str())
                            .bind(r.ingested_at);
                    });
                }
                // Only the padding conflicts: the rows are new, so their postings are too.
                let (sql, args) = insert.finish(" ON CONFLICT DO NOTHING")?;
                sqlx::query_with(&sql, args).execute(&mut **tx).await?;
            }
            Ok(new)
        }

        /// `Store::ingest_usage` inside a caller's transaction.
        async fn insert_usage(tx: &mut Tx<'_>, rows: &[UsageRow]) -> StoreResult<IngestOutcome> {
            let mut outcome = IngestOutcome::default();
            if rows.is_empty() {
                return Ok(outcome);
            }
            // A fixed lock order: concurrent batches that share request ids (redelivery
            // racing a retry) would otherwise deadlock on Postgres.
            let mut ordered: Vec<&UsageRow> = rows.iter().collect();
            ordered.sort_by(|a, b| a.request_id.cmp(&b.request_id));
            ordered.dedup_by(|a, b| a.request_id == b.request_id);
            outcome.duplicates += u32::try_from(rows.len() - ordered.len()).unwrap_or(0);
            // A final record supersedes the stream's provisional one (deleted first: the
            // sweeper locks the two tables in the same order). Only streams have one; a
            // provisional row left over anyway settles as a no-op duplicate.
            let streamed: Vec<&str> = ordered.iter().filter(|r| r.streamed).map(|r| r.request_id.as_str()).collect();
            for chunk in padded_chunks(&streamed, USAGE_ROWS_PER_STATEMENT) {
                let mut delete = sqlx::QueryBuilder::<$db>::new("DELETE FROM provisional_usage WHERE request_id IN (");
                let mut ids = delete.separated(", ");
                for id in chunk.rows() {
                    ids.push_bind(*id);
                }
                ids.push_unseparated(")");
                delete.build().execute(&mut **tx).await?;
            }
            let new = insert_usage_rows(tx, &ordered).await?;
            outcome.inserted += u32::try_from(new.len()).unwrap_or(0);
            outcome.duplicates += u32::try_from(ordered.len() - new.len()).unwrap_or(0);
            // Daily rollup of the rows actually inserted (console.rs).
            let mut daily = console::DailyDeltas::default();
            for r in new {
                daily.add_row(r);
            }
            console_impl::apply_daily(tx, &daily).await?;
            Ok(outcome)
        }

        /// `Store::hold_provisional_usage` inside a caller's transaction. Multi-row, like the
        /// finals: every streamed generation brings one, and a statement per record was a round
        /// trip to SQLite's thread per stream. Padded like them (the conflict clause skips
        /// the repeats).
        async fn insert_provisional(tx: &mut Tx<'_>, rows: &[UsageRow]) -> StoreResult<u32> {
            let mut ordered: Vec<&UsageRow> = rows.iter().collect();
            ordered.sort_by(|a, b| a.request_id.cmp(&b.request_id));
            ordered.dedup_by(|a, b| a.request_id == b.request_id);
            // Held only while no final record exists: a provisional record arriving after
            // its final (reordered or redelivered) is a no-op. A final committed
            // concurrently can still leave one behind; settling it is then a no-op too.
            let mut held = 0u32;
            for chunk in padded_chunks(&ordered, USAGE_ROWS_PER_STATEMENT) {
                // `column1` is the request id: both databases name a VALUES list's columns so.
                let mut insert = Values::<$db>::new(&format!("INSERT INTO provisional_usage ({USAGE_COLUMNS}) SELECT * FROM ("), chunk.len(), USAGE_COLUMN_COUNT);
                for r in chunk.rows() {
                    insert.row(|b| push_usage(b, r));
                }
                let (sql, args) = insert.finish(
                    ") AS v WHERE NOT EXISTS (SELECT 1 FROM usage_records WHERE request_id = v.column1) ON CONFLICT (request_id) DO NOTHING",
                )?;
                let n = sqlx::query_with(&sql, args).execute(&mut **tx).await?.rows_affected();
                held += u32::try_from(n).unwrap_or(0);
            }
            Ok(held)
        }

        async fn insert_key(tx: &mut Tx<'_>, key: &NewKey, now: i64) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO api_keys (hash, org_id, name, label, kind, disabled, limit_nanos, limit_reset, include_byok_in_limit, expires_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7, $8, $9, $10, $10)",
            )
            .bind(&key.hash)
            .bind(&key.org_id)
            .bind(&key.name)
            .bind(&key.label)
            .bind(key.kind.as_str())
            .bind(key.limit_nanos)
            .bind(&key.limit_reset)
            .bind(key.include_byok_in_limit)
            .bind(key.expires_at)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        async fn insert_provider(tx: &mut Tx<'_>, p: &NewProvider, now: i64) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO providers (id, org_id, slug, name, kind, base_url, api_key, created_at, updated_at,
                    zero_data_retention, trains_on_prompts, connect_timeout_ms, first_byte_timeout_ms, stream_idle_timeout_ms, max_concurrency)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&p.id)
            .bind(&p.org_id)
            .bind(&p.slug)
            .bind(&p.name)
            .bind(&p.kind)
            .bind(&p.base_url)
            .bind(&p.api_key)
            .bind(now)
            .bind(p.policy.zero_data_retention)
            .bind(p.policy.trains_on_prompts)
            .bind(p.policy.connect_timeout_ms)
            .bind(p.policy.first_byte_timeout_ms)
            .bind(p.policy.stream_idle_timeout_ms)
            .bind(p.policy.max_concurrency)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        async fn insert_endpoints(tx: &mut Tx<'_>, org_id: &str, model_id: &str, endpoints: &[NewEndpoint], now: i64) -> StoreResult<()> {
            for (position, e) in endpoints.iter().enumerate() {
                // The provider must belong to the same org: never route one tenant's
                // traffic through another tenant's credential.
                let owned: Option<(String,)> = sqlx::query_as("SELECT id FROM providers WHERE id = $1 AND org_id = $2")
                    .bind(&e.provider_id)
                    .bind(org_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                if owned.is_none() {
                    return Err(StoreError::Conflict(format!("unknown provider `{}`", e.provider_id)));
                }
                let p = &e.prices;
                sqlx::query(
                    "INSERT INTO model_endpoints (id, org_id, model_id, provider_id, upstream_model, context_length, max_output_tokens,
                        price_input, price_output, price_cache_read, price_cache_write_5m, price_cache_write_1h, price_reasoning, price_per_request, position, created_at,
                        quantization, supported_parameters)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
                )
                .bind(&e.id)
                .bind(org_id)
                .bind(model_id)
                .bind(&e.provider_id)
                .bind(&e.upstream_model)
                .bind(e.context_length)
                .bind(e.max_output_tokens)
                .bind(p.input)
                .bind(p.output)
                .bind(p.cache_read)
                .bind(p.cache_write_5m)
                .bind(p.cache_write_1h)
                .bind(p.reasoning)
                .bind(p.per_request_nanos)
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(now)
                .bind(&e.quantization)
                .bind(e.supported_parameters.join(","))
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        async fn insert_model(tx: &mut Tx<'_>, m: &NewModel, now: i64) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO models (org_id, id, name, description, context_length, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(&m.org_id)
            .bind(&m.id)
            .bind(&m.name)
            .bind(&m.description)
            .bind(m.context_length)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            insert_endpoints(tx, &m.org_id, &m.id, &m.endpoints, now).await
        }

        async fn fetch_model<'e, E>(exec: E, org_id: &str, model_id: &str) -> StoreResult<ModelRow>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            Ok(sqlx::query_as::<_, ModelRow>(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE org_id = $1 AND id = $2"))
                .bind(org_id)
                .bind(model_id)
                .fetch_one(exec)
                .await?)
        }

        impl $store {
            async fn commit_config_change(&self, tx: Tx<'_>, version: u64) -> StoreResult<()> {
                tx.commit().await?;
                self.announce(version);
                Ok(())
            }

            async fn model_record(&self, org_id: &str, model_id: &str) -> StoreResult<ModelRecord> {
                let model = fetch_model(&self.pool, org_id, model_id).await?;
                let endpoints = sqlx::query_as::<_, EndpointRow>(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM model_endpoints WHERE org_id = $1 AND model_id = $2 ORDER BY position"
                ))
                .bind(org_id)
                .bind(model_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(ModelRecord { model, endpoints })
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            fn config_changes(&self) -> tokio::sync::watch::Receiver<u64> {
                self.changes.subscribe()
            }

            async fn is_bootstrapped(&self) -> StoreResult<bool> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orgs").fetch_one(&self.pool).await?;
                Ok(n > 0)
            }

            async fn bootstrap(&self, plan: &BootstrapPlan) -> StoreResult<()> {
                let now = now_ms();
                let mut tx = Self::begin_write(&self.pool).await?;
                let version = bump_version(&mut tx).await?;
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orgs").fetch_one(&mut *tx).await?;
                if n > 0 {
                    return Err(StoreError::Conflict("database is already bootstrapped".into()));
                }
                sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(&plan.org.id)
                    .bind(&plan.org.name)
                    .bind(plan.org.created_at)
                    .execute(&mut *tx)
                    .await?;
                for key in &plan.keys {
                    insert_key(&mut tx, key, now).await?;
                }
                for provider in &plan.providers {
                    insert_provider(&mut tx, provider, now).await?;
                }
                for model in &plan.models {
                    insert_model(&mut tx, model, now).await?;
                }
                sqlx::query("INSERT INTO node_tokens (hash, name, created_at) VALUES ($1, $2, $3)")
                    .bind(&plan.node_token_hash)
                    .bind("bootstrap")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                self.commit_config_change(tx, version).await
            }

            async fn get_org(&self, org_id: &str) -> StoreResult<Org> {
                Ok(sqlx::query_as::<_, Org>("SELECT id, name, created_at FROM orgs WHERE id = $1")
                    .bind(org_id)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn create_key(&self, key: &NewKey) -> StoreResult<KeyRecord> {
                let mut tx = Self::begin_write(&self.pool).await?;
                let version = bump_version(&mut tx).await?;
                insert_key(&mut tx, key, now_ms()).await?;
                self.commit_config_change(tx, version).await?;
                self.get_key(&key.org_id, &key.hash).await
            }

            async fn find_key(&self, hash: &str) -> StoreResult<Option<KeyRecord>> {
                Ok(sqlx::query_as::<_, KeyRecord>(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1"))
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn get_key(&self, org_id: &str, hash: &str) -> StoreResult<KeyRecord> {
                Ok(sqlx::query_as::<_, KeyRecord>(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND hash = $2"))
                    .bind(org_id)
                    .bind(hash)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn list_keys(&self, org_id: &str, offset: i64, limit: i64, include_disabled: bool) -> StoreResult<Vec<KeyRecord>> {
                Ok(sqlx::query_as::<_, KeyRecord>(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND ($2 OR NOT disabled)
                     ORDER BY created_at, hash LIMIT $3 OFFSET $4"
                ))
                .bind(org_id)
                .bind(include_disabled)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn update_key(&self, org_id: &str, hash: &str, patch: &KeyPatch) -> StoreResult<KeyRecord> {
                let mut tx = Self::begin_write(&self.pool).await?;
                let version = bump_version(&mut tx).await?;
                let current = sqlx::query_as::<_, KeyRecord>(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND hash = $2"))
                    .bind(org_id)
                    .bind(hash)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE api_keys SET name = $3, disabled = $4, limit_nanos = $5, limit_reset = $6, include_byok_in_limit = $7, expires_at = $8, updated_at = $9
                     WHERE org_id = $1 AND hash = $2",
                )
                .bind(org_id)
                .bind(hash)
                .bind(patch.name.as_ref().unwrap_or(&current.name))
                .bind(patch.disabled.unwrap_or(current.disabled))
                .bind(patch.limit_nanos.unwrap_or(current.limit_nanos))
                .bind(patch.limit_reset.clone().unwrap_or(current.limit_reset))
                .bind(patch.include_byok_in_limit.unwrap_or(current.include_byok_in_limit))
                .bind(patch.expires_at.unwrap_or(current.expires_at))
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                self.commit_config_change(tx, version).await?;
                self.get_key(org_id, hash).await
            }

            async fn delete_key(&self, org_id: &str, hash: &str) -> StoreResult<()> {
                let mut tx = Self::begin_write(&self.pool).await?;
                let version = bump_version(&mut tx).await?;
                let done = sqlx::query("DELETE FROM api_keys WHERE org_id = $1 AND hash = $2")
                    .bind(org_id)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                self.commit_config_change(tx, version).await
            }

            async fn key_spend_since(&self, org_id: &str, hash: &str, since_ms: &[i64]) -> StoreResult<Vec<i64>> {
                let mut out = Vec::with_capacity(since_ms.len());
                for since in since_ms {
                    let (sum,): (Option<i64>,) = sqlx::query_as(
                        "SELECT CAST(SUM(cost_nanos) AS BIGINT) FROM usage_records WHERE org_id = $1 AND key_hash = $2 AND finished_at >= $3",
                    )
                    .bind(org_id)
                    .bind(hash)
                    .bind(*since)
                    .fetch_one(&self.pool)
                    .await?;
                    out.push(sum.unwrap_or(0));
                }
                Ok(out)
            }

            async fn create_provider(&self, provider: &NewProvider) -> StoreResult<ProviderRecord> {
                let mut tx = Self::begin_write(&self.pool).await?;
                let version = bump_version(&mut tx).await?;
                insert_provider(&mut tx, provider, now_ms()).await?;
                self.commit_config_change(tx, version).await?;
                self.get_provider(&provider.org_id, &provider.id).await
            }

            async fn list_providers(&self, org_id: &str) -> StoreResult<Vec<ProviderRecord>> {
                Ok(sqlx::query_as::<_, ProviderRecord>(&format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE org_id = $1 ORDER BY slug"))
                    .bind(org_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn get_provider(&self, org_id: &str, id_or_slug: &str) -> StoreResult<ProviderRecord> {
                Ok(sqlx::query_as::<_, ProviderRecord>(&format!(
                    "SELECT {PROVIDER_COLUMNS} FROM providers WHERE org_id = $1 AND (id = $2 OR slug = $2) ORDER BY id = $2 DESC LIMIT 1"
                ))
                .bind(org_id)
                .bind(id_or_slug)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn create_model(&self, model: &NewModel) -> StoreResult<ModelRecord> {
                let mut tx = Self::begin_write(&self.pool).await?;
                let version = bump_version(&mut tx).await?;
                insert_model(&mut tx, model, now_ms()).await?;
                self.commit_config_change(tx, version).await?;
                self.model_record(&model.org_id, &model.id).await
            }

            async fn update_model(&self, org_id: &str, model_id: &str, patch: &ModelPatch) -> StoreResult<ModelRecord> {
                let now = now_ms();
                let mut tx = Self::begin_write(&self.pool).await?;
                let version = bump_version(&mut tx).await?;
                let current = fetch_model(&mut *tx, org_id, model_id).await?;
                sqlx::query("UPDATE models SET name = $3, description = $4, context_length = $5, updated_at = $6 WHERE org_id = $1 AND id = $2")
                    .bind(org_id)
                    .bind(model_id)
                    .bind(patch.name.as_ref().unwrap_or(&current.name))
                    .bind(patch.description.as_ref().unwrap_or(&current.description))
                    .bind(patch.context_length.unwrap_or(current.context_length))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if let Some(endpoints) = &patch.endpoints {
                    sqlx::query("DELETE FROM model_endpoints WHERE org_id = $1 AND model_id = $2")
                        .bind(org_id)
                        .bind(model_id)
                        .execute(&mut *tx)
                        .await?;
                    insert_endpoints(&mut tx, org_id, model_id, endpoints, now).await?;
                }
                self.commit_config_change(tx, version).await?;
                self.model_record(org_id, model_id).await
            }

            async fn get_model(&self, org_id: &str, model_id: &str) -> StoreResult<ModelRecord> {
                self.model_record(org_id, model_id).await
            }

            async fn list_models(&self, org_id: &str) -> StoreResult<Vec<ModelRecord>> {
                let models = sqlx::query_as::<_, ModelRow>(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE org_id = $1 ORDER BY id"))
                    .bind(org_id)
                    .fetch_all(&self.pool)
                    .await?;
                let endpoints = sqlx::query_as::<_, EndpointRow>(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM model_endpoints WHERE org_id = $1 ORDER BY model_id, position"
                ))
                .bind(org_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(models
                    .into_iter()
                    .map(|model| {
                        let endpoints = endpoints.iter().filter(|e| e.model_id == model.id).cloned().collect();
                        ModelRecord { model, endpoints }
                    })
                    .collect())
            }

            async fn endpoint_prices(&self, endpoint_id: &str) -> StoreResult<Option<switchyard_proto::PriceSheet>> {
                let row = sqlx::query_as::<_, EndpointRow>(&format!("SELECT {ENDPOINT_COLUMNS} FROM model_endpoints WHERE id = $1"))
                    .bind(endpoint_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.prices()))
            }

            async fn config_version(&self) -> StoreResult<u64> {
                let (v,): (i64,) = sqlx::query_as("SELECT version FROM config_state WHERE id = 1").fetch_one(&self.pool).await?;
                Ok(u64::try_from(v).unwrap_or(0))
            }

            async fn load_config(&self) -> StoreResult<ConfigData> {
                let mut tx = super::begin::detached(&self.pool, None).await?;
                Self::begin_consistent_read(&mut tx).await?;
                let (version,): (i64,) = sqlx::query_as("SELECT version FROM config_state WHERE id = 1").fetch_one(&mut *tx).await?;
                let orgs = sqlx::query_as::<_, Org>("SELECT id, name, created_at FROM orgs ORDER BY id").fetch_all(&mut *tx).await?;
                let keys = sqlx::query_as::<_, KeyRecord>(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY hash")).fetch_all(&mut *tx).await?;
                let providers = sqlx::query_as::<_, ProviderRecord>(&format!("SELECT {PROVIDER_COLUMNS} FROM providers ORDER BY id"))
                    .fetch_all(&mut *tx)
                    .await?;
                let models = sqlx::query_as::<_, ModelRow>(&format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY org_id, id"))
                    .fetch_all(&mut *tx)
                    .await?;
                let endpoints = sqlx::query_as::<_, EndpointRow>(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM model_endpoints ORDER BY org_id, model_id, position"
                ))
                .fetch_all(&mut *tx)
                .await?;
                let rate_limits = sqlx::query_as::<_, RateLimitRow>(
                    "SELECT org_id, scope_kind, scope_id, requests_per_minute, tokens_per_minute, concurrent_requests, capacity_weight FROM rate_limits ORDER BY scope_kind, scope_id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let routing_policies = sqlx::query_as::<_, (String, String)>("SELECT org_id, policy FROM routing_policies ORDER BY org_id")
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(ConfigData { version: u64::try_from(version).unwrap_or(0), orgs, keys, providers, models, endpoints, rate_limits, routing_policies })
            }

            async fn add_node_token(&self, hash: &str, name: &str) -> StoreResult<()> {
                sqlx::query("INSERT INTO node_tokens (hash, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING")
                    .bind(hash)
                    .bind(name)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn node_token_exists(&self, hash: &str) -> StoreResult<bool> {
                let row: Option<(String,)> = sqlx::query_as("SELECT hash FROM node_tokens WHERE hash = $1")
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn record_node_ack(&self, ack: &NodeAck) -> StoreResult<()> {
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO gateway_nodes (node_id, applied_version, ok, last_error, node_info, first_seen, last_seen)
                     VALUES ($1, CASE WHEN $3 THEN $2 ELSE 0 END, $3, $4, $5, $6, $6)
                     ON CONFLICT (node_id) DO UPDATE SET applied_version = CASE WHEN excluded.ok THEN excluded.applied_version ELSE gateway_nodes.applied_version END,
                        ok = excluded.ok, last_error = excluded.last_error,
                        node_info = CASE WHEN excluded.node_info = '' THEN gateway_nodes.node_info ELSE excluded.node_info END,
                        last_seen = excluded.last_seen",
                )
                .bind(&ack.node_id)
                .bind(i64::try_from(ack.version).unwrap_or(i64::MAX))
                .bind(ack.ok)
                .bind(&ack.error)
                .bind(&ack.node_info)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>> {
                Ok(sqlx::query_as::<_, NodeRecord>(
                    "SELECT node_id, applied_version, ok, last_error, node_info, first_seen, last_seen FROM gateway_nodes ORDER BY node_id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn ingest_batch(&self, batch: &UsageBatchWrite<'_>) -> StoreResult<IngestOutcome> {
                let UsageBatchWrite { tags, cache_facts, provisional, rows, fees } = *batch;
                if tags.is_empty() && cache_facts.is_empty() && provisional.is_empty() && rows.is_empty() && fees.is_empty() {
                    return Ok(IngestOutcome::default());
                }
                let mut tx = Self::begin_write(&self.writer).await?;
                billing_impl::insert_usage_tags(&mut tx, tags).await?;
                cache_stats_impl::insert_cache_facts(&mut tx, cache_facts).await?;
                // Held before the finals, so a final in the same batch deletes its own.
                insert_provisional(&mut tx, provisional).await?;
                let outcome = insert_usage(&mut tx, rows).await?;
                // The platform fee is its own posting, after the usage it is on.
                chargeback_impl::insert_postings_once(&mut tx, fees).await?;
                tx.commit().await?;
                Ok(outcome)
            }

            async fn ingest_usage(&self, rows: &[UsageRow]) -> StoreResult<IngestOutcome> {
                if rows.is_empty() {
                    return Ok(IngestOutcome::default());
                }
                let mut tx = Self::begin_write(&self.writer).await?;
                let outcome = insert_usage(&mut tx, rows).await?;
                tx.commit().await?;
                Ok(outcome)
            }

            async fn hold_provisional_usage(&self, rows: &[UsageRow]) -> StoreResult<u32> {
                if rows.is_empty() {
                    return Ok(0);
                }
                let mut tx = Self::begin_write(&self.writer).await?;
                let held = insert_provisional(&mut tx, rows).await?;
                tx.commit().await?;
                Ok(held)
            }

            async fn settle_provisional_usage(&self, received_before_ms: i64, limit: i64) -> StoreResult<Vec<UsageRow>> {
                let due: Vec<(String,)> = sqlx::query_as(
                    "SELECT request_id FROM provisional_usage WHERE ingested_at < $1 ORDER BY ingested_at LIMIT $2",
                )
                .bind(received_before_ms)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let mut settled = Vec::new();
                // One transaction per generation, taking the provisional row first like
                // `ingest_usage` does, so a final arriving now can never deadlock with this.
                for (request_id,) in due {
                    let mut tx = Self::begin_write(&self.writer).await?;
                    let row: Option<UsageRow> = sqlx::query_as(&format!(
                        "DELETE FROM provisional_usage WHERE request_id = $1 AND ingested_at < $2 RETURNING {USAGE_COLUMNS}"
                    ))
                    .bind(&request_id)
                    .bind(received_before_ms)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(mut row) = row else { continue };
                    row.estimated = true;
                    row.ingested_at = now_ms();
                    if !insert_usage_rows(&mut tx, &[&row]).await?.is_empty() {
                        let mut daily = console::DailyDeltas::default();
                        daily.add_row(&row);
                        console_impl::apply_daily(&mut tx, &daily).await?;
                        // The platform fee in the same transaction: the row never reaches
                        // the ledger without it, whatever fails or restarts in between.
                        let bps: Option<(i64,)> = sqlx::query_as("SELECT platform_fee_bps FROM org_billing_settings WHERE org_id = $1")
                            .bind(&row.org_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        let fees = $crate::billing::fees::postings_at(std::slice::from_ref(&row), |_| bps.map_or(0, |(b,)| b));
                        chargeback_impl::insert_postings_once(&mut tx, &fees).await?;
                        settled.push(row);
                    }
                    tx.commit().await?;
                }
                Ok(settled)
            }

            async fn count_provisional_usage(&self) -> StoreResult<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM provisional_usage")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n)
            }

            async fn get_usage(&self, org_id: &str, request_id: &str) -> StoreResult<Option<UsageRow>> {
                Ok(sqlx::query_as::<_, UsageRow>(&format!("SELECT {USAGE_COLUMNS} FROM usage_records WHERE org_id = $1 AND request_id = $2"))
                    .bind(org_id)
                    .bind(request_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn count_usage(&self, org_id: &str) -> StoreResult<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM usage_records WHERE org_id = $1")
                    .bind(org_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n)
            }

            async fn set_rate_limit(&self, l: &RateLimitRow) -> StoreResult<()> {
                let mut tx = Self::begin_write(&self.pool).await?;
                let version = bump_version(&mut tx).await?;
                let owned: Option<(String,)> = match l.scope_kind.as_str() {
                    "key" => sqlx::query_as("SELECT hash FROM api_keys WHERE org_id = $1 AND hash = $2")
                        .bind(&l.org_id)
                        .bind(&l.scope_id)
                        .fetch_optional(&mut *tx)
                        .await?,
                    "org" if l.scope_id == l.org_id => Some((l.org_id.clone(),)),
                    _ => None,
                };
                if owned.is_none() {
                    return Err(StoreError::NotFound);
                }
                if l.requests_per_minute == 0 && l.tokens_per_minute == 0 && l.concurrent_requests == 0 && l.capacity_weight == 0 {
                    sqlx::query("DELETE FROM rate_limits WHERE scope_kind = $1 AND scope_id = $2")
                        .bind(&l.scope_kind)
                        .bind(&l.scope_id)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    sqlx::query(
                        "INSERT INTO rate_limits (org_id, scope_kind, scope_id, requests_per_minute, tokens_per_minute, concurrent_requests, updated_at, capacity_weight)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (scope_kind, scope_id) DO UPDATE SET requests_per_minute = excluded.requests_per_minute,
                            tokens_per_minute = excluded.tokens_per_minute, concurrent_requests = excluded.concurrent_requests,
                            updated_at = excluded.updated_at, capacity_weight = excluded.capacity_weight",
                    )
                    .bind(&l.org_id)
                    .bind(&l.scope_kind)
                    .bind(&l.scope_id)
                    .bind(l.requests_per_minute)
                    .bind(l.tokens_per_minute)
                    .bind(l.concurrent_requests)
                    .bind(now_ms())
                    .bind(l.capacity_weight)
                    .execute(&mut *tx)
                    .await?;
                }
                self.commit_config_change(tx, version).await
            }

            async fn get_routing_policy(&self, org_id: &str) -> StoreResult<Option<String>> {
                let row: Option<(String,)> = sqlx::query_as("SELECT policy FROM routing_policies WHERE org_id = $1")
                    .bind(org_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|(p,)| p))
            }

            async fn set_routing_policy(&self, org_id: &str, policy: Option<&str>) -> StoreResult<()> {
                let mut tx = Self::begin_write(&self.pool).await?;
                let version = bump_version(&mut tx).await?;
                match policy {
                    Some(p) => {
                        sqlx::query(
                            "INSERT INTO routing_policies (org_id, policy, updated_at) VALUES ($1, $2, $3)
                             ON CONFLICT (org_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                        )
                        .bind(org_id)
                        .bind(p)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM routing_policies WHERE org_id = $1").bind(org_id).execute(&mut *tx).await?;
                    }
                }
                self.commit_config_change(tx, version).await
            }

            async fn get_rate_limit(&self, org_id: &str, scope_kind: &str, scope_id: &str) -> StoreResult<RateLimitRow> {
                let row = sqlx::query_as::<_, RateLimitRow>(
                    "SELECT org_id, scope_kind, scope_id, requests_per_minute, tokens_per_minute, concurrent_requests, capacity_weight FROM rate_limits
                     WHERE org_id = $1 AND scope_kind = $2 AND scope_id = $3",
                )
                .bind(org_id)
                .bind(scope_kind)
                .bind(scope_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.unwrap_or_else(|| RateLimitRow { org_id: org_id.to_owned(), scope_kind: scope_kind.to_owned(), scope_id: scope_id.to_owned(), ..RateLimitRow::default() }))
            }

            async fn account_balance(&self, org_id: &str, account: &str) -> StoreResult<i64> {
                let (sum,): (Option<i64>,) = sqlx::query_as(
                    "SELECT CAST(SUM(amount_nanos) AS BIGINT) FROM ledger_entries WHERE org_id = $1 AND account = $2",
                )
                .bind(org_id)
                .bind(account)
                .fetch_one(&self.pool)
                .await?;
                Ok(sum.unwrap_or(0))
            }
        }
    };
}

pub(super) use impl_store;
