//! `UsageService.Report`: gateways stream usage batches; each batch is rated, written to
//! the ledger in one transaction (idempotent on request id) and acknowledged with its
//! highest sequence number only after it is durable.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use switchyard_proto::pb;
use switchyard_proto::pb::usage_service_server::UsageService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::NodeAuthenticator;
use crate::rating::Rater;
use crate::store::{Store, UsageBatchWrite};

pub struct UsageServiceImpl {
    pub store: Arc<dyn Store>,
    pub rater: Arc<Rater>,
    pub auth: NodeAuthenticator,
    /// Fires after each ingested batch, so `/generation` lookups can wait for a record.
    pub ingested: Arc<tokio::sync::Notify>,
    /// Ends open report streams so the server can stop; gateways resend what was not acked.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub metrics: Arc<crate::telemetry::ControlPlaneMetrics>,
    /// Where each report stream's batches are rated and written (`ingest_runtime`); `None`
    /// is the server's runtime.
    pub runtime: Option<tokio::runtime::Handle>,
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::UsageAck, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl UsageService for UsageServiceImpl {
    type ReportStream = AckStream;

    async fn report(
        &self,
        request: tonic::Request<tonic::Streaming<pb::UsageBatch>>,
    ) -> Result<tonic::Response<Self::ReportStream>, tonic::Status> {
        self.auth.check(&request).await?;
        let mut batches = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        let store = self.store.clone();
        let rater = self.rater.clone();
        let ingested = self.ingested.clone();
        let shutdown = self.shutdown.clone();
        let metrics = self.metrics.clone();
        let runtime = self
            .runtime
            .clone()
            .unwrap_or_else(tokio::runtime::Handle::current);
        runtime.spawn(async move {
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = batches.next() => next,
                };
                let Some(next) = next else { return };
                let batch = match next {
                    Ok(b) => b,
                    Err(status) => {
                        tracing::debug!(code = ?status.code(), "usage stream closed by the gateway");
                        return;
                    }
                };
                let Some(acked_seq) = batch.records.iter().map(|r| r.seq).max() else {
                    continue;
                };
                // Provisional (write-ahead) records of streams stay off the ledger until
                // their final record supersedes them or the sweeper settles them.
                let (provisional, finals): (Vec<pb::UsageRecord>, Vec<pb::UsageRecord>) =
                    batch.records.into_iter().partition(|r| r.provisional);
                let rows = rater.rate_batch(&batch.node_id, &finals).await;
                let held = rater.rate_batch(&batch.node_id, &provisional).await;
                let mut tags = crate::billing::tags::tag_rows(&finals, &rows);
                // A provisional record's tags are written too, for when it is settled.
                tags.extend(crate::billing::tags::tag_rows(&provisional, &held));
                let facts = crate::api::cache_stats::facts_of(&finals);
                let ingest = match rater.fee_postings(&rows).await {
                    // One transaction: a failure leaves the whole batch unacked, and the
                    // gateway sends it again.
                    Ok(fees) => {
                        store
                            .ingest_batch(&UsageBatchWrite {
                                tags: &tags,
                                cache_facts: &facts,
                                provisional: &held,
                                rows: &rows,
                                fees: &fees,
                            })
                            .await
                    }
                    Err(err) => Err(err),
                };
                metrics.observe_ingest(&ingest);
                let reply = match ingest {
                    Ok(outcome) => {
                        ingested.notify_waiters();
                        tracing::debug!(node_id = %batch.node_id, inserted = outcome.inserted, duplicates = outcome.duplicates, acked_seq, "usage batch ingested");
                        Ok(pb::UsageAck {
                            acked_seq,
                            inserted: outcome.inserted,
                            duplicates: outcome.duplicates,
                        })
                    }
                    // Not acked: the gateway keeps the records and sends them again.
                    Err(err) => {
                        tracing::warn!(node_id = %batch.node_id, error = %err, "ingesting a usage batch failed; the gateway will send it again");
                        Err(tonic::Status::from(err))
                    }
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
