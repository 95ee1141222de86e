//! Shared helpers of the control plane's integration tests: throwaway stores on SQLite (always)
//! and Postgres (when `SWITCHYARD_TEST_DATABASE_URL` names a server; required under `CI=true`).

// Test helpers are not `#[test]` functions, so clippy's allow-*-in-tests settings do not reach them.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use sqlx::Connection;
use switchyard_control_plane::store::{self, Org, Store};

pub const PG_URL_ENV: &str = "SWITCHYARD_TEST_DATABASE_URL";

/// The URL `sqlite_store` connects to for a database file in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/t.db", dir.display())
}

/// A fresh SQLite database file in its own temporary directory (removed when the `TempDir` drops).
pub async fn sqlite_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temp dir for the SQLite database");
    let store = store::connect(&sqlite_url(dir.path()))
        .await
        .expect("open the SQLite store");
    (store, dir)
}

/// Drops its per-test Postgres database when dropped (best effort).
pub struct PgDatabaseGuard {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabaseGuard {
    /// URL of the per-test database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabaseGuard {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Tests run inside a tokio runtime, which must not be blocked on itself: drop the
        // database from a separate thread with its own small runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let mut conn = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&sql)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("warning: could not drop test database {}: {err}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// A store on a fresh, uniquely named Postgres database on the server named by
/// `SWITCHYARD_TEST_DATABASE_URL`. `None` (with a SKIPPED line) when the variable is unset,
/// except under `CI=true`, where Postgres is required and its absence fails the test.
pub async fn postgres_store() -> Option<(Arc<dyn Store>, PgDatabaseGuard)> {
    let Some(admin_url) = std::env::var(PG_URL_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
    else {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!(
                "Postgres is required under CI=true but {PG_URL_ENV} is not set: run tests/pg/start-postgres.sh \
                 and export the URL it prints, e.g. `export {PG_URL_ENV}=$(tests/pg/start-postgres.sh)`"
            );
        }
        // Straight to stderr rather than `eprintln!`, which the test harness captures and
        // hides for passing tests: a skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (postgres): {PG_URL_ENV} is not set; run tests/pg/start-postgres.sh and export the URL it prints"
        );
        return None;
    };
    let name = format!("sy_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to the Postgres server named by {PG_URL_ENV}: {e}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    admin.close().await.expect("close the admin connection");
    // From here on the guard cleans up even if connecting or migrating fails.
    let guard = PgDatabaseGuard {
        url: with_database(&admin_url, &name),
        admin_url,
        name,
    };
    let store = store::connect(guard.url())
        .await
        .expect("open the Postgres store");
    Some((store, guard))
}

/// `url` with its database name replaced by `database`, keeping user, host and the query
/// string (notably a unix-socket `?host=/dir`).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{prefix}/{database}?{query}"),
        None => format!("{prefix}/{database}"),
    }
}

/// Inserts an org directly: the `Store` trait only creates orgs through `bootstrap`, and
/// tenant-isolation tests need a second one.
pub async fn insert_org(url: &str, id: &str, name: &str) -> Org {
    let org = Org {
        id: id.to_owned(),
        name: name.to_owned(),
        created_at: store::now_ms(),
    };
    let sql = "INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)";
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url)
            .await
            .expect("open a raw SQLite connection");
        sqlx::query(sql)
            .bind(&org.id)
            .bind(&org.name)
            .bind(org.created_at)
            .execute(&mut conn)
            .await
            .expect("insert org");
        conn.close().await.expect("close the raw SQLite connection");
    } else {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .expect("open a raw Postgres connection");
        sqlx::query(sql)
            .bind(&org.id)
            .bind(&org.name)
            .bind(org.created_at)
            .execute(&mut conn)
            .await
            .expect("insert org");
        conn.close()
            .await
            .expect("close the raw Postgres connection");
    }
    org
}

#[test]
fn with_database_keeps_socket_host_and_credentials() {
    assert_eq!(
        with_database(
            "postgres://postgres@localhost/postgres?host=/tmp/xyz",
            "sy_test_1"
        ),
        "postgres://postgres@localhost/sy_test_1?host=/tmp/xyz"
    );
    assert_eq!(
        with_database("postgres://u:p@db:5433/app", "sy_test_2"),
        "postgres://u:p@db:5433/sy_test_2"
    );
    assert_eq!(
        with_database("postgres://localhost", "sy_test_3"),
        "postgres://localhost/sy_test_3"
    );
    assert_eq!(
        with_database("postgresql://localhost?host=/run/pg&sslmode=disable", "d"),
        "postgresql://localhost/d?host=/run/pg&sslmode=disable"
    );
}
