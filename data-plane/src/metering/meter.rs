//! The hot path's side of metering: a non-blocking hand-off of finished usage records to
//! an appender task that writes them to the durable spool and wakes the shipper.
//!
//! The channel is unbounded on purpose: dropping a record would lose billing data, and the
//! appender drains at disk speed (one fsync per batch), far above any request rate; the
//! backlog is exported as a gauge so a stuck disk is visible.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchyard_proto::pb;
use tokio::sync::{Notify, mpsc, watch};

use super::spool::Spool;
use crate::telemetry::GatewayMetrics;

const MAX_BATCH: usize = 512;
/// How long the appender waits for more records before an fsync. Measured: one fsync per
/// record was ~10 % of the gateway's CPU at c=32 (`switchyard-bench`, perf).
const GROUP_COMMIT_LINGER: Duration = Duration::from_millis(2);

#[derive(Clone)]
pub struct Meter {
    tx: mpsc::UnboundedSender<pb::UsageRecord>,
    backlog: Arc<AtomicU64>,
    metrics: Arc<GatewayMetrics>,
    gate: Option<Arc<super::spool_cap::SpoolGate>>,
}

impl Meter {
    /// Enforces the spool's disk cap on new generations (see `spool_cap`).
    pub fn with_gate(mut self, gate: Arc<super::spool_cap::SpoolGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Whether a new generation may start: refused while the spool is at its disk cap.
    pub fn admit(&self) -> Result<(), crate::error::ApiError> {
        match &self.gate {
            Some(gate) => gate.admit(),
            None => Ok(()),
        }
    }

    pub fn record(&self, record: pb::UsageRecord) {
        self.metrics.observe_usage(&record);
        // Called within the generation's span (the pipeline's, or the stream relay's).
        crate::telemetry::otel::record_usage(&tracing::Span::current(), &record);
        self.backlog.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(record).is_err() {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("usage appender has stopped; a usage record could not be spooled");
        }
    }

    /// Spools a provisional (write-ahead) record. Unlike `record` it is not observed in
    /// metrics or traces: the final record of the generation is, once.
    pub fn record_provisional(&self, record: pb::UsageRecord) {
        debug_assert!(record.provisional);
        self.backlog.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(record).is_err() {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(
                "usage appender has stopped; a provisional usage record could not be spooled"
            );
        }
    }

    /// Records handed off but not yet durable in the spool.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// A read-only view of the backlog for metrics. It does not keep the channel open:
    /// holding a `Meter` clone would stop the appender from ever finishing at shutdown.
    pub fn backlog_gauge(&self) -> Backlog {
        Backlog(self.backlog.clone())
    }
}

/// Records handed to the meter but not yet durable in the spool.
#[derive(Clone, Debug)]
pub struct Backlog(Arc<AtomicU64>);

impl Backlog {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Starts the appender. It returns once every `Meter` clone is dropped and the channel is
/// drained, so awaiting it at shutdown guarantees every record reached the spool.
pub fn start_appender(
    spool: Arc<Spool>,
    wake: Arc<Notify>,
    spooled: watch::Sender<u64>,
    metrics: Arc<GatewayMetrics>,
) -> (Meter, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<pb::UsageRecord>();
    let backlog = Arc::new(AtomicU64::new(0));
    let meter = Meter {
        tx,
        backlog: backlog.clone(),
        metrics,
        gate: None,
    };
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Group commit: gather what arrives within a short linger so one fdatasync covers
            // many requests. The linger delays only durability, never a response.
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + GROUP_COMMIT_LINGER;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(r)) => batch.push(r),
                    Ok(None) | Err(_) => break,
                }
            }
            let n = batch.len() as u64;
            let last = append_until_durable(&spool, batch).await;
            spooled.send_replace(last);
            backlog.fetch_sub(n, Ordering::Relaxed);
            wake.notify_one();
        }
    });
    (meter, task)
}

/// A failed append (disk full, I/O error) is retried with the same records: nothing is
/// dropped while the gateway runs.
async fn append_until_durable(spool: &Arc<Spool>, batch: Vec<pb::UsageRecord>) -> u64 {
    let mut delay = Duration::from_millis(50);
    loop {
        let spool = spool.clone();
        let attempt = batch.clone();
        match tokio::task::spawn_blocking(move || spool.append(attempt)).await {
            Ok(Ok(last)) => return last,
            Ok(Err(err)) => {
                tracing::error!(error = %err, records = batch.len(), "could not append usage to the spool; retrying")
            }
            Err(err) => tracing::error!(error = %err, "spool append task failed; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
