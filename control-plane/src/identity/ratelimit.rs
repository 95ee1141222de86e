//! Login attempts per client address, in memory (per replica). The per-account lockout in
//! the database is the defence that holds across replicas; this bounds how fast one address
//! can try passwords against many accounts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);
pub const MAX_ATTEMPTS_PER_WINDOW: u32 = 20;
/// Consecutive failures that lock an account, and for how long.
pub const MAX_FAILURES: i64 = 5;
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Default)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<Option<IpAddr>, (Instant, u32)>>,
}

impl LoginLimiter {
    /// Counts one attempt from `ip`; false when the address is over its budget.
    pub fn try_acquire(&self, ip: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else {
            return true;
        };
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= MAX_ATTEMPTS_PER_WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_budget_is_refused_others_are_not() {
        let limiter = LoginLimiter::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..MAX_ATTEMPTS_PER_WINDOW {
            assert!(limiter.try_acquire(a));
        }
        assert!(!limiter.try_acquire(a));
        assert!(limiter.try_acquire(b));
    }
}
