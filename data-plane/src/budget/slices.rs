//! This node's slices of budgets, reservations against them, and the lease calls that fill
//! them. See the module docs of `budget` for the protocol.

use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use switchyard_proto::{GenerationId, Money, pb};
use tracing::Instrument as _;

use super::Need;

/// One `BudgetService.Lease` call; a closure so tests can stand in for the control plane.
pub type LeaseFn = Arc<
    dyn Fn(pb::LeaseRequest) -> BoxFuture<'static, Result<pb::LeaseResponse, String>> + Send + Sync,
>;
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How long the admission path waits for a lease before applying the org's policy.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// A slice stays usable this long past its expiry while the control plane cannot be
/// reached; the control plane keeps it reserved for 60 s past expiry, so this stays inside.
const UNREACHABLE_GRACE_MS: i64 = 50_000;
/// Renew in the background when the slice expires within this long.
const RENEW_BEFORE_MS: i64 = 10_000;
/// How long a request may wait for requests in flight on this node to settle and free
/// their estimates before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// An empty grant is trusted this long before the control plane is asked again.
const EMPTY_GRANT_REUSE: Duration = Duration::from_millis(100);
/// Reservations of generations that never settled (a bug, not a path) are freed after this.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
struct SliceState {
    window_start: i64,
    /// 0 = lifetime.
    window_end: i64,
    /// Everything granted to this node in the window.
    granted: i64,
    /// Settled cost charged to the slice in the window.
    consumed: i64,
    /// Estimates of requests in flight.
    reserved: i64,
    /// 0 = never leased.
    expires_at: i64,
    /// Admitted beyond the slice while the control plane was unreachable, this window.
    overdraft_used: i64,
    /// What the last lease call granted anew, and when it came back.
    last_grant: i64,
    last_fetch: Option<Instant>,
    /// The control plane's figures at the last lease, for the 402 message.
    spent: i64,
    others: i64,
    /// The control plane does not know this budget (deleted since the snapshot): no limit
    /// until this instant, when it is asked again.
    unmanaged_until: i64,
}

impl SliceState {
    fn available(&self) -> i64 {
        self.granted
            .saturating_sub(self.consumed)
            .saturating_sub(self.reserved)
    }

    fn usable(&self, now: i64, grace: i64) -> bool {
        self.expires_at > 0
            && now < self.expires_at.saturating_add(grace)
            && (self.window_end == 0 || now < self.window_end)
    }
}

struct Slice {
    budget_id: String,
    org_id: Arc<str>,
    state: Mutex<SliceState>,
    /// One lease call per slice at a time; waiters re-check what it brought.
    fetch: tokio::sync::Mutex<()>,
    waiting: AtomicUsize,
    refreshing: AtomicBool,
    /// Fires whenever a reservation on this slice settles or is released.
    settled: tokio::sync::Notify,
}

impl Slice {
    fn state(&self) -> MutexGuard<'_, SliceState> {
        // A panic while holding this lock leaves plain numbers behind; keep using them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why a request was refused, with the numbers the client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub budget: String,
    pub limit_nanos: i64,
    pub spent_nanos: i64,
    pub reserved_nanos: i64,
    pub requested_nanos: i64,
    /// The control plane could not be reached and the org fails closed / its overdraft is used up.
    pub unreachable: bool,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let usd = |n: i64| format!("${:.6}", Money::from_nanos(n).as_usd_f64());
        write!(
            f,
            "budget exceeded: the {} is {}; {} is spent and {} is reserved by requests in flight and gateway leases, and this request needs up to {} (estimated)",
            self.budget,
            usd(self.limit_nanos),
            usd(self.spent_nanos),
            usd(self.reserved_nanos),
            usd(self.requested_nanos),
        )?;
        if self.unreachable {
            f.write_str("; the control plane is unreachable and the org's policy refuses spending beyond the lease")?;
        }
        Ok(())
    }
}

impl Shortfall {
    pub fn metadata(&self) -> serde_json::Value {
        serde_json::json!({
            "budget": self.budget,
            "limit_nanos": self.limit_nanos,
            "spent_nanos": self.spent_nanos,
            "reserved_nanos": self.reserved_nanos,
            "requested_nanos": self.requested_nanos,
            "control_plane_unreachable": self.unreachable,
        })
    }
}

/// Estimates held against slices until the generation settles; dropped unsettled, they are
/// released.
pub struct Reservation {
    parts: Vec<(Arc<Slice>, i64)>,
    done: AtomicBool,
}

impl Reservation {
    fn finish(&self, cost: Option<i64>) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        for (slice, amount) in &self.parts {
            let mut st = slice.state();
            st.reserved = st.reserved.saturating_sub(*amount);
            if let Some(cost) = cost {
                st.consumed = st.consumed.saturating_add(cost.max(0));
            }
            drop(st);
            slice.settled.notify_waiters();
        }
    }

    /// Charges the real cost to every slice and frees the estimates.
    pub fn settle(&self, cost_nanos: i64) {
        self.finish(Some(cost_nanos));
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field(
                "budgets",
                &self
                    .parts
                    .iter()
                    .map(|(s, a)| (&s.budget_id, *a))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.finish(None);
    }
}

struct Inner {
    lease: LeaseFn,
    node_id: Arc<str>,
    clock: Clock,
    slices: Mutex<HashMap<String, Arc<Slice>>>,
    held: Mutex<HashMap<GenerationId, (Instant, Reservation)>>,
    last_sweep: Mutex<Instant>,
}

/// This node's budget slices.
#[derive(Clone)]
pub struct Budgets(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Budgets {
    pub fn new(lease: LeaseFn, node_id: Arc<str>) -> Self {
        Self::with_clock(lease, node_id, Arc::new(crate::unix_now_ms))
    }

    /// With an injected clock (unix ms), for tests of expiry and window rollover.
    pub fn with_clock(lease: LeaseFn, node_id: Arc<str>, clock: Clock) -> Self {
        Self(Arc::new(Inner {
            lease,
            node_id,
            clock,
            slices: Mutex::default(),
            held: Mutex::default(),
            last_sweep: Mutex::new(Instant::now()),
        }))
    }

    /// Leases over gRPC with the node token.
    pub fn grpc(
        channel: tonic::transport::Channel,
        auth: crate::auth_interceptor::NodeAuth,
        node_id: Arc<str>,
    ) -> Self {
        let client =
            pb::budget_service_client::BudgetServiceClient::with_interceptor(channel, auth);
        let lease: LeaseFn = Arc::new(move |request| {
            let mut client = client.clone();
            // Created here, while the admitting request's span is current, so the lease
            // (and the control plane's work for it) joins that request's trace.
            let span = crate::telemetry::otel::grpc_client_span("BudgetService", "Lease");
            let mut request = tonic::Request::new(request);
            crate::telemetry::otel::inject_grpc(&span, request.metadata_mut());
            Box::pin(async move {
                client
                    .lease(request)
                    .instrument(span)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|status| format!("{}: {}", status.code(), status.message()))
            })
        });
        Self::new(lease, node_id)
    }

    fn slice(&self, need: &Need) -> Arc<Slice> {
        lock(&self.0.slices)
            .entry(need.budget_id.clone())
            .or_insert_with(|| {
                Arc::new(Slice {
                    budget_id: need.budget_id.clone(),
                    org_id: need.org_id.clone(),
                    state: Mutex::default(),
                    fetch: tokio::sync::Mutex::new(()),
                    waiting: AtomicUsize::new(0),
                    refreshing: AtomicBool::new(false),
                    settled: tokio::sync::Notify::new(),
                })
            })
            .clone()
    }

    /// Reserves `estimate` against every budget in `needs`, leasing more where the local
    /// slice is short; all or nothing.
    pub async fn reserve(
        &self,
        needs: &[Need],
        estimate: i64,
        policy: &pb::LeasePolicy,
    ) -> Result<Reservation, Shortfall> {
        let mut reservation = Reservation {
            parts: Vec::with_capacity(needs.len()),
            done: AtomicBool::new(false),
        };
        let estimate = estimate.max(0);
        for need in needs {
            let slice = self.slice(need);
            // On failure the reservation drops here and frees what it holds so far.
            self.reserve_one(&slice, need, estimate, policy).await?;
            reservation.parts.push((slice, estimate));
        }
        Ok(reservation)
    }

    async fn reserve_one(
        &self,
        slice: &Arc<Slice>,
        need: &Need,
        estimate: i64,
        policy: &pb::LeasePolicy,
    ) -> Result<(), Shortfall> {
        if self.try_fast(slice, need, estimate) {
            return Ok(());
        }
        slice.waiting.fetch_add(1, Ordering::AcqRel);
        let result = self.reserve_slow(slice, need, estimate, policy).await;
        slice.waiting.fetch_sub(1, Ordering::AcqRel);
        result
    }

    /// Reserves from the local slice if it is valid and large enough; may start a
    /// background renewal when the slice runs low or nears expiry.
    fn try_fast(&self, slice: &Arc<Slice>, need: &Need, estimate: i64) -> bool {
        let now = (self.0.clock)();
        let mut st = slice.state();
        if now < st.unmanaged_until {
            return true;
        }
        if !st.usable(now, 0) || st.available() < estimate {
            return false;
        }
        st.reserved = st.reserved.saturating_add(estimate);
        let low = st.available() < quantum(need.limit_nanos, estimate) / 2;
        let expiring = now >= st.expires_at.saturating_sub(RENEW_BEFORE_MS);
        drop(st);
        if (low || expiring) && !slice.refreshing.swap(true, Ordering::AcqRel) {
            let this = self.clone();
            let slice = slice.clone();
            let want = quantum(need.limit_nanos, estimate);
            tokio::spawn(async move {
                let _one = slice.fetch.lock().await;
                if let Err(err) = this.fetch(&slice, want).await {
                    tracing::debug!(budget_id = %slice.budget_id, error = %err, "background lease renewal failed");
                }
                slice.refreshing.store(false, Ordering::Release);
            });
        }
        true
    }

    async fn reserve_slow(
        &self,
        slice: &Arc<Slice>,
        need: &Need,
        estimate: i64,
        policy: &pb::LeasePolicy,
    ) -> Result<(), Shortfall> {
        let deadline = tokio::time::Instant::now() + QUEUE_WAIT;
        loop {
            // Registered before looking, so a settlement in between is not missed.
            let settled = slice.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            match self.attempt(slice, need, estimate, policy).await {
                Ok(()) => return Ok(()),
                Err(shortfall) if shortfall.unreachable => return Err(shortfall),
                Err(shortfall) => {
                    // Requests in flight on this node hold estimates they will mostly give
                    // back when they settle: wait for that (bounded) before refusing.
                    if slice.state().reserved == 0
                        || tokio::time::timeout_at(deadline, settled).await.is_err()
                    {
                        return Err(shortfall);
                    }
                }
            }
        }
    }

    /// One try under the slice's fetch lock: the local slice, else a lease call (skipped
    /// when one just came back empty), else the org's policy if the control plane is down.
    async fn attempt(
        &self,
        slice: &Arc<Slice>,
        need: &Need,
        estimate: i64,
        policy: &pb::LeasePolicy,
    ) -> Result<(), Shortfall> {
        let _one = slice.fetch.lock().await;
        if self.try_fast(slice, need, estimate) {
            return Ok(());
        }
        let want = {
            let st = slice.state();
            let now = (self.0.clock)();
            // A lease call that just came back empty: the budget is held elsewhere or spent;
            // asking again at once would only repeat that.
            if st.last_grant == 0
                && st.usable(now, 0)
                && st
                    .last_fetch
                    .is_some_and(|t| t.elapsed() < EMPTY_GRANT_REUSE)
            {
                return Err(self.shortfall(&st, need, estimate, false));
            }
            // Real costs above their estimates can leave the slice overdrawn: that deficit
            // must be covered too. Credit in an expired slice or an ended window is not usable.
            let available = st.available();
            let credit = if st.usable(now, 0) {
                available.max(0)
            } else {
                0
            };
            let deficit = available.min(0).saturating_neg();
            let waiting = i64::try_from(slice.waiting.load(Ordering::Acquire)).unwrap_or(1);
            quantum(need.limit_nanos, estimate)
                .max(estimate.saturating_mul(waiting.max(1)))
                .saturating_add(deficit)
                .saturating_sub(credit)
                .max(estimate)
        };
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, self.fetch(slice, want)).await;
        let now = (self.0.clock)();
        let mut st = slice.state();
        let failure = match fetched {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err),
            Err(_) => Some(format!("no answer within {FETCH_TIMEOUT:?}")),
        };
        let Some(err) = failure else {
            if now < st.unmanaged_until {
                return Ok(());
            }
            if st.usable(now, 0) && st.available() >= estimate {
                st.reserved = st.reserved.saturating_add(estimate);
                return Ok(());
            }
            return Err(self.shortfall(&st, need, estimate, false));
        };
        tracing::warn!(budget_id = %slice.budget_id, error = %err, "budget lease failed; applying the org's unreachable policy");
        // What was granted stays usable a while: the control plane keeps it reserved.
        if st.usable(now, UNREACHABLE_GRACE_MS) && st.available() >= estimate {
            st.reserved = st.reserved.saturating_add(estimate);
            return Ok(());
        }
        if policy.overdraft && st.overdraft_used.saturating_add(estimate) <= policy.overdraft_nanos
        {
            // Admitted beyond the slice: the slice goes negative, so nothing else is
            // admitted from it, and the consumption is reported at the next lease.
            st.overdraft_used = st.overdraft_used.saturating_add(estimate);
            st.reserved = st.reserved.saturating_add(estimate);
            return Ok(());
        }
        Err(self.shortfall(&st, need, estimate, true))
    }

    fn shortfall(
        &self,
        st: &SliceState,
        need: &Need,
        estimate: i64,
        unreachable: bool,
    ) -> Shortfall {
        Shortfall {
            budget: need.label.clone(),
            limit_nanos: need.limit_nanos,
            spent_nanos: st.spent,
            // Other nodes' unspent slices and this node's requests in flight.
            reserved_nanos: st.others.saturating_add(st.reserved),
            requested_nanos: estimate,
            unreachable,
        }
    }

    /// One lease call for `slice` (callers hold its fetch lock): reports consumption, asks
    /// for `want` more, and applies the answer.
    async fn fetch(&self, slice: &Slice, want: i64) -> Result<(), String> {
        let (window_start, consumed) = {
            let st = slice.state();
            (st.window_start, st.consumed)
        };
        let request = pb::LeaseRequest {
            node_id: self.0.node_id.to_string(),
            slices: vec![pb::SliceRequest {
                budget_id: slice.budget_id.clone(),
                org_id: slice.org_id.to_string(),
                window_start_ms: window_start,
                consumed_nanos: consumed,
                want_nanos: want,
                release_nanos: 0,
            }],
        };
        let response = (self.0.lease)(request).await?;
        let grant = response
            .grants
            .into_iter()
            .find(|g| g.budget_id == slice.budget_id)
            .ok_or_else(|| "the lease answer has no grant for this budget".to_owned())?;
        let now = (self.0.clock)();
        let mut st = slice.state();
        st.last_fetch = Some(Instant::now());
        if !grant.error.is_empty() {
            tracing::debug!(budget_id = %slice.budget_id, error = %grant.error, "budget unknown to the control plane; not enforced until the next snapshot");
            st.unmanaged_until = now.saturating_add(30_000);
            st.last_grant = 0;
            return Ok(());
        }
        st.unmanaged_until = 0;
        if grant.window_start_ms != st.window_start {
            // A new window: what was consumed belonged to the old one.
            st.window_start = grant.window_start_ms;
            st.consumed = 0;
            st.overdraft_used = 0;
            st.last_grant = grant.granted_total_nanos;
        } else {
            st.last_grant = grant.granted_total_nanos.saturating_sub(st.granted).max(0);
        }
        st.granted = grant.granted_total_nanos;
        st.window_end = grant.window_end_ms;
        st.expires_at = grant.expires_at_ms;
        st.spent = grant.spent_nanos;
        st.others = grant.others_outstanding_nanos;
        Ok(())
    }

    /// Keeps a generation's reservation until its usage record settles it.
    pub fn hold(&self, generation: GenerationId, reservation: Reservation) {
        if reservation.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut held = lock(&self.0.held);
        let mut last = lock(&self.0.last_sweep);
        if now.duration_since(*last) > Duration::from_secs(60) {
            *last = now;
            held.retain(|_, (at, _)| now.duration_since(*at) < ABANDONED_AFTER);
        }
        held.insert(generation, (now, reservation));
    }

    /// Settles a generation at its real cost (no-op for one without a reservation).
    pub fn settle(&self, generation: GenerationId, cost_nanos: i64) {
        let taken = lock(&self.0.held).remove(&generation);
        if let Some((_, reservation)) = taken {
            reservation.settle(cost_nanos);
        }
    }

    /// Frees a generation's reservation without charging anything (it never reached a
    /// provider).
    pub fn release(&self, generation: GenerationId) {
        let taken = lock(&self.0.held).remove(&generation);
        drop(taken);
    }

    /// `(granted, consumed, reserved)` of a budget's slice on this node, for tests and status.
    pub fn slice_numbers(&self, budget_id: &str) -> Option<(i64, i64, i64)> {
        let slices = lock(&self.0.slices);
        let st = slices.get(budget_id)?.state();
        Some((st.granted, st.consumed, st.reserved))
    }
}

/// The slice size a node asks for: a 32nd of the limit, at least four requests' worth.
fn quantum(limit: i64, estimate: i64) -> i64 {
    (limit / 32).max(estimate.saturating_mul(4)).max(1)
}
