//! The spool's disk cap. When the control plane is unreachable for long, unacknowledged
//! usage piles up on disk; the cap bounds those bytes (acknowledged records still in the
//! active segment add at most one 8 MiB segment until it rotates).
//!
//! At the cap the gateway refuses NEW generations with 503 `spool_full` (and
//! `Retry-After`), while every record of a request already admitted is still written: the
//! cap is soft by at most the in-flight requests' records. That is the safe choice for
//! billing: serving a request whose usage cannot be recorded durably would give spend away
//! and let budgets be overrun, whereas a 503 is retried by clients and load balancers (on
//! another gateway, or here once the spool drains). Records are never dropped.
//!
//! At 80 % of the cap a warning is logged (once per crossing); the spool's size, the cap
//! and the refusals are metrics.

use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;

use super::spool::Spool;
use crate::error::ApiError;

/// Default cap: 1 GiB of unacknowledged usage records.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// Fraction of the cap at which the warning is logged.
const WARN_FRACTION: f64 = 0.8;

pub struct SpoolGate {
    /// Weak, like the metrics' handle: the spool's file lock goes with the node's tasks.
    spool: Weak<Spool>,
    max_bytes: u64,
    warned: AtomicBool,
    refused: Counter,
}

impl std::fmt::Debug for SpoolGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolGate")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl SpoolGate {
    /// `max_bytes == 0` disables the cap.
    pub fn new(spool: Weak<Spool>, max_bytes: u64, refused: Counter) -> Self {
        Self {
            spool,
            max_bytes,
            warned: AtomicBool::new(false),
            refused,
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Admission for a new generation: refused while the spool is at or over its cap.
    pub fn admit(&self) -> Result<(), ApiError> {
        if self.max_bytes == 0 {
            return Ok(());
        }
        let Some(spool) = self.spool.upgrade() else {
            return Ok(());
        };
        let bytes = spool.pending_bytes();
        self.observe(bytes);
        if bytes >= self.max_bytes {
            self.refused.inc();
            return Err(ApiError::SpoolFull {
                bytes,
                max_bytes: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Logs once when the spool crosses 80 % of the cap, and again after it fell back
    /// below 70 % and rose again (hysteresis keeps a spool hovering at the line quiet).
    pub fn observe(&self, bytes: u64) {
        if self.max_bytes == 0 {
            return;
        }
        let fill = bytes as f64 / self.max_bytes as f64;
        if fill >= WARN_FRACTION {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    spool_bytes = bytes,
                    spool_max_bytes = self.max_bytes,
                    "usage spool is at {:.0} % of its disk cap: the control plane is not acknowledging usage; new requests will get 503 at the cap",
                    fill * 100.0
                );
            }
        } else if fill < WARN_FRACTION - 0.1 && self.warned.swap(false, Ordering::Relaxed) {
            tracing::info!(
                spool_bytes = bytes,
                "usage spool is back below its warning level"
            );
        }
    }
}
