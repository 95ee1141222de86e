//! Per-endpoint health learned from live traffic: error rate over the last 30 s with
//! outlier ejection and half-open probing, time-to-first-token and throughput samples for
//! percentiles over 5 minutes, and EWMAs that feed `sort: latency | throughput`.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const ERROR_WINDOW: Duration = Duration::from_secs(30);
const SAMPLE_WINDOW: Duration = Duration::from_secs(300);
const MAX_SAMPLES: usize = 2048;
/// Ejection needs enough evidence: at least this many failures in the window…
const EJECT_MIN_FAILURES: u32 = 5;
/// …making up at least this share of the window's attempts.
const EJECT_ERROR_RATE: f64 = 0.5;
const BASE_EJECTION: Duration = Duration::from_secs(5);
const MAX_EJECTION: Duration = Duration::from_secs(120);
const EWMA_WEIGHT: f64 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Healthy,
    /// Ejected; not tried unless nothing else is left.
    Ejected,
    /// Ejection elapsed: one probe request may go through.
    Probe,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStats {
    pub uptime_last_30s: Option<f64>,
    pub uptime_last_5m: Option<f64>,
    pub ttft_ms: Option<Percentiles>,
    pub throughput_tps: Option<Percentiles>,
    pub ttft_ewma_ms: Option<f64>,
    pub throughput_ewma_tps: Option<f64>,
    pub ejected: bool,
}

#[derive(Debug)]
struct Outcome {
    at: Instant,
    ok: bool,
}

#[derive(Debug, Default)]
struct Endpoint {
    outcomes: VecDeque<Outcome>,
    ttft: VecDeque<(Instant, f64)>,
    throughput: VecDeque<(Instant, f64)>,
    ttft_ewma: Option<f64>,
    throughput_ewma: Option<f64>,
    ejected_until: Option<Instant>,
    ejections: u32,
    probe_in_flight: bool,
}

impl Endpoint {
    fn prune(&mut self, now: Instant) {
        while self
            .outcomes
            .front()
            .is_some_and(|o| now.duration_since(o.at) > SAMPLE_WINDOW)
        {
            self.outcomes.pop_front();
        }
        for samples in [&mut self.ttft, &mut self.throughput] {
            while samples
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > SAMPLE_WINDOW)
            {
                samples.pop_front();
            }
        }
    }

    fn window(&self, now: Instant, span: Duration) -> (u32, u32) {
        self.outcomes
            .iter()
            .rev()
            .take_while(|o| now.duration_since(o.at) <= span)
            .fold(
                (0, 0),
                |(ok, err), o| {
                    if o.ok { (ok + 1, err) } else { (ok, err + 1) }
                },
            )
    }
}

/// Shared by every request of a gateway node. Endpoints are keyed by id.
#[derive(Debug, Default)]
pub struct HealthTable {
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

fn ewma(current: Option<f64>, sample: f64) -> f64 {
    current.map_or(sample, |c| c + EWMA_WEIGHT * (sample - c))
}

fn percentiles(samples: &VecDeque<(Instant, f64)>) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    let mut values: Vec<f64> = samples.iter().map(|(_, v)| *v).collect();
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((values.len() - 1) as f64 * q).round() as usize;
        values[i]
    };
    Some(Percentiles {
        p50: at(0.5),
        p75: at(0.75),
        p90: at(0.9),
        p99: at(0.99),
    })
}

fn push_sample(samples: &mut VecDeque<(Instant, f64)>, now: Instant, value: f64) {
    if samples.len() == MAX_SAMPLES {
        samples.pop_front();
    }
    samples.push_back((now, value));
}

impl HealthTable {
    fn with<R>(&self, id: &str, f: impl FnOnce(&mut Endpoint) -> R) -> R {
        let mut map = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(map.entry(id.to_owned()).or_default())
    }

    pub fn availability(&self, id: &str, now: Instant) -> Availability {
        let map = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map
            .get(id)
            .and_then(|e| e.ejected_until.map(|until| (until, e.probe_in_flight)))
        {
            None => Availability::Healthy,
            Some((until, _)) if now < until => Availability::Ejected,
            Some((_, true)) => Availability::Ejected,
            Some((_, false)) => Availability::Probe,
        }
    }

    /// Marks the single half-open probe as taken; false if another request took it.
    pub fn claim_probe(&self, id: &str) -> bool {
        self.with(id, |e| {
            if e.probe_in_flight {
                false
            } else {
                e.probe_in_flight = true;
                true
            }
        })
    }

    /// A request reached the endpoint and succeeded (at least until its first byte).
    pub fn record_success(&self, id: &str, now: Instant, ttft: Option<Duration>) {
        self.with(id, |e| {
            e.prune(now);
            e.outcomes.push_back(Outcome { at: now, ok: true });
            if let Some(ttft) = ttft {
                let ms = ttft.as_secs_f64() * 1000.0;
                push_sample(&mut e.ttft, now, ms);
                e.ttft_ewma = Some(ewma(e.ttft_ewma, ms));
            }
            // A successful probe (or any success) closes the circuit.
            e.ejected_until = None;
            e.ejections = 0;
            e.probe_in_flight = false;
        });
    }

    /// Output tokens per second of a finished generation.
    pub fn record_throughput(&self, id: &str, now: Instant, tokens: u64, generation: Duration) {
        if tokens == 0 || generation.is_zero() {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let tps = tokens as f64 / generation.as_secs_f64();
        self.with(id, |e| {
            push_sample(&mut e.throughput, now, tps);
            e.throughput_ewma = Some(ewma(e.throughput_ewma, tps));
        });
    }

    /// A request to the endpoint failed in a way that counts against it (connect error,
    /// timeout, 5xx, 429). Ejects it when the last 30 s look bad enough.
    pub fn record_failure(&self, id: &str, now: Instant) {
        self.with(id, |e| {
            e.prune(now);
            e.outcomes.push_back(Outcome { at: now, ok: false });
            let was_probe = e.probe_in_flight;
            e.probe_in_flight = false;
            let (ok, err) = e.window(now, ERROR_WINDOW);
            let rate = f64::from(err) / f64::from(ok + err);
            if was_probe || (err >= EJECT_MIN_FAILURES && rate >= EJECT_ERROR_RATE) {
                let backoff = BASE_EJECTION
                    .saturating_mul(1 << e.ejections.min(8))
                    .min(MAX_EJECTION);
                e.ejections = e.ejections.saturating_add(1);
                e.ejected_until = Some(now + backoff);
                tracing::warn!(
                    endpoint = id,
                    errors = err,
                    successes = ok,
                    ejected_for_s = backoff.as_secs(),
                    "endpoint ejected"
                );
            }
        });
    }

    /// The provider answered 429 with `Retry-After`: skip the endpoint until then, without
    /// counting it as an outage.
    pub fn record_rate_limited(&self, id: &str, now: Instant, retry_after: Duration) {
        self.with(id, |e| {
            let until = now + retry_after.min(MAX_EJECTION);
            if e.ejected_until.is_none_or(|u| u < until) {
                e.ejected_until = Some(until);
            }
            e.probe_in_flight = false;
        });
    }

    pub fn stats(&self, id: &str, now: Instant) -> EndpointStats {
        let map = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(e) = map.get(id) else {
            return EndpointStats {
                uptime_last_30s: None,
                uptime_last_5m: None,
                ttft_ms: None,
                throughput_tps: None,
                ttft_ewma_ms: None,
                throughput_ewma_tps: None,
                ejected: false,
            };
        };
        let uptime = |span| {
            let (ok, err) = e.window(now, span);
            (ok + err > 0).then(|| f64::from(ok) / f64::from(ok + err))
        };
        EndpointStats {
            uptime_last_30s: uptime(ERROR_WINDOW),
            uptime_last_5m: uptime(SAMPLE_WINDOW),
            ttft_ms: percentiles(&e.ttft),
            throughput_tps: percentiles(&e.throughput),
            ttft_ewma_ms: e.ttft_ewma,
            throughput_ewma_tps: e.throughput_ewma,
            ejected: e.ejected_until.is_some_and(|u| now < u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_sustained_failures_then_probes_and_recovers() {
        let t = HealthTable::default();
        let now = Instant::now();
        for i in 0..4 {
            t.record_failure("e", now + Duration::from_millis(i));
        }
        assert_eq!(
            t.availability("e", now),
            Availability::Healthy,
            "four failures are not enough evidence"
        );
        t.record_failure("e", now + Duration::from_millis(5));
        assert_eq!(
            t.availability("e", now + Duration::from_secs(1)),
            Availability::Ejected
        );
        let later = now + BASE_EJECTION + Duration::from_secs(1);
        assert_eq!(t.availability("e", later), Availability::Probe);
        assert!(t.claim_probe("e"));
        assert!(!t.claim_probe("e"), "only one probe at a time");
        assert_eq!(t.availability("e", later), Availability::Ejected);
        t.record_success("e", later, Some(Duration::from_millis(40)));
        assert_eq!(t.availability("e", later), Availability::Healthy);
    }

    #[test]
    fn a_failed_probe_ejects_for_longer() {
        let t = HealthTable::default();
        let now = Instant::now();
        for i in 0..5 {
            t.record_failure("e", now + Duration::from_millis(i));
        }
        let probe_at = now + BASE_EJECTION + Duration::from_millis(10);
        assert!(t.claim_probe("e"));
        t.record_failure("e", probe_at);
        assert_eq!(
            t.availability("e", probe_at + BASE_EJECTION + Duration::from_millis(10)),
            Availability::Ejected
        );
        assert_eq!(
            t.availability(
                "e",
                probe_at + BASE_EJECTION * 2 + Duration::from_millis(10)
            ),
            Availability::Probe
        );
    }

    #[test]
    fn retry_after_cools_an_endpoint_down_for_that_long() {
        let t = HealthTable::default();
        let now = Instant::now();
        t.record_rate_limited("e", now, Duration::from_secs(3));
        assert_eq!(
            t.availability("e", now + Duration::from_secs(2)),
            Availability::Ejected
        );
        assert_eq!(
            t.availability("e", now + Duration::from_secs(4)),
            Availability::Probe
        );
        assert_eq!(
            t.stats("e", now).uptime_last_5m,
            None,
            "a rate limit is not an outage"
        );
    }

    #[test]
    fn mostly_healthy_endpoints_stay_in() {
        let t = HealthTable::default();
        let now = Instant::now();
        for i in 0..20 {
            t.record_success("e", now + Duration::from_millis(i), None);
        }
        for i in 0..6 {
            t.record_failure("e", now + Duration::from_millis(100 + i));
        }
        assert_eq!(
            t.availability("e", now + Duration::from_secs(1)),
            Availability::Healthy
        );
    }

    #[test]
    fn reports_latency_percentiles_and_uptime() {
        let t = HealthTable::default();
        let now = Instant::now();
        for ms in 1..=100 {
            t.record_success("e", now, Some(Duration::from_millis(ms)));
        }
        t.record_failure("e", now);
        t.record_throughput("e", now, 100, Duration::from_secs(2));
        let s = t.stats("e", now);
        let ttft = s.ttft_ms.unwrap();
        assert!(
            (ttft.p50 - 50.0).abs() <= 1.0 && (ttft.p99 - 99.0).abs() <= 1.0,
            "{ttft:?}"
        );
        assert!((s.uptime_last_5m.unwrap() - 100.0 / 101.0).abs() < 1e-9);
        assert_eq!(s.throughput_tps.unwrap().p50, 50.0);
        assert!(t.stats("unknown", now).uptime_last_5m.is_none());
    }
}
