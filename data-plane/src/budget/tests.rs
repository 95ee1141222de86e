//! Gateway-side budget logic against a scripted control plane and an injected clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use switchyard_proto::pb;

use super::*;

/// A fake control plane with one budget: grants from `remaining` in one window; when
/// `down`, every call fails.
#[derive(Default)]
struct FakeCp {
    remaining: Mutex<i64>,
    window_start: AtomicI64,
    down: std::sync::atomic::AtomicBool,
    calls: Mutex<Vec<pb::SliceRequest>>,
    granted: Mutex<HashMap<i64, i64>>,
}

fn lease_fn(cp: Arc<FakeCp>, clock: Arc<AtomicI64>) -> LeaseFn {
    Arc::new(move |req: pb::LeaseRequest| {
        let cp = cp.clone();
        let now = clock.load(Ordering::SeqCst);
        Box::pin(async move {
            if cp.down.load(Ordering::SeqCst) {
                return Err("unavailable: connection refused".to_owned());
            }
            let s = req.slices[0].clone();
            cp.calls.lock().unwrap().push(s.clone());
            let window = cp.window_start.load(Ordering::SeqCst);
            let mut remaining = cp.remaining.lock().unwrap();
            let g = s.want_nanos.min(*remaining).max(0);
            *remaining -= g;
            let mut granted = cp.granted.lock().unwrap();
            let total = granted.entry(window).or_default();
            *total += g;
            Ok(pb::LeaseResponse {
                grants: vec![pb::SliceGrant {
                    budget_id: s.budget_id,
                    window_start_ms: window,
                    window_end_ms: window + 86_400_000,
                    granted_total_nanos: *total,
                    consumed_nanos: s.consumed_nanos,
                    expires_at_ms: now + 30_000,
                    limit_nanos: 1_000,
                    spent_nanos: 0,
                    others_outstanding_nanos: 0,
                    error: String::new(),
                }],
            })
        })
    })
}

fn setup(remaining: i64) -> (Budgets, Arc<FakeCp>, Arc<AtomicI64>) {
    let cp = Arc::new(FakeCp {
        remaining: Mutex::new(remaining),
        ..FakeCp::default()
    });
    let clock = Arc::new(AtomicI64::new(1_000_000));
    let c = clock.clone();
    let budgets = Budgets::with_clock(
        lease_fn(cp.clone(), clock.clone()),
        Arc::from("node-a"),
        Arc::new(move || c.load(Ordering::SeqCst)),
    );
    (budgets, cp, clock)
}

fn need(limit: i64) -> Need {
    Need {
        budget_id: "b1".into(),
        org_id: Arc::from("org"),
        limit_nanos: limit,
        label: "org budget `org` (daily)".into(),
    }
}

#[tokio::test]
async fn reserves_settles_and_refuses_with_the_numbers_when_the_budget_is_spent() {
    let (budgets, _cp, _) = setup(1_000);
    let policy = pb::LeasePolicy::default();
    // Each request estimates 100 and really costs 60.
    let mut admitted = 0;
    let refusal = loop {
        match budgets.reserve(&[need(1_000)], 100, &policy).await {
            Ok(r) => {
                r.settle(60);
                admitted += 1;
            }
            Err(s) => break s,
        }
        assert!(admitted < 100, "the budget never ran out");
    };
    let (granted, consumed, reserved) = budgets.slice_numbers("b1").unwrap();
    assert_eq!(granted, 1_000);
    assert_eq!(reserved, 0);
    assert!(consumed <= 1_000, "consumed {consumed}");
    assert_eq!(
        admitted, 16,
        "1000 / 60 rounded down, with 100 reserved for the last"
    );
    assert_eq!(refusal.limit_nanos, 1_000);
    assert_eq!(refusal.requested_nanos, 100);
    assert!(!refusal.unreachable);
    let text = refusal.to_string();
    assert!(
        text.contains("$0.000001") && text.contains("needs up to $0.000000"),
        "{text}"
    );
}

#[tokio::test]
async fn a_dropped_reservation_is_released_without_charge() {
    let (budgets, _cp, _) = setup(1_000);
    let r = budgets
        .reserve(&[need(1_000)], 400, &pb::LeasePolicy::default())
        .await
        .unwrap();
    assert_eq!(budgets.slice_numbers("b1").unwrap().2, 400);
    drop(r);
    assert_eq!(
        budgets.slice_numbers("b1").unwrap(),
        (budgets.slice_numbers("b1").unwrap().0, 0, 0)
    );
}

#[tokio::test]
async fn unreachable_control_plane_fails_closed_or_admits_a_bounded_overdraft() {
    let (budgets, cp, _) = setup(100);
    let closed = pb::LeasePolicy::default();
    budgets
        .reserve(&[need(1_000)], 100, &closed)
        .await
        .unwrap()
        .settle(100);
    cp.down.store(true, Ordering::SeqCst);
    let refusal = budgets
        .reserve(&[need(1_000)], 50, &closed)
        .await
        .unwrap_err();
    assert!(refusal.unreachable, "{refusal}");
    assert!(refusal.to_string().contains("unreachable"));

    let open = pb::LeasePolicy {
        overdraft: true,
        overdraft_nanos: 120,
        ..pb::LeasePolicy::default()
    };
    budgets
        .reserve(&[need(1_000)], 50, &open)
        .await
        .unwrap()
        .settle(50);
    budgets
        .reserve(&[need(1_000)], 50, &open)
        .await
        .unwrap()
        .settle(50);
    // 100 of the 120 overdraft used: another 50 would exceed it.
    assert!(
        budgets
            .reserve(&[need(1_000)], 50, &open)
            .await
            .unwrap_err()
            .unreachable
    );
}

#[tokio::test]
async fn a_new_window_starts_from_zero_consumption_and_reports_the_old_one() {
    let (budgets, cp, clock) = setup(300);
    let policy = pb::LeasePolicy::default();
    budgets
        .reserve(&[need(1_000)], 100, &policy)
        .await
        .unwrap()
        .settle(100);
    // The day rolls over: the control plane answers with a new window and fresh money.
    clock.fetch_add(86_400_000, Ordering::SeqCst);
    cp.window_start.store(86_400_000, Ordering::SeqCst);
    *cp.remaining.lock().unwrap() = 500;
    budgets
        .reserve(&[need(1_000)], 100, &policy)
        .await
        .unwrap()
        .settle(70);
    let (granted, consumed, _) = budgets.slice_numbers("b1").unwrap();
    assert_eq!(consumed, 70);
    assert!(granted <= 500);
    let calls = cp.calls.lock().unwrap();
    let last = calls.last().unwrap();
    // The renewal reported the previous window's consumption.
    assert_eq!((last.window_start_ms, last.consumed_nanos), (0, 100));
}

#[test]
fn needs_follow_key_owner_and_tags() {
    let key = crate::snapshot::KeyEntry {
        hash: "h".into(),
        org_id: Arc::from("org"),
        name: "k".into(),
        kind: crate::snapshot::KeyKind::Inference,
        disabled: false,
        expires_at_ms: None,
        limit_nanos: Some(5),
        limit_reset: "daily".into(),
        rate_limits: crate::limits::Limits::default(),
        guardrails: Arc::default(),
        owner_user_id: None,
        owner_team_id: Some("t1".into()),
    };
    let budget = |id: &str, kind: &str, scope: &str| pb::Budget {
        id: id.into(),
        scope_kind: kind.into(),
        scope_id: scope.into(),
        limit_nanos: 10,
        window: "monthly".into(),
    };
    let org = OrgBudgets {
        budgets: vec![
            budget("o", "org", "org"),
            budget("t1", "team", "t1"),
            budget("t2", "team", "t2"),
            budget("u", "user", "someone"),
            budget("tag", "tag", "project=apollo"),
        ],
        policy: pb::LeasePolicy::default(),
    };
    let ids = |tags: &BTreeMap<String, String>| -> Vec<String> {
        needs(&key, Some(&org), tags)
            .into_iter()
            .map(|n| n.budget_id)
            .collect()
    };
    assert_eq!(ids(&BTreeMap::new()), ["key:h", "o", "t1"]);
    let tags = BTreeMap::from([("project".to_owned(), "apollo".to_owned())]);
    assert_eq!(ids(&tags), ["key:h", "o", "t1", "tag"]);
    assert_eq!(org.output_estimate("any/model"), DEFAULT_OUTPUT_TOKENS);
}
