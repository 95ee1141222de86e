//! `ConfigService`: each watcher gets the current snapshot at once, then every newer one
//! within moments of the commit that made it.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use switchyard_proto::pb;
use switchyard_proto::pb::config_service_server::ConfigService;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::NodeAuthenticator;
use crate::snapshot::SnapshotCache;
use crate::store::{NodeAck, Store};

pub struct ConfigServiceImpl {
    pub store: Arc<dyn Store>,
    pub cache: Arc<SnapshotCache>,
    pub auth: NodeAuthenticator,
    pub shutdown: CancellationToken,
    /// Gateways watching right now; each enforces 1/n of every rate limit.
    pub watchers: Arc<watch::Sender<u32>>,
}

/// Counts a watcher for as long as its stream lives.
struct WatcherGuard(Arc<watch::Sender<u32>>);

impl WatcherGuard {
    fn new(watchers: Arc<watch::Sender<u32>>) -> Self {
        watchers.send_modify(|n| *n += 1);
        Self(watchers)
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

struct WatchState {
    changes: watch::Receiver<u64>,
    watchers: watch::Receiver<u32>,
    sent_version: u64,
    sent_count: u32,
    _guard: WatcherGuard,
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::ConfigSnapshot, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl ConfigService for ConfigServiceImpl {
    type WatchStream = SnapshotStream;

    async fn watch(
        &self,
        request: tonic::Request<pb::WatchRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        self.auth.check(&request).await?;
        let watch = request.into_inner();
        tracing::info!(node_id = %watch.node_id, last_applied = watch.last_applied_version, "gateway watching config");
        if !watch.node_info.is_empty() {
            // Register the node so the console lists it before its first ack.
            let ack = NodeAck {
                node_id: watch.node_id.clone(),
                version: watch.last_applied_version,
                ok: true,
                error: String::new(),
                node_info: watch.node_info.clone(),
            };
            self.store.record_node_ack(&ack).await?;
        }
        let cache = self.cache.clone();
        let shutdown = self.shutdown.clone();
        let state = WatchState {
            changes: self.store.config_changes(),
            watchers: self.watchers.subscribe(),
            sent_version: 0,
            sent_count: 0,
            _guard: WatcherGuard::new(self.watchers.clone()),
        };
        // Sends a snapshot at once, then whenever the config version moves or the number of
        // watching gateways changes (their rate-limit shares move with it).
        let stream = futures_util::stream::unfold(state, move |mut st| {
            let cache = cache.clone();
            let shutdown = shutdown.clone();
            async move {
                if st.sent_version > 0 {
                    let sent = st.sent_version;
                    let count = st.sent_count;
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        r = st.changes.wait_for(|v| *v > sent) => { r.ok()?; }
                        r = st.watchers.wait_for(|n| *n != count) => { r.ok()?; }
                    }
                }
                let wanted = (*st.changes.borrow()).max(st.sent_version.max(1));
                match cache.at_least(wanted).await {
                    Ok(snapshot) => {
                        let mut message = (*snapshot).clone();
                        let count = (*st.watchers.borrow()).max(1);
                        message.gateway_count = count;
                        st.sent_version = message.version;
                        st.sent_count = count;
                        Some((Ok(message), st))
                    }
                    Err(err) => Some((Err(tonic::Status::from(err)), st)),
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn ack_config(
        &self,
        request: tonic::Request<pb::ConfigAck>,
    ) -> Result<tonic::Response<pb::ConfigAckReply>, tonic::Status> {
        self.auth.check(&request).await?;
        let ack = request.into_inner();
        if ack.ok {
            tracing::info!(node_id = %ack.node_id, version = ack.version, "gateway applied config");
        } else {
            tracing::warn!(node_id = %ack.node_id, version = ack.version, error = %ack.error, "gateway rejected config");
        }
        // The gateway runs (or rejected) this version whether or not it waits for the reply:
        // one that stops mid-ack must not cancel the record of it.
        let store = self.store.clone();
        let recorded = tokio::spawn(async move {
            crate::audit::record_config_ack(&*store, &ack.node_id, ack.version, ack.ok, &ack.error)
                .await;
            store
                .record_node_ack(&NodeAck {
                    node_id: ack.node_id,
                    version: ack.version,
                    ok: ack.ok,
                    error: ack.error,
                    node_info: String::new(),
                })
                .await
        });
        match recorded.await {
            Ok(result) => result?,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => return Err(tonic::Status::unavailable("the control plane is stopping")),
        }
        Ok(tonic::Response::new(pb::ConfigAckReply {}))
    }
}
