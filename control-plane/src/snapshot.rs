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
        "anthropic" => pb::ProviderKind::Anthropic,
        "gemini" => pb::ProviderKind::Gemini,
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
                quantization: e.quantization.clone(),
                supported_parameters: e.supported_parameter_list().map(str::to_owned).collect(),
            });
        }
    }
    // Stored policies were validated on the way in; one that no longer parses is skipped
    // (logged) rather than withholding the whole snapshot.
    let routing_policy = |org_id: &str| {
        let (_, text) = data.routing_policies.iter().find(|(o, _)| o == org_id)?;
        match serde_json::from_str::<crate::routing_policy::RoutingPolicy>(text) {
            Ok(p) => Some(p.to_pb()),
            Err(err) => {
                tracing::error!(org_id, error = %err, "stored routing policy does not parse; ignoring it");
                None
            }
        }
    };
    let limits = |kind: &str, id: &str| {
        data.rate_limits
            .iter()
            .find(|l| l.scope_kind == kind && l.scope_id == id)
            .map(|l| pb::RateLimits {
                requests_per_minute: u32::try_from(l.requests_per_minute).unwrap_or(u32::MAX),
                tokens_per_minute: u64::try_from(l.tokens_per_minute).unwrap_or(0),
                concurrent_requests: u32::try_from(l.concurrent_requests).unwrap_or(u32::MAX),
                capacity_weight: u32::try_from(l.capacity_weight).unwrap_or(u32::MAX),
            })
    };
    pb::ConfigSnapshot {
        version: data.version,
        // Set per connection by the config service, which knows how many gateways watch.
        gateway_count: 1,
        generated_at_ms: crate::store::now_ms(),
        orgs: data
            .orgs
            .into_iter()
            .map(|o| pb::Org {
                rate_limits: limits("org", &o.id),
                routing_policy: routing_policy(&o.id),
                // Billing settings: `add_platform_fees`.
                platform_fee_bps: 0,
                id: o.id,
                name: o.name,
            })
            .collect(),
        api_keys: data
            .keys
            .into_iter()
            .map(|k| pb::ApiKey {
                rate_limits: limits("key", &k.hash),
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
                // Allowlists and owners: `add_access_policies`.
                ..Default::default()
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
                zero_data_retention: p.zero_data_retention,
                trains_on_prompts: p.trains_on_prompts,
                connect_timeout_ms: millis(p.connect_timeout_ms),
                first_byte_timeout_ms: millis(p.first_byte_timeout_ms),
                stream_idle_timeout_ms: millis(p.stream_idle_timeout_ms),
                max_concurrency: u32::try_from(p.max_concurrency.max(0)).unwrap_or(u32::MAX),
            })
            .collect(),
        models,
        ..Default::default()
    }
}

/// Fills in per-key owners and allowlists and the guardrail policies of every scope.
///
/// Read after `load_config`, so it may be a little newer than `version`; every change to
/// it bumps the version, so a snapshot that matches it follows at once.
pub async fn add_access_policies(
    snapshot: &mut pb::ConfigSnapshot,
    store: &dyn Store,
) -> StoreResult<()> {
    let policies: std::collections::HashMap<String, crate::store::KeyPolicy> = store
        .all_key_policies()
        .await?
        .into_iter()
        .map(|p| (p.hash.clone(), p))
        .collect();
    for key in &mut snapshot.api_keys {
        if let Some(p) = policies.get(&key.hash) {
            key.allowed_models.clone_from(&p.allowed_models);
            key.allowed_providers.clone_from(&p.allowed_providers);
            key.owner_user_id = p.owner_user_id.clone().unwrap_or_default();
            key.owner_team_id = p.owner_team_id.clone().unwrap_or_default();
        }
    }
    for row in store.all_guardrail_policies().await? {
        // Stored documents were validated on the way in; one that no longer parses is
        // skipped loudly rather than failing every gateway's snapshot.
        match serde_json::from_str::<crate::policy::PolicyDoc>(&row.policy) {
            Ok(doc) => snapshot.guardrails.push(pb::GuardrailScope {
                org_id: row.org_id,
                scope_kind: row.scope_kind,
                scope_id: row.scope_id,
                policy: Some(doc.to_pb()),
            }),
            Err(err) => {
                tracing::error!(org_id = %row.org_id, scope = %row.scope_kind, scope_id = %row.scope_id, error = %err, "skipping an unreadable guardrail policy")
            }
        }
    }
    Ok(())
}

/// Fills in each org's platform fee, so the cost a gateway reports to the client includes
/// it exactly as the ledger's `fee` posting does. One settings read per org: snapshots are
/// rebuilt only when the version moves, and a self-hosted install has few orgs.
pub async fn add_platform_fees(
    snapshot: &mut pb::ConfigSnapshot,
    store: &dyn Store,
) -> StoreResult<()> {
    for org in &mut snapshot.orgs {
        let bps = store.billing_settings(&org.id).await?.platform_fee_bps;
        org.platform_fee_bps =
            u32::try_from(bps.clamp(0, crate::billing::fees::MAX_FEE_BPS)).unwrap_or(0);
    }
    Ok(())
}

fn millis(ms: i64) -> u32 {
    u32::try_from(ms.max(0)).unwrap_or(u32::MAX)
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
        let mut snapshot = build(self.store.load_config().await?);
        add_access_policies(&mut snapshot, &*self.store).await?;
        add_platform_fees(&mut snapshot, &*self.store).await?;
        crate::budgets::add_to_snapshot(&mut snapshot, &*self.store).await?;
        let built = Arc::new(snapshot);
        *latest = Some(built.clone());
        Ok(built)
    }
}
