//! The validated, in-memory form of a `pb::ConfigSnapshot`, with the lookup tables the hot
//! path needs built once per snapshot. A snapshot is accepted or rejected as a whole.

use foldhash::{HashMap, HashMapExt};
use std::fmt;
use std::sync::Arc;

use switchyard_proto::keys::KeyHash;

use crate::limits::Limits;
use switchyard_proto::{PriceSheet, pb};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config snapshot: {0}")]
pub struct SnapshotError(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Inference,
    Management,
}

#[derive(Debug)]
pub struct KeyEntry {
    pub hash: String,
    pub org_id: Arc<str>,
    pub name: String,
    pub kind: KeyKind,
    pub disabled: bool,
    pub expires_at_ms: Option<i64>,
    pub limit_nanos: Option<i64>,
    pub limit_reset: String,
    /// This gateway's share of the key's rate limits.
    pub rate_limits: Limits,
    /// Owner of the key: a user or a team of the org (both `None` = the org itself).
    pub owner_user_id: Option<String>,
    pub owner_team_id: Option<String>,
    /// Everything that applies to this key's requests, combined: the org's, the owning
    /// team's and the key's guardrail policies and the key's own allowlists.
    pub guardrails: Arc<crate::guardrails::Policy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    OpenAiCompatible,
    Echo,
    Anthropic,
    Gemini,
}

/// A provider credential; `Debug` never prints it.
#[derive(Clone, Default)]
pub struct Credential(String);

impl Credential {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Credential(none)"
        } else {
            "Credential(***)"
        })
    }
}

#[derive(Debug)]
pub struct ProviderEntry {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash.
    pub base_url: String,
    pub credential: Credential,
    pub zero_data_retention: bool,
    pub trains_on_prompts: bool,
    pub timeouts: ProviderTimeouts,
    /// The shared capacity pool of this provider's credential: (pool id, this gateway's
    /// share of its concurrency), when the operator set one.
    pub capacity_pool: Option<(String, u32)>,
}

/// Per-provider timeouts; `None` uses the gateway's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderTimeouts {
    pub connect: Option<std::time::Duration>,
    pub first_byte: Option<std::time::Duration>,
    pub stream_idle: Option<std::time::Duration>,
}

fn millis(ms: u32) -> Option<std::time::Duration> {
    (ms > 0).then(|| std::time::Duration::from_millis(u64::from(ms)))
}

#[derive(Debug)]
pub struct EndpointEntry {
    pub id: String,
    pub provider: Arc<ProviderEntry>,
    pub upstream_model: String,
    pub context_length: u32,
    pub max_output_tokens: u32,
    pub prices: PriceSheet,
    pub quantization: String,
    /// Empty: the operator did not restrict which parameters the endpoint honours.
    pub supported_parameters: Vec<String>,
}

#[derive(Debug)]
pub struct ModelEntry {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at_ms: i64,
    pub context_length: u32,
    pub endpoints: Vec<Arc<EndpointEntry>>,
}

/// Highest platform fee (100 %), as the control plane caps it.
pub const MAX_FEE_BPS: u32 = 10_000;

#[derive(Debug, Default)]
pub struct OrgCatalog {
    pub name: String,
    /// This gateway's share of the org's rate limits.
    pub rate_limits: Limits,
    /// The org's weight when shared provider capacity is contended.
    pub capacity_weight: u32,
    /// The org's routing defaults, folded into every request's preferences.
    pub routing_policy: Option<pb::RoutingPolicy>,
    /// The org's budgets and lease policy (empty when it has none).
    pub budgets: Arc<crate::budget::OrgBudgets>,
    /// The org's platform fee in basis points of provider cost, added to the cost clients
    /// see exactly as the control plane's ledger `fee` posting adds it.
    pub platform_fee_bps: u32,
    /// Sorted by id, for stable listings.
    pub models: Vec<Arc<ModelEntry>>,
    by_id: HashMap<String, Arc<ModelEntry>>,
}

impl OrgCatalog {
    pub fn model(&self, id: &str) -> Option<&Arc<ModelEntry>> {
        self.by_id.get(id)
    }
}

#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: u64,
    /// Gateways sharing the rate limits when this snapshot was sent.
    pub gateway_count: u32,
    keys: HashMap<String, Arc<KeyEntry>>,
    orgs: HashMap<String, OrgCatalog>,
}

impl Snapshot {
    pub fn key(&self, hash: &KeyHash) -> Option<&Arc<KeyEntry>> {
        self.keys.get(hash.as_str())
    }

    pub fn org(&self, org_id: &str) -> Option<&OrgCatalog> {
        self.orgs.get(org_id)
    }
}

fn invalid(msg: impl Into<String>) -> SnapshotError {
    SnapshotError(msg.into())
}

type GuardrailScopes = HashMap<(String, String, String), crate::guardrails::Policy>;

/// Compiles every scope's guardrail policy, keyed by (org, scope kind, scope id). A policy
/// that does not compile rejects the snapshot, like any other invalid part.
fn guardrail_scopes(list: &[pb::GuardrailScope]) -> Result<GuardrailScopes, SnapshotError> {
    let mut scopes = HashMap::with_capacity(list.len());
    for g in list {
        let policy = crate::guardrails::Policy::from_pb(&g.policy.clone().unwrap_or_default())
            .map_err(|e| invalid(format!("{} {} guardrails: {e}", g.scope_kind, g.scope_id)))?;
        scopes.insert(
            (g.org_id.clone(), g.scope_kind.clone(), g.scope_id.clone()),
            policy,
        );
    }
    Ok(scopes)
}

/// Org ∩ owning team ∩ key policy ∩ the key's allowlists.
fn key_guardrails(scopes: &GuardrailScopes, key: &pb::ApiKey) -> crate::guardrails::Policy {
    let scope =
        |kind: &str, id: &str| scopes.get(&(key.org_id.clone(), kind.to_owned(), id.to_owned()));
    let mut policy =
        crate::guardrails::Policy::allowlists(&key.allowed_models, &key.allowed_providers);
    for extra in [
        scope("org", &key.org_id),
        scope("team", &key.owner_team_id),
        scope("key", &key.hash),
    ]
    .into_iter()
    .flatten()
    {
        policy = policy.merge(extra);
    }
    policy
}

impl TryFrom<pb::ConfigSnapshot> for Snapshot {
    type Error = SnapshotError;

    fn try_from(pb: pb::ConfigSnapshot) -> Result<Self, Self::Error> {
        let gateways = pb.gateway_count.max(1);
        let share = |l: Option<&pb::RateLimits>| {
            l.map_or_else(Limits::default, |l| {
                Limits {
                    requests_per_minute: l.requests_per_minute,
                    tokens_per_minute: l.tokens_per_minute,
                    concurrent_requests: l.concurrent_requests,
                }
                .share(gateways)
            })
        };
        let mut orgs: HashMap<String, OrgCatalog> = HashMap::new();
        let mut org_ids: HashMap<String, Arc<str>> = HashMap::new();
        for org in pb.orgs {
            if org.id.is_empty() {
                return Err(invalid("an org has an empty id"));
            }
            org_ids.insert(org.id.clone(), Arc::from(org.id.as_str()));
            orgs.insert(
                org.id,
                OrgCatalog {
                    name: org.name,
                    rate_limits: share(org.rate_limits.as_ref()),
                    capacity_weight: org
                        .rate_limits
                        .as_ref()
                        .map_or(1, |l| l.capacity_weight.max(1)),
                    routing_policy: org.routing_policy.clone(),
                    platform_fee_bps: org.platform_fee_bps.min(MAX_FEE_BPS),
                    ..OrgCatalog::default()
                },
            );
        }

        let budgets = crate::budget::from_snapshot(&pb.org_budgets, |id| orgs.contains_key(id))
            .map_err(invalid)?;
        for (org_id, b) in budgets {
            if let Some(org) = orgs.get_mut(&org_id) {
                org.budgets = b;
            }
        }

        let scopes = guardrail_scopes(&pb.guardrails)?;
        let mut keys = HashMap::with_capacity(pb.api_keys.len());
        for key in pb.api_keys {
            if KeyHash::parse(&key.hash).is_none() {
                return Err(invalid(format!(
                    "key hash `{}` is not 64 lowercase hex",
                    key.hash
                )));
            }
            let org_id = org_ids.get(&key.org_id).cloned().ok_or_else(|| {
                invalid(format!(
                    "key {} names unknown org `{}`",
                    key.hash, key.org_id
                ))
            })?;
            let kind = match pb::KeyKind::try_from(key.kind) {
                Ok(pb::KeyKind::Inference) => KeyKind::Inference,
                Ok(pb::KeyKind::Management) => KeyKind::Management,
                _ => {
                    return Err(invalid(format!(
                        "key {} has unknown kind {}",
                        key.hash, key.kind
                    )));
                }
            };
            let guardrails = Arc::new(key_guardrails(&scopes, &key));
            let entry = KeyEntry {
                hash: key.hash.clone(),
                org_id,
                name: key.name,
                kind,
                disabled: key.disabled,
                expires_at_ms: key.expires_at_ms,
                limit_nanos: key.limit_nanos,
                limit_reset: key.limit_reset,
                rate_limits: share(key.rate_limits.as_ref()),
                guardrails,
                owner_user_id: Some(key.owner_user_id).filter(|o| !o.is_empty()),
                owner_team_id: Some(key.owner_team_id).filter(|o| !o.is_empty()),
            };
            if keys.insert(key.hash.clone(), Arc::new(entry)).is_some() {
                return Err(invalid(format!("key {} appears twice", key.hash)));
            }
        }

        let mut providers: HashMap<(String, String), Arc<ProviderEntry>> = HashMap::new();
        for p in pb.providers {
            if !orgs.contains_key(&p.org_id) {
                return Err(invalid(format!(
                    "provider `{}` names unknown org `{}`",
                    p.slug, p.org_id
                )));
            }
            let kind = match pb::ProviderKind::try_from(p.kind) {
                Ok(pb::ProviderKind::Openai) => ProviderKind::OpenAi,
                Ok(pb::ProviderKind::OpenaiCompatible) => ProviderKind::OpenAiCompatible,
                Ok(pb::ProviderKind::Echo) => ProviderKind::Echo,
                Ok(pb::ProviderKind::Anthropic) => ProviderKind::Anthropic,
                Ok(pb::ProviderKind::Gemini) => ProviderKind::Gemini,
                _ => {
                    return Err(invalid(format!(
                        "provider `{}` has unknown kind {}",
                        p.slug, p.kind
                    )));
                }
            };
            if kind != ProviderKind::Echo {
                let url = reqwest::Url::parse(&p.base_url).map_err(|e| {
                    invalid(format!(
                        "provider `{}` base URL `{}`: {e}",
                        p.slug, p.base_url
                    ))
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(invalid(format!(
                        "provider `{}` base URL must be http(s)",
                        p.slug
                    )));
                }
            }
            // The pool is the credential itself, whichever org configured it.
            let capacity_pool = (p.max_concurrency > 0).then(|| {
                let id = switchyard_proto::keys::sha256_hex(&format!(
                    "{}\n{}",
                    p.base_url.trim_end_matches('/'),
                    p.api_key
                ));
                (id, p.max_concurrency.div_ceil(gateways))
            });
            let entry = ProviderEntry {
                id: p.id.clone(),
                slug: p.slug,
                name: p.name,
                kind,
                base_url: p.base_url.trim_end_matches('/').to_owned(),
                credential: Credential(p.api_key),
                zero_data_retention: p.zero_data_retention,
                trains_on_prompts: p.trains_on_prompts,
                capacity_pool,
                timeouts: ProviderTimeouts {
                    connect: millis(p.connect_timeout_ms),
                    first_byte: millis(p.first_byte_timeout_ms),
                    stream_idle: millis(p.stream_idle_timeout_ms),
                },
            };
            providers.insert((p.org_id, p.id), Arc::new(entry));
        }

        for m in pb.models {
            let catalog = orgs.get_mut(&m.org_id).ok_or_else(|| {
                invalid(format!("model `{}` names unknown org `{}`", m.id, m.org_id))
            })?;
            let mut endpoints = Vec::with_capacity(m.endpoints.len());
            for e in m.endpoints {
                let provider = providers
                    .get(&(m.org_id.clone(), e.provider_id.clone()))
                    .cloned()
                    .ok_or_else(|| {
                        invalid(format!(
                            "model `{}` endpoint uses unknown provider `{}`",
                            m.id, e.provider_id
                        ))
                    })?;
                let prices = e.prices.as_ref().map(PriceSheet::from).unwrap_or_default();
                if [
                    prices.input,
                    prices.output,
                    prices.cache_read,
                    prices.cache_write_5m,
                    prices.cache_write_1h,
                    prices.per_request_nanos,
                ]
                .iter()
                .any(|p| *p < 0)
                {
                    return Err(invalid(format!("model `{}` has a negative price", m.id)));
                }
                endpoints.push(Arc::new(EndpointEntry {
                    id: e.id,
                    provider,
                    upstream_model: e.upstream_model,
                    context_length: e.context_length,
                    max_output_tokens: e.max_output_tokens,
                    prices,
                    quantization: e.quantization,
                    supported_parameters: e.supported_parameters,
                }));
            }
            let entry = Arc::new(ModelEntry {
                id: m.id.clone(),
                name: m.name,
                description: m.description,
                created_at_ms: m.created_at_ms,
                context_length: m.context_length,
                endpoints,
            });
            if catalog.by_id.insert(m.id.clone(), entry.clone()).is_some() {
                return Err(invalid(format!(
                    "model `{}` appears twice in org `{}`",
                    m.id, m.org_id
                )));
            }
            catalog.models.push(entry);
        }
        for catalog in orgs.values_mut() {
            catalog.models.sort_by(|a, b| a.id.cmp(&b.id));
        }

        Ok(Snapshot {
            version: pb.version,
            gateway_count: gateways,
            keys,
            orgs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> pb::ConfigSnapshot {
        pb::ConfigSnapshot {
            version: 7,
            generated_at_ms: 0,
            orgs: vec![pb::Org {
                id: "o1".into(),
                name: "Org".into(),
                ..Default::default()
            }],
            api_keys: vec![pb::ApiKey {
                hash: "a".repeat(64),
                org_id: "o1".into(),
                name: "k".into(),
                kind: pb::KeyKind::Inference as i32,
                ..Default::default()
            }],
            providers: vec![pb::Provider {
                id: "p1".into(),
                org_id: "o1".into(),
                slug: "openai".into(),
                name: "OpenAI".into(),
                kind: pb::ProviderKind::Openai as i32,
                base_url: "https://api.openai.com/v1/".into(),
                api_key: "sk-secret".into(),
                ..Default::default()
            }],
            models: vec![pb::Model {
                org_id: "o1".into(),
                id: "openai/gpt-4o-mini".into(),
                endpoints: vec![pb::Endpoint {
                    id: "e1".into(),
                    provider_id: "p1".into(),
                    upstream_model: "gpt-4o-mini".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_valid_snapshot_and_indexes_it() {
        let snap = Snapshot::try_from(valid()).unwrap();
        assert_eq!(snap.version, 7);
        let key = snap.key(&KeyHash::parse(&"a".repeat(64)).unwrap()).unwrap();
        assert_eq!(&*key.org_id, "o1");
        let model = snap.org("o1").unwrap().model("openai/gpt-4o-mini").unwrap();
        assert_eq!(
            model.endpoints[0].provider.base_url,
            "https://api.openai.com/v1"
        );
        assert!(!format!("{:?}", model.endpoints[0].provider).contains("sk-secret"));
    }

    #[test]
    fn rejects_dangling_references_and_bad_values() {
        let mut s = valid();
        s.api_keys[0].org_id = "nope".into();
        assert!(
            Snapshot::try_from(s)
                .unwrap_err()
                .to_string()
                .contains("unknown org")
        );

        let mut s = valid();
        s.models[0].endpoints[0].provider_id = "p404".into();
        assert!(
            Snapshot::try_from(s)
                .unwrap_err()
                .to_string()
                .contains("unknown provider")
        );

        let mut s = valid();
        s.providers[0].base_url = "ftp://x".into();
        assert!(Snapshot::try_from(s).is_err());

        let mut s = valid();
        s.api_keys[0].hash = "XYZ".into();
        assert!(Snapshot::try_from(s).is_err());

        let mut s = valid();
        s.models[0].endpoints[0].prices = Some(pb::Prices {
            input: -1,
            ..Default::default()
        });
        assert!(
            Snapshot::try_from(s)
                .unwrap_err()
                .to_string()
                .contains("negative price")
        );
    }
}
