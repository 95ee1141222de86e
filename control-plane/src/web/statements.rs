//! Monthly statements on the billing page: the last twelve months as links, and one month's
//! statement rendered from `GET /api/v1/statements/{yyyy-mm}` (the same figures the API gives,
//! so the console and the API cannot disagree).

use askama::Template;
use axum::extract::Path;
use axum::http::Method;
use serde_json::Value;

use super::format::usd;
use axum::response::Response;

use super::{Console, Layout, WebError, page};
use crate::identity::Permission;
use crate::store::now_ms;

type WebResult = Result<Response, WebError>;

/// How many months the billing page links to.
const MONTHS: i64 = 12;

/// `yyyy-mm` of the current UTC month and the `MONTHS - 1` before it, newest first.
pub(crate) fn recent_months() -> Vec<String> {
    let Ok(now) = time::OffsetDateTime::from_unix_timestamp(now_ms().div_euclid(1000)) else {
        return Vec::new();
    };
    let (mut year, mut month) = (i64::from(now.year()), i64::from(u8::from(now.month())));
    let mut out = Vec::with_capacity(MONTHS as usize);
    for _ in 0..MONTHS {
        out.push(format!("{year:04}-{month:02}"));
        month -= 1;
        if month == 0 {
            month = 12;
            year -= 1;
        }
    }
    out
}

#[derive(Template)]
#[template(path = "statement.html")]
struct StatementPage {
    l: Layout,
    period: String,
    /// (label, amount) lines from opening to closing balance.
    lines: Vec<(&'static str, String)>,
    /// model, requests, cost
    by_model: Vec<(String, String, String)>,
    reconciled: bool,
    entries: String,
}

/// The API's money value (`{"nanos": ..}`) in the console's dollar format.
fn amount(v: &Value) -> String {
    usd(v["nanos"].as_i64().unwrap_or(0))
}

pub async fn statement(console: Console, Path(month): Path<String>) -> WebResult {
    console.require(Permission::BillingRead)?;
    // The month is checked by the API (`month_span`); its message is shown as is.
    let answer = console
        .api(
            Method::GET,
            &format!("/api/v1/statements/{}", super::format::url_encode(&month)),
            None,
        )
        .await?;
    if !answer.ok() {
        return Err(WebError::BadRequest(answer.message()));
    }
    let d = &answer.body["data"];
    let lines = [
        ("Opening balance", "opening_balance"),
        ("Top-ups", "topups"),
        ("Grants", "grants"),
        ("Refunds", "refunds"),
        ("Platform fees", "platform_fees"),
        ("Adjustments", "adjustments"),
        ("Other", "other"),
        ("Closing balance", "closing_balance"),
    ]
    .into_iter()
    .map(|(label, field)| (label, amount(&d[field])))
    .chain(std::iter::once(("Usage", amount(&d["usage"]["total"]))))
    .collect();
    let by_model = d["usage"]["by_model"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["model"].as_str().unwrap_or_default().to_owned(),
                        r["requests"].to_string(),
                        amount(&r["cost"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(page(&StatementPage {
        l: console
            .layout(&format!("Statement {month}"), "billing")
            .await?,
        period: month,
        lines,
        by_model,
        reconciled: d["reconciled"].as_bool().unwrap_or(false),
        entries: d["entries"].to_string(),
    }))
}
