//! Usage reporting: `GET /api/v1/activity` (OpenRouter's shape), `POST
//! /api/v1/analytics/query` (any number of group-by dimensions, tags included) and a CSV
//! export for chargeback. Costs include re-rating adjustments. Always scoped to the caller's
//! org; an inference key sees only its own usage.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_proto::Money;
use time::OffsetDateTime;
use time::macros::format_description;

use super::principal::Principal;
use super::timefmt::{iso, parse_iso};
use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{AnalyticsQuery, AnalyticsRow, now_ms};

const DAY_MS: i64 = 86_400_000;
const MAX_DIMENSIONS: usize = 6;
/// Dimensions besides `tag:<key>`; `user` and `session_id` are tags the gateway records.
const DIMENSIONS: &[&str] = &[
    "key",
    "model",
    "provider",
    "endpoint",
    "api",
    "finish_reason",
    "day",
    "hour",
];
const METRICS: &[&str] = &[
    "cost",
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
];

fn valid_tag_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The store's name of a dimension (`user` → `tag:user`), or a 400.
fn dimension(name: &str) -> Result<String, ApiError> {
    match name {
        "user" | "session_id" => Ok(format!("tag:{name}")),
        d if DIMENSIONS.contains(&d) => Ok(d.to_owned()),
        d => match d.strip_prefix("tag:") {
            Some(k) if valid_tag_key(k) => Ok(d.to_owned()),
            _ => Err(ApiError::BadRequest(format!(
                "unknown dimension `{d}`: use {}, user, session_id or tag:<key>",
                DIMENSIONS.join(", ")
            ))),
        },
    }
}

fn day_text(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format_description!("[year]-[month]-[day]")).ok())
        .unwrap_or_default()
}

fn parse_day(field: &str, text: &str) -> Result<i64, ApiError> {
    if text.len() == 10 {
        parse_iso(field, &format!("{text}T00:00:00Z"))
    } else {
        parse_iso(field, text)
    }
}

/// Shows a stored dimension value: bucket starts as dates/timestamps, the rest verbatim.
fn display(dim: &str, raw: &str) -> String {
    match dim {
        "day" => raw.parse().map(day_text).unwrap_or_default(),
        "hour" => raw.parse().map(iso).unwrap_or_default(),
        _ => raw.to_owned(),
    }
}

/// An inference key is confined to its own usage; everyone else needs `usage.read`.
fn scope(principal: &Principal, filters: &mut Vec<(String, String)>) -> Result<(), ApiError> {
    if principal.is_inference_key() {
        if let Some(key) = principal.key() {
            filters.retain(|(d, _)| d != "key");
            filters.push(("key".into(), key.hash.clone()));
        }
        Ok(())
    } else {
        principal.require(Permission::UsageRead)
    }
}

fn usd(nanos: i64) -> f64 {
    Money::from_nanos(nanos).as_usd_f64()
}

#[derive(Deserialize)]
pub struct ActivityQuery {
    /// One UTC day (YYYY-MM-DD) within the last 30 days; default: all 30.
    date: Option<String>,
    api_key_hash: Option<String>,
}

pub async fn activity(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ActivityQuery>,
) -> Result<Json<Value>, ApiError> {
    let today = (now_ms() / DAY_MS) * DAY_MS;
    let (from_ms, to_ms) = match &q.date {
        Some(d) => {
            let start = parse_day("date", d)?;
            if start % DAY_MS != 0 || start < today - 29 * DAY_MS || start > today {
                return Err(ApiError::BadRequest(
                    "`date` must be a UTC day (YYYY-MM-DD) within the last 30 days".into(),
                ));
            }
            (start, start + DAY_MS)
        }
        None => (today - 29 * DAY_MS, today + DAY_MS),
    };
    let mut filters = Vec::new();
    if let Some(k) = q.api_key_hash.filter(|k| !k.is_empty()) {
        filters.push(("key".to_owned(), k));
    }
    scope(&principal, &mut filters)?;
    let rows = state
        .store
        .analytics(&AnalyticsQuery {
            org_id: principal.org_id().to_owned(),
            group_by: vec![
                "day".into(),
                "model".into(),
                "endpoint".into(),
                "provider".into(),
            ],
            from_ms,
            to_ms,
            filters,
            limit: 10_000,
        })
        .await?;
    let mut data: Vec<Value> = rows
        .iter()
        .map(|r| {
            let k = |i: usize| r.keys.get(i).cloned().unwrap_or_default();
            json!({
                "date": display("day", &k(0)),
                "model": k(1),
                "model_permaslug": k(1),
                "endpoint_id": k(2),
                "provider_name": k(3),
                "usage": usd(r.cost_nanos),
                "byok_usage_inference": 0.0,
                "requests": r.requests,
                "prompt_tokens": r.input_tokens,
                "completion_tokens": r.output_tokens,
                "reasoning_tokens": r.reasoning_tokens,
            })
        })
        .collect();
    data.sort_by(|a, b| {
        b["date"]
            .as_str()
            .cmp(&a["date"].as_str())
            .then_with(|| a["model"].as_str().cmp(&b["model"].as_str()))
    });
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Filters {
    Map(std::collections::BTreeMap<String, String>),
    List(Vec<FilterItem>),
}

#[derive(Deserialize)]
pub struct FilterItem {
    dimension: String,
    value: String,
}

#[derive(Deserialize, Default)]
pub struct TimeRange {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Deserialize)]
pub struct AnalyticsBody {
    #[serde(default)]
    metrics: Vec<String>,
    #[serde(default, alias = "group_by")]
    dimensions: Vec<String>,
    filters: Option<Filters>,
    #[serde(default)]
    time_range: TimeRange,
    limit: Option<i64>,
}

fn metric_value(r: &AnalyticsRow, m: &str) -> Value {
    match m {
        "cost" => json!(usd(r.cost_nanos)),
        "requests" => json!(r.requests),
        "errors" => json!(r.errors),
        "input_tokens" => json!(r.input_tokens),
        "output_tokens" => json!(r.output_tokens),
        "reasoning_tokens" => json!(r.reasoning_tokens),
        "cache_read_tokens" => json!(r.cache_read_tokens),
        "cache_write_tokens" => json!(r.cache_write_tokens),
        _ => Value::Null,
    }
}

fn range(tr: &TimeRange) -> Result<(i64, i64), ApiError> {
    let to = match &tr.to {
        Some(t) => parse_day("time_range.to", t)?,
        None => now_ms() + 1,
    };
    let from = match &tr.from {
        Some(t) => parse_day("time_range.from", t)?,
        None => to - 30 * DAY_MS,
    };
    if from >= to {
        return Err(ApiError::BadRequest(
            "`time_range.from` must be before `time_range.to`".into(),
        ));
    }
    Ok((from, to))
}

async fn run_query(
    state: &AppState,
    principal: &Principal,
    names: &[String],
    filters: Vec<(String, String)>,
    (from_ms, to_ms): (i64, i64),
    limit: i64,
) -> Result<(Vec<String>, Vec<AnalyticsRow>), ApiError> {
    if names.len() > MAX_DIMENSIONS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_DIMENSIONS} dimensions"
        )));
    }
    let group_by = names
        .iter()
        .map(|d| dimension(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut filters = filters
        .into_iter()
        .map(|(d, v)| dimension(&d).map(|d| (d, v)))
        .collect::<Result<Vec<_>, _>>()?;
    if filters.iter().any(|(d, _)| d == "day" || d == "hour") {
        return Err(ApiError::BadRequest(
            "filter time with `time_range`, not a `day`/`hour` filter".into(),
        ));
    }
    scope(principal, &mut filters)?;
    let rows = state
        .store
        .analytics(&AnalyticsQuery {
            org_id: principal.org_id().to_owned(),
            group_by: group_by.clone(),
            from_ms,
            to_ms,
            filters,
            limit,
        })
        .await?;
    Ok((group_by, rows))
}

pub async fn analytics(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<AnalyticsBody>,
) -> Result<Json<Value>, ApiError> {
    let metrics: Vec<String> = if body.metrics.is_empty() {
        METRICS.iter().map(|m| (*m).to_owned()).collect()
    } else {
        body.metrics
    };
    if let Some(bad) = metrics.iter().find(|m| !METRICS.contains(&m.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown metric `{bad}`: use {}",
            METRICS.join(", ")
        )));
    }
    let filters = match body.filters {
        None => Vec::new(),
        Some(Filters::Map(m)) => m.into_iter().collect(),
        Some(Filters::List(l)) => l.into_iter().map(|f| (f.dimension, f.value)).collect(),
    };
    let span = range(&body.time_range)?;
    let limit = body.limit.unwrap_or(1000).clamp(1, 10_000);
    let (group_by, rows) =
        run_query(&state, &principal, &body.dimensions, filters, span, limit).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut o = Map::new();
            for (name, (dim, raw)) in body.dimensions.iter().zip(group_by.iter().zip(&r.keys)) {
                o.insert(name.clone(), json!(display(dim, raw)));
            }
            for m in &metrics {
                o.insert(m.clone(), metric_value(r, m));
            }
            if metrics.iter().any(|m| m == "cost") {
                o.insert("cost_nanos".into(), json!(r.cost_nanos));
            }
            Value::Object(o)
        })
        .collect();
    Ok(Json(json!({
        "data": data,
        "meta": {
            "dimensions": body.dimensions,
            "metrics": metrics,
            "time_range": { "from": iso(span.0), "to": iso(span.1) },
        }
    })))
}

#[derive(Deserialize)]
pub struct ExportQuery {
    from: Option<String>,
    to: Option<String>,
    /// Comma-separated dimensions; default `day,key,model,provider`.
    group_by: Option<String>,
}

fn csv_field(s: &str) -> String {
    // Quote everything and neutralise spreadsheet formulas in tag values (CSV injection).
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub async fn export_csv(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let names: Vec<String> = q
        .group_by
        .as_deref()
        .unwrap_or("day,key,model,provider")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let span = range(&TimeRange {
        from: q.from,
        to: q.to,
    })?;
    let (group_by, rows) = run_query(&state, &principal, &names, Vec::new(), span, 10_000).await?;
    let mut out = String::new();
    let mut header: Vec<String> = names.clone();
    header.extend(
        [
            "requests",
            "errors",
            "cost_usd",
            "cost_nanos",
            "input_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
        ]
        .map(str::to_owned),
    );
    out.push_str(&header.join(","));
    out.push('\n');
    for r in &rows {
        let mut fields: Vec<String> = group_by
            .iter()
            .zip(&r.keys)
            .map(|(d, raw)| csv_field(&display(d, raw)))
            .collect();
        fields.extend([
            r.requests.to_string(),
            r.errors.to_string(),
            Money::from_nanos(r.cost_nanos).to_string().replace('$', ""),
            r.cost_nanos.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.reasoning_tokens.to_string(),
            r.cache_read_tokens.to_string(),
            r.cache_write_tokens.to_string(),
        ]);
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"switchyard-usage.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}
