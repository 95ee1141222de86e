//! Rate limits per key and per org: requests and tokens per minute, and concurrent
//! requests. Each gateway enforces its share, ceil(limit / gateway_count), which the control
//! plane sets from the number of connected gateways; N gateways together therefore admit at
//! most limit + N − 1 per minute (and, when traffic is unevenly spread, a busy node can hit
//! its share before the cluster hits the limit).
//!
//! Per-minute counts use a sliding window over two fixed windows (the previous minute's
//! count weighted by how much of it still overlaps): O(1) memory per scope, no burst at
//! window edges, and it allows the post-hoc token debit a token bucket cannot express
//! (token usage is only known after the response).

use foldhash::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

/// Limits of one scope as this gateway enforces them (already divided into its share).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: u32,
    pub tokens_per_minute: u64,
    pub concurrent_requests: u32,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute == 0
            && self.tokens_per_minute == 0
            && self.concurrent_requests == 0
    }

    /// This gateway's share of a cluster-wide limit.
    pub fn share(&self, gateways: u32) -> Limits {
        let n = gateways.max(1);
        Limits {
            requests_per_minute: self.requests_per_minute.div_ceil(n),
            tokens_per_minute: self.tokens_per_minute.div_ceil(u64::from(n)),
            concurrent_requests: self.concurrent_requests.div_ceil(n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// "key" or "org".
    pub scope: &'static str,
    /// "requests_per_minute", "tokens_per_minute" or "concurrent_requests".
    pub limit_name: &'static str,
    pub limit: u64,
    pub remaining: u64,
    pub retry_after: Duration,
    /// When the window frees capacity, as unix milliseconds.
    pub reset_unix_ms: i64,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    previous: u64,
    current: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            previous: 0,
            current: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.start);
        if elapsed >= WINDOW * 2 {
            *self = Self::new(now);
        } else if elapsed >= WINDOW {
            self.previous = self.current;
            self.current = 0;
            self.start += WINDOW;
        }
    }

    /// The sliding count: all of this window plus the overlapping part of the last one.
    /// Correct even when the window has not been rolled for a while.
    fn count(&self, now: Instant) -> u64 {
        let elapsed = now.duration_since(self.start);
        let (previous, current, into) = if elapsed >= WINDOW * 2 {
            return 0;
        } else if elapsed >= WINDOW {
            (self.current, 0, (elapsed - WINDOW).as_secs_f64())
        } else {
            (self.previous, self.current, elapsed.as_secs_f64())
        };
        let overlap = 1.0 - (into / WINDOW.as_secs_f64()).clamp(0.0, 1.0);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let carried = (previous as f64 * overlap).ceil() as u64;
        carried + current
    }

    fn until_next(&self, now: Instant) -> Duration {
        (self.start + WINDOW)
            .saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }
}

#[derive(Debug)]
struct Scope {
    requests: Window,
    tokens: Window,
    in_flight: Arc<AtomicU32>,
}

/// Counters of every scope seen by this gateway.
#[derive(Debug, Default)]
pub struct RateLimiter {
    scopes: Mutex<HashMap<String, Scope>>,
}

/// Held for the life of a request; releases its concurrency slots when dropped.
#[derive(Debug, Default)]
pub struct Permit {
    slots: Vec<Arc<AtomicU32>>,
    scopes: Vec<String>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        for slot in &self.slots {
            slot.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn unix_ms_after(d: Duration) -> i64 {
    crate::unix_now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl RateLimiter {
    /// Admits one request against every scope, or rejects it naming the first exhausted
    /// limit. Nothing is counted unless every scope admits it.
    pub fn admit(
        &self,
        scopes: &[(&'static str, &str, Limits)],
        estimated_tokens: u64,
        now: Instant,
    ) -> Result<Permit, Rejection> {
        let active: Vec<_> = scopes
            .iter()
            .filter(|(_, _, l)| !l.is_unlimited())
            .collect();
        if active.is_empty() {
            return Ok(Permit::default());
        }
        let mut map = self.scopes.lock().unwrap_or_else(PoisonError::into_inner);
        for (kind, id, limits) in &active {
            let scope = map.entry(format!("{kind}:{id}")).or_insert_with(|| Scope {
                requests: Window::new(now),
                tokens: Window::new(now),
                in_flight: Arc::new(AtomicU32::new(0)),
            });
            scope.requests.roll(now);
            scope.tokens.roll(now);
            let rpm = u64::from(limits.requests_per_minute);
            let used = scope.requests.count(now);
            if rpm > 0 && used >= rpm {
                let wait = scope.requests.until_next(now);
                return Err(Rejection {
                    scope: kind,
                    limit_name: "requests_per_minute",
                    limit: rpm,
                    remaining: 0,
                    retry_after: wait,
                    reset_unix_ms: unix_ms_after(wait),
                });
            }
            let tpm = limits.tokens_per_minute;
            let tokens = scope.tokens.count(now);
            if tpm > 0 && tokens.saturating_add(estimated_tokens.min(tpm)) > tpm {
                let wait = scope.tokens.until_next(now);
                return Err(Rejection {
                    scope: kind,
                    limit_name: "tokens_per_minute",
                    limit: tpm,
                    remaining: tpm.saturating_sub(tokens),
                    retry_after: wait,
                    reset_unix_ms: unix_ms_after(wait),
                });
            }
            let cap = limits.concurrent_requests;
            if cap > 0 && scope.in_flight.load(Ordering::Acquire) >= cap {
                let wait = Duration::from_secs(1);
                return Err(Rejection {
                    scope: kind,
                    limit_name: "concurrent_requests",
                    limit: u64::from(cap),
                    remaining: 0,
                    retry_after: wait,
                    reset_unix_ms: unix_ms_after(wait),
                });
            }
        }
        let mut permit = Permit::default();
        for (kind, id, limits) in active {
            let name = format!("{kind}:{id}");
            if let Some(scope) = map.get_mut(&name) {
                scope.requests.current += 1;
                if limits.concurrent_requests > 0 {
                    scope.in_flight.fetch_add(1, Ordering::AcqRel);
                    permit.slots.push(scope.in_flight.clone());
                }
                permit.scopes.push(name);
            }
        }
        Ok(permit)
    }

    /// Debits the tokens a finished request actually used.
    pub fn settle(&self, permit: &Permit, tokens: u64, now: Instant) {
        if permit.scopes.is_empty() || tokens == 0 {
            return;
        }
        let mut map = self.scopes.lock().unwrap_or_else(PoisonError::into_inner);
        for name in &permit.scopes {
            if let Some(scope) = map.get_mut(name) {
                scope.tokens.roll(now);
                scope.tokens.current = scope.tokens.current.saturating_add(tokens);
            }
        }
    }

    /// Remaining requests this minute in a scope, for `X-RateLimit-Remaining`.
    pub fn remaining_requests(
        &self,
        kind: &str,
        id: &str,
        limits: Limits,
        now: Instant,
    ) -> Option<u64> {
        let rpm = u64::from(limits.requests_per_minute);
        if rpm == 0 {
            return None;
        }
        let map = self.scopes.lock().unwrap_or_else(PoisonError::into_inner);
        let used = map
            .get(&format!("{kind}:{id}"))
            .map_or(0, |s| s.requests.count(now));
        Some(rpm.saturating_sub(used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpm(n: u32) -> Limits {
        Limits {
            requests_per_minute: n,
            ..Limits::default()
        }
    }

    #[test]
    fn requests_per_minute_with_a_sliding_window() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            l.admit(&[("key", "k", rpm(10))], 0, t0).unwrap();
        }
        let r = l.admit(&[("key", "k", rpm(10))], 0, t0).unwrap_err();
        assert_eq!(
            (r.scope, r.limit_name, r.limit, r.remaining),
            ("key", "requests_per_minute", 10, 0)
        );
        assert!(r.retry_after <= WINDOW);
        // Half-way into the next minute, half of last minute's ten still count.
        let t1 = t0 + WINDOW + WINDOW / 2;
        for _ in 0..5 {
            l.admit(&[("key", "k", rpm(10))], 0, t1).unwrap();
        }
        assert!(l.admit(&[("key", "k", rpm(10))], 0, t1).is_err());
        // Two minutes of quiet resets everything.
        let t2 = t0 + WINDOW * 4;
        assert_eq!(l.remaining_requests("key", "k", rpm(10), t2), Some(10));
    }

    #[test]
    fn a_rejected_request_counts_nowhere() {
        let l = RateLimiter::default();
        let t = Instant::now();
        l.admit(&[("org", "o", rpm(1))], 0, t).unwrap();
        assert!(
            l.admit(&[("key", "k", rpm(5)), ("org", "o", rpm(1))], 0, t)
                .is_err()
        );
        assert_eq!(l.remaining_requests("key", "k", rpm(5), t), Some(5));
    }

    #[test]
    fn tokens_are_debited_after_the_fact() {
        let l = RateLimiter::default();
        let t = Instant::now();
        let tpm = Limits {
            tokens_per_minute: 1000,
            ..Limits::default()
        };
        let p = l.admit(&[("key", "k", tpm)], 100, t).unwrap();
        l.settle(&p, 950, t);
        let r = l.admit(&[("key", "k", tpm)], 100, t).unwrap_err();
        assert_eq!((r.limit_name, r.remaining), ("tokens_per_minute", 50));
        // A small request still fits.
        l.admit(&[("key", "k", tpm)], 10, t).unwrap();
    }

    #[test]
    fn concurrency_slots_are_released_on_drop() {
        let l = RateLimiter::default();
        let t = Instant::now();
        let two = Limits {
            concurrent_requests: 2,
            ..Limits::default()
        };
        let a = l.admit(&[("key", "k", two)], 0, t).unwrap();
        let _b = l.admit(&[("key", "k", two)], 0, t).unwrap();
        assert_eq!(
            l.admit(&[("key", "k", two)], 0, t).unwrap_err().limit_name,
            "concurrent_requests"
        );
        drop(a);
        l.admit(&[("key", "k", two)], 0, t).unwrap();
    }

    #[test]
    fn shares_round_up_so_the_cluster_bound_is_limit_plus_n_minus_one() {
        let l = Limits {
            requests_per_minute: 10,
            tokens_per_minute: 1001,
            concurrent_requests: 1,
        };
        let s = l.share(3);
        assert_eq!(
            (
                s.requests_per_minute,
                s.tokens_per_minute,
                s.concurrent_requests
            ),
            (4, 334, 1)
        );
        assert!(
            u64::from(s.requests_per_minute) * 3 < 10 + 3,
            "at most limit + N - 1 across the cluster"
        );
        assert_eq!(l.share(0), l);
    }
}
