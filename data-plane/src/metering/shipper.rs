//! Ships spooled usage records to the control plane's `UsageService.Report` until acked.
//!
//! Records are resent from the spool's ack mark after every reconnect; the ledger's unique
//! request_id makes the duplicates harmless, so at-least-once delivery is all this needs.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchyard_proto::pb;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use super::spool::{Spool, SpoolError, SpooledRecord};

/// Unacked batches allowed on one stream: enough to keep the pipe full across a round trip
/// without resending much after a reconnect.
const MAX_IN_FLIGHT: usize = 4;
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// A control plane that takes batches but never acks would otherwise stall shipping forever.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a wake-up waits for more records before sending a partial batch. Each batch
/// is one ingestion transaction (and one ack) on the control plane; at a steady 2k req/s
/// the appender's 2 ms group commits made ~4-record batches, and the control plane's
/// per-batch work cost more CPU than the gateway itself (`switchyard-bench`). Longer is
/// cheaper for the control plane but burstier: at 2k req/s its CPU per request was ~105 /
/// ~88 / ~62 µs at 20 / 50 / 100 ms (`--only cpu`), while co-located on two cores the
/// gateway's c=1 added p99 / p99.9 grew from 1061–1577 / 1735–2200 µs to 1401–1458 /
/// 2326–2823 and 1371–1834 / 2819–3365 (`--only c1`, alternating binaries): a batch's
/// transaction holds a core for longer. The tail won. Usage reaches the ledger this much
/// later; nothing waits on it on the request path.
const SHIP_LINGER: Duration = Duration::from_millis(20);
/// Shutdown must not hang on an unreachable control plane; unshipped records stay spooled.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

pub struct ShipperConfig {
    pub node_id: String,
    /// Sent as `authorization: Bearer <token>` on every call.
    pub node_token: String,
    pub batch_size: usize,
    pub max_backoff: Duration,
    /// Counters the shipper updates; keep a clone to export them as metrics.
    pub stats: Arc<ShipperStats>,
}

impl fmt::Debug for ShipperConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShipperConfig")
            .field("node_id", &self.node_id)
            .field("node_token", &"<redacted>")
            .field("batch_size", &self.batch_size)
            .field("max_backoff", &self.max_backoff)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub struct ShipperStats {
    shipped: AtomicU64,
    acked_seq: AtomicU64,
    reconnects: AtomicU64,
    /// Also publishes the acked seq to watchers (readiness probes, tests).
    acked_watch: Option<tokio::sync::watch::Sender<u64>>,
}

impl ShipperStats {
    pub fn publishing_acks_to(acked: tokio::sync::watch::Sender<u64>) -> Self {
        Self {
            acked_watch: Some(acked),
            ..Self::default()
        }
    }

    fn set_acked(&self, seq: u64) {
        self.acked_seq.store(seq, Ordering::Relaxed);
        if let Some(watch) = &self.acked_watch {
            watch.send_replace(seq);
        }
    }

    /// Records sent, resends after a reconnect included.
    pub fn shipped(&self) -> u64 {
        self.shipped.load(Ordering::Relaxed)
    }

    /// Highest seq the control plane acked and the spool persisted.
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq.load(Ordering::Relaxed)
    }

    /// Streams that failed and were reopened.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

/// Runs until `shutdown` is cancelled, then makes one flush attempt bounded by a short
/// deadline. Appenders must call `wake.notify_one()` after each append so new records leave
/// at once instead of waiting for a batch to fill.
pub async fn run_shipper(
    spool: Arc<Spool>,
    channel: Channel,
    wake: Arc<Notify>,
    config: ShipperConfig,
    shutdown: CancellationToken,
) {
    let auth = match AsciiMetadataValue::try_from(format!("Bearer {}", config.node_token)) {
        Ok(mut value) => {
            value.set_sensitive(true);
            value
        }
        Err(_) => {
            tracing::error!(
                "node token is not valid header text; usage records stay in the spool unshipped"
            );
            return;
        }
    };
    let stats = config.stats;
    stats.set_acked(spool.acked_seq());
    let shipper = Shipper {
        spool,
        channel,
        wake,
        node_id: config.node_id,
        auth,
        batch_size: config.batch_size.max(1),
        stats,
    };

    let mut backoff = Backoff::new(config.max_backoff);
    let live = loop {
        match shipper.session(&shutdown).await {
            Ok(live) => break live,
            Err(failure) => {
                shipper.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                if failure.progressed {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(
                    error = %failure.error,
                    retry_in_ms = delay.as_millis() as u64,
                    pending = shipper.spool.pending_len(),
                    "usage stream failed; reconnecting"
                );
                tokio::select! {
                    () = shutdown.cancelled() => break None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    shipper.final_flush(live).await;
}

struct Shipper {
    spool: Arc<Spool>,
    channel: Channel,
    wake: Arc<Notify>,
    node_id: String,
    auth: AsciiMetadataValue,
    batch_size: usize,
    stats: Arc<ShipperStats>,
}

#[derive(Debug, thiserror::Error)]
enum ShipError {
    #[error("control plane returned {}: {}", .0.code(), .0.message())]
    Status(Box<tonic::Status>),
    #[error("control plane ended the usage stream")]
    Closed,
    #[error("no usage ack within {ACK_TIMEOUT:?}")]
    AckTimeout,
    #[error("outbound usage stream is gone")]
    SendClosed,
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("spool read task failed: {0}")]
    ReadTask(#[from] tokio::task::JoinError),
}

impl From<tonic::Status> for ShipError {
    fn from(status: tonic::Status) -> Self {
        ShipError::Status(Box::new(status))
    }
}

struct Failure {
    error: ShipError,
    /// Whether the stream got acks through before failing; if so, the next attempt starts
    /// again from the shortest backoff.
    progressed: bool,
}

impl Shipper {
    /// The next batch after `after`: from memory when it is recent, else read back from the
    /// spool's segments off the async threads (a control-plane outage's backlog).
    async fn pending_after(&self, after: u64) -> Result<Vec<SpooledRecord>, ShipError> {
        if let Some(records) = self.spool.recent_after(after, self.batch_size) {
            return Ok(records);
        }
        let (spool, max) = (Arc::clone(&self.spool), self.batch_size);
        Ok(tokio::task::spawn_blocking(move || spool.pending_after(after, max)).await??)
    }

    /// One stream's lifetime. `Ok` means shutdown was requested, carrying the stream if it is
    /// still healthy so the final flush can reuse it.
    async fn session(&self, shutdown: &CancellationToken) -> Result<Option<Session<'_>>, Failure> {
        let opened = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            opened = Session::open(self) => opened,
        };
        let mut session = opened.map_err(|error| Failure {
            error,
            progressed: false,
        })?;
        match session.run(shutdown).await {
            Ok(()) => Ok(Some(session)),
            Err(error) => Err(Failure {
                error,
                progressed: session.progressed,
            }),
        }
    }

    async fn final_flush(&self, live: Option<Session<'_>>) {
        if self.spool.pending_len() == 0 {
            return;
        }
        let flush = async {
            let mut session = match live {
                Some(session) => session,
                None => Session::open(self).await?,
            };
            session.drain().await
        };
        match tokio::time::timeout(FINAL_FLUSH_TIMEOUT, flush).await {
            Ok(Ok(())) => tracing::info!("usage spool flushed at shutdown"),
            Ok(Err(error)) => tracing::warn!(
                %error,
                pending = self.spool.pending_len(),
                "final usage flush failed; records stay spooled for the next start"
            ),
            Err(_) => tracing::warn!(
                pending = self.spool.pending_len(),
                "final usage flush timed out; records stay spooled for the next start"
            ),
        }
    }
}

struct Session<'a> {
    shipper: &'a Shipper,
    window: Window,
    acks: tonic::Streaming<pb::UsageAck>,
    progressed: bool,
}

enum Event {
    Shutdown,
    Wake,
    Ack(Result<Option<pb::UsageAck>, tonic::Status>),
    AckTimeout,
}

impl<'a> Session<'a> {
    async fn open(shipper: &'a Shipper) -> Result<Session<'a>, ShipError> {
        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
        let mut window = Window {
            tx,
            in_flight: VecDeque::new(),
            last_sent: shipper.spool.acked_seq(),
            waiting_since: None,
        };
        // Queued before the call so a control plane that reads the first batch before
        // answering with headers cannot deadlock the stream.
        window.fill(shipper).await?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request
            .metadata_mut()
            .insert("authorization", shipper.auth.clone());
        crate::telemetry::otel::inject_grpc(&tracing::Span::current(), request.metadata_mut());
        let acks = switchyard_proto::spooled::report_spooled(shipper.channel.clone(), request)
            .await?
            .into_inner();
        tracing::debug!(
            from_seq = window.last_sent,
            pending = shipper.spool.pending_len(),
            "usage stream open"
        );
        Ok(Session {
            shipper,
            window,
            acks,
            progressed: false,
        })
    }

    /// Ships until shutdown (`Ok`) or the stream fails.
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), ShipError> {
        loop {
            // Registered before looking at the spool, so an append landing in between still
            // wakes us even if the appender uses `notify_waiters`.
            let notified = self.shipper.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.window.fill(self.shipper).await?;
            let waiting_since = self.window.waiting_since;
            let event = tokio::select! {
                () = shutdown.cancelled() => Event::Shutdown,
                () = &mut notified => Event::Wake,
                msg = self.acks.message() => Event::Ack(msg),
                () = ack_timer(waiting_since) => Event::AckTimeout,
            };
            match event {
                Event::Shutdown => return Ok(()),
                Event::Wake => self.linger(shutdown).await,
                Event::Ack(msg) => self.on_ack(msg).await?,
                Event::AckTimeout => return Err(ShipError::AckTimeout),
            }
        }
    }

    /// Lets a partial batch fill before it is sent (see `SHIP_LINGER`); a full batch, or
    /// a full window, goes without waiting.
    async fn linger(&self, shutdown: &CancellationToken) {
        let unsent = self
            .shipper
            .spool
            .last_seq()
            .saturating_sub(self.window.last_sent);
        if unsent >= self.shipper.batch_size as u64 || self.window.in_flight.len() >= MAX_IN_FLIGHT
        {
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(SHIP_LINGER) => {}
        }
    }

    /// Ships everything pending, appends made meanwhile included, and waits for the acks.
    /// Unbounded: the caller puts a deadline on it.
    async fn drain(&mut self) -> Result<(), ShipError> {
        loop {
            self.window.fill(self.shipper).await?;
            if self.window.in_flight.is_empty() {
                return Ok(());
            }
            let msg = self.acks.message().await;
            self.on_ack(msg).await?;
        }
    }

    async fn on_ack(
        &mut self,
        msg: Result<Option<pb::UsageAck>, tonic::Status>,
    ) -> Result<(), ShipError> {
        let Some(ack) = msg? else {
            return Err(ShipError::Closed);
        };
        // Only what this stream carried can be vouched for: an ack past it (say, a control
        // plane remembering seqs from before this spool was wiped) must not delete records
        // it never saw.
        let acked = ack.acked_seq.min(self.window.last_sent);
        if ack.acked_seq > self.window.last_sent {
            tracing::debug!(
                acked_seq = ack.acked_seq,
                last_sent = self.window.last_sent,
                "usage ack beyond the records sent on this stream; clamped"
            );
        }
        self.window.acked(acked);
        if acked <= self.shipper.spool.acked_seq() {
            return Ok(());
        }
        let spool = Arc::clone(&self.shipper.spool);
        match tokio::task::spawn_blocking(move || spool.ack(acked)).await {
            Ok(Ok(())) => {
                self.progressed = true;
                self.shipper.stats.set_acked(acked);
                tracing::trace!(
                    acked_seq = acked,
                    inserted = ack.inserted,
                    duplicates = ack.duplicates,
                    "usage acked"
                );
            }
            // The records are safe on the control plane; a later ack (they are cumulative)
            // or a resend after reconnect persists the mark.
            Ok(Err(error)) => {
                tracing::warn!(%error, acked_seq = acked, "cannot persist usage ack mark");
            }
            Err(error) => {
                tracing::warn!(%error, acked_seq = acked, "usage ack task failed");
            }
        }
        Ok(())
    }
}

/// Batches sent on one stream and not yet acked.
struct Window {
    tx: mpsc::Sender<pb::SpooledUsageBatch>,
    /// Last seq of each unacked batch, oldest first.
    in_flight: VecDeque<u64>,
    last_sent: u64,
    /// Since when the window has waited for an ack without any arriving.
    waiting_since: Option<Instant>,
}

impl Window {
    async fn fill(&mut self, shipper: &Shipper) -> Result<(), ShipError> {
        while self.in_flight.len() < MAX_IN_FLIGHT {
            let records = shipper.pending_after(self.last_sent).await?;
            let (Some(first), Some(last)) = (records.first(), records.last()) else {
                break;
            };
            let (first, last, count) = (first.seq, last.seq, records.len());
            let batch = pb::SpooledUsageBatch {
                node_id: shipper.node_id.clone(),
                records: records.into_iter().map(|r| r.payload).collect(),
            };
            // The channel holds no more than the window, so it is never full here; an error
            // means tonic dropped the request stream.
            self.tx.try_send(batch).map_err(|_| ShipError::SendClosed)?;
            if self.in_flight.is_empty() {
                self.waiting_since = Some(Instant::now());
            }
            self.in_flight.push_back(last);
            self.last_sent = last;
            shipper
                .stats
                .shipped
                .fetch_add(count as u64, Ordering::Relaxed);
            tracing::trace!(
                first_seq = first,
                last_seq = last,
                count,
                "usage batch sent"
            );
        }
        Ok(())
    }

    fn acked(&mut self, seq: u64) {
        let before = self.in_flight.len();
        while self.in_flight.front().is_some_and(|&last| last <= seq) {
            self.in_flight.pop_front();
        }
        if self.in_flight.is_empty() {
            self.waiting_since = None;
        } else if self.in_flight.len() < before {
            self.waiting_since = Some(Instant::now());
        }
    }
}

async fn ack_timer(waiting_since: Option<Instant>) {
    match waiting_since {
        Some(since) => tokio::time::sleep_until(since + ACK_TIMEOUT).await,
        None => std::future::pending().await,
    }
}

/// Exponential backoff with jitter, so a fleet of gateways does not reconnect in lockstep
/// after a control-plane restart.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            next: INITIAL_BACKOFF.min(max),
            max,
        }
    }

    fn reset(&mut self) {
        self.next = INITIAL_BACKOFF.min(self.max);
    }

    /// Somewhere in [base/2, base], base doubling per call up to the cap.
    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = base.saturating_mul(2).min(self.max);
        let half = u64::try_from(base.as_nanos() / 2).unwrap_or(u64::MAX);
        // RandomState is freshly keyed per call: enough randomness for jitter, no extra crate.
        let noise = RandomState::new().hash_one(Instant::now());
        let jitter = noise.checked_rem(half.saturating_add(1)).unwrap_or(0);
        Duration::from_nanos(half.saturating_add(jitter))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use pb::usage_service_server::{UsageService, UsageServiceServer};
    use tokio::net::{TcpListener, TcpSocket};
    use tokio::task::JoinHandle;
    use tokio_stream::Stream;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::transport::Endpoint;
    use tonic::{Request, Response, Status, Streaming};

    use super::*;

    /// An in-process control plane that records what it receives and can fail a stream
    /// instead of acking a given batch.
    #[derive(Default)]
    struct Fake {
        seen: Mutex<Vec<String>>,
        auth: Mutex<Vec<Option<String>>>,
        node_ids: Mutex<HashSet<String>>,
        streams: AtomicUsize,
        batches: AtomicUsize,
        /// 1-based counts of batches received (over all streams) at which the stream fails
        /// without recording or acking that batch.
        fail_at: Mutex<VecDeque<usize>>,
    }

    impl Fake {
        fn seen(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }
    }

    #[derive(Clone)]
    struct FakeService(Arc<Fake>);

    #[tonic::async_trait]
    impl UsageService for FakeService {
        type ReportStream = Pin<Box<dyn Stream<Item = Result<pb::UsageAck, Status>> + Send>>;

        async fn report(
            &self,
            request: Request<Streaming<pb::UsageBatch>>,
        ) -> Result<Response<Self::ReportStream>, Status> {
            let fake = Arc::clone(&self.0);
            fake.streams.fetch_add(1, Ordering::SeqCst);
            let auth = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            fake.auth.lock().unwrap().push(auth);
            let mut inbound = request.into_inner();
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(async move {
                while let Ok(Some(batch)) = inbound.message().await {
                    let n = fake.batches.fetch_add(1, Ordering::SeqCst) + 1;
                    let fail = {
                        let mut fail_at = fake.fail_at.lock().unwrap();
                        let hit = fail_at.front() == Some(&n);
                        if hit {
                            fail_at.pop_front();
                        }
                        hit
                    };
                    if fail {
                        let _ = tx.send(Err(Status::unavailable("injected failure"))).await;
                        return;
                    }
                    fake.node_ids.lock().unwrap().insert(batch.node_id.clone());
                    let max = batch.records.iter().map(|r| r.seq).max().unwrap_or(0);
                    let count = batch.records.len() as u32;
                    fake.seen
                        .lock()
                        .unwrap()
                        .extend(batch.records.into_iter().map(|r| r.request_id));
                    let ack = pb::UsageAck {
                        acked_seq: max,
                        inserted: count,
                        duplicates: 0,
                    };
                    if tx.send(Ok(ack)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
        }
    }

    async fn start_fake(fake: Arc<Fake>, stop: CancellationToken) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(UsageServiceServer::new(FakeService(fake)))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                )
                .await
                .unwrap();
        });
        addr
    }

    /// A bound socket that is not listening: connections are refused, and unlike a closed
    /// listener's port, no concurrently running test can grab it meanwhile.
    fn refusing_port() -> (TcpSocket, SocketAddr) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = socket.local_addr().unwrap();
        (socket, addr)
    }

    struct Harness {
        dir: tempfile::TempDir,
        spool: Arc<Spool>,
        wake: Arc<Notify>,
        stats: Arc<ShipperStats>,
        shutdown: CancellationToken,
        task: JoinHandle<()>,
    }

    fn start_shipper(addr: SocketAddr, batch_size: usize) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path()).unwrap());
        let wake = Arc::new(Notify::new());
        let stats = Arc::new(ShipperStats::default());
        let shutdown = CancellationToken::new();
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let config = ShipperConfig {
            node_id: "node-1".to_owned(),
            node_token: "node-secret".to_owned(),
            batch_size,
            max_backoff: Duration::from_millis(300),
            stats: Arc::clone(&stats),
        };
        let task = tokio::spawn(run_shipper(
            Arc::clone(&spool),
            channel,
            Arc::clone(&wake),
            config,
            shutdown.clone(),
        ));
        Harness {
            dir,
            spool,
            wake,
            stats,
            shutdown,
            task,
        }
    }

    impl Harness {
        async fn append(&self, prefix: &str, n: usize) -> Vec<String> {
            let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
            let mut records: Vec<_> = ids
                .iter()
                .map(|id| pb::UsageRecord {
                    request_id: id.clone(),
                    ..Default::default()
                })
                .collect();
            let spool = Arc::clone(&self.spool);
            tokio::task::spawn_blocking(move || spool.append(&mut records))
                .await
                .unwrap()
                .unwrap();
            self.wake.notify_one();
            ids
        }

        /// The stats lag the spool by a moment (they are bumped after the ack persisted), so
        /// both are waited for.
        fn all_acked(&self) -> bool {
            let last = self.spool.last_seq();
            self.spool.pending_len() == 0
                && self.spool.acked_seq() == last
                && self.stats.acked_seq() == last
        }

        /// Stops the shipper and hands back the spool's directory, the spool itself closed.
        async fn stop(self) -> tempfile::TempDir {
            self.shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("shipper did not stop")
                .unwrap();
            drop(self.spool);
            self.dir
        }
    }

    async fn wait_until(what: &str, within: Duration, cond: impl Fn() -> bool) {
        let polled = tokio::time::timeout(within, async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        if polled.await.is_err() {
            panic!("timed out after {within:?} waiting for {what}");
        }
    }

    #[tokio::test]
    async fn appended_records_are_shipped_acked_and_dropped() {
        let fake = Arc::new(Fake::default());
        let stop = CancellationToken::new();
        let addr = start_fake(Arc::clone(&fake), stop.clone()).await;
        let h = start_shipper(addr, 8);

        let mut expected = h.append("first", 20).await;
        wait_until("first wave acked", Duration::from_secs(10), || {
            h.all_acked()
        })
        .await;
        assert_eq!(h.spool.acked_seq(), 20);
        assert_eq!(h.stats.acked_seq(), 20);

        // Once the stream is up, a single record must arrive well within a second: the
        // shipper does not wait for a batch to fill.
        expected.extend(h.append("late", 1).await);
        wait_until("a lone record", Duration::from_secs(1), || {
            fake.seen().iter().any(|id| id == "late-0")
        })
        .await;
        wait_until("lone record acked", Duration::from_secs(5), || {
            h.all_acked()
        })
        .await;

        let stats = Arc::clone(&h.stats);
        let dir = h.stop().await;
        assert_eq!(fake.seen(), expected);
        assert_eq!(stats.shipped(), 21);
        assert_eq!(stats.reconnects(), 0);
        assert_eq!(
            *fake.auth.lock().unwrap(),
            vec![Some("Bearer node-secret".to_owned())]
        );
        assert_eq!(
            *fake.node_ids.lock().unwrap(),
            HashSet::from(["node-1".to_owned()])
        );

        // Acked records are gone for good: a restart finds nothing to resend.
        let reopened = Spool::open(dir.path()).unwrap();
        assert_eq!(reopened.pending_len(), 0);
        assert_eq!(reopened.last_seq(), 21);
        stop.cancel();
    }

    #[tokio::test]
    async fn reconnects_after_stream_failures_until_everything_is_acked() {
        let fake = Arc::new(Fake::default());
        // Fail the first stream on its 2nd batch, the next one on its first, and a later
        // one further in.
        *fake.fail_at.lock().unwrap() = VecDeque::from([2, 3, 7]);
        let stop = CancellationToken::new();
        let addr = start_fake(Arc::clone(&fake), stop.clone()).await;
        let h = start_shipper(addr, 5);

        let mut expected = HashSet::new();
        for wave in 0..4 {
            expected.extend(h.append(&format!("w{wave}"), 10).await);
        }
        wait_until("all records acked", Duration::from_secs(20), || {
            h.all_acked()
        })
        .await;

        let seen: HashSet<String> = fake.seen().into_iter().collect();
        assert_eq!(seen, expected, "every request_id reaches the control plane");
        assert!(h.stats.reconnects() >= 3, "{}", h.stats.reconnects());
        assert!(fake.streams.load(Ordering::SeqCst) >= 4);
        assert!(fake.fail_at.lock().unwrap().is_empty());
        assert_eq!(h.stats.acked_seq(), 40);
        let dir = h.stop().await;
        assert_eq!(Spool::open(dir.path()).unwrap().pending_len(), 0);
        stop.cancel();
    }

    #[tokio::test]
    async fn control_plane_down_at_start_then_up() {
        // Refuse connections while records pile up, then serve on the same port. More pile
        // up than the spool keeps in memory, so the oldest are read back from disk.
        let (socket, addr) = refusing_port();
        let h = start_shipper(addr, 256);
        let backlog = 5_000;
        assert!(h.spool.recent_after(0, 1).is_some());
        let expected: HashSet<String> = h.append("early", backlog).await.into_iter().collect();
        wait_until("a failed connect", Duration::from_secs(5), || {
            h.stats.reconnects() >= 1
        })
        .await;
        assert_eq!(h.spool.pending_len(), backlog);
        assert!(
            h.spool.recent_after(0, 1).is_none(),
            "the backlog should exceed the spool's memory window"
        );

        let fake = Arc::new(Fake::default());
        let stop = CancellationToken::new();
        let listener = socket.listen(64).unwrap();
        let server_fake = Arc::clone(&fake);
        let server_stop = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(UsageServiceServer::new(FakeService(server_fake)))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    server_stop.cancelled_owned(),
                )
                .await
                .unwrap();
        });
        wait_until(
            "records acked after the control plane came up",
            Duration::from_secs(10),
            || h.all_acked(),
        )
        .await;
        let seen = fake.seen();
        assert_eq!(
            seen.len(),
            backlog,
            "each record shipped once on a healthy stream"
        );
        assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
        h.stop().await;
        stop.cancel();
    }

    #[tokio::test]
    async fn shutdown_flushes_records_appended_without_a_wake() {
        let fake = Arc::new(Fake::default());
        let stop = CancellationToken::new();
        let addr = start_fake(Arc::clone(&fake), stop.clone()).await;
        let h = start_shipper(addr, 4);
        h.append("warmup", 1).await;
        wait_until("warm-up acked", Duration::from_secs(10), || h.all_acked()).await;

        // Appended straight into the spool, as a last request finishing during shutdown
        // might be, with no wake-up: only the final flush can ship these.
        let mut records: Vec<_> = (0..10)
            .map(|i| pb::UsageRecord {
                request_id: format!("last-{i}"),
                ..Default::default()
            })
            .collect();
        h.spool.append(&mut records).unwrap();
        let dir = h.stop().await;

        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending_len(), 0);
        assert_eq!(spool.acked_seq(), 11);
        assert_eq!(fake.seen().len(), 11);
        stop.cancel();
    }

    #[tokio::test]
    async fn shutdown_is_bounded_when_the_control_plane_is_unreachable() {
        let (_socket, addr) = refusing_port();
        let h = start_shipper(addr, 16);
        h.append("stuck", 5).await;
        wait_until("a failed connect", Duration::from_secs(5), || {
            h.stats.reconnects() >= 1
        })
        .await;

        let started = Instant::now();
        // `stop` itself fails the test past 5 s; the flush deadline is 2 s.
        let dir = h.stop().await;
        assert!(started.elapsed() < FINAL_FLUSH_TIMEOUT + Duration::from_secs(1));
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending_len(), 5, "unshipped records stay spooled");
    }

    #[tokio::test]
    async fn shutdown_is_bounded_when_the_control_plane_hangs() {
        // Accepts TCP connections (the kernel does) but never answers a byte.
        let (socket, addr) = refusing_port();
        let _listener = socket.listen(64).unwrap();
        let h = start_shipper(addr, 16);
        h.append("hung", 5).await;

        let started = Instant::now();
        let dir = h.stop().await;
        let took = started.elapsed();
        assert!(
            took < FINAL_FLUSH_TIMEOUT + Duration::from_secs(1),
            "{took:?}"
        );
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending_len(), 5, "unshipped records stay spooled");
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let mut base = INITIAL_BACKOFF;
        for _ in 0..10 {
            let delay = backoff.next_delay();
            assert!(delay >= base / 2 && delay <= base, "{delay:?} vs {base:?}");
            base = (base * 2).min(Duration::from_secs(1));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= INITIAL_BACKOFF);
    }

    #[test]
    fn config_debug_hides_the_token() {
        let config = ShipperConfig {
            node_id: "n".to_owned(),
            node_token: "super-secret".to_owned(),
            batch_size: 1,
            max_backoff: Duration::from_secs(1),
            stats: Arc::default(),
        };
        assert!(!format!("{config:?}").contains("super-secret"));
    }
}
