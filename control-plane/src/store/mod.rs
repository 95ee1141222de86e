//! Persistence for the control plane: one `Store` trait, two backends (SQLite embedded by
//! default, Postgres for production) sharing the same SQL (both accept `$n` placeholders)
//! through `sql::impl_store!`. Every query that reads tenant data is scoped by org.

mod audit;
mod begin;
mod billing;
mod billing_sql;
mod budgets;
mod budgets_sql;
mod cache_stats;
mod cache_stats_sql;
mod chargeback;
mod chargeback_sql;
mod chunks;
pub mod console;
mod identity;
mod identity_sql;
mod models;
mod postgres;
mod sql;
mod sqlite;
mod values;

use async_trait::async_trait;
use tokio::sync::watch;

pub use audit::*;
pub use billing::*;
pub use budgets::*;
pub use cache_stats::*;
pub use chargeback::*;
pub use console::ConsoleStore;
pub use identity::*;
pub use models::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid database URL: {0}")]
    Url(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            other => StoreError::Database(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store:
    IdentityStore
    + AuditStore
    + ConsoleStore
    + BillingStore
    + BudgetStore
    + ChargebackStore
    + CacheStatsStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> &'static str;

    /// Fires with the new config version after every committed config change.
    fn config_changes(&self) -> watch::Receiver<u64>;

    /// True once `bootstrap` has run on this database.
    async fn is_bootstrapped(&self) -> StoreResult<bool>;
    /// Creates the first org, its keys, providers, models and node token, atomically.
    async fn bootstrap(&self, plan: &BootstrapPlan) -> StoreResult<()>;
    async fn get_org(&self, org_id: &str) -> StoreResult<Org>;

    async fn create_key(&self, key: &NewKey) -> StoreResult<KeyRecord>;
    /// Auth lookup by hash, across orgs (the hash is unguessable and unique).
    async fn find_key(&self, hash: &str) -> StoreResult<Option<KeyRecord>>;
    async fn get_key(&self, org_id: &str, hash: &str) -> StoreResult<KeyRecord>;
    async fn list_keys(
        &self,
        org_id: &str,
        offset: i64,
        limit: i64,
        include_disabled: bool,
    ) -> StoreResult<Vec<KeyRecord>>;
    async fn update_key(
        &self,
        org_id: &str,
        hash: &str,
        patch: &KeyPatch,
    ) -> StoreResult<KeyRecord>;
    async fn delete_key(&self, org_id: &str, hash: &str) -> StoreResult<()>;
    /// Spend of a key since each of the given instants (unix ms), in nano-USD.
    async fn key_spend_since(
        &self,
        org_id: &str,
        hash: &str,
        since_ms: &[i64],
    ) -> StoreResult<Vec<i64>>;

    async fn create_provider(&self, provider: &NewProvider) -> StoreResult<ProviderRecord>;
    async fn list_providers(&self, org_id: &str) -> StoreResult<Vec<ProviderRecord>>;
    async fn get_provider(&self, org_id: &str, id_or_slug: &str) -> StoreResult<ProviderRecord>;

    async fn create_model(&self, model: &NewModel) -> StoreResult<ModelRecord>;
    /// Replaces name/description/context length and, when given, the endpoint list.
    async fn update_model(
        &self,
        org_id: &str,
        model_id: &str,
        patch: &ModelPatch,
    ) -> StoreResult<ModelRecord>;
    async fn get_model(&self, org_id: &str, model_id: &str) -> StoreResult<ModelRecord>;
    async fn list_models(&self, org_id: &str) -> StoreResult<Vec<ModelRecord>>;
    /// Prices of an endpoint as currently stored, for rating usage.
    async fn endpoint_prices(
        &self,
        endpoint_id: &str,
    ) -> StoreResult<Option<switchyard_proto::PriceSheet>>;

    async fn config_version(&self) -> StoreResult<u64>;
    /// Everything a gateway needs, read in one transaction so it matches `version`.
    async fn load_config(&self) -> StoreResult<ConfigData>;

    async fn add_node_token(&self, hash: &str, name: &str) -> StoreResult<()>;
    async fn node_token_exists(&self, hash: &str) -> StoreResult<bool>;
    async fn record_node_ack(&self, ack: &NodeAck) -> StoreResult<()>;
    async fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>>;

    /// Writes one usage batch in one transaction on the ingestion connection: tags, caching
    /// facts, provisional rows, final rows with their postings, fees. All or nothing, and
    /// every part idempotent, so a failed batch is simply redelivered whole.
    async fn ingest_batch(&self, batch: &UsageBatchWrite<'_>) -> StoreResult<IngestOutcome>;
    /// Inserts usage rows and posts their ledger entries in one transaction; rows whose
    /// request id is already present are skipped (redelivery never bills twice).
    async fn ingest_usage(&self, rows: &[UsageRow]) -> StoreResult<IngestOutcome>;
    /// Keeps provisional (write-ahead) usage rows of streams off the ledger until their
    /// final record arrives (`ingest_usage` deletes them) or they are settled. A row whose
    /// final record is already ingested is ignored. Returns how many were newly held.
    async fn hold_provisional_usage(&self, rows: &[UsageRow]) -> StoreResult<u32>;
    /// Posts provisional rows received before `received_before_ms` that never got a final
    /// record, as estimated usage (at most `limit`), each with its org's platform fee in the
    /// same transaction; returns the rows newly posted. On an error, rows posted before it
    /// stay posted and the rest stay provisional for the next call.
    async fn settle_provisional_usage(
        &self,
        received_before_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<UsageRow>>;
    /// Provisional rows waiting for their final record or settlement.
    async fn count_provisional_usage(&self) -> StoreResult<i64>;
    async fn get_usage(&self, org_id: &str, request_id: &str) -> StoreResult<Option<UsageRow>>;
    async fn count_usage(&self, org_id: &str) -> StoreResult<i64>;
    /// Sum of ledger entries of one account of an org, in nano-USD.
    async fn account_balance(&self, org_id: &str, account: &str) -> StoreResult<i64>;

    /// Sets (or, with all limits 0, clears) the rate limits of a key or the org itself.
    /// A key scope must name a key of `org_id`.
    async fn set_rate_limit(&self, limits: &RateLimitRow) -> StoreResult<()>;
    /// An org's routing policy as stored (JSON), if it has one.
    async fn get_routing_policy(&self, org_id: &str) -> StoreResult<Option<String>>;
    /// Sets (or with `None` clears) an org's routing policy; a config change.
    async fn set_routing_policy(&self, org_id: &str, policy: Option<&str>) -> StoreResult<()>;
    async fn get_rate_limit(
        &self,
        org_id: &str,
        scope_kind: &str,
        scope_id: &str,
    ) -> StoreResult<RateLimitRow>;
}

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`) and runs migrations.
pub async fn connect(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    connect_with(url, &ConnectOptions::default()).await
}

#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Where usage ingestion runs (`ingest_runtime`): SQLite's writer connection is opened
    /// there, so its worker thread shares that thread's scheduling class.
    pub ingest_runtime: Option<tokio::runtime::Handle>,
}

pub async fn connect_with(
    url: &str,
    options: &ConnectOptions,
) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            SqliteStore::connect_with(url, options).await?,
        ))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(PgStore::connect(url).await?))
    } else {
        Err(StoreError::Url(
            "expected sqlite://… or postgres://…".into(),
        ))
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Publishes a config version unless a newer one was already seen (versions only move up).
fn advance(changes: &watch::Sender<u64>, version: u64) {
    changes.send_if_modified(|current| {
        let newer = version > *current;
        if newer {
            *current = version;
        }
        newer
    });
}
