// Runs each story (`async fn story(store: &dyn Store, url: &str)`) against a fresh SQLite
// store and a fresh Postgres database (see `common::postgres_store` for when Postgres is
// skipped), so both backends are held to the same behaviour.
macro_rules! both_backends {
    ($($story:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let (store, dir) = crate::common::sqlite_store().await;
                    let url = crate::common::sqlite_url(dir.path());
                    super::$story(&*store, &url).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let Some((store, db)) = crate::common::postgres_store().await else {
                        return;
                    };
                    super::$story(&*store, db.url()).await;
                }
            )*
        }
    };
}

mod api_billing;
mod api_errors;
mod api_identity;
mod api_support;
mod api_tenancy;
mod audit_cli;
mod billing_store;
mod budget_store;
mod cache_stats_store;
mod chargeback_store;
mod cli;
mod common;
mod console_rollup;
mod identity_store;
mod oidc;
mod provisional_store;
mod replicas;
mod store_conformance;
