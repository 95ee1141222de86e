//! `BudgetService.Lease`: a gateway node reports what it consumed of its slices and asks for
//! more; each slice is granted in its own transaction (see `store::BudgetStore::lease`).

use std::sync::Arc;

use switchyard_proto::pb;
use switchyard_proto::pb::budget_service_server::BudgetService;

use super::NodeAuthenticator;
use crate::budgets::{self, DEAD_AFTER_MS, LEASE_TTL_MS};
use crate::store::{LeaseAsk, Store, StoreError, now_ms};

/// Slices one call may carry: a request needs at most one per applicable budget.
const MAX_SLICES: usize = 64;

pub struct BudgetServiceImpl {
    pub store: Arc<dyn Store>,
    pub auth: NodeAuthenticator,
}

impl BudgetServiceImpl {
    async fn slice(
        &self,
        node_id: &str,
        s: &pb::SliceRequest,
    ) -> Result<pb::SliceGrant, tonic::Status> {
        let refused = |error: String| pb::SliceGrant {
            budget_id: s.budget_id.clone(),
            error,
            ..Default::default()
        };
        let resolved = match budgets::resolve(&*self.store, &s.org_id, &s.budget_id).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => {
                return Ok(refused(format!(
                    "budget `{}` does not exist in org `{}`",
                    s.budget_id, s.org_id
                )));
            }
            Err(other) => return Err(other.into()),
        };
        let settings = self.store.get_budget_settings(&s.org_id).await?;
        let now = now_ms();
        let grant = self
            .store
            .lease(&LeaseAsk {
                org_id: s.org_id.clone(),
                budget_id: s.budget_id.clone(),
                node_id: node_id.to_owned(),
                scope: resolved.scope,
                limit_nanos: resolved.limit_nanos,
                window: resolved.window.bounds(now),
                reported_window: s.window_start_ms,
                consumed_nanos: s.consumed_nanos.max(0),
                want_nanos: s.want_nanos.max(0),
                release_nanos: s.release_nanos.max(0),
                max_per_gateway: settings.lease_max_per_gateway,
                max_per_org: settings.lease_max_per_org,
                now,
                ttl_ms: LEASE_TTL_MS,
                dead_after_ms: DEAD_AFTER_MS,
            })
            .await?;
        tracing::debug!(node_id, budget_id = %s.budget_id, granted_now = grant.granted_now, granted_total = grant.granted_total, spent = grant.spent, "budget lease");
        Ok(pb::SliceGrant {
            budget_id: s.budget_id.clone(),
            window_start_ms: grant.window_start,
            window_end_ms: grant.window_end,
            granted_total_nanos: grant.granted_total,
            consumed_nanos: grant.consumed,
            expires_at_ms: grant.expires_at,
            limit_nanos: resolved.limit_nanos,
            spent_nanos: grant.spent,
            others_outstanding_nanos: grant.others_outstanding,
            error: String::new(),
        })
    }
}

#[tonic::async_trait]
impl BudgetService for BudgetServiceImpl {
    async fn lease(
        &self,
        request: tonic::Request<pb::LeaseRequest>,
    ) -> Result<tonic::Response<pb::LeaseResponse>, tonic::Status> {
        self.auth.check(&request).await?;
        let request = request.into_inner();
        if request.node_id.is_empty() || request.node_id.len() > 200 {
            return Err(tonic::Status::invalid_argument(
                "node_id must be 1 to 200 characters",
            ));
        }
        if request.slices.len() > MAX_SLICES {
            return Err(tonic::Status::invalid_argument(format!(
                "at most {MAX_SLICES} slices per call, got {}",
                request.slices.len()
            )));
        }
        let mut grants = Vec::with_capacity(request.slices.len());
        for slice in &request.slices {
            grants.push(self.slice(&request.node_id, slice).await?);
        }
        Ok(tonic::Response::new(pb::LeaseResponse { grants }))
    }
}
