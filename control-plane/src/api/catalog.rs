//! Switchyard's catalog management: `GET/POST /api/v1/providers` and
//! `GET/POST /api/v1/models`, `GET/PATCH /api/v1/models/{author}/{slug}`. Prices use
//! OpenRouter's `pricing` object (USD per token, as strings) and are stored exactly.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::PriceSheet;
use switchyard_proto::money::{nanos_per_mtok_to_per_token_usd, per_token_usd_to_nanos_per_mtok};
use uuid::Uuid;

use super::audit::{Change, record as audit_record};
use super::principal::Principal;
use super::timefmt::iso;
use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{
    ModelPatch, ModelRecord, NewEndpoint, NewModel, NewProvider, ProviderPolicy, ProviderRecord,
};

pub const PROVIDER_KINDS: &[&str] = &["openai", "openai_compatible", "echo", "anthropic", "gemini"];

#[derive(Deserialize)]
pub struct CreateProvider {
    slug: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    base_url: Option<String>,
    api_key: Option<String>,
    /// The provider keeps no prompts or outputs (`provider.zdr` routes only to these).
    zero_data_retention: Option<bool>,
    /// The provider may train on prompts; unknown policies default to `true` for generic
    /// OpenAI-compatible servers, as OpenRouter assumes (`data_collection: deny` skips them).
    trains_on_prompts: Option<bool>,
    connect_timeout_ms: Option<u32>,
    first_byte_timeout_ms: Option<u32>,
    stream_idle_timeout_ms: Option<u32>,
    /// Concurrent requests the credential takes; orgs sharing it get fair shares.
    max_concurrency: Option<u32>,
}

fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub fn default_base_url(kind: &str) -> Option<&'static str> {
    match kind {
        "openai" => Some("https://api.openai.com/v1"),
        "anthropic" => Some("https://api.anthropic.com/v1"),
        "gemini" => Some("https://generativelanguage.googleapis.com/v1beta"),
        _ => None,
    }
}

fn provider_json(p: &ProviderRecord) -> Value {
    let hint = p
        .api_key
        .as_deref()
        .filter(|k| k.len() >= 8)
        .map(|k| format!("...{}", &k[k.len() - 4..]));
    json!({
        "id": p.id,
        "slug": p.slug,
        "name": p.name,
        "kind": p.kind,
        "base_url": p.base_url,
        "has_credential": p.api_key.as_deref().is_some_and(|k| !k.is_empty()),
        "zero_data_retention": p.zero_data_retention,
        "trains_on_prompts": p.trains_on_prompts,
        "connect_timeout_ms": p.connect_timeout_ms,
        "first_byte_timeout_ms": p.first_byte_timeout_ms,
        "stream_idle_timeout_ms": p.stream_idle_timeout_ms,
        "max_concurrency": p.max_concurrency,
        "credential_hint": hint,
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
    })
}

pub async fn list_providers(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ProvidersRead)?;
    let providers = state.store.list_providers(principal.org_id()).await?;
    Ok(Json(
        json!({ "data": providers.iter().map(provider_json).collect::<Vec<_>>() }),
    ))
}

pub async fn create_provider(
    State(state): State<AppState>,
    policy: Option<axum::Extension<switchyard_gateway::ssrf::UrlPolicy>>,
    principal: Principal,
    JsonBody(body): JsonBody<CreateProvider>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Permission::ProvidersWrite)?;
    let kind = body.kind.ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`kind` is required: one of {}",
            PROVIDER_KINDS.join(", ")
        ))
    })?;
    if !PROVIDER_KINDS.contains(&kind.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "`kind` must be one of {}, not `{kind}`",
            PROVIDER_KINDS.join(", ")
        )));
    }
    let slug = body.slug.unwrap_or_else(|| kind.replace('_', "-"));
    if !valid_slug(&slug) {
        return Err(ApiError::BadRequest(
            "`slug` must be 1-64 characters of a-z, 0-9, - and _".into(),
        ));
    }
    let base_url = match (body.base_url, kind.as_str()) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, "echo") => String::new(),
        (None, k) => default_base_url(k).map(str::to_owned).ok_or_else(|| {
            ApiError::BadRequest(format!("`base_url` is required for kind `{k}`"))
        })?,
    };
    if kind != "echo" {
        check_base_url(&base_url)?;
        let policy = policy.map(|p| p.0).unwrap_or_default();
        switchyard_gateway::ssrf::check_url(&base_url, policy)
            .map_err(|why| ApiError::BadRequest(format!("`base_url` {why}")))?;
    }
    let provider = state
        .store
        .create_provider(&NewProvider {
            id: Uuid::now_v7().to_string(),
            org_id: principal.org_id().to_owned(),
            name: body.name.unwrap_or_else(|| slug.clone()),
            slug,
            policy: ProviderPolicy {
                zero_data_retention: body.zero_data_retention.unwrap_or(kind == "echo"),
                trains_on_prompts: body
                    .trains_on_prompts
                    .unwrap_or(kind == "openai_compatible"),
                connect_timeout_ms: i64::from(body.connect_timeout_ms.unwrap_or(0)),
                first_byte_timeout_ms: i64::from(body.first_byte_timeout_ms.unwrap_or(0)),
                stream_idle_timeout_ms: i64::from(body.stream_idle_timeout_ms.unwrap_or(0)),
                max_concurrency: i64::from(body.max_concurrency.unwrap_or(0)),
            },
            kind,
            base_url,
            api_key: body.api_key.filter(|k| !k.is_empty()),
        })
        .await?;
    let data = provider_json(&provider);
    audit_record(
        &state,
        &principal,
        Change {
            action: "provider.create",
            target_type: "provider",
            target_id: &provider.id,
            before: None,
            after: Some(&data),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": data }))))
}

/// Accepts absolute http(s) URLs with a host.
fn check_base_url(url: &str) -> Result<(), ApiError> {
    let rest = url
        .strip_prefix("https://")
        .map(|r| ("https", r))
        .or_else(|| url.strip_prefix("http://").map(|r| ("http", r)));
    match rest {
        Some((_, r))
            if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(ApiError::BadRequest(format!(
            "`base_url` must be an absolute http(s) URL, not `{url}`"
        ))),
    }
}

#[derive(Deserialize, Default)]
pub struct PricingBody {
    prompt: Option<String>,
    completion: Option<String>,
    input_cache_read: Option<String>,
    input_cache_write: Option<String>,
    input_cache_write_1h: Option<String>,
    internal_reasoning: Option<String>,
    request: Option<String>,
}

#[derive(Deserialize)]
pub struct EndpointBody {
    /// Provider id or slug.
    provider: String,
    /// Upstream model name; defaults to the part of the model id after the slash.
    model: Option<String>,
    context_length: Option<i64>,
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    pricing: PricingBody,
    /// OpenRouter's vocabulary: int4, int8, fp4, fp6, fp8, fp16, bf16, fp32, …
    quantization: Option<String>,
    /// Request parameters the endpoint honours; omit to leave it unrestricted.
    #[serde(default)]
    supported_parameters: Vec<String>,
}

const QUANTIZATIONS: &[&str] = &[
    "int4", "int8", "fp4", "mxfp4", "nvfp4", "fp6", "fp8", "mxfp8", "fp16", "bf16", "fp32",
    "unknown",
];

#[derive(Deserialize)]
pub struct CreateModel {
    id: Option<String>,
    name: Option<String>,
    #[serde(default)]
    description: String,
    context_length: Option<i64>,
    #[serde(default)]
    endpoints: Vec<EndpointBody>,
}

#[derive(Deserialize)]
pub struct UpdateModel {
    name: Option<String>,
    description: Option<String>,
    context_length: Option<i64>,
    endpoints: Option<Vec<EndpointBody>>,
}

fn price(field: &str, value: Option<&String>) -> Result<i64, ApiError> {
    value.map_or(Ok(0), |v| {
        per_token_usd_to_nanos_per_mtok(v).map_err(|e| {
            ApiError::BadRequest(format!(
                "`pricing.{field}` (USD per token, e.g. \"0.00000015\"): {e}"
            ))
        })
    })
}

fn prices(p: &PricingBody) -> Result<PriceSheet, ApiError> {
    let request_nanos = match &p.request {
        None => 0,
        Some(v) => switchyard_proto::Money::parse_usd(v)
            .map_err(|e| ApiError::BadRequest(format!("`pricing.request` (USD per request): {e}")))?
            .nanos(),
    };
    Ok(PriceSheet {
        input: price("prompt", p.prompt.as_ref())?,
        output: price("completion", p.completion.as_ref())?,
        cache_read: price("input_cache_read", p.input_cache_read.as_ref())?,
        cache_write_5m: price("input_cache_write", p.input_cache_write.as_ref())?,
        cache_write_1h: price("input_cache_write_1h", p.input_cache_write_1h.as_ref())?,
        reasoning: p
            .internal_reasoning
            .as_ref()
            .map(|v| price("internal_reasoning", Some(v)))
            .transpose()?,
        per_request_nanos: request_nanos,
    })
}

async fn endpoints(
    state: &AppState,
    org_id: &str,
    model_id: &str,
    context: i64,
    bodies: Vec<EndpointBody>,
) -> Result<Vec<NewEndpoint>, ApiError> {
    let default_upstream = model_id
        .split_once('/')
        .map_or(model_id, |(_, s)| s)
        .to_owned();
    let mut out = Vec::with_capacity(bodies.len());
    for (i, e) in bodies.into_iter().enumerate() {
        let provider = state
            .store
            .get_provider(org_id, &e.provider)
            .await
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "endpoints[{i}].provider `{}` is not a provider of this org",
                    e.provider
                ))
            })?;
        let context_length = e.context_length.unwrap_or(context);
        if context_length <= 0 {
            return Err(ApiError::BadRequest(format!(
                "endpoints[{i}].context_length must be positive"
            )));
        }
        out.push(NewEndpoint {
            id: Uuid::now_v7().to_string(),
            provider_id: provider.id,
            upstream_model: e.model.unwrap_or_else(|| default_upstream.clone()),
            context_length,
            max_output_tokens: e.max_completion_tokens.unwrap_or(context_length).max(1),
            prices: prices(&e.pricing)?,
            quantization: match e.quantization {
                None => String::new(),
                Some(q) if QUANTIZATIONS.contains(&q.as_str()) => q,
                Some(q) => {
                    return Err(ApiError::BadRequest(format!(
                        "endpoints[{i}].quantization must be one of {}, not `{q}`",
                        QUANTIZATIONS.join(", ")
                    )));
                }
            },
            supported_parameters: e.supported_parameters,
        });
    }
    Ok(out)
}

fn model_json(r: &ModelRecord, providers: &[ProviderRecord]) -> Value {
    let endpoints: Vec<Value> = r
        .endpoints
        .iter()
        .map(|e| {
            let p = e.prices();
            let provider = providers.iter().find(|p| p.id == e.provider_id);
            json!({
                "id": e.id,
                "provider": provider.map(|p| p.slug.clone()),
                "provider_id": e.provider_id,
                "model": e.upstream_model,
                "context_length": e.context_length,
                "max_completion_tokens": e.max_output_tokens,
                "quantization": if e.quantization.is_empty() { Value::Null } else { json!(e.quantization) },
                "supported_parameters": e.supported_parameter_list().collect::<Vec<_>>(),
                "pricing": {
                    "prompt": nanos_per_mtok_to_per_token_usd(p.input),
                    "completion": nanos_per_mtok_to_per_token_usd(p.output),
                    "input_cache_read": nanos_per_mtok_to_per_token_usd(p.cache_read),
                    "input_cache_write": nanos_per_mtok_to_per_token_usd(p.cache_write_5m),
                    "input_cache_write_1h": nanos_per_mtok_to_per_token_usd(p.cache_write_1h),
                    "internal_reasoning": p.reasoning.map(nanos_per_mtok_to_per_token_usd),
                    "request": switchyard_proto::Money::from_nanos(p.per_request_nanos).to_string().replace('$', ""),
                },
            })
        })
        .collect();
    json!({
        "id": r.model.id,
        "name": r.model.name,
        "description": r.model.description,
        "context_length": r.model.context_length,
        "created": r.model.created_at / 1000,
        "endpoints": endpoints,
    })
}

fn valid_model_id(id: &str) -> bool {
    id.split_once('/').is_some_and(|(a, s)| {
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        };
        ok(a) && ok(s)
    }) && id.len() <= 200
}

pub async fn list_models(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ModelsRead)?;
    let models = state.store.list_models(principal.org_id()).await?;
    let providers = state.store.list_providers(principal.org_id()).await?;
    Ok(Json(
        json!({ "data": models.iter().map(|m| model_json(m, &providers)).collect::<Vec<_>>() }),
    ))
}

pub async fn create_model(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<CreateModel>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Permission::ModelsWrite)?;
    let org = principal.org_id().to_owned();
    let id = body.id.ok_or_else(|| {
        ApiError::BadRequest("`id` is required, e.g. \"openai/gpt-4o-mini\"".into())
    })?;
    if !valid_model_id(&id) {
        return Err(ApiError::BadRequest(format!(
            "`id` must look like author/slug, not `{id}`"
        )));
    }
    let context_length = body.context_length.unwrap_or(8192);
    if context_length <= 0 {
        return Err(ApiError::BadRequest(
            "`context_length` must be positive".into(),
        ));
    }
    let endpoints = endpoints(&state, &org, &id, context_length, body.endpoints).await?;
    let record = state
        .store
        .create_model(&NewModel {
            org_id: org.clone(),
            name: body.name.unwrap_or_else(|| id.clone()),
            id,
            description: body.description,
            context_length,
            endpoints,
        })
        .await?;
    let providers = state.store.list_providers(&org).await?;
    let data = model_json(&record, &providers);
    audit_record(
        &state,
        &principal,
        Change {
            action: "model.create",
            target_type: "model",
            target_id: &record.model.id,
            before: None,
            after: Some(&data),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": data }))))
}

pub async fn get_model(
    State(state): State<AppState>,
    principal: Principal,
    Path((author, slug)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ModelsRead)?;
    let record = state
        .store
        .get_model(principal.org_id(), &format!("{author}/{slug}"))
        .await?;
    let providers = state.store.list_providers(principal.org_id()).await?;
    Ok(Json(json!({ "data": model_json(&record, &providers) })))
}

pub async fn update_model(
    State(state): State<AppState>,
    principal: Principal,
    Path((author, slug)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateModel>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ModelsWrite)?;
    let org = principal.org_id().to_owned();
    let id = format!("{author}/{slug}");
    let current = state.store.get_model(&org, &id).await?;
    let before = model_json(&current, &state.store.list_providers(&org).await?);
    let context = body.context_length.unwrap_or(current.model.context_length);
    if context <= 0 {
        return Err(ApiError::BadRequest(
            "`context_length` must be positive".into(),
        ));
    }
    let endpoints = match body.endpoints {
        Some(list) => Some(endpoints(&state, &org, &id, context, list).await?),
        None => None,
    };
    let record = state
        .store
        .update_model(
            &org,
            &id,
            &ModelPatch {
                name: body.name,
                description: body.description,
                context_length: body.context_length,
                endpoints,
            },
        )
        .await?;
    let providers = state.store.list_providers(&org).await?;
    let after = model_json(&record, &providers);
    audit_record(
        &state,
        &principal,
        Change {
            action: "model.update",
            target_type: "model",
            target_id: &id,
            before: Some(&before),
            after: Some(&after),
        },
    )
    .await?;
    Ok(Json(json!({ "data": after })))
}
