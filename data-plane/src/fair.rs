//! Fair sharing of a provider credential's capacity between orgs. Operators set a
//! credential's concurrency (`max_concurrency` on its providers; orgs that configure the same
//! base URL and key share one pool). While the pool has room every request goes straight
//! through; when it is full, requests wait, and each freed slot goes to the waiting org with
//! the fewest requests in flight per unit of weight — so one tenant's burst cannot starve
//! another, and weights (`capacity_weight`) skew the split.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saturated {
    pub capacity: u32,
    pub waited: Duration,
}

#[derive(Debug, Default)]
struct Pool {
    capacity: u32,
    in_flight: u32,
    per_org: HashMap<String, u32>,
    waiting: VecDeque<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    org: String,
    weight: u32,
    wake: oneshot::Sender<()>,
}

impl Pool {
    /// The waiter whose org has the fewest in-flight requests per unit of weight; FIFO among
    /// equals, so no one waits forever.
    fn next_waiter(&mut self) -> Option<Waiter> {
        let load = |w: &Waiter| {
            f64::from(*self.per_org.get(&w.org).unwrap_or(&0)) / f64::from(w.weight.max(1))
        };
        let best = self
            .waiting
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| load(a).total_cmp(&load(b)))
            .map(|(i, _)| i)?;
        self.waiting.remove(best)
    }

    fn take(&mut self, org: &str) {
        self.in_flight += 1;
        *self.per_org.entry(org.to_owned()).or_default() += 1;
    }
}

#[derive(Debug, Default)]
pub struct FairShare {
    pools: Mutex<HashMap<String, Pool>>,
}

/// A slot in a credential's pool; freeing it hands the slot to the fairest waiter.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<FairShare>,
    pool: String,
    org: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut pools = self
            .owner
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(pool) = pools.get_mut(&self.pool) else {
            return;
        };
        pool.in_flight = pool.in_flight.saturating_sub(1);
        if let Some(n) = pool.per_org.get_mut(&self.org) {
            *n = n.saturating_sub(1);
        }
        // Hand the freed slot on; skip waiters that gave up.
        while pool.in_flight < pool.capacity {
            let Some(next) = pool.next_waiter() else {
                break;
            };
            pool.take(&next.org);
            if next.wake.send(()).is_ok() {
                break;
            }
            // The waiter timed out or went away: undo and try the next one.
            pool.in_flight -= 1;
            if let Some(n) = pool.per_org.get_mut(&next.org) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

impl FairShare {
    /// Waits (up to `max_wait`) for a slot in `pool` of size `capacity`.
    pub async fn acquire(
        self: &Arc<Self>,
        pool: &str,
        capacity: u32,
        org: &str,
        weight: u32,
        max_wait: Duration,
    ) -> Result<Slot, Saturated> {
        let granted = || Slot {
            owner: self.clone(),
            pool: pool.to_owned(),
            org: org.to_owned(),
        };
        let mut wait = {
            let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            let p = pools.entry(pool.to_owned()).or_default();
            p.capacity = capacity;
            if p.in_flight < p.capacity && p.waiting.is_empty() {
                p.take(org);
                return Ok(granted());
            }
            let (tx, rx) = oneshot::channel();
            p.waiting.push_back(Waiter {
                org: org.to_owned(),
                weight,
                wake: tx,
            });
            rx
        };
        let started = std::time::Instant::now();
        if let Ok(Ok(())) = tokio::time::timeout(max_wait, &mut wait).await {
            return Ok(granted());
        }
        // Grants happen under the lock: either one arrived just now, or we leave the queue.
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if wait.try_recv().is_ok() {
            return Ok(granted());
        }
        drop(wait);
        if let Some(p) = pools.get_mut(pool) {
            p.waiting.retain(|w| !w.wake.is_closed());
        }
        Err(Saturated {
            capacity,
            waited: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_from_one_org_does_not_starve_another() {
        let fair = Arc::new(FairShare::default());
        let wait = Duration::from_secs(5);
        // Org A fills the pool of 2 and queues 4 more; then B queues 2.
        let mut a_slots = Vec::new();
        for _ in 0..2 {
            a_slots.push(fair.acquire("cred", 2, "a", 1, wait).await.unwrap());
        }
        let mut a_waiting = Vec::new();
        for _ in 0..4 {
            let f = fair.clone();
            a_waiting.push(tokio::spawn(async move {
                f.acquire("cred", 2, "a", 1, wait).await
            }));
        }
        tokio::task::yield_now().await;
        let mut b_waiting = Vec::new();
        for _ in 0..2 {
            let f = fair.clone();
            b_waiting.push(tokio::spawn(async move {
                f.acquire("cred", 2, "b", 1, wait).await
            }));
        }
        // Let every waiter register.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // One slot frees: it goes to B (none in flight), ahead of A's four queued requests.
        drop(a_slots.pop());
        let b1 = b_waiting.remove(0).await.unwrap().unwrap();
        assert!(
            a_waiting.iter().all(|h| !h.is_finished()),
            "A's queue waits behind B"
        );
        // The next slot goes to A (now 0 in flight against B's 1)…
        drop(a_slots.pop());
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(a_waiting.iter().filter(|h| h.is_finished()).count(), 1);
        // …and when B's first request ends, B (0 in flight) goes before A's remaining three.
        drop(b1);
        let b2 = b_waiting.remove(0).await.unwrap().unwrap();
        assert_eq!(a_waiting.iter().filter(|h| h.is_finished()).count(), 1);
        drop(b2);
        for h in a_waiting {
            drop(h.await.unwrap().unwrap());
        }
    }

    #[tokio::test]
    async fn waiting_is_bounded() {
        let fair = Arc::new(FairShare::default());
        let _held = fair
            .acquire("cred", 1, "a", 1, Duration::from_secs(1))
            .await
            .unwrap();
        let err = fair
            .acquire("cred", 1, "b", 1, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(err.capacity, 1);
        drop(_held);
        // The pool is usable again and the timed-out waiter left no trace.
        let again = fair
            .acquire("cred", 1, "b", 1, Duration::from_millis(20))
            .await;
        assert!(again.is_ok());
    }
}
