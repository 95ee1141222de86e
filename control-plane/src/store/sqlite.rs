//! SQLite backend: the embedded default for `switchyard serve`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::watch;

use super::{StoreError, StoreResult};

pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// Usage ingestion's own connection. SQLite has one writer at a time anyway, and in WAL
    /// mode a connection drops its page cache whenever another one has committed, so
    /// batches spread over the pool's connections read every page they touch back in.
    writer: sqlx::SqlitePool,
    changes: watch::Sender<u64>,
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";

    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, &super::ConnectOptions::default()).await
    }

    pub async fn connect_with(url: &str, connect: &super::ConnectOptions) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL is durable across process crashes; only an OS crash can lose
            // the last transactions, and the gateways' spools still hold those records.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // No ping before handing out a connection: an embedded database's connection cannot
        // have gone away, and each ping is a round trip to the connection's thread.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        // Ingestion's multi-row inserts with ON CONFLICT keep a statement journal; past
        // 64 KiB SQLite spills it to a temporary file (created, written, deleted) unless
        // temporary storage is memory. Only this connection: analytics sorts stay on disk.
        // Kept for the process's life: a reopened connection would start with a cold page
        // cache, and on a thread of the default scheduling class.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.pragma("temp_store", "memory"));
        let writer = match &connect.ingest_runtime {
            Some(runtime) => runtime
                .spawn(writer)
                .await
                // The task panicked or its runtime stopped before connecting.
                .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))??,
            None => writer.await?,
        };
        let store = Self {
            pool,
            writer,
            changes: watch::channel(0).0,
        };
        let version = super::Store::config_version(&store).await?;
        store.changes.send_replace(version);
        Ok(store)
    }

    fn announce(&self, version: u64) {
        super::advance(&self.changes, version);
    }

    /// A transaction that writes. SQLite's default `BEGIN` is deferred: one that reads first
    /// holds a read snapshot, and once another connection commits past it, the upgrade to
    /// writing fails at once with `SQLITE_BUSY` (no busy timeout waits that out). `IMMEDIATE`
    /// takes the write lock at `BEGIN`, where the busy timeout does wait.
    async fn begin_write(
        pool: &sqlx::SqlitePool,
    ) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// SQLite transactions are already snapshot-consistent for readers under WAL.
    #[expect(
        clippy::unused_async,
        reason = "same signature as PgStore's, called from the shared impl_store! body"
    )]
    async fn begin_consistent_read(
        _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    ) -> StoreResult<()> {
        Ok(())
    }
}

super::sql::impl_store!(SqliteStore, sqlx::Sqlite);
super::identity_sql::impl_identity_store!(SqliteStore, sqlx::Sqlite);
super::console::impl_console_store!(SqliteStore, sqlx::Sqlite);
super::billing_sql::impl_billing_store!(SqliteStore, sqlx::Sqlite);
super::chargeback_sql::impl_chargeback_store!(SqliteStore, sqlx::Sqlite);
super::budgets_sql::impl_budget_store!(SqliteStore, sqlx::Sqlite);
super::cache_stats_sql::impl_cache_stats_store!(SqliteStore, sqlx::Sqlite);
