//! gRPC services the gateways call: config distribution and usage ingestion. Every call
//! carries a node token (`authorization: Bearer …`), checked against the stored hashes and
//! the in-process token of an embedded gateway.

mod budget_service;
mod config_service;
mod usage_service;

use std::collections::HashSet;
use std::sync::Arc;

pub use budget_service::BudgetServiceImpl;
pub use config_service::ConfigServiceImpl;
pub use usage_service::UsageServiceImpl;

use crate::store::Store;

#[derive(Clone)]
pub struct NodeAuthenticator {
    store: Arc<dyn Store>,
    /// Hashes accepted without a database row (the embedded gateway of `switchyard serve`).
    local: Arc<HashSet<String>>,
}

impl NodeAuthenticator {
    pub fn new(store: Arc<dyn Store>, local_hashes: impl IntoIterator<Item = String>) -> Self {
        Self {
            store,
            local: Arc::new(local_hashes.into_iter().collect()),
        }
    }

    pub async fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| tonic::Status::unauthenticated("missing node token"))?;
        let hash = switchyard_proto::keys::sha256_hex(token.trim());
        if self.local.contains(&hash) || self.store.node_token_exists(&hash).await? {
            Ok(())
        } else {
            Err(tonic::Status::unauthenticated("unknown node token"))
        }
    }
}
