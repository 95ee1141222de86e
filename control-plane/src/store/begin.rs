//! Beginning a transaction so that the caller's cancellation cannot leak it.
//!
//! sqlx 0.8's `begin` is not cancellation-safe. On Postgres the depth its rollback guard
//! keys on rises only after the `BEGIN` round trip (transact-rs/sqlx#4393); on SQLite a
//! custom statement such as `BEGIN IMMEDIATE` is checked with one more await after it ran.
//! A future dropped in either window (an RPC or HTTP handler whose client went away, which
//! hyper drops mid-flight) leaves the connection inside a transaction nothing will end, and
//! the pool hands it out again: on SQLite it holds the write lock, so every other writer
//! waits out the busy timeout and fails; on Postgres the next borrower's statements run
//! inside it. Begun on a task of its own, the transaction always comes into being, and a
//! caller gone by then drops it, which rolls it back.

use super::{StoreError, StoreResult};

pub(super) async fn detached<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    statement: Option<&'static str>,
) -> StoreResult<sqlx::Transaction<'static, DB>> {
    let pool = pool.clone();
    let begun = tokio::spawn(async move {
        match statement {
            Some(statement) => pool.begin_with(statement).await,
            None => pool.begin().await,
        }
    });
    match begun.await {
        Ok(begun) => Ok(begun?),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(StoreError::Database(sqlx::Error::PoolClosed)),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::Duration;

    use sqlx::Connection as _;
    use sqlx::postgres::PgPoolOptions;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::detached;

    /// Polls `future` at most `polls` times, yielding to the runtime in between, then drops
    /// it: a caller cancelled somewhere along the way.
    async fn poll_then_drop(future: impl Future, polls: usize) {
        let yields = async {
            for _ in 0..polls {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            biased;
            _ = future => {}
            () = yields => {}
        }
    }

    /// The connection back in the pool, so the next begin reaches its `BEGIN` at once.
    async fn wait_until_idle<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) {
        let idle = async {
            while pool.num_idle() == 0 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), idle)
            .await
            .unwrap_or_else(|_| panic!("the pool's connection never came back"));
    }

    // Each test's pool has a single connection, so a leaked transaction is on the very
    // connection handed out next; cancelling after 1 to 20 polls, ten times
    // over, reaches the awaits in sqlx's begin.

    #[tokio::test]
    async fn sqlite_begins_cancelled_at_any_point_leave_no_transaction_open() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("begin.db"))
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        for polls in (1..=20).cycle().take(200) {
            wait_until_idle(&pool).await;
            poll_then_drop(detached(&pool, Some("BEGIN IMMEDIATE")), polls).await;
            let conn = pool.acquire().await.unwrap();
            assert!(!conn.is_in_transaction(), "cancelled after {polls} polls");
        }
    }

    #[tokio::test]
    async fn postgres_begins_cancelled_at_any_point_leave_no_transaction_open() {
        const VAR: &str = "SWITCHYARD_TEST_DATABASE_URL";
        let Some(url) = std::env::var(VAR).ok().filter(|u| !u.trim().is_empty()) else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "Postgres is required under CI=true: export {VAR}=$(bash tests/pg/start-postgres.sh)"
            );
            eprintln!("SKIPPED (postgres): {VAR} is not set");
            return;
        };
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        for polls in (1..=20).cycle().take(200) {
            wait_until_idle(&pool).await;
            poll_then_drop(detached(&pool, None), polls).await;
            // Outside a transaction each statement runs in one of its own, with its own id
            // (sqlx's own bookkeeping is what misses the leak, so it cannot be asked).
            let mut conn = pool.acquire().await.unwrap();
            let mut ids = Vec::new();
            for _ in 0..2 {
                let id: i64 = sqlx::query_scalar("SELECT txid_current()")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                ids.push(id);
            }
            assert_ne!(ids[0], ids[1], "cancelled after {polls} polls");
        }
    }
}
