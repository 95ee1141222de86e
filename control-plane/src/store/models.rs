//! Rows and inputs of the store. Money is nano-USD (`i64`), times are unix ms.

use serde::Serialize;
use sqlx::FromRow;
use switchyard_proto::PriceSheet;

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Inference,
    Management,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Inference => "inference",
            KeyKind::Management => "management",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "inference" => Some(KeyKind::Inference),
            "management" => Some(KeyKind::Management),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct KeyRecord {
    pub hash: String,
    pub org_id: String,
    pub name: String,
    pub label: String,
    pub kind: String,
    pub disabled: bool,
    pub limit_nanos: Option<i64>,
    pub limit_reset: Option<String>,
    pub include_byok_in_limit: bool,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl KeyRecord {
    pub fn kind(&self) -> Option<KeyKind> {
        KeyKind::parse(&self.kind)
    }
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub hash: String,
    pub org_id: String,
    pub name: String,
    /// Shown instead of the secret: prefix and last characters.
    pub label: String,
    pub kind: KeyKind,
    pub limit_nanos: Option<i64>,
    pub limit_reset: Option<String>,
    pub include_byok_in_limit: bool,
    pub expires_at: Option<i64>,
}

/// `None` leaves a field unchanged; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub disabled: Option<bool>,
    pub limit_nanos: Option<Option<i64>>,
    pub limit_reset: Option<Option<String>>,
    pub include_byok_in_limit: Option<bool>,
    pub expires_at: Option<Option<i64>>,
}

#[derive(Debug, Clone, FromRow)]
pub struct ProviderRecord {
    pub id: String,
    pub org_id: String,
    pub slug: String,
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub api_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub zero_data_retention: bool,
    pub trains_on_prompts: bool,
    pub connect_timeout_ms: i64,
    pub first_byte_timeout_ms: i64,
    pub stream_idle_timeout_ms: i64,
    pub max_concurrency: i64,
}

#[derive(Debug, Clone)]
pub struct NewProvider {
    pub id: String,
    pub org_id: String,
    pub slug: String,
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub api_key: Option<String>,
    pub policy: ProviderPolicy,
}

/// How a provider treats data, and how long the gateway waits for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderPolicy {
    pub zero_data_retention: bool,
    pub trains_on_prompts: bool,
    /// Milliseconds; 0 uses the gateway's default.
    pub connect_timeout_ms: i64,
    pub first_byte_timeout_ms: i64,
    pub stream_idle_timeout_ms: i64,
    /// Concurrent requests the credential takes; 0 = unlimited.
    pub max_concurrency: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct ModelRow {
    pub org_id: String,
    pub id: String,
    pub name: String,
    pub description: String,
    pub context_length: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub org_id: String,
    pub model_id: String,
    pub provider_id: String,
    pub upstream_model: String,
    pub context_length: i64,
    pub max_output_tokens: i64,
    pub price_input: i64,
    pub price_output: i64,
    pub price_cache_read: i64,
    pub price_cache_write_5m: i64,
    pub price_cache_write_1h: i64,
    pub price_reasoning: Option<i64>,
    pub price_per_request: i64,
    pub position: i64,
    pub quantization: String,
    /// Comma-separated; empty means unrestricted.
    pub supported_parameters: String,
}

impl EndpointRow {
    pub fn prices(&self) -> PriceSheet {
        PriceSheet {
            input: self.price_input,
            output: self.price_output,
            cache_read: self.price_cache_read,
            cache_write_5m: self.price_cache_write_5m,
            cache_write_1h: self.price_cache_write_1h,
            reasoning: self.price_reasoning,
            per_request_nanos: self.price_per_request,
        }
    }

    /// `supported_parameters` as a list (stored comma-separated; empty: unrestricted).
    pub fn supported_parameter_list(&self) -> impl Iterator<Item = &str> {
        self.supported_parameters
            .split(',')
            .filter(|p| !p.is_empty())
    }
}

#[derive(Debug, Clone)]
pub struct ModelRecord {
    pub model: ModelRow,
    pub endpoints: Vec<EndpointRow>,
}

#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub id: String,
    pub provider_id: String,
    pub upstream_model: String,
    pub context_length: i64,
    pub max_output_tokens: i64,
    pub prices: PriceSheet,
    pub quantization: String,
    pub supported_parameters: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NewModel {
    pub org_id: String,
    pub id: String,
    pub name: String,
    pub description: String,
    pub context_length: i64,
    pub endpoints: Vec<NewEndpoint>,
}

#[derive(Debug, Clone, Default)]
pub struct ModelPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub context_length: Option<i64>,
    pub endpoints: Option<Vec<NewEndpoint>>,
}

/// What a first start writes: one org, its keys, providers, models and a node token.
#[derive(Debug, Clone)]
pub struct BootstrapPlan {
    pub org: Org,
    pub keys: Vec<NewKey>,
    pub providers: Vec<NewProvider>,
    pub models: Vec<NewModel>,
    pub node_token_hash: String,
}

/// The whole gateway-facing configuration at one version.
#[derive(Debug, Clone, Default)]
pub struct ConfigData {
    pub version: u64,
    pub orgs: Vec<Org>,
    pub keys: Vec<KeyRecord>,
    pub providers: Vec<ProviderRecord>,
    pub models: Vec<ModelRow>,
    pub endpoints: Vec<EndpointRow>,
    pub rate_limits: Vec<RateLimitRow>,
    /// `(org id, policy JSON)`.
    pub routing_policies: Vec<(String, String)>,
}

/// Cluster-wide limits of one key or org; 0 means unlimited.
#[derive(Debug, Clone, Default, FromRow, PartialEq, Eq, Serialize)]
pub struct RateLimitRow {
    pub org_id: String,
    /// "key" or "org".
    pub scope_kind: String,
    /// Key hash or org id.
    pub scope_id: String,
    pub requests_per_minute: i64,
    pub tokens_per_minute: i64,
    pub concurrent_requests: i64,
    /// Org scope only: weight when shared provider capacity is contended (0 = 1).
    pub capacity_weight: i64,
}

#[derive(Debug, Clone)]
pub struct NodeAck {
    pub node_id: String,
    pub version: u64,
    pub ok: bool,
    pub error: String,
    pub node_info: String,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub applied_version: i64,
    pub ok: bool,
    pub last_error: String,
    pub node_info: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// One generation as stored: raw dimensions plus the ledger's cost.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct UsageRow {
    pub request_id: String,
    pub org_id: String,
    pub key_hash: String,
    pub model: String,
    pub endpoint_id: String,
    pub provider_id: String,
    pub provider_slug: String,
    pub upstream_model: String,
    pub node_id: String,
    pub config_version: i64,
    pub api: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub ttft_ms: Option<i64>,
    pub streamed: bool,
    pub cancelled: bool,
    pub estimated: bool,
    pub finish_reason: String,
    pub native_finish_reason: String,
    pub http_status: i64,
    pub error_type: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_5m_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub reasoning_tokens: i64,
    /// Cost posted to the ledger, rated by the control plane.
    pub cost_nanos: i64,
    /// Cost the gateway showed the client.
    pub gateway_cost_nanos: i64,
    pub upstream_id: String,
    pub ingested_at: i64,
    /// JSON array of the generation's upstream attempts.
    pub provider_responses: String,
}

/// Everything one usage batch from a gateway writes (`Store::ingest_batch`).
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageBatchWrite<'a> {
    /// `(request_id, org_id, tags)` of final and provisional records alike.
    pub tags: &'a [crate::billing::tags::TagRow],
    pub cache_facts: &'a [super::CacheFact],
    /// Streams' write-ahead rows, held off the ledger (`Store::hold_provisional_usage`).
    pub provisional: &'a [UsageRow],
    /// Final rows, inserted with their ledger postings (`Store::ingest_usage`).
    pub rows: &'a [UsageRow],
    /// The rows' platform fees, each posted once (`ChargebackStore::post_once`).
    pub fees: &'a [super::Posting],
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub inserted: u32,
    pub duplicates: u32,
}

/// Ledger accounts. An org's credits go down by usage; platform revenue goes up.
pub mod accounts {
    pub const ORG_CREDITS: &str = "credits";
    pub const PLATFORM_REVENUE: &str = "platform:revenue";
}
