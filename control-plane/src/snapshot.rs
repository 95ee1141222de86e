//! Builds the `ConfigSnapshot` gateways receive, once per config version, shared by every
//! watcher of that version.

use std::sync::Arc;

use switchyard_proto::pb;
use tokio::sync::Mutex;

use crate::store::{ConfigData, KeyKind, Store, StoreResult};

pub fn build(data: ConfigData) -> pb::ConfigSnapshot {
    let provider_kind = |kind: &str| match kind {
        "openai" => pb::ProviderKind::Openai,
        "openai_compatible" => pb::ProviderKind::OpenaiCompatible,
        "echo" => pb::ProviderKind::Echo,
        _ => pb::ProviderKind::Unspecified,
    };
    let mut models: Vec<pb::Model> = data
        .models
        .iter()
        .map(|m| pb::Model {
            org_id: m.org_id.clone(),
            id: m.id.clone(),
            name: m.name.clone(),
            description: m.description.clone(),
            created_at_ms: m.created_at,
            context_length: u32::try_from(m.context_length).unwrap_or(u32::MAX),
            endpoints: Vec::new(),
        })
        .collect();
    for e in &data.endpoints {
        if let Some(model) = models
            .iter_mut()
            .find(|m| m.org_id == e.org_id && m.id == e.model_id)
        {
            model.endpoints.push(pb::Endpoint {
                id: e.id.clone(),
                provider_id: e.provider_id.clone(),
                upstream_model: e.upstream_model.clone(),
                context_length: u32::try_from(e.context_length).unwrap_or(u32::MAX),
                max_output_tokens: u32::try_from(e.max_output_tokens).unwrap_or(u32::MAX),
                prices: Some((&e.prices()).into()),
            });
        }
    }
    pb::ConfigSnapshot {
        version: data.version,
        generated_at_ms: crate::store::now_ms(),
        orgs: data
            .orgs
            .into_iter()
            .map(|o| pb::Org {
                id: o.id,
                name: o.name,
            })
            .collect(),
        api_keys: data
            .keys
            .into_iter()
            .map(|k| pb::ApiKey {
                kind: match k.kind() {
                    Some(KeyKind::Inference) => pb::KeyKind::Inference as i32,
                    Some(KeyKind::Management) => pb::KeyKind::Management as i32,
                    None => pb::KeyKind::Unspecified as i32,
                },
                hash: k.hash,
                org_id: k.org_id,
                name: k.name,
                disabled: k.disabled,
                expires_at_ms: k.expires_at,
                limit_nanos: k.limit_nanos,
                limit_reset: k.limit_reset.unwrap_or_default(),
            })
            .collect(),
        providers: data
            .providers
            .into_iter()
            .map(|p| pb::Provider {
                kind: provider_kind(&p.kind) as i32,
                id: p.id,
                org_id: p.org_id,
                slug: p.slug,
                name: p.name,
                base_url: p.base_url,
                api_key: p.api_key.unwrap_or_default(),
            })
            .collect(),
        models,
    }
}

/// The latest built snapshot; rebuilt only when the version moves.
pub struct SnapshotCache {
    store: Arc<dyn Store>,
    latest: Mutex<Option<Arc<pb::ConfigSnapshot>>>,
}

impl SnapshotCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            latest: Mutex::new(None),
        }
    }

    /// A snapshot at `version` or newer.
    pub async fn at_least(&self, version: u64) -> StoreResult<Arc<pb::ConfigSnapshot>> {
        let mut latest = self.latest.lock().await;
        if let Some(s) = latest.as_ref()
            && s.version >= version
        {
            return Ok(s.clone());
        }
        let built = Arc::new(build(self.store.load_config().await?));
        *latest = Some(built.clone());
        Ok(built)
    }
}
