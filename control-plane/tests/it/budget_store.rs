//! `BudgetStore` on both backends (Postgres when `SWITCHYARD_TEST_DATABASE_URL` is set;
//! required under `CI=true`): budget CRUD and settings, leases that never hand out more than
//! the limit even when many nodes ask at once, releases, and alert claims that succeed once.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::store::{
    AlertRow, BudgetRow, BudgetSettingsRow, LeaseAsk, SpendScope, Store, StoreError, now_ms,
};

fn ask(org: &str, node: &str, want: i64, now: i64) -> LeaseAsk {
    LeaseAsk {
        org_id: org.to_owned(),
        budget_id: "b-org".into(),
        node_id: node.to_owned(),
        scope: SpendScope::Org,
        limit_nanos: 1_000,
        window: (0, 0),
        reported_window: 0,
        consumed_nanos: 0,
        want_nanos: want,
        release_nanos: 0,
        max_per_gateway: 0,
        max_per_org: 0,
        now,
        ttl_ms: 30_000,
        dead_after_ms: 60_000,
    }
}

async fn story(store: Arc<dyn Store>) {
    let first = bootstrap::ensure(&store, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap();
    let org = first.org_id.clone();
    let now = now_ms();

    // CRUD, scoped by org; every change is a config change.
    let v0 = store.config_version().await.unwrap();
    let budget = BudgetRow {
        id: "b-org".into(),
        org_id: org.clone(),
        scope_kind: "org".into(),
        scope_id: org.clone(),
        name: "cap".into(),
        limit_nanos: 1_000,
        period: "lifetime".into(),
        created_at: now,
        updated_at: now,
    };
    store.create_budget(&budget).await.unwrap();
    assert!(matches!(
        store
            .create_budget(&BudgetRow {
                id: "dup".into(),
                ..budget.clone()
            })
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.config_version().await.unwrap() > v0);
    assert_eq!(
        store.list_budgets(&org).await.unwrap(),
        vec![budget.clone()]
    );
    assert!(matches!(
        store.get_budget("other-org", "b-org").await,
        Err(StoreError::NotFound)
    ));
    let updated = store
        .update_budget(&org, "b-org", "renamed", 1_000)
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");

    let defaults = store.get_budget_settings(&org).await.unwrap();
    assert_eq!(defaults, BudgetSettingsRow::defaults(&org));
    let settings = BudgetSettingsRow {
        alert_webhook_url: Some("http://127.0.0.1:9/hook".into()),
        default_key_daily_cap: Some(5),
        unreachable_policy: "overdraft".into(),
        overdraft_nanos: 7,
        updated_at: now,
        ..defaults
    };
    store.put_budget_settings(&settings).await.unwrap();
    assert_eq!(store.get_budget_settings(&org).await.unwrap(), settings);
    assert_eq!(store.all_budget_settings().await.unwrap(), vec![settings]);

    // Sixteen nodes ask for 100 each at once: exactly the limit is handed out.
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        let a = ask(&org, &format!("node-{n}"), 100, now);
        tasks.push(tokio::spawn(async move { store.lease(&a).await.unwrap() }));
    }
    let mut total = 0;
    for t in tasks {
        let g = t.await.unwrap();
        assert!(g.granted_now == 0 || g.granted_now == 100, "{g:?}");
        total += g.granted_now;
    }
    assert_eq!(total, 1_000, "grants must add up to the limit, never more");
    assert!(
        store
            .lease(&ask(&org, "node-late", 1, now))
            .await
            .unwrap()
            .granted_now
            == 0
    );

    // A node that consumed 40 of its 100 hands back what it does not need: at most its
    // unused 60 is released, and another node can then be granted it.
    let holder = store
        .list_leases(&org, "b-org")
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.granted_nanos == 100)
        .unwrap();
    let released = store
        .lease(&LeaseAsk {
            consumed_nanos: 40,
            release_nanos: 1_000,
            want_nanos: 0,
            ..ask(&org, &holder.node_id, 0, now)
        })
        .await
        .unwrap();
    assert_eq!((released.granted_total, released.consumed), (40, 40));
    let regranted = store
        .lease(&ask(&org, "node-late", 100, now))
        .await
        .unwrap();
    assert_eq!(regranted.granted_now, 60);

    // The lease-state metrics: unexpired leases and what they hold unconsumed (nine untouched
    // 100s, the released one's 0, the late node's 60); nothing once they have expired.
    let (count, outstanding) = store.lease_totals(now).await.unwrap();
    assert_eq!(outstanding, 960);
    assert!(count >= 11, "{count}");
    assert_eq!(store.lease_totals(now + 600_000).await.unwrap(), (0, 0));

    // Alerts are claimed once per (budget, window, threshold).
    let alert = AlertRow {
        budget_id: "b-org".into(),
        window_start: 0,
        threshold: 50,
        org_id: org.clone(),
        spent_nanos: 500,
        limit_nanos: 1_000,
        status: "pending".into(),
        attempts: 0,
        last_error: String::new(),
        created_at: now,
        delivered_at: None,
    };
    assert!(store.claim_alert(&alert).await.unwrap());
    assert!(!store.claim_alert(&alert).await.unwrap());
    assert_eq!(store.pending_alerts(10).await.unwrap().len(), 1);
    store
        .finish_alert("b-org", 0, 50, "delivered", "", now + 1)
        .await
        .unwrap();
    assert!(store.pending_alerts(10).await.unwrap().is_empty());
    let listed = store.list_alerts(&org, "b-org").await.unwrap();
    assert_eq!(
        (
            listed[0].status.as_str(),
            listed[0].attempts,
            listed[0].delivered_at
        ),
        ("delivered", 1, Some(now + 1))
    );

    // Spend is the ledger's: nothing was ingested here.
    assert!(
        store
            .scope_spend_by_node(&org, &SpendScope::Org, 0)
            .await
            .unwrap()
            .is_empty()
    );

    store.delete_budget(&org, "b-org").await.unwrap();
    assert!(store.list_leases(&org, "b-org").await.unwrap().is_empty());
    assert!(matches!(
        store.delete_budget(&org, "b-org").await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_on_sqlite() {
    let (store, _dir) = crate::common::sqlite_store().await;
    story(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_on_postgres() {
    let Some((store, _db)) = crate::common::postgres_store().await else {
        return;
    };
    story(store).await;
}
