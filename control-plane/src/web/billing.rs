//! Credits & billing (`/billing`: balance, transactions, "Add credits" through Stripe
//! Checkout) and price editing of a model's endpoint (`/models/{author}/{slug}/prices`:
//! a new effective-dated price version, which re-rates usage from its date on).
//!
//! Both forms go through the REST API in-process (`Console::api`): validation, RBAC, audit and
//! the Stripe call stay in one place; the console checks input first to explain mistakes inline.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::Money;
use switchyard_proto::money::nanos_per_mtok_to_per_token_usd;

use super::format::{per_mtok, usd, when};
use super::{Console, Layout, WebError, page};
use crate::identity::Permission;
use crate::store::{LedgerQuery, accounts};

const PAGE_SIZE: i64 = 50;

type WebResult = Result<Response, WebError>;

// ---------------------------------------------------------------------------------------
// Credits & billing

#[derive(Template)]
#[template(path = "billing.html")]
struct BillingPage {
    l: Layout,
    balance: String,
    credits: String,
    usage: String,
    /// when, kind, amount, memo, reference
    rows: Vec<[String; 5]>,
    next: String,
    can_top_up: bool,
    stripe: bool,
    amount: String,
    error: String,
    /// `yyyy-mm` of the months with a statement link, newest first.
    statements: Vec<String>,
}

#[derive(Deserialize, Default)]
pub struct BillingQuery {
    before: Option<i64>,
    #[serde(default)]
    checkout: String,
}

async fn billing_page(
    console: &Console,
    before: Option<i64>,
    amount: String,
    error: String,
) -> Result<BillingPage, WebError> {
    console.require(Permission::BillingRead)?;
    let store = &console.state.store;
    let org = console.org_id();
    // From the rollup: a sum over every usage posting took seconds at a million rows.
    let totals = store.rollup_credit_totals(org).await?;
    let entries = store
        .list_ledger(
            org,
            &LedgerQuery {
                account: Some(accounts::ORG_CREDITS.into()),
                kind: None,
                before_id: before,
                limit: PAGE_SIZE,
            },
        )
        .await?;
    let next = match entries.last() {
        Some(last) if entries.len() as i64 == PAGE_SIZE => format!("/billing?before={}", last.id),
        _ => String::new(),
    };
    Ok(BillingPage {
        l: console.layout("Credits & billing", "billing").await?,
        statements: super::statements::recent_months(),
        balance: usd(totals.balance_nanos),
        credits: usd(totals.credits_nanos),
        usage: usd(totals.usage_nanos),
        rows: entries
            .iter()
            .map(|e| {
                [
                    when(e.created_at),
                    e.kind.clone(),
                    usd(e.amount_nanos),
                    e.memo.clone(),
                    e.request_id
                        .clone()
                        .or_else(|| e.ref_id.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect(),
        next,
        can_top_up: console.can(Permission::BillingWrite),
        stripe: console.state.stripe.is_some(),
        amount,
        error,
    })
}

pub async fn billing(console: Console, Query(q): Query<BillingQuery>) -> WebResult {
    let mut p = billing_page(&console, q.before, String::new(), String::new()).await?;
    p.l.notice = match q.checkout.as_str() {
        "success" => "Payment received by Stripe. Credits are added as soon as Stripe confirms it (usually seconds); reload to see them.".into(),
        "cancel" => "Checkout cancelled; nothing was charged.".into(),
        _ => String::new(),
    };
    Ok(page(&p))
}

#[derive(Deserialize, Default)]
pub struct TopUpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    amount: String,
}

/// A top-up in whole cents between $1 and $100,000 (Stripe Checkout's range for the API).
fn top_up_amount(text: &str) -> Result<String, String> {
    let text = text.trim().trim_start_matches('$').replace(',', "");
    let money = Money::parse_usd(&text)
        .map_err(|_| format!("Enter an amount in dollars, such as 25 or 100.50, not “{text}”."))?;
    let nanos = money.nanos();
    if nanos % 10_000_000 != 0 {
        return Err("Use whole cents (at most two decimals).".into());
    }
    if !(1_000_000_000..=100_000_000_000_000).contains(&nanos) {
        return Err("Top-ups are between $1 and $100,000.".into());
    }
    Ok(format!(
        "{}.{:02}",
        nanos / 1_000_000_000,
        (nanos / 10_000_000) % 100
    ))
}

pub async fn checkout(console: Console, Form(form): Form<TopUpForm>) -> WebResult {
    console.check_csrf(&form.csrf)?;
    console.require(Permission::BillingWrite)?;
    let invalid = |e: String| async {
        let mut r = page(&billing_page(&console, None, form.amount.clone(), e).await?);
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok::<_, WebError>(r)
    };
    let amount = match top_up_amount(&form.amount) {
        Ok(a) => a,
        Err(e) => return invalid(e).await,
    };
    let answer = console
        .api(
            Method::POST,
            "/api/v1/credits/checkout",
            Some(&json!({ "amount": amount })),
        )
        .await?;
    if !answer.ok() {
        return invalid(answer.message()).await;
    }
    let url = answer.body["data"]["url"].as_str().unwrap_or_default();
    // Only ever redirect to what Stripe answered, and only over http(s).
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return invalid("Stripe did not return a checkout page; try again.".into()).await;
    }
    // A page that moves on by itself rather than a redirect: the console's CSP allows forms
    // to post (and be redirected) only to itself, and Stripe's page is another origin.
    Ok(page(&CheckoutRedirect {
        url: url.to_owned(),
        amount: format!("${amount}"),
    }))
}

#[derive(Template)]
#[template(path = "checkout_redirect.html")]
struct CheckoutRedirect {
    url: String,
    amount: String,
}

// ---------------------------------------------------------------------------------------
// Price editing

#[derive(Template)]
#[template(path = "prices.html")]
struct PricesPage {
    l: Layout,
    model: String,
    /// (provider id, provider slug)
    providers: Vec<(String, String)>,
    form: PriceForm,
    /// provider, effective from, input, output, cache read, per request, note
    versions: Vec<[String; 7]>,
    /// provider, input, output, cache read, per request (what gateways quote now)
    current: Vec<[String; 5]>,
    can_edit: bool,
    error: String,
}

#[derive(Deserialize, Default, Clone)]
pub struct PriceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub provider: String,
    /// USD per million tokens.
    #[serde(default)]
    pub input: String,
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub cache_read: String,
    /// USD per request.
    #[serde(default)]
    pub request: String,
    /// `YYYY-MM-DDTHH:MM` (UTC) or a date; empty for now.
    #[serde(default)]
    pub effective_from: String,
    #[serde(default)]
    pub note: String,
}

fn usd_plain(nanos: i64) -> String {
    usd(nanos).trim_start_matches('$').to_owned()
}

async fn prices_page(
    console: &Console,
    model_id: &str,
    form: Option<PriceForm>,
    error: String,
) -> Result<PricesPage, WebError> {
    console.require(Permission::ModelsRead)?;
    let store = &console.state.store;
    let org = console.org_id();
    let model = store.get_model(org, model_id).await?;
    let all = store.list_providers(org).await?;
    let slug = |id: &str| {
        all.iter()
            .find(|p| p.id == id)
            .map_or_else(|| id.to_owned(), |p| p.slug.clone())
    };
    let mut providers: Vec<(String, String)> = model
        .endpoints
        .iter()
        .map(|e| (e.provider_id.clone(), slug(&e.provider_id)))
        .collect();
    providers.dedup();
    let versions = store.price_versions(org, model_id, None).await?;
    let form = form.unwrap_or_else(|| {
        // Prefill with what the first endpoint charges now.
        let e = model.endpoints.first();
        PriceForm {
            provider: e.map(|e| e.provider_id.clone()).unwrap_or_default(),
            input: e.map(|e| usd_plain(e.price_input)).unwrap_or_default(),
            output: e.map(|e| usd_plain(e.price_output)).unwrap_or_default(),
            cache_read: e.map(|e| usd_plain(e.price_cache_read)).unwrap_or_default(),
            request: e
                .map(|e| usd_plain(e.price_per_request))
                .unwrap_or_default(),
            ..PriceForm::default()
        }
    });
    Ok(PricesPage {
        l: console.layout("Edit prices", "models").await?,
        model: model_id.to_owned(),
        current: model
            .endpoints
            .iter()
            .map(|e| {
                [
                    slug(&e.provider_id),
                    per_mtok(e.price_input),
                    per_mtok(e.price_output),
                    per_mtok(e.price_cache_read),
                    usd(e.price_per_request),
                ]
            })
            .collect(),
        versions: versions
            .iter()
            .rev()
            .map(|v| {
                [
                    slug(&v.provider_id),
                    if v.effective_from == 0 {
                        "the beginning".into()
                    } else {
                        when(v.effective_from)
                    },
                    per_mtok(v.price_input),
                    per_mtok(v.price_output),
                    per_mtok(v.price_cache_read),
                    usd(v.price_per_request),
                    v.note.clone(),
                ]
            })
            .collect(),
        providers,
        form,
        can_edit: console.can(Permission::ModelsWrite),
        error,
    })
}

pub async fn prices(console: Console, Path((author, slug)): Path<(String, String)>) -> WebResult {
    Ok(page(
        &prices_page(&console, &format!("{author}/{slug}"), None, String::new()).await?,
    ))
}

/// A per-million-token price in USD → the API's per-token USD string.
fn per_token(field: &str, text: &str) -> Result<String, String> {
    let text = text.trim().trim_start_matches('$');
    let text = if text.is_empty() { "0" } else { text };
    match Money::parse_usd(text) {
        Ok(m) if m.nanos() >= 0 => Ok(nanos_per_mtok_to_per_token_usd(m.nanos())),
        _ => Err(format!(
            "{field} must be a dollar amount per million tokens, such as 0.15 or 2.50, not “{text}”."
        )),
    }
}

/// `YYYY-MM-DDTHH:MM[:SS]` or `YYYY-MM-DD` (UTC) → RFC 3339; empty means now.
fn effective(text: &str) -> Result<Option<String>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let fmt_min = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let fmt_sec =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let fmt_day = time::macros::format_description!("[year]-[month]-[day]");
    let t2 = t.replacen(' ', "T", 1);
    let at = time::PrimitiveDateTime::parse(&t2, fmt_sec)
        .or_else(|_| time::PrimitiveDateTime::parse(&t2, fmt_min))
        .or_else(|_| time::Date::parse(t, fmt_day).map(|d| d.midnight()))
        .map_err(|_| format!("“{t}” is not a date and time: use YYYY-MM-DD HH:MM (UTC)."))?;
    Ok(Some(crate::api::timefmt::iso(
        at.assume_utc().unix_timestamp() * 1000,
    )))
}

pub async fn add_price(
    console: Console,
    Path((author, slug)): Path<(String, String)>,
    Form(form): Form<PriceForm>,
) -> WebResult {
    console.check_csrf(&form.csrf)?;
    console.require(Permission::ModelsWrite)?;
    let model_id = format!("{author}/{slug}");
    let invalid = |e: String| async {
        let mut r = page(&prices_page(&console, &model_id, Some(form.clone()), e).await?);
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok::<_, WebError>(r)
    };
    let checked = (|| {
        let request = form.request.trim().trim_start_matches('$');
        let request = if request.is_empty() { "0" } else { request };
        match Money::parse_usd(request) {
            Ok(m) if m.nanos() >= 0 => {}
            _ => {
                return Err(format!(
                    "Per request must be a dollar amount such as 0 or 0.001, not “{request}”."
                ));
            }
        }
        Ok::<Value, String>(json!({
            "provider": (!form.provider.is_empty()).then(|| form.provider.clone()),
            "effective_from": effective(&form.effective_from)?,
            "pricing": {
                "prompt": per_token("Input", &form.input)?,
                "completion": per_token("Output", &form.output)?,
                "input_cache_read": per_token("Cache read", &form.cache_read)?,
                "request": request,
            },
            "note": form.note.trim(),
        }))
    })();
    let body = match checked {
        Ok(b) => b,
        Err(e) => return invalid(e).await,
    };
    let answer = console
        .api(
            Method::POST,
            &format!(
                "/api/v1/models/{}/{}/prices",
                super::format::url_encode(&author),
                super::format::url_encode(&slug)
            ),
            Some(&body),
        )
        .await?;
    if !answer.ok() {
        return invalid(answer.message()).await;
    }
    let mut p = prices_page(&console, &model_id, None, String::new()).await?;
    let adjusted = answer.body["data"]["rerated"]["adjusted"]
        .as_i64()
        .or_else(|| answer.body["data"]["adjusted"].as_i64())
        .unwrap_or(0);
    p.l.notice = if adjusted > 0 {
        format!("New price saved; {adjusted} past requests were re-rated.")
    } else {
        "New price saved.".into()
    };
    Ok(page(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_up_and_price_inputs() {
        assert_eq!(top_up_amount("25").as_deref(), Ok("25.00"));
        assert_eq!(top_up_amount("$1,000.5").as_deref(), Ok("1000.50"));
        assert!(top_up_amount("0.5").unwrap_err().contains("$1"));
        assert!(top_up_amount("12.345").unwrap_err().contains("cents"));
        assert!(top_up_amount("lots").unwrap_err().contains("dollars"));
        assert_eq!(per_token("Input", "2.50").as_deref(), Ok("0.0000025"));
        assert_eq!(per_token("Input", "").as_deref(), Ok("0"));
        assert!(per_token("Input", "-1").unwrap_err().contains("Input"));
        assert_eq!(effective("").unwrap(), None);
        assert!(
            effective("2026-01-02T03:04")
                .unwrap()
                .unwrap()
                .starts_with("2026-01-02T03:04:00")
        );
        assert!(
            effective("2026-01-02")
                .unwrap()
                .unwrap()
                .starts_with("2026-01-02T00:00:00")
        );
        assert!(effective("soon").is_err());
    }
}
