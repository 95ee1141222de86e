//! `ConfigService`: each watcher gets the current snapshot at once, then every newer one
//! within moments of the commit that made it.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use switchyard_proto::pb;
use switchyard_proto::pb::config_service_server::ConfigService;
use tokio_util::sync::CancellationToken;

use super::NodeAuthenticator;
use crate::snapshot::SnapshotCache;
use crate::store::{NodeAck, Store};

pub struct ConfigServiceImpl {
    pub store: Arc<dyn Store>,
    pub cache: Arc<SnapshotCache>,
    pub auth: NodeAuthenticator,
    pub shutdown: CancellationToken,
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
        let changes = self.store.config_changes();
        let cache = self.cache.clone();
        let shutdown = self.shutdown.clone();
        // State: the change feed and the version last sent (0 = nothing yet).
        let stream = futures_util::stream::unfold((changes, 0u64), move |(mut changes, sent)| {
            let cache = cache.clone();
            let shutdown = shutdown.clone();
            async move {
                if sent > 0 {
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        r = changes.wait_for(|v| *v > sent) => { r.ok()?; }
                    }
                }
                let wanted = (*changes.borrow()).max(sent + 1);
                match cache.at_least(wanted).await {
                    Ok(snapshot) => {
                        let version = snapshot.version;
                        Some((Ok((*snapshot).clone()), (changes, version)))
                    }
                    Err(err) => Some((Err(tonic::Status::from(err)), (changes, sent))),
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
        self.store
            .record_node_ack(&NodeAck {
                node_id: ack.node_id,
                version: ack.version,
                ok: ack.ok,
                error: ack.error,
                node_info: String::new(),
            })
            .await?;
        Ok(tonic::Response::new(pb::ConfigAckReply {}))
    }
}
