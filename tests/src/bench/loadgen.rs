//! The load generator every arm is measured with: HTTP/1.1 keep-alive connections on bare
//! hyper, `TCP_NODELAY`, nanosecond HDR histograms.
//!
//! - Closed loop: `c` connections, each sends its next request when the previous answer is
//!   complete. Latency = send → last byte.
//! - Open loop: requests are due at fixed intended times `start + i / rate`, released by a
//!   pacer thread (tokio's timer has 1 ms granularity; `thread::sleep` is ~50 µs) to a pool of
//!   connections. Latency = intended send time → last byte, so time spent queued behind a slow
//!   answer counts (no coordinated omission). Requests still unanswered when the block's grace
//!   period ends count as errors.
//! - Streaming: closed loop over SSE answers from [`super::mock`]; records time to the first
//!   content chunk, every content chunk's transit time (mock send stamp → client receipt) and
//!   the gap between consecutive content chunks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::stats::Hist;

/// Where and what to send: one arm's request.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Target {
    pub fn new(
        addr: SocketAddr,
        path: &str,
        extra: &[(&str, String)],
        body: Bytes,
    ) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(&addr.to_string())?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in extra {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
        Ok(Self {
            addr,
            path: path.to_owned(),
            headers,
            body,
        })
    }

    /// The same request with another body (e.g. the streaming one).
    pub fn with_body(&self, body: Bytes) -> Self {
        Self {
            body,
            ..self.clone()
        }
    }

    fn request(&self) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&self.path)
            .body(Full::new(self.body.clone()))?;
        *request.headers_mut() = self.headers.clone();
        Ok(request)
    }
}

/// One measured block of one arm.
#[derive(Clone, Debug, Default)]
pub struct Block {
    pub hist: Hist,
    pub ok: u64,
    pub errors: u64,
    /// Open loop: requests due in the measured window.
    pub scheduled: u64,
    pub measured_for: Duration,
    pub first_error: Option<String>,
}

impl Block {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.measured_for.as_secs_f64().max(1e-9)
    }

    pub fn error_rate(&self) -> f64 {
        let total = (self.ok + self.errors).max(self.scheduled).max(1);
        self.errors.max(self.scheduled.saturating_sub(self.ok)) as f64 / total as f64
    }

    fn merge(&mut self, other: Block) {
        self.hist.merge(&other.hist);
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn connect_all(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Sender>> {
    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..n {
        pending.spawn(connect(addr));
    }
    let mut senders = Vec::with_capacity(n);
    while let Some(joined) = pending.join_next().await {
        senders.push(joined??);
    }
    Ok(senders)
}

/// Sends one request and reads the whole answer; `Err` describes a failure.
async fn exchange(
    sender: &mut Option<Sender>,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    let conn = match sender {
        Some(conn) => conn,
        None => sender.insert(connect(target.addr).await.map_err(|e| e.to_string())?),
    };
    let request = target.request().map_err(|e| e.to_string())?;
    let answer = async {
        conn.ready().await.map_err(|e| format!("connection: {e}"))?;
        let response = conn
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?;
        if status.is_success() {
            Ok(())
        } else {
            let text = body.to_bytes();
            Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&text[..text.len().min(200)])
            ))
        }
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => {
            if err.starts_with("HTTP") {
                Err(err)
            } else {
                // The connection is unusable; the next exchange opens a fresh one.
                *sender = None;
                Err(err)
            }
        }
        Err(_) => {
            *sender = None;
            Err(format!("timed out after {timeout:?}"))
        }
    }
}

/// Closed loop at `concurrency` for `warmup` (discarded) then `measure`.
pub async fn closed_loop(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
    timeout: Duration,
) -> anyhow::Result<Block> {
    let senders = connect_all(target.addr, concurrency).await?;
    let start = Instant::now();
    let measuring_from = start + warmup;
    let end = measuring_from + measure;
    let mut tasks = tokio::task::JoinSet::new();
    for sender in senders {
        let target = target.clone();
        tasks.spawn(async move {
            let mut block = Block::default();
            let mut sender = Some(sender);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let result = exchange(&mut sender, &target, timeout).await;
                let done = Instant::now();
                if sent < measuring_from {
                    continue;
                }
                match result {
                    Ok(()) => {
                        block.ok += 1;
                        block.hist.record_ns(nanos(done - sent));
                    }
                    Err(err) => {
                        block.error(err);
                        // A dead arm must not turn into a busy loop.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            block
        });
    }
    let mut total = Block {
        measured_for: measure,
        ..Block::default()
    };
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined?);
    }
    Ok(total)
}

/// Open loop at `rate` requests per second over `connections` keep-alive connections.
pub async fn open_loop(
    target: &Target,
    rate: f64,
    connections: usize,
    warmup: Duration,
    measure: Duration,
    timeout: Duration,
) -> anyhow::Result<Block> {
    anyhow::ensure!(rate > 0.0, "rate must be positive");
    let senders = connect_all(target.addr, connections).await?;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let warm_count = (warmup.as_secs_f64() * rate).round() as u64;
    let total = warm_count + (measure.as_secs_f64() * rate).round() as u64;
    let semaphore = Arc::new(Semaphore::new(0));
    let next = Arc::new(AtomicU64::new(0));
    // A moment for the connection tasks to park on the semaphore before the first is due.
    let start = Instant::now() + Duration::from_millis(5);

    // Past the last due time, answers still count until the grace period ends; whatever is
    // unanswered then is an error (the arm could not keep up). Tasks stop themselves at the
    // deadline so their counts survive.
    let grace = start + warmup + measure + timeout.min(Duration::from_secs(3));
    let mut tasks = tokio::task::JoinSet::new();
    for sender in senders {
        let (target, semaphore, next) = (target.clone(), semaphore.clone(), next.clone());
        tasks.spawn(async move {
            let mut block = Block::default();
            let mut sender = Some(sender);
            loop {
                let permit = tokio::select! {
                    permit = semaphore.acquire() => permit,
                    () = tokio::time::sleep_until(grace.into()) => break,
                };
                match permit {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let intended = start + interval.mul_f64(i as f64);
                let result =
                    tokio::time::timeout_at(grace.into(), exchange(&mut sender, &target, timeout))
                        .await;
                let done = Instant::now();
                let Ok(result) = result else {
                    if i >= warm_count {
                        block.error("no answer before the end of the block".into());
                    }
                    break;
                };
                if i < warm_count {
                    continue;
                }
                match result {
                    Ok(()) => {
                        block.ok += 1;
                        block
                            .hist
                            .record_ns(nanos(done.saturating_duration_since(intended)));
                    }
                    Err(err) => block.error(err),
                }
            }
            block
        });
    }

    let pacer_semaphore = semaphore.clone();
    let pacer = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || pace(&pacer_semaphore, start, interval, total, connections))?;

    let mut sum = Block {
        measured_for: measure,
        scheduled: total - warm_count,
        ..Block::default()
    };
    let hard_stop = grace + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(hard_stop.into(), tasks.join_next()).await {
            Ok(Some(joined)) => sum.merge(joined?),
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                break;
            }
        }
    }
    semaphore.close();
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    let unanswered = sum.scheduled.saturating_sub(sum.ok + sum.errors);
    if unanswered > 0 {
        sum.errors += unanswered;
        sum.first_error.get_or_insert_with(|| {
            format!("{unanswered} requests unanswered at the end of the block")
        });
    }
    Ok(sum)
}

/// Releases one permit per due request; catches up in one step after an oversleep, so the
/// intended times never drift.
fn pace(semaphore: &Semaphore, start: Instant, interval: Duration, total: u64, connections: usize) {
    let mut released = 0u64;
    let interval_ns = interval.as_nanos().max(1);
    loop {
        if semaphore.is_closed() {
            return;
        }
        let now = Instant::now();
        if now >= start {
            let due = ((now - start).as_nanos() / interval_ns) as u64 + 1;
            let due = due.min(total);
            if due > released {
                semaphore.add_permits((due - released) as usize);
                released = due;
            }
            if released >= total {
                // One extra permit per connection task lets each see that the block is over.
                semaphore.add_permits(connections);
                return;
            }
        }
        let next_due = start + interval.mul_f64(released as f64);
        let wait = next_due.saturating_duration_since(Instant::now());
        std::thread::sleep(wait.min(Duration::from_millis(2)));
    }
}

/// What one streaming block measured.
#[derive(Clone, Debug, Default)]
pub struct StreamBlock {
    pub ttft: Hist,
    /// Mock send stamp → client receipt, per content chunk.
    pub transit: Hist,
    /// Between consecutive content chunks of one answer.
    pub gap: Hist,
    pub streams: u64,
    pub errors: u64,
    pub frames_out: u64,
    pub frames_expected: u64,
    pub first_error: Option<String>,
}

/// Frame accounting for the report.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct FrameCount {
    pub sent_by_mock: u64,
    pub received_by_client: u64,
}

/// Closed loop over streaming answers; every answer should carry `chunks` content chunks.
pub async fn stream_loop(
    target: &Target,
    concurrency: usize,
    chunks: u32,
    warmup: Duration,
    measure: Duration,
    timeout: Duration,
) -> anyhow::Result<StreamBlock> {
    let senders = connect_all(target.addr, concurrency).await?;
    let start = Instant::now();
    let measuring_from = start + warmup;
    let end = measuring_from + measure;
    let mut tasks = tokio::task::JoinSet::new();
    for sender in senders {
        let target = target.clone();
        tasks.spawn(async move {
            let mut block = StreamBlock::default();
            let mut sender = Some(sender);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let measuring = sent >= measuring_from;
                let mut one = StreamBlock::default();
                let result = tokio::time::timeout(
                    timeout,
                    stream_once(&mut sender, &target, sent, &mut one),
                )
                .await
                .unwrap_or_else(|_| Err(format!("stream timed out after {timeout:?}")));
                if !measuring {
                    continue;
                }
                match result {
                    Ok(()) => {
                        block.streams += 1;
                        block.frames_out += one.frames_out;
                        block.frames_expected += u64::from(chunks);
                        block.ttft.merge(&one.ttft);
                        block.transit.merge(&one.transit);
                        block.gap.merge(&one.gap);
                    }
                    Err(err) => {
                        sender = None;
                        block.errors += 1;
                        block.first_error.get_or_insert(err);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            block
        });
    }
    let mut total = StreamBlock::default();
    while let Some(joined) = tasks.join_next().await {
        let block = joined?;
        total.ttft.merge(&block.ttft);
        total.transit.merge(&block.transit);
        total.gap.merge(&block.gap);
        total.streams += block.streams;
        total.errors += block.errors;
        total.frames_out += block.frames_out;
        total.frames_expected += block.frames_expected;
        if total.first_error.is_none() {
            total.first_error = block.first_error;
        }
    }
    Ok(total)
}

async fn stream_once(
    sender: &mut Option<Sender>,
    target: &Target,
    sent: Instant,
    out: &mut StreamBlock,
) -> Result<(), String> {
    let conn = match sender {
        Some(conn) => conn,
        None => sender.insert(connect(target.addr).await.map_err(|e| e.to_string())?),
    };
    let request = target.request().map_err(|e| e.to_string())?;
    conn.ready().await.map_err(|e| format!("connection: {e}"))?;
    let response = conn
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::with_capacity(4096);
    let mut last_chunk: Option<Instant> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        let now_us = super::mock::unix_micros();
        pending.extend_from_slice(&data);
        while let Some(end) = find(&pending, b"\n\n") {
            if let Some(sent_us) = content_stamp(&pending[..end]) {
                out.frames_out += 1;
                if out.ttft.is_empty() {
                    out.ttft.record_ns(nanos(now - sent));
                }
                out.transit
                    .record_ns(now_us.saturating_sub(sent_us).saturating_mul(1_000));
                if let Some(previous) = last_chunk {
                    out.gap.record_ns(nanos(now - previous));
                }
                last_chunk = Some(now);
            }
            pending.drain(..end + 2);
        }
    }
    Ok(())
}

/// The mock's send stamp in a content chunk: `"content":"<micros> "`.
pub fn content_stamp(event: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"content\":\"";
    let at = find(event, KEY)? + KEY.len();
    let digits: &[u8] = &event[at..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    // Epoch microseconds have 16 digits; anything short is a role or empty chunk.
    if len < 13 {
        return None;
    }
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_stamps_are_found_only_in_content_chunks() {
        assert_eq!(
            content_stamp(br#"data: {"choices":[{"delta":{"content":"1732380000123456 "}}]}"#),
            Some(1_732_380_000_123_456)
        );
        assert_eq!(
            content_stamp(br#"data: {"choices":[{"delta":{"content":""}}]}"#),
            None
        );
        assert_eq!(content_stamp(b"data: [DONE]"), None);
    }

    #[test]
    fn error_rate_counts_unanswered_requests() {
        let block = Block {
            ok: 90,
            errors: 0,
            scheduled: 100,
            measured_for: Duration::from_secs(1),
            ..Block::default()
        };
        assert!((block.error_rate() - 0.1).abs() < 1e-9);
        assert!((block.rps() - 90.0).abs() < 1e-9);
    }

    /// The harness end to end in-process: mock, bare forwarder, closed loop, open loop and
    /// streaming each produce answers. Counts only; no timing assertions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quick_loops_against_the_mock_and_the_forwarder() {
        let stop = tokio_util::sync::CancellationToken::new();
        let settings = crate::bench::mock::MockSettings {
            chunks: 5,
            chunk_interval: Duration::from_millis(1),
            ..Default::default()
        };
        let local = "127.0.0.1:0".parse().unwrap();
        let (mock, _m) = crate::bench::mock::start(local, settings, stop.clone())
            .await
            .unwrap();
        let (fwd, _f) = crate::bench::forwarder::start(local, mock, stop.clone())
            .await
            .unwrap();
        let body = Bytes::from_static(br#"{"model":"bench-model","messages":[]}"#);
        for addr in [mock, fwd] {
            let target = Target::new(addr, "/v1/chat/completions", &[], body.clone()).unwrap();
            let closed = closed_loop(
                &target,
                2,
                Duration::from_millis(100),
                Duration::from_millis(400),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            assert!(
                closed.ok > 0 && closed.hist.len() == closed.ok,
                "{closed:?}"
            );
            assert_eq!(closed.errors, 0, "{:?}", closed.first_error);

            let open = open_loop(
                &target,
                500.0,
                8,
                Duration::from_millis(100),
                Duration::from_millis(400),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            assert_eq!(open.scheduled, 200);
            assert!(open.ok > 0, "{open:?}");

            let streaming = target.with_body(Bytes::from_static(
                br#"{"model":"bench-model","stream":true,"messages":[]}"#,
            ));
            let s = stream_loop(
                &streaming,
                2,
                5,
                Duration::ZERO,
                Duration::from_millis(300),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            assert!(s.streams > 0, "{:?}", s.first_error);
            assert_eq!(s.frames_out, s.frames_expected);
            assert_eq!(s.ttft.len(), s.streams);
        }
        stop.cancel();
    }
}
