//! First start: one org, a management key, an inference key, the offline demo model
//! `switchyard/echo`, a starter OpenAI catalog when `OPENAI_API_KEY` is set, and a node
//! token for separately deployed gateways. Secrets are returned once, for printing.

use std::sync::Arc;

use switchyard_proto::{ApiKeySecret, PriceSheet};
use uuid::Uuid;

use crate::store::{
    BootstrapPlan, KeyKind, NewEndpoint, NewKey, NewModel, NewProvider, Org, ProviderPolicy, Store,
    StoreResult, now_ms,
};

/// USD per million tokens, as nano-USD per million tokens.
const fn usd_per_mtok(dollars_times_1000: i64) -> i64 {
    dollars_times_1000 * 1_000_000
}

pub struct OpenAiSeed {
    pub api_key: String,
    pub base_url: Option<String>,
}

#[derive(Default)]
pub struct BootstrapOptions {
    pub management_key: Option<ApiKeySecret>,
    pub api_key: Option<ApiKeySecret>,
    pub openai: Option<OpenAiSeed>,
}

/// Secrets created on first start; shown once and never stored in clear.
pub struct FirstStart {
    pub org_id: String,
    pub management_key: ApiKeySecret,
    pub api_key: ApiKeySecret,
    pub node_token: String,
}

impl std::fmt::Debug for FirstStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstStart")
            .field("org_id", &self.org_id)
            .finish_non_exhaustive()
    }
}

/// Bootstraps an empty database; returns `None` when it already holds an org.
pub async fn ensure(
    store: &Arc<dyn Store>,
    options: BootstrapOptions,
) -> StoreResult<Option<FirstStart>> {
    if store.is_bootstrapped().await? {
        return Ok(None);
    }
    let org_id = Uuid::now_v7().to_string();
    let management_key = options
        .management_key
        .unwrap_or_else(ApiKeySecret::generate);
    let api_key = options.api_key.unwrap_or_else(ApiKeySecret::generate);
    let node_token = ApiKeySecret::generate()
        .expose()
        .replacen("sk-sy-v1-", "sy-node-", 1);

    let key = |secret: &ApiKeySecret, name: &str, kind: KeyKind| NewKey {
        hash: secret.hash().into_string(),
        org_id: org_id.clone(),
        name: name.to_owned(),
        label: format!(
            "sk-sy-v1-...{}",
            &secret.expose()[secret.expose().len() - 4..]
        ),
        kind,
        limit_nanos: None,
        limit_reset: None,
        include_byok_in_limit: false,
        expires_at: None,
    };

    let echo = NewProvider {
        id: Uuid::now_v7().to_string(),
        org_id: org_id.clone(),
        slug: "switchyard".into(),
        name: "Switchyard Echo".into(),
        kind: "echo".into(),
        base_url: String::new(),
        api_key: None,
        // Nothing leaves the process.
        policy: ProviderPolicy {
            zero_data_retention: true,
            ..ProviderPolicy::default()
        },
    };
    let demo_price = usd_per_mtok(1000);
    let mut models = vec![NewModel {
        org_id: org_id.clone(),
        id: "switchyard/echo".into(),
        name: "Switchyard Echo (offline demo)".into(),
        description: "Answers with your last message. One token per word; $1 per million tokens in and out, so cost and billing show offline.".into(),
        context_length: 1_000_000,
        endpoints: vec![NewEndpoint {
            id: Uuid::now_v7().to_string(),
            provider_id: echo.id.clone(),
            upstream_model: "echo".into(),
            context_length: 1_000_000,
            max_output_tokens: 1_000_000,
            prices: PriceSheet { input: demo_price, output: demo_price, ..PriceSheet::default() },
            quantization: String::new(),
            supported_parameters: Vec::new(),
        }],
    }];
    let mut providers = vec![echo];

    if let Some(seed) = options.openai {
        let openai = NewProvider {
            id: Uuid::now_v7().to_string(),
            org_id: org_id.clone(),
            slug: "openai".into(),
            name: "OpenAI".into(),
            kind: "openai".into(),
            base_url: seed
                .base_url
                .unwrap_or_else(|| "https://api.openai.com/v1".into())
                .trim_end_matches('/')
                .to_owned(),
            api_key: Some(seed.api_key),
            // OpenAI's API terms: no training on API data; abuse-monitoring retention.
            policy: ProviderPolicy::default(),
        };
        models.extend(openai_starter_catalog(&org_id, &openai.id));
        providers.push(openai);
    }

    let plan = BootstrapPlan {
        org: Org {
            id: org_id.clone(),
            name: "Default".into(),
            created_at: now_ms(),
        },
        keys: vec![
            key(
                &management_key,
                "bootstrap management key",
                KeyKind::Management,
            ),
            key(&api_key, "default", KeyKind::Inference),
        ],
        providers,
        models,
        node_token_hash: switchyard_proto::keys::sha256_hex(&node_token),
    };
    store.bootstrap(&plan).await?;
    Ok(Some(FirstStart {
        org_id,
        management_key,
        api_key,
        node_token,
    }))
}

/// OpenAI list prices (USD per million tokens: input, cached input, output) as of 2025-08.
fn openai_starter_catalog(org_id: &str, provider_id: &str) -> Vec<NewModel> {
    const MODELS: &[(&str, &str, i64, i64, i64, i64, i64)] = &[
        // id, name, input, cached, output (USD/Mtok × 1000), context, max output
        ("gpt-4o-mini", "GPT-4o mini", 150, 75, 600, 128_000, 16_384),
        ("gpt-4o", "GPT-4o", 2_500, 1_250, 10_000, 128_000, 16_384),
        ("gpt-4.1", "GPT-4.1", 2_000, 500, 8_000, 1_047_576, 32_768),
        (
            "gpt-4.1-mini",
            "GPT-4.1 mini",
            400,
            100,
            1_600,
            1_047_576,
            32_768,
        ),
        (
            "gpt-4.1-nano",
            "GPT-4.1 nano",
            100,
            25,
            400,
            1_047_576,
            32_768,
        ),
        ("o4-mini", "o4-mini", 1_100, 275, 4_400, 200_000, 100_000),
    ];
    MODELS
        .iter()
        .map(
            |&(id, name, input, cached, output, context, max_out)| NewModel {
                org_id: org_id.to_owned(),
                id: format!("openai/{id}"),
                name: format!("OpenAI: {name}"),
                description: String::new(),
                context_length: context,
                endpoints: vec![NewEndpoint {
                    id: Uuid::now_v7().to_string(),
                    provider_id: provider_id.to_owned(),
                    upstream_model: id.to_owned(),
                    context_length: context,
                    max_output_tokens: max_out,
                    prices: PriceSheet {
                        input: usd_per_mtok(input),
                        output: usd_per_mtok(output),
                        cache_read: usd_per_mtok(cached),
                        ..PriceSheet::default()
                    },
                    quantization: String::new(),
                    supported_parameters: vec![
                        "tools".into(),
                        "tool_choice".into(),
                        "response_format".into(),
                        "structured_outputs".into(),
                        "temperature".into(),
                        "top_p".into(),
                        "max_tokens".into(),
                        "stop".into(),
                        "seed".into(),
                        "logprobs".into(),
                        "vision".into(),
                    ],
                }],
            },
        )
        .collect()
}
