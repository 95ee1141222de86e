//! Shared request state. The config snapshot is swapped atomically as a whole, so every
//! request sees one consistent version.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::limits::RateLimiter;
use crate::metering::meter::Meter;
use crate::routing::HealthTable;
use crate::snapshot::Snapshot;
use crate::upstream::Upstream;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub live: Arc<ArcSwapOption<Snapshot>>,
    pub upstream: Upstream,
    pub meter: Meter,
    pub node_id: Arc<str>,
    /// Where management routes are forwarded; `None` answers them with 404.
    pub control_plane_http: Option<crate::api::forward::ControlPlaneHttp>,
    /// Streaming relays outlive their handler; tracked so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// What this node has learned about each endpoint from live traffic.
    pub health: HealthTable,
    /// This node's share of every key's and org's rate limits.
    pub limiter: RateLimiter,
    /// This node's slices of spend budgets (leased from the control plane).
    pub budgets: crate::budget::Budgets,
    /// Fair sharing of provider credentials' capacity between orgs.
    pub fair: Arc<crate::fair::FairShare>,
    /// The response cache (in memory, or shared through Redis).
    pub response_cache: Arc<crate::cache::ResponseCache>,
    /// Which endpoint holds each live conversation's provider prompt cache.
    pub sticky: crate::routing::sticky::StickyTable,
    /// Per-conversation system-prompt fingerprints, for the dynamic-prompt warning.
    pub prompt_watch: crate::cache::warning::PromptWatch,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    pub fn snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        self.live.load_full().ok_or(ApiError::NotReady)
    }
}
