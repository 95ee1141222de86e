//! `GET /api/v1/exports/focus?from=&to=`: FOCUS 1.0-style cost rows (CSV) for a period, one
//! per charge on the org's credit account: usage (a generation), platform fee, re-rating
//! adjustment, refund. Rows come from the ledger, so `SUM(BilledCost)` equals the period's
//! usage on `/credits` and on the monthly statement. Credit purchases (grants, top-ups) are
//! not costs and are not rows.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use switchyard_proto::GenerationId;
use uuid::Uuid;

use super::AppState;
use super::principal::Principal;
use super::timefmt::{iso, parse_iso};
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{LedgerLine, chargeback_kinds, posting_kinds};

/// FOCUS 1.0 columns, in this order.
pub const FOCUS_COLUMNS: &[&str] = &[
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SubAccountId",
    "Tags",
];

const MAX_SPAN_MS: i64 = 366 * 86_400_000;

/// Nano-USD as an exact decimal (9 places), sign first.
pub fn decimal_usd(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let abs = nanos.unsigned_abs();
    format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
}

fn csv_field(s: &str) -> String {
    // Quote everything; neutralise spreadsheet formulas (tag values are client input).
    let s = if s.starts_with(['=', '+', '@']) || (s.starts_with('-') && s.parse::<f64>().is_err()) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn generation_id(request_id: &str) -> String {
    Uuid::parse_str(request_id)
        .map(|u| GenerationId::from_uuid(u).to_string())
        .unwrap_or_else(|_| request_id.to_owned())
}

#[derive(Deserialize)]
pub struct FocusQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Parses `YYYY-MM-DD` (UTC midnight) or RFC 3339.
fn instant(field: &str, text: &str) -> Result<i64, ApiError> {
    if text.len() == 10 {
        parse_iso(field, &format!("{text}T00:00:00Z"))
    } else {
        parse_iso(field, text)
    }
}

/// The cells of one ledger line, in `FOCUS_COLUMNS` order.
fn focus_row(
    org_id: &str,
    (from_ms, to_ms): (i64, i64),
    l: &LedgerLine,
    tags: Option<&BTreeMap<String, String>>,
) -> Vec<String> {
    let billed = decimal_usd(-l.amount_nanos);
    let (category, class, service) = match l.kind.as_str() {
        posting_kinds::USAGE => ("Usage", "", "LLM inference"),
        chargeback_kinds::FEE => ("Usage", "", "Switchyard platform fee"),
        posting_kinds::ADJUSTMENT => ("Adjustment", "Correction", "LLM inference"),
        posting_kinds::REFUND => ("Credit", "", "LLM inference"),
        _ => ("Adjustment", "", "Switchyard credits"),
    };
    let start = l.started_at.unwrap_or(l.created_at);
    let end = l.finished_at.unwrap_or(l.created_at).max(start);
    let model = l.model.clone().unwrap_or_default();
    let publisher = model.split_once('/').map_or("", |(a, _)| a).to_owned();
    let tokens = match (l.input_tokens, l.output_tokens, l.kind.as_str()) {
        (Some(i), Some(o), posting_kinds::USAGE) => (i + o).to_string(),
        _ => String::new(),
    };
    let unit = if tokens.is_empty() { "" } else { "Tokens" };
    let tags_json = serde_json::to_string(&tags.cloned().unwrap_or_default()).unwrap_or_default();
    vec![
        billed.clone(),
        org_id.to_owned(),
        String::new(),
        "USD".into(),
        iso(to_ms),
        iso(from_ms),
        category.into(),
        class.into(),
        if l.memo.is_empty() {
            l.kind.clone()
        } else {
            format!("{}: {}", l.kind, l.memo)
        },
        "Usage-Based".into(),
        iso(end),
        iso(start),
        tokens.clone(),
        unit.into(),
        billed.clone(),
        billed.clone(),
        "Switchyard".into(),
        billed,
        tokens,
        unit.into(),
        l.provider_slug.clone().unwrap_or_default(),
        publisher,
        l.request_id
            .as_deref()
            .map(generation_id)
            .unwrap_or_default(),
        model.clone(),
        if l.request_id.is_some() {
            "LLM generation".into()
        } else {
            String::new()
        },
        "AI and Machine Learning".into(),
        service.into(),
        model,
        l.key_hash.clone().unwrap_or_default(),
        tags_json,
    ]
}

pub async fn focus(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<FocusQuery>,
) -> Result<Response, ApiError> {
    principal.require(Permission::BillingRead)?;
    let (Some(from), Some(to)) = (q.from.as_deref(), q.to.as_deref()) else {
        return Err(ApiError::BadRequest(
            "`from` and `to` are required (YYYY-MM-DD or RFC 3339; `to` is exclusive)".into(),
        ));
    };
    let (from_ms, to_ms) = (instant("from", from)?, instant("to", to)?);
    if from_ms >= to_ms || to_ms - from_ms > MAX_SPAN_MS {
        return Err(ApiError::BadRequest(
            "`from` must be before `to`, at most 366 days apart".into(),
        ));
    }
    let org = principal.org_id();
    let lines = state.store.credit_lines(org, from_ms, to_ms).await?;
    let mut tags: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    for (request_id, k, v) in state.store.window_tags(org, from_ms, to_ms).await? {
        tags.entry(request_id).or_default().insert(k, v);
    }
    let mut out = FOCUS_COLUMNS.join(",");
    out.push('\n');
    for l in lines
        .iter()
        .filter(|l| l.kind != posting_kinds::GRANT && l.kind != posting_kinds::TOPUP)
    {
        let row = focus_row(
            org,
            (from_ms, to_ms),
            l,
            l.request_id.as_ref().and_then(|r| tags.get(r)),
        );
        out.push_str(
            &row.iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"switchyard-focus.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal_usd(0), "0.000000000");
        assert_eq!(decimal_usd(2_000_000), "0.002000000");
        assert_eq!(decimal_usd(-1_500_000_001), "-1.500000001");
    }

    #[test]
    fn negative_amounts_are_not_escaped_but_formulas_are() {
        assert_eq!(csv_field("-0.5"), "\"-0.5\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_field("-cmd"), "\"'-cmd\"");
    }
}
