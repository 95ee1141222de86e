//! Postgres backend for production. Several control-plane replicas may share one database:
//! config changes are announced with NOTIFY and picked up by every replica's listener.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{StoreError, StoreResult};

const CHANNEL: &str = "switchyard_config";

pub struct PgStore {
    pool: sqlx::PgPool,
    /// Usage ingestion's connections: the same pool (Postgres has no single-writer limit).
    writer: sqlx::PgPool,
    changes: watch::Sender<u64>,
    /// Stops the NOTIFY listener when the store is dropped.
    _listener: tokio_util::sync::DropGuard,
}

impl PgStore {
    const BACKEND: &'static str = "postgres";

    pub async fn connect(url: &str) -> StoreResult<Self> {
        // Ingestion writes through this pool: its connections keep every length of its
        // statements prepared (`chunks`).
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .statement_cache_capacity(super::chunks::STATEMENT_CACHE_CAPACITY);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        let changes = watch::channel(read_version(&pool).await?).0;
        let stop = CancellationToken::new();
        listen_for_other_replicas(&pool, &changes, stop.clone()).await?;
        Ok(Self {
            writer: pool.clone(),
            pool,
            changes,
            _listener: stop.drop_guard(),
        })
    }

    fn announce(&self, version: u64) {
        super::advance(&self.changes, version);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(err) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(version.to_string())
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %err, "could not notify other replicas of a config change");
            }
        });
    }

    /// A transaction that writes; Postgres's row locks need nothing more at `BEGIN`
    /// (the SQLite backend's takes the write lock there).
    async fn begin_write(
        pool: &sqlx::PgPool,
    ) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        super::begin::detached(pool, None).await
    }

    /// REPEATABLE READ makes every table in the snapshot read match the version row.
    async fn begin_consistent_read(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> StoreResult<()> {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Other replicas' commits arrive as NOTIFY payloads carrying the new version. A
/// notification sent while the listener was disconnected is lost, so after each
/// reconnection (LISTEN is re-issued first) the version is read from the database.
async fn listen_for_other_replicas(
    pool: &sqlx::PgPool,
    changes: &watch::Sender<u64>,
    stop: CancellationToken,
) -> StoreResult<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let changes = changes.clone();
    let pool = pool.clone();
    tokio::spawn(stop.run_until_cancelled_owned(async move {
        let mut connected = true;
        loop {
            if !connected {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // Reconnects (re-issuing LISTEN) before reading what was missed.
                if let Err(err) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %err, "config change listener could not reconnect; retrying");
                    continue;
                }
                connected = true;
                catch_up(&pool, &changes).await;
            }
            match listener.try_recv().await {
                Ok(Some(note)) => {
                    if let Ok(version) = note.payload().parse::<u64>() {
                        super::advance(&changes, version);
                    }
                }
                Ok(None) => {
                    tracing::warn!("config change listener reconnected; reading the version it may have missed");
                    catch_up(&pool, &changes).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "config change listener lost its connection; retrying");
                    connected = false;
                }
            }
        }
    }));
    Ok(())
}

async fn read_version(pool: &sqlx::PgPool) -> StoreResult<u64> {
    let (version,): (i64,) = sqlx::query_as("SELECT version FROM config_state WHERE id = 1")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(version).unwrap_or(0))
}

async fn catch_up(pool: &sqlx::PgPool, changes: &watch::Sender<u64>) {
    match read_version(pool).await {
        Ok(version) => super::advance(changes, version),
        Err(err) => {
            tracing::warn!(error = %err, "could not read the config version after reconnecting");
        }
    }
}

super::sql::impl_store!(PgStore, sqlx::Postgres);
super::identity_sql::impl_identity_store!(PgStore, sqlx::Postgres);
super::console::impl_console_store!(PgStore, sqlx::Postgres);
super::billing_sql::impl_billing_store!(PgStore, sqlx::Postgres);
super::chargeback_sql::impl_chargeback_store!(PgStore, sqlx::Postgres);
super::budgets_sql::impl_budget_store!(PgStore, sqlx::Postgres);
super::cache_stats_sql::impl_cache_stats_store!(PgStore, sqlx::Postgres);
