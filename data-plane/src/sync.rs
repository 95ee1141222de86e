//! Config sync: follows the control plane's `ConfigService.Watch` stream, validates each
//! snapshot, publishes it with one atomic swap and acks it. Reconnects with jittered
//! backoff forever; while disconnected the gateway keeps serving its last good snapshot.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use switchyard_proto::pb;
use switchyard_proto::pb::config_service_client::ConfigServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::Instrument as _;

use crate::auth_interceptor::NodeAuth;
use crate::snapshot::Snapshot;
use crate::telemetry::otel;

pub struct SyncConfig {
    pub node_id: String,
    pub node_info: String,
    pub auth: NodeAuth,
    pub max_backoff: Duration,
    pub applied: tokio::sync::watch::Sender<u64>,
    pub gateway_count: tokio::sync::watch::Sender<u32>,
}

/// Runs until `shutdown` fires.
pub async fn run_config_sync(
    channel: Channel,
    live: Arc<ArcSwapOption<Snapshot>>,
    config: SyncConfig,
    shutdown: CancellationToken,
) {
    let mut client = ConfigServiceClient::with_interceptor(channel, config.auth.clone());
    let mut backoff = Backoff::new(config.max_backoff);
    loop {
        let applied = live.load().as_ref().map_or(0, |s| s.version);
        let request = pb::WatchRequest {
            node_id: config.node_id.clone(),
            last_applied_version: applied,
            node_info: config.node_info.clone(),
        };
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            r = follow(&mut client, request, &live, &config, &mut backoff) => r,
        };
        if let Err(status) = outcome {
            tracing::warn!(code = ?status.code(), message = status.message(), "config watch interrupted; serving the last good snapshot");
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

async fn follow(
    client: &mut ConfigServiceClient<
        tonic::service::interceptor::InterceptedService<Channel, NodeAuth>,
    >,
    request: pb::WatchRequest,
    live: &ArcSwapOption<Snapshot>,
    config: &SyncConfig,
    backoff: &mut Backoff,
) -> Result<(), tonic::Status> {
    let span = otel::grpc_client_span("ConfigService", "Watch");
    let mut request = tonic::Request::new(request);
    otel::inject_grpc(&span, request.metadata_mut());
    let mut stream = client.watch(request).instrument(span).await?.into_inner();
    while let Some(message) = stream.message().await? {
        backoff.reset();
        let version = message.version;
        let current = live.load().as_ref().map_or(0, |s| s.version);
        if version < current {
            // An older control-plane replica; never move backwards.
            tracing::warn!(version, current, "ignoring an older config snapshot");
            continue;
        }
        let gateways = message.gateway_count.max(1);
        let ack = match Snapshot::try_from(message) {
            Ok(snapshot) => {
                live.store(Some(Arc::new(snapshot)));
                config.gateway_count.send_replace(gateways);
                config.applied.send_replace(version);
                tracing::info!(version, "applied config snapshot");
                pb::ConfigAck {
                    node_id: config.node_id.clone(),
                    version,
                    ok: true,
                    error: String::new(),
                }
            }
            Err(err) => {
                tracing::error!(version, error = %err, "rejected config snapshot; keeping the last good one");
                pb::ConfigAck {
                    node_id: config.node_id.clone(),
                    version,
                    ok: false,
                    error: err.to_string(),
                }
            }
        };
        let span = otel::grpc_client_span("ConfigService", "AckConfig");
        let mut ack = tonic::Request::new(ack);
        otel::inject_grpc(&span, ack.metadata_mut());
        if let Err(status) = client.ack_config(ack).instrument(span).await {
            tracing::warn!(
                version,
                message = status.message(),
                "could not ack config snapshot"
            );
        }
    }
    Err(tonic::Status::unavailable("config stream ended"))
}

/// Exponential backoff with full jitter.
pub struct Backoff {
    attempt: u32,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self { attempt: 0, max }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = Duration::from_millis(100).saturating_mul(1u32 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let capped = base.min(self.max);
        capped.mul_f64(0.5 + rand_unit() * 0.5)
    }
}

fn rand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is randomly seeded per instance: enough jitter without a new dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    #[allow(clippy::cast_precision_loss)]
    let v = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
