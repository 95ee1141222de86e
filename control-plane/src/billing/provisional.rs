//! Settles provisional usage. A gateway spools a provisional (write-ahead) record before a
//! stream's upstream request is sent; its final record normally supersedes it within the
//! stream's lifetime — a zero-cost error final when no provider answered, which bills nothing.
//! One still waiting after the grace period belongs to a stream whose gateway died before the
//! end (SIGKILL, power loss): the request reached a provider, so it is posted to the ledger
//! as estimated, with the gateway's estimate, rather than never billed.
//!
//! The grace period must outlast the longest stream plus the spool's delivery delay (a
//! gateway cut off from the control plane ships its finals later): a final arriving after
//! settlement is a duplicate and changes nothing, so settling early bills the estimate
//! instead of the real usage.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{Store, now_ms};
use crate::telemetry::ControlPlaneMetrics;

/// Default grace period: far beyond any stream, short enough for same-hour statements.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10 * 60);
/// Rows settled per store call, so one sweep never holds the store for long.
const BATCH: i64 = 256;

/// How often to sweep for a given grace period: a tenth of it, between 100 ms and 30 s.
fn interval(grace: Duration) -> Duration {
    (grace / 10).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// Settles provisional rows; the store posts each with its platform fee atomically, so a
/// failure leaves a row provisional for the next sweep rather than billed without its fee.
pub struct Sweeper {
    grace: Duration,
    metrics: Arc<ControlPlaneMetrics>,
}

impl Sweeper {
    pub fn new(grace: Duration, metrics: Arc<ControlPlaneMetrics>) -> Self {
        Self { grace, metrics }
    }

    /// One sweep: settles every provisional row older than the grace period. Returns how
    /// many rows were settled.
    pub async fn sweep(&self, store: &dyn Store) -> crate::store::StoreResult<usize> {
        let cutoff =
            now_ms().saturating_sub(i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX));
        let mut total = 0;
        loop {
            let settled = store.settle_provisional_usage(cutoff, BATCH).await?;
            if settled.is_empty() {
                return Ok(total);
            }
            total += settled.len();
            self.metrics
                .observe_provisional_settled(u64::try_from(settled.len()).unwrap_or(u64::MAX));
            for row in &settled {
                tracing::warn!(request_id = %row.request_id, org_id = %row.org_id, node_id = %row.node_id, cost_nanos = row.cost_nanos, "stream without a final usage record settled as estimated");
            }
            if settled.len() < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }
}

/// Sweeps until `shutdown`, waking `ingested` waiters after settling anything (budget
/// alerts and `/generation` lookups follow the ledger).
pub async fn run(
    store: Arc<dyn Store>,
    sweeper: Sweeper,
    ingested: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval(sweeper.grace));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sweeper.sweep(store.as_ref()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(settled = n, "provisional usage settled as estimated");
                ingested.notify_waiters();
            }
            Err(err) => tracing::warn!(error = %err, "settling provisional usage failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_interval_follows_the_grace_period() {
        assert_eq!(interval(DEFAULT_GRACE), Duration::from_secs(30));
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_millis(200));
        assert_eq!(interval(Duration::ZERO), Duration::from_millis(100));
    }
}
