//! SQLite backend: the embedded default for `switchyard serve`.

use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::Connection as _;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
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
        let pool = Self::pool_options()
            .max_connections(8)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        // Ingestion's multi-row inserts with ON CONFLICT keep a statement journal; past
        // 64 KiB SQLite spills it to a temporary file (created, written, deleted) unless
        // temporary storage is memory. Only this connection: analytics sorts stay on disk.
        // Its statement cache holds every length of ingestion's statements (`chunks`).
        // Kept for the process's life: a reopened connection would start with a cold page
        // cache, and on a thread of the default scheduling class.
        let writer = Self::pool_options()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(
                options
                    .pragma("temp_store", "memory")
                    .statement_cache_capacity(super::chunks::STATEMENT_CACHE_CAPACITY),
            );
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

    /// What both pools share. No ping before handing out a connection: an embedded
    /// database's connection cannot have gone away, and each ping is a round trip to the
    /// connection's thread.
    fn pool_options() -> SqlitePoolOptions {
        SqlitePoolOptions::new()
            .test_before_acquire(false)
            .after_release(close_if_in_transaction)
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
        super::begin::detached(pool, Some("BEGIN IMMEDIATE")).await
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

/// Should a connection still come back to its pool inside a transaction (`begin::detached`
/// closes the window sqlx's own begin leaves; a transaction begun elsewhere or a future sqlx
/// may open another), it would hold SQLite's write lock for as long as it stayed pooled, and
/// every other writer would wait out the busy timeout and fail. Closing it rolls the
/// transaction back and frees the lock.
fn close_if_in_transaction(
    conn: &mut SqliteConnection,
    _: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    let leaked = conn.is_in_transaction();
    if leaked {
        tracing::warn!("closing a database connection returned inside a transaction");
    }
    Box::pin(std::future::ready(Ok(!leaked)))
}

super::sql::impl_store!(SqliteStore, sqlx::Sqlite);
super::identity_sql::impl_identity_store!(SqliteStore, sqlx::Sqlite);
super::console::impl_console_store!(SqliteStore, sqlx::Sqlite);
super::billing_sql::impl_billing_store!(SqliteStore, sqlx::Sqlite);
super::chargeback_sql::impl_chargeback_store!(SqliteStore, sqlx::Sqlite);
super::budgets_sql::impl_budget_store!(SqliteStore, sqlx::Sqlite);
super::cache_stats_sql::impl_cache_stats_store!(SqliteStore, sqlx::Sqlite);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Connection as _;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::SqliteStore;

    #[tokio::test]
    async fn a_connection_released_inside_a_transaction_is_closed_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("leak.db"))
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(10));
        // One connection, so a leaked one would be the very one handed out next.
        let pool = SqliteStore::pool_options()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();

        let mut conn = pool.acquire().await.unwrap();
        let tx = conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
        // What a `begin_with` dropped after its BEGIN leaves behind: the write lock taken
        // and no `Transaction` to roll it back.
        std::mem::forget(tx);
        assert!(conn.is_in_transaction());
        drop(conn);

        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO t (x) VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }
}
