//! The reference catalog of public list prices (seeded by migration 0008, ≥30 widely used
//! models with an "as of" date): `GET /api/v1/catalog`, `PUT /api/v1/catalog/{author}/{slug}`
//! (an org's price edit or custom model; the seeded row stays as it was) and
//! `POST /api/v1/catalog/import` (creates routable models at one of the org's providers,
//! priced from the catalog, long-context tier included as a price version).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::PriceSheet;
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

use super::audit::{Change, record as audit_record};
use super::billing::{Pricing, pricing_json, sheet};
use super::principal::Principal;
use super::timefmt::iso;
use super::{AppState, JsonBody};
use crate::billing::pricebook::{LongContext, PriceVersion, VersionIdentity};
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{CatalogModel, NewEndpoint, NewModel, NewPriceVersion, StoreError, now_ms};

fn base_sheet(m: &CatalogModel) -> PriceSheet {
    PriceSheet {
        input: m.price_input,
        output: m.price_output,
        cache_read: m.price_cache_read,
        cache_write_5m: m.price_cache_write_5m,
        cache_write_1h: m.price_cache_write_1h,
        ..PriceSheet::default()
    }
}

fn long_context(m: &CatalogModel) -> Option<LongContext> {
    (m.long_context_threshold > 0).then(|| LongContext {
        threshold: m.long_context_threshold,
        prices: PriceSheet {
            input: m.lc_price_input,
            output: m.lc_price_output,
            cache_read: m.lc_price_cache_read,
            cache_write_5m: m.lc_price_cache_write_5m,
            cache_write_1h: m.lc_price_cache_write_1h,
            ..PriceSheet::default()
        },
    })
}

pub fn catalog_json(m: &CatalogModel) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "vendor": m.vendor,
        "host": m.host,
        "upstream_model": m.upstream_model,
        "context_length": m.context_length,
        "max_completion_tokens": m.max_output_tokens,
        "pricing": pricing_json(&base_sheet(m)),
        "pricing_nanos_per_mtok": {
            "input": m.price_input,
            "output": m.price_output,
            "cache_read": m.price_cache_read,
            "cache_write_5m": m.price_cache_write_5m,
            "cache_write_1h": m.price_cache_write_1h,
        },
        "long_context": long_context(m).map(|lc| json!({
            "threshold": lc.threshold,
            "pricing": pricing_json(&lc.prices),
        })),
        "as_of": m.as_of,
        "source": m.source,
        // Seeded list prices, or this org's own edit / custom model.
        "custom": !m.org_id.is_empty(),
        "updated_at": (m.updated_at > 0).then(|| iso(m.updated_at)),
    })
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ModelsRead)?;
    let models = state.store.list_catalog(principal.org_id()).await?;
    Ok(Json(json!({
        "data": models.iter().map(catalog_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
pub struct LongContextBody {
    threshold: i64,
    #[serde(default)]
    pricing: Pricing,
}

#[derive(Deserialize)]
pub struct PutCatalogModel {
    name: Option<String>,
    vendor: Option<String>,
    host: Option<String>,
    upstream_model: Option<String>,
    context_length: Option<i64>,
    max_completion_tokens: Option<i64>,
    pricing: Option<Pricing>,
    /// `null` removes the tier; absent keeps it.
    #[serde(default, deserialize_with = "super::double_option")]
    long_context: Option<Option<LongContextBody>>,
    /// YYYY-MM-DD; defaults to today.
    as_of: Option<String>,
    source: Option<String>,
}

fn today() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

fn valid_day(d: &str) -> bool {
    time::Date::parse(d, format_description!("[year]-[month]-[day]")).is_ok()
}

fn valid_id_part(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 100
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub async fn put(
    State(state): State<AppState>,
    principal: Principal,
    Path((author, slug)): Path<(String, String)>,
    JsonBody(body): JsonBody<PutCatalogModel>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::ModelsWrite)?;
    if !valid_id_part(&author) || !valid_id_part(&slug) {
        return Err(ApiError::BadRequest(format!(
            "`{author}/{slug}` is not a model id (author/slug of A-Z, a-z, 0-9, -, _, ., :)"
        )));
    }
    let org = principal.org_id().to_owned();
    let id = format!("{author}/{slug}");
    let existing = state.store.get_catalog_model(&org, &id).await?;
    let before = existing.as_ref().map(catalog_json);
    let mut m = existing.unwrap_or_else(|| CatalogModel {
        id: id.clone(),
        name: id.clone(),
        vendor: author.clone(),
        host: author.clone(),
        upstream_model: slug.clone(),
        context_length: 8192,
        max_output_tokens: 8192,
        ..CatalogModel::default()
    });
    m.org_id.clone_from(&org);
    if existing_is_new(&before) && body.pricing.is_none() {
        return Err(ApiError::BadRequest(
            "`pricing` is required for a custom catalog model".into(),
        ));
    }
    if let Some(v) = body.name {
        m.name = v;
    }
    if let Some(v) = body.vendor {
        m.vendor = v;
    }
    if let Some(v) = body.host {
        m.host = v;
    }
    if let Some(v) = body.upstream_model {
        m.upstream_model = v;
    }
    if let Some(v) = body.context_length {
        m.context_length = v;
    }
    if let Some(v) = body.max_completion_tokens {
        m.max_output_tokens = v;
    }
    if m.context_length <= 0 || m.max_output_tokens <= 0 {
        return Err(ApiError::BadRequest(
            "`context_length` and `max_completion_tokens` must be positive".into(),
        ));
    }
    if let Some(p) = &body.pricing {
        let s = sheet("pricing.", p)?;
        if [
            s.input,
            s.output,
            s.cache_read,
            s.cache_write_5m,
            s.cache_write_1h,
        ]
        .iter()
        .any(|v| *v < 0)
        {
            return Err(ApiError::BadRequest("prices must not be negative".into()));
        }
        m.price_input = s.input;
        m.price_output = s.output;
        m.price_cache_read = s.cache_read;
        m.price_cache_write_5m = s.cache_write_5m;
        m.price_cache_write_1h = s.cache_write_1h;
    }
    match body.long_context {
        None => {}
        Some(None) => {
            m.long_context_threshold = 0;
            (
                m.lc_price_input,
                m.lc_price_output,
                m.lc_price_cache_read,
                m.lc_price_cache_write_5m,
                m.lc_price_cache_write_1h,
            ) = (0, 0, 0, 0, 0);
        }
        Some(Some(lc)) => {
            if lc.threshold <= 0 {
                return Err(ApiError::BadRequest(
                    "`long_context.threshold` (input tokens) must be positive".into(),
                ));
            }
            let s = sheet("long_context.pricing.", &lc.pricing)?;
            m.long_context_threshold = lc.threshold;
            m.lc_price_input = s.input;
            m.lc_price_output = s.output;
            m.lc_price_cache_read = s.cache_read;
            m.lc_price_cache_write_5m = s.cache_write_5m;
            m.lc_price_cache_write_1h = s.cache_write_1h;
        }
    }
    m.as_of = match body.as_of {
        Some(d) if valid_day(&d) => d,
        Some(d) => {
            return Err(ApiError::BadRequest(format!(
                "`as_of` must be a date (YYYY-MM-DD), not `{d}`"
            )));
        }
        None => today(),
    };
    if let Some(s) = body.source {
        m.source = s;
    }
    m.updated_at = now_ms();
    state.store.put_catalog_model(&m).await?;
    let after = catalog_json(&m);
    audit_record(
        &state,
        &principal,
        Change {
            action: "catalog.put",
            target_type: "catalog_model",
            target_id: &id,
            before: before.as_ref(),
            after: Some(&after),
        },
    )
    .await?;
    Ok(Json(json!({ "data": after })))
}

fn existing_is_new(before: &Option<Value>) -> bool {
    before.is_none()
}

#[derive(Deserialize)]
pub struct ImportBody {
    /// Provider id or slug of this org that serves the models.
    provider: Option<String>,
    #[serde(default)]
    models: Vec<String>,
}

pub async fn import(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<ImportBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Permission::ModelsWrite)?;
    let org = principal.org_id().to_owned();
    let slug = body
        .provider
        .ok_or_else(|| ApiError::BadRequest("`provider` (id or slug) is required".into()))?;
    let provider = state.store.get_provider(&org, &slug).await.map_err(|_| {
        ApiError::BadRequest(format!("`provider` `{slug}` is not a provider of this org"))
    })?;
    if body.models.is_empty() || body.models.len() > 100 {
        return Err(ApiError::BadRequest(
            "`models` must list 1-100 catalog model ids".into(),
        ));
    }
    let mut entries = Vec::with_capacity(body.models.len());
    for id in &body.models {
        let m = state
            .store
            .get_catalog_model(&org, id)
            .await?
            .ok_or_else(|| ApiError::BadRequest(format!("`{id}` is not in the catalog")))?;
        entries.push(m);
    }
    let (actor_type, actor_id) = principal.audit_actor();
    let mut results = Vec::new();
    for m in entries {
        let created = state
            .store
            .create_model(&NewModel {
                org_id: org.clone(),
                id: m.id.clone(),
                name: m.name.clone(),
                description: format!("List price as of {} ({})", m.as_of, m.source),
                context_length: m.context_length,
                endpoints: vec![NewEndpoint {
                    id: Uuid::now_v7().to_string(),
                    provider_id: provider.id.clone(),
                    upstream_model: m.upstream_model.clone(),
                    context_length: m.context_length,
                    max_output_tokens: m.max_output_tokens,
                    prices: base_sheet(&m),
                    quantization: String::new(),
                    supported_parameters: Vec::new(),
                }],
            })
            .await;
        match created {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                results.push(json!({ "id": m.id, "status": "exists" }));
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        // The endpoint's catalog prices are the base tier; the long-context tier lives in
        // the price book, which rating consults first.
        if let Some(lc) = long_context(&m) {
            let now = now_ms();
            let version = PriceVersion::new(
                VersionIdentity {
                    id: Uuid::now_v7().to_string(),
                    org_id: org.clone(),
                    model_id: m.id.clone(),
                    provider_id: provider.id.clone(),
                    effective_from: now,
                    note: format!("catalog import: long-context tier as of {}", m.as_of),
                    created_by: format!("{actor_type}:{actor_id}"),
                    created_at: now,
                },
                &base_sheet(&m),
                Some(&lc),
            );
            state
                .store
                .add_price_version(&NewPriceVersion {
                    version,
                    effective_to: None,
                    now,
                })
                .await?;
        }
        results.push(json!({ "id": m.id, "status": "created" }));
    }
    let data = json!({ "provider": provider.slug, "models": results });
    audit_record(
        &state,
        &principal,
        Change {
            action: "catalog.import",
            target_type: "provider",
            target_id: &provider.id,
            before: None,
            after: Some(&data),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": data }))))
}
