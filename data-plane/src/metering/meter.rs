//! The hot path's side of metering: a non-blocking hand-off of finished usage records to
//! an appender thread that writes them to the durable spool and wakes the shipper.
//!
//! The channel is unbounded on purpose: dropping a record would lose billing data, and the
//! appender drains at disk speed (one fsync per batch), far above any request rate; the
//! backlog is exported as a gauge so a stuck disk is visible.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchyard_proto::pb;
use tokio::sync::{Notify, watch};

use super::spool::Spool;
use crate::telemetry::GatewayMetrics;

const MAX_BATCH: usize = 512;
/// How long the appender waits for more records before writing a batch. Measured: one
/// fsync per record was ~10 % of the gateway's CPU at c=32 (`switchyard-bench`, perf).
const GROUP_COMMIT_LINGER: Duration = Duration::from_millis(2);
/// How often the appender fdatasyncs the spool while records keep coming (`--spool-sync-ms`).
/// Every batch is written at once, so a killed gateway loses nothing written; the interval
/// bounds what a crash of the whole machine could lose of records not yet shipped (the
/// shipper usually has them at the control plane within milliseconds). An fdatasync per
/// 2 ms batch cost ~30 µs of c=1 p99 on two shared cores (README, "Performance").
pub const DEFAULT_SYNC_EVERY: Duration = Duration::from_millis(DEFAULT_SYNC_MS);
pub const DEFAULT_SYNC_MS: u64 = 50;

#[derive(Clone)]
pub struct Meter {
    tx: std::sync::mpsc::Sender<pb::UsageRecord>,
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

/// Starts the appender on its own thread. The returned task completes once every `Meter`
/// clone is dropped and the channel is drained, so awaiting it at shutdown guarantees every
/// record reached the spool. Aborting (or dropping) the task abandons the appender as a
/// killed process would: records not yet appended are lost and the spool is released.
/// `sync_every` is the spool's fdatasync cadence under load (`DEFAULT_SYNC_EVERY`); zero
/// syncs every batch.
pub fn start_appender(
    spool: Arc<Spool>,
    wake: Arc<Notify>,
    spooled: watch::Sender<u64>,
    metrics: Arc<GatewayMetrics>,
    sync_every: Duration,
) -> Result<(Meter, tokio::task::JoinHandle<()>), std::io::Error> {
    let (tx, rx) = std::sync::mpsc::channel::<pb::UsageRecord>();
    let backlog = Arc::new(AtomicU64::new(0));
    let meter = Meter {
        tx,
        backlog: backlog.clone(),
        metrics,
        gate: None,
    };
    let abandoned = Arc::new(AtomicBool::new(false));
    let appender = Appender {
        spool,
        rx,
        wake,
        spooled,
        backlog,
        abandoned: abandoned.clone(),
        sync_every,
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("usage-spool".into())
        .spawn(move || {
            appender.run();
            let _ = done_tx.send(());
        })?;
    let task = tokio::spawn(async move {
        let _abandon_on_drop = Abandon(abandoned);
        let _ = done_rx.await;
    });
    Ok((meter, task))
}

struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Group commit on a thread of its own. While records keep coming it polls the channel once
/// per linger instead of blocking on it, so a request hands its record off without waking
/// anyone; after a quiet spell it blocks until the next record. It replaced an async task
/// that cost ~5 futex calls per request at c=1 (a wake-up per record, and a
/// `spawn_blocking` round trip per fdatasync), against none for a bare hyper forwarder.
/// Each batch is written and handed to the shipper at once; the fdatasync follows every
/// `sync_every` under load, and as soon as the records stop.
struct Appender {
    spool: Arc<Spool>,
    rx: std::sync::mpsc::Receiver<pb::UsageRecord>,
    wake: Arc<Notify>,
    spooled: watch::Sender<u64>,
    backlog: Arc<AtomicU64>,
    abandoned: Arc<AtomicBool>,
    sync_every: Duration,
}

/// Empty polls in a row (≈ 100 ms) before the appender blocks instead of polling.
const IDLE_POLLS: u32 = 50;
/// While blocked, how often the appender checks whether it was abandoned.
const ABANDON_CHECK: Duration = Duration::from_millis(100);

impl Appender {
    fn run(&self) {
        let mut idle = 0;
        let mut last_sync = Instant::now();
        loop {
            if self.abandoned.load(Ordering::Relaxed) {
                return;
            }
            let mut batch = Vec::new();
            if idle >= IDLE_POLLS {
                match self.rx.recv_timeout(ABANDON_CHECK) {
                    Ok(record) => batch.push(record),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        self.sync(&mut last_sync);
                        return;
                    }
                }
            }
            // The linger delays only the write, never a response.
            std::thread::sleep(GROUP_COMMIT_LINGER);
            let closed = loop {
                if batch.len() >= MAX_BATCH {
                    break false;
                }
                match self.rx.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break false,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => break true,
                }
            };
            if batch.is_empty() {
                // The records stopped: the last ones are made durable now, not at the interval.
                self.sync(&mut last_sync);
                if closed {
                    return;
                }
                idle += 1;
                continue;
            }
            idle = 0;
            let n = batch.len() as u64;
            let Some(last) = self.append_until_written(batch) else {
                return;
            };
            self.spooled.send_replace(last);
            self.backlog.fetch_sub(n, Ordering::Relaxed);
            self.wake.notify_one();
            if last_sync.elapsed() >= self.sync_every {
                self.sync(&mut last_sync);
            }
        }
    }

    /// A failed fdatasync is not retried (see `Spool::sync`): the records stay written,
    /// readable and shipped; the error says their survival of a power loss is in doubt.
    fn sync(&self, last_sync: &mut Instant) {
        if let Err(err) = self.spool.sync() {
            tracing::error!(error = %err, "could not sync the usage spool");
        }
        *last_sync = Instant::now();
    }

    /// A failed append (disk full, I/O error) is retried with the same records: nothing is
    /// dropped while the gateway runs. `None` only when the appender was abandoned.
    fn append_until_written(&self, mut batch: Vec<pb::UsageRecord>) -> Option<u64> {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.spool.append(&mut batch) {
                Ok(last) => return Some(last),
                Err(err) => {
                    tracing::error!(error = %err, records = batch.len(), "could not append usage to the spool; retrying");
                }
            }
            if self.abandoned.load(Ordering::Relaxed) {
                return None;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appender(
        spool: &Arc<Spool>,
        sync_every: Duration,
    ) -> (Meter, tokio::task::JoinHandle<()>, watch::Receiver<u64>) {
        let (spooled, seen) = watch::channel(0);
        let (meter, task) = start_appender(
            spool.clone(),
            Arc::new(Notify::new()),
            spooled,
            Arc::new(GatewayMetrics::new()),
            sync_every,
        )
        .unwrap();
        (meter, task, seen)
    }

    fn record(id: &str) -> pb::UsageRecord {
        pb::UsageRecord {
            request_id: id.to_owned(),
            model: "openai/gpt-4o-mini".to_owned(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn records_are_written_at_once_and_synced_when_they_stop() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path()).unwrap());
        // An interval no test outlives: only the records stopping can trigger the sync.
        let (meter, task, mut spooled) = appender(&spool, Duration::from_secs(3600));
        for i in 0..3 {
            meter.record(record(&format!("r-{i}")));
        }
        // Handed to the shipper as soon as written, before any sync.
        spooled.wait_for(|&seq| seq == 3).await.unwrap();
        assert_eq!(spool.pending_len(), 3);
        drop(meter);
        task.await.unwrap();
        assert!(
            !spool.has_unsynced_writes(),
            "the appender syncs once the records stop, whatever the interval"
        );
        assert_eq!(spool.pending_after(0, 10).unwrap().len(), 3);
    }
}
