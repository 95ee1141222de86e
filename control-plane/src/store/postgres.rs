//! Postgres backend for production. Several control-plane replicas may share one database:
//! config changes are announced with NOTIFY and picked up by every replica's listener.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;

use super::{StoreError, StoreResult};

const CHANNEL: &str = "switchyard_config";

pub struct PgStore {
    pool: sqlx::PgPool,
    /// Usage ingestion's connections: the same pool (Postgres has no single-writer limit).
    writer: sqlx::PgPool,
    changes: watch::Sender<u64>,
}

impl PgStore {
    const BACKEND: &'static str = "postgres";

    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        let store = Self {
            writer: pool.clone(),
            pool,
            changes: watch::channel(0).0,
        };
        let version = super::Store::config_version(&store).await?;
        store.changes.send_replace(version);
        store.listen_for_other_replicas().await?;
        Ok(store)
    }

    /// Other replicas' commits arrive as NOTIFY payloads carrying the new version.
    async fn listen_for_other_replicas(&self) -> StoreResult<()> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let changes = self.changes.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(note) => {
                        if let Ok(version) = note.payload().parse::<u64>() {
                            super::advance(&changes, version);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "config change listener lost its connection; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                if changes.is_closed() {
                    break;
                }
            }
        });
        Ok(())
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

super::sql::impl_store!(PgStore, sqlx::Postgres);
super::identity_sql::impl_identity_store!(PgStore, sqlx::Postgres);
super::console::impl_console_store!(PgStore, sqlx::Postgres);
super::billing_sql::impl_billing_store!(PgStore, sqlx::Postgres);
super::chargeback_sql::impl_chargeback_store!(PgStore, sqlx::Postgres);
super::budgets_sql::impl_budget_store!(PgStore, sqlx::Postgres);
super::cache_stats_sql::impl_cache_stats_store!(PgStore, sqlx::Postgres);
