//! `GET /api/v1/statements/{yyyy-mm}`: an org's monthly statement from its credit account —
//! opening balance, top-ups, grants, usage by model, platform fees, re-rating adjustments,
//! refunds, closing balance. Every figure is a sum of ledger entries of the month (UTC), and
//! `reconciled` states that opening + movements = closing = the ledger's balance at month end.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use switchyard_proto::Money;
use time::{Date, Month};

use super::AppState;
use super::exports::decimal_usd;
use super::principal::Principal;
use super::timefmt::iso;
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{chargeback_kinds, posting_kinds};

fn money(nanos: i64) -> Value {
    json!({
        "usd": Money::from_nanos(nanos).as_usd_f64(),
        "nanos": nanos,
        "decimal": decimal_usd(nanos),
    })
}

/// `[start, end)` of a `YYYY-MM` month in unix ms.
pub fn month_span(text: &str) -> Result<(i64, i64), ApiError> {
    let bad = || ApiError::BadRequest(format!("`{text}` is not a month (YYYY-MM)"));
    let (y, m) = text.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month = Month::try_from(m.parse::<u8>().map_err(|_| bad())?).map_err(|_| bad())?;
    let start = Date::from_calendar_date(year, month, 1).map_err(|_| bad())?;
    let (ny, nm) = if month == Month::December {
        (year + 1, Month::January)
    } else {
        (year, month.next())
    };
    let end = Date::from_calendar_date(ny, nm, 1).map_err(|_| bad())?;
    let ms = |d: Date| d.midnight().assume_utc().unix_timestamp() * 1000;
    Ok((ms(start), ms(end)))
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(month): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::BillingRead)?;
    let (start, end) = month_span(&month)?;
    let org = principal.org_id();
    let opening = state.store.credit_balance_before(org, start).await?;
    let lines = state.store.credit_lines(org, start, end).await?;
    let ledger_closing = state.store.credit_balance_before(org, end).await?;

    let (mut topups, mut grants, mut fees, mut adjustments, mut refunds, mut other) =
        (0i64, 0i64, 0i64, 0i64, 0i64, 0i64);
    // Usage is negative on the credit account; shown as positive spend per model.
    let mut by_model: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut movements: i64 = 0;
    for l in &lines {
        movements = movements.saturating_add(l.amount_nanos);
        match l.kind.as_str() {
            posting_kinds::TOPUP => topups += l.amount_nanos,
            posting_kinds::GRANT => grants += l.amount_nanos,
            posting_kinds::USAGE => {
                let model = l.model.clone().unwrap_or_else(|| l.memo.clone());
                let e = by_model.entry(model).or_default();
                e.0 -= l.amount_nanos;
                e.1 += 1;
            }
            chargeback_kinds::FEE => fees -= l.amount_nanos,
            posting_kinds::ADJUSTMENT => adjustments -= l.amount_nanos,
            posting_kinds::REFUND => refunds += l.amount_nanos,
            _ => other += l.amount_nanos,
        }
    }
    let usage_total: i64 = by_model.values().map(|(n, _)| *n).sum();
    let closing = opening.saturating_add(movements);
    let usage: Vec<Value> = by_model
        .iter()
        .map(|(model, (nanos, requests))| {
            json!({ "model": model, "requests": requests, "cost": money(*nanos) })
        })
        .collect();
    Ok(Json(json!({
        "data": {
            "org_id": org,
            "period": month,
            "period_start": iso(start),
            "period_end": iso(end),
            "opening_balance": money(opening),
            "topups": money(topups),
            "grants": money(grants),
            "usage": { "total": money(usage_total), "by_model": usage },
            "platform_fees": money(fees),
            "adjustments": money(adjustments),
            "refunds": money(refunds),
            "other": money(other),
            "closing_balance": money(closing),
            // opening + top-ups + grants − usage − fees − adjustments + refunds (+ other)
            // equals closing, and closing equals the ledger's own balance at period end.
            "reconciled": closing == ledger_closing
                && closing == opening + topups + grants - usage_total - fees - adjustments + refunds + other,
            "entries": lines.len(),
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_span_to_the_next_first() {
        assert_eq!(month_span("2026-12").unwrap().1, 1_798_761_600_000);
        let (s, e) = month_span("2024-02").unwrap();
        assert_eq!(e - s, 29 * 86_400_000);
        for bad in ["2024-13", "2024-2", "24-02", "x", "2024-00"] {
            assert!(month_span(bad).is_err(), "{bad}");
        }
    }
}
