//! Console page handlers and their templates' data.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::format::{mask, per_mtok, thousands, usd, when};
use super::{Console, Layout, Peer, WebError, charts, dispatch, page, role_can};
use crate::api::AppState;
use crate::identity::Permission;
use crate::store::console::{UsageBucket, UsageQuery};
use crate::store::{AuditFilter, Role, UsageRow, now_ms};

type WebResult = Result<Response, WebError>;
const DAY_MS: i64 = 86_400_000;
const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

// ---------------------------------------------------------------------------------------
// Sign in, sign out, org switch, invitation acceptance

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub email: String,
    pub next: String,
    pub error: String,
    /// The org named by `?org=` (single sign-on), whether it has SSO, and why not.
    pub sso_org: String,
    pub sso_ready: bool,
    pub sso_error: String,
}

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    org: String,
}

/// Only same-site paths are followed after sign-in.
pub(crate) fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

pub async fn login_form(State(state): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    // `/login?org=<id>` (a bookmark or an admin's link) offers that org's SSO button.
    let org = q.org.trim().to_owned();
    let sso_ready =
        !org.is_empty() && matches!(state.store.get_oidc_config(&org).await, Ok(Some(_)));
    page(&LoginPage {
        email: String::new(),
        next: safe_next(&q.next),
        error: String::new(),
        sso_error: if !org.is_empty() && !sso_ready {
            "This organization has no single sign-on configured; sign in with your email and password.".into()
        } else {
            String::new()
        },
        sso_org: org,
        sso_ready,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    State(state): State<AppState>,
    Peer(connect): Peer,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> WebResult {
    let next = safe_next(&form.next);
    let retry = |error: String| {
        let mut r = page(&LoginPage {
            email: form.email.clone(),
            next: next.clone(),
            error,
            sso_org: String::new(),
            sso_ready: false,
            sso_error: String::new(),
        });
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    if form.email.trim().is_empty() || form.password.is_empty() {
        return Ok(retry("Enter your email and password.".into()));
    }
    let answer = dispatch(
        &state,
        &headers,
        connect,
        None,
        Method::POST,
        "/api/v1/auth/login",
        Some(&json!({ "email": form.email, "password": form.password })),
    )
    .await?;
    if !answer.ok() {
        return Ok(retry(answer.message()));
    }
    Ok(answer.redirect_with_cookies(&next))
}

pub async fn logout(console: Console, Form(form): Form<CsrfForm>) -> WebResult {
    console.check_csrf(&form.csrf)?;
    let answer = console
        .api(Method::POST, "/api/v1/auth/logout", None)
        .await?;
    Ok(answer.redirect_with_cookies("/login"))
}

#[derive(Deserialize)]
pub struct SwitchForm {
    #[serde(default)]
    csrf: String,
    org_id: String,
}

pub async fn switch_org(console: Console, Form(form): Form<SwitchForm>) -> WebResult {
    console.check_csrf(&form.csrf)?;
    let answer = console
        .api(
            Method::POST,
            "/api/v1/auth/switch-org",
            Some(&json!({ "org_id": form.org_id })),
        )
        .await?;
    if !answer.ok() {
        return Err(WebError::BadRequest(answer.message()));
    }
    Ok(answer.redirect_with_cookies("/"))
}

#[derive(Template)]
#[template(path = "accept.html")]
struct AcceptPage {
    token: String,
    error: String,
}

#[derive(Deserialize, Default)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn accept_form(Query(q): Query<TokenQuery>) -> Response {
    page(&AcceptPage {
        token: q.token,
        error: String::new(),
    })
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

pub async fn accept(
    State(state): State<AppState>,
    Peer(connect): Peer,
    headers: HeaderMap,
    Form(form): Form<AcceptForm>,
) -> WebResult {
    let retry = |error: String| {
        let mut r = page(&AcceptPage {
            token: form.token.clone(),
            error,
        });
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    if form.token.trim().is_empty() {
        return Ok(retry("Paste the invitation token you were sent.".into()));
    }
    let answer = dispatch(
        &state,
        &headers,
        connect,
        None,
        Method::POST,
        "/api/v1/invitations/accept",
        Some(&json!({ "token": form.token.trim(), "password": form.password, "name": form.name })),
    )
    .await?;
    if !answer.ok() {
        return Ok(retry(answer.message()));
    }
    if answer.headers.contains_key(axum::http::header::SET_COOKIE) {
        Ok(answer.redirect_with_cookies("/"))
    } else {
        Ok(Redirect::to("/login").into_response())
    }
}

// ---------------------------------------------------------------------------------------
// Overview

pub(crate) struct Stat {
    pub label: &'static str,
    pub value: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    l: Layout,
    stats: Vec<Stat>,
    spend_chart: String,
    requests_chart: String,
    models_chart: String,
    keys_chart: String,
    /// (name, requests, cost)
    top_models: Vec<(String, String, String)>,
    top_keys: Vec<(String, String, String)>,
    empty: bool,
}

fn day_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY_MS)
}

fn month_start(ms: i64) -> i64 {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return day_start(ms);
    };
    let first = t.date().replace_day(1).unwrap_or(t.date());
    first.midnight().assume_utc().unix_timestamp() * 1000
}

fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        "0%".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Sums of a slice of usage.
#[derive(Default, Clone, Copy)]
struct Sums {
    requests: i64,
    errors: i64,
    cost: i64,
    input: i64,
    output: i64,
}

impl Sums {
    fn add(&mut self, b: &UsageBucket) {
        self.requests += b.requests;
        self.errors += b.errors;
        self.cost += b.cost_nanos;
        self.input += b.input_tokens;
        self.output += b.output_tokens;
    }
}

/// The `n` largest groups by spend (then requests, then name).
fn top(groups: HashMap<&str, Sums>, n: usize) -> Vec<(String, Sums)> {
    let mut groups: Vec<(String, Sums)> =
        groups.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    groups.sort_by(|a, b| {
        (b.1.cost, b.1.requests)
            .cmp(&(a.1.cost, a.1.requests))
            .then_with(|| a.0.cmp(&b.0))
    });
    groups.truncate(n);
    groups
}

pub async fn overview(console: Console) -> WebResult {
    console.require(Permission::UsageRead)?;
    let store = &console.state.store;
    let org = console.org_id();
    let now = now_ms();
    let (today, month) = (day_start(now), month_start(now));
    let chart_since = today - 29 * DAY_MS;
    // One read of the daily rollup: totals, the daily series and the top lists all come
    // from it (days × models × keys, not every generation).
    let buckets = store.daily_buckets(org, chart_since.min(month)).await?;
    let (mut t_today, mut t_month) = (Sums::default(), Sums::default());
    let mut by_day: HashMap<i64, Sums> = HashMap::new();
    let mut models: HashMap<&str, Sums> = HashMap::new();
    let mut keys: HashMap<&str, Sums> = HashMap::new();
    for b in &buckets {
        let day_ms = b.day * DAY_MS;
        if day_ms >= today {
            t_today.add(b);
        }
        if day_ms >= month {
            t_month.add(b);
            models.entry(&b.model).or_default().add(b);
            keys.entry(&b.key_hash).or_default().add(b);
        }
        if day_ms >= chart_since {
            by_day.entry(b.day).or_default().add(b);
        }
    }
    let key_names: HashMap<String, String> = store
        .list_keys(org, 0, 1000, true)
        .await?
        .into_iter()
        .map(|k| (k.hash, k.name))
        .collect();
    let mut stats = vec![
        Stat {
            label: "Spend today",
            value: usd(t_today.cost),
            detail: format!("{} requests", thousands(t_today.requests)),
        },
        Stat {
            label: "Spend this month",
            value: usd(t_month.cost),
            detail: format!("{} requests", thousands(t_month.requests)),
        },
        Stat {
            label: "Error rate today",
            value: percent(t_today.errors, t_today.requests),
            detail: format!("{} failed", thousands(t_today.errors)),
        },
        Stat {
            label: "Tokens this month",
            value: thousands(t_month.input + t_month.output),
            detail: format!(
                "{} in · {} out",
                thousands(t_month.input),
                thousands(t_month.output)
            ),
        },
    ];
    if console.can(Permission::BillingRead) {
        // Spend against the org's own budget, as the budgets API reports it.
        let budgets = console.api(Method::GET, "/api/v1/budgets", None).await?;
        let org_budget = budgets.body["data"]
            .as_array()
            .and_then(|all| all.iter().find(|b| b["scope"] == "org"));
        if let Some(b) = org_budget {
            stats.push(Stat {
                label: "Org budget",
                value: format!("{:.1}%", b["percent_used"].as_f64().unwrap_or(0.0)),
                detail: format!(
                    "{} of {} ({})",
                    usd(b["spent_nanos"].as_i64().unwrap_or(0)),
                    usd(b["limit_nanos"].as_i64().unwrap_or(0)),
                    b["window"].as_str().unwrap_or_default()
                ),
            });
        }
        let balance = store.rollup_credit_totals(org).await?.balance_nanos;
        stats.push(Stat {
            label: "Credit balance",
            value: usd(balance),
            detail: "credits ledger".into(),
        });
    }
    let days: Vec<(String, Sums)> = (0..30)
        .map(|i| {
            let day_ms = chart_since + i * DAY_MS;
            let label = when(day_ms).get(5..10).unwrap_or_default().to_owned();
            (
                label,
                by_day.get(&(day_ms / DAY_MS)).copied().unwrap_or_default(),
            )
        })
        .collect();
    let spend_points: Vec<_> = days
        .iter()
        .map(|(l, s)| (l.clone(), s.cost, usd(s.cost)))
        .collect();
    let request_points: Vec<_> = days
        .iter()
        .map(|(l, s)| {
            (
                l.clone(),
                s.requests,
                format!("{} requests", thousands(s.requests)),
            )
        })
        .collect();
    let key_name = |h: &str| {
        key_names
            .get(h)
            .cloned()
            .unwrap_or_else(|| format!("{}…", h.get(..8).unwrap_or(h)))
    };
    let top_models = top(models, 5);
    let top_keys: Vec<(String, Sums)> = top(keys, 5)
        .into_iter()
        .map(|(h, s)| (key_name(&h), s))
        .collect();
    let table = |rows: &[(String, Sums)]| {
        rows.iter()
            .map(|(name, s)| (name.clone(), thousands(s.requests), usd(s.cost)))
            .collect::<Vec<_>>()
    };
    let chart = |rows: &[(String, Sums)]| {
        rows.iter()
            .map(|(name, s)| (name.clone(), s.cost.max(0), usd(s.cost)))
            .collect::<Vec<_>>()
    };
    let p = OverviewPage {
        l: console.layout("Overview", "overview").await?,
        stats,
        spend_chart: charts::bars("Spend per day, last 30 days", &spend_points),
        requests_chart: charts::bars("Requests per day, last 30 days", &request_points),
        models_chart: charts::hbars("Top models by spend this month", &chart(&top_models)),
        keys_chart: charts::hbars("Top keys by spend this month", &chart(&top_keys)),
        empty: buckets.is_empty(),
        top_models: table(&top_models),
        top_keys: table(&top_keys),
    };
    Ok(page(&p))
}

// ---------------------------------------------------------------------------------------
// API keys

pub(crate) struct KeyView {
    pub hash: String,
    pub name: String,
    pub label: String,
    pub kind: String,
    pub status: &'static str,
    pub limit: String,
    pub created: String,
    pub expires: String,
}

fn key_view(k: &crate::store::KeyRecord) -> KeyView {
    let now = now_ms();
    KeyView {
        hash: k.hash.clone(),
        name: k.name.clone(),
        label: k.label.clone(),
        kind: k.kind.clone(),
        status: if k.disabled {
            "disabled"
        } else if k.expires_at.is_some_and(|t| t <= now) {
            "expired"
        } else {
            "active"
        },
        limit: match (k.limit_nanos, &k.limit_reset) {
            (None, _) => "no limit".into(),
            (Some(n), Some(r)) => format!("{} {r}", usd(n)),
            (Some(n), None) => usd(n),
        },
        created: when(k.created_at),
        expires: k.expires_at.map(when).unwrap_or_else(|| "never".into()),
    }
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    l: Layout,
    keys: Vec<KeyView>,
    can_create: bool,
    /// The new key's secret, shown once.
    secret: String,
    secret_name: String,
    form: KeyForm,
    error: String,
}

#[derive(Deserialize, Default, Clone)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    limit: String,
    #[serde(default)]
    limit_reset: String,
}

async fn keys_page(
    console: &Console,
    form: KeyForm,
    secret: (String, String),
    error: String,
) -> Result<KeysPage, WebError> {
    console.require(Permission::KeysRead)?;
    let keys = console
        .state
        .store
        .list_keys(console.org_id(), 0, 500, true)
        .await?;
    Ok(KeysPage {
        l: console.layout("API keys", "keys").await?,
        keys: keys.iter().map(key_view).collect(),
        can_create: console.can(Permission::KeysWrite) || console.can(Permission::KeysWriteOwn),
        secret: secret.0,
        secret_name: secret.1,
        form,
        error,
    })
}

pub async fn keys(console: Console) -> WebResult {
    Ok(page(
        &keys_page(
            &console,
            KeyForm::default(),
            Default::default(),
            String::new(),
        )
        .await?,
    ))
}

/// Parses the optional dollar limit of a key form.
fn parse_limit(text: &str) -> Result<Option<f64>, String> {
    let text = text.trim().trim_start_matches('$');
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
        _ => Err(format!(
            "Limit must be a dollar amount such as 25 or 12.50, not “{text}”."
        )),
    }
}

pub async fn create_key(console: Console, Form(form): Form<KeyForm>) -> WebResult {
    console.check_csrf(&form.csrf)?;
    if !console.can(Permission::KeysWrite) {
        console.require(Permission::KeysWriteOwn)?;
    }
    let invalid = |e: String| async {
        let mut r = page(&keys_page(&console, form.clone(), Default::default(), e).await?);
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        Ok::<_, WebError>(r)
    };
    if form.name.trim().is_empty() {
        return invalid("Give the key a name, such as the service that will use it.".into()).await;
    }
    let limit = match parse_limit(&form.limit) {
        Ok(l) => l,
        Err(e) => return invalid(e).await,
    };
    let reset = (!form.limit_reset.is_empty()).then(|| form.limit_reset.clone());
    let answer = console
        .api(
            Method::POST,
            "/api/v1/keys",
            Some(&json!({ "name": form.name.trim(), "limit": limit, "limit_reset": reset })),
        )
        .await?;
    if !answer.ok() {
        return invalid(answer.message()).await;
    }
    let secret = answer.body["key"].as_str().unwrap_or_default().to_owned();
    let mut p = keys_page(
        &console,
        KeyForm::default(),
        (secret, form.name.trim().to_owned()),
        String::new(),
    )
    .await?;
    p.l.notice = "Key created.".into();
    Ok(page(&p))
}

#[derive(Template)]
#[template(path = "key.html")]
struct KeyPage {
    l: Layout,
    key: KeyView,
    disabled: bool,
    limit_value: String,
    limit_reset: String,
    spend: Vec<(&'static str, String)>,
    can_write: bool,
    error: String,
    /// New secret after a rotation, shown once.
    secret: String,
}

async fn key_page(
    console: &Console,
    hash: &str,
    error: String,
    secret: String,
) -> Result<KeyPage, WebError> {
    console.require(Permission::KeysRead)?;
    let store = &console.state.store;
    let key = store.get_key(console.org_id(), hash).await?;
    let now = now_ms();
    let spend = store
        .key_spend_from_days(
            console.org_id(),
            hash,
            &[day_start(now) / DAY_MS, month_start(now) / DAY_MS, i64::MIN],
        )
        .await?;
    let policy = store.get_key_policy(console.org_id(), hash).await?;
    let own = policy.owner_user_id.as_deref() == console.principal.user_id();
    Ok(KeyPage {
        l: console.layout(&key.name, "keys").await?,
        disabled: key.disabled,
        limit_value: key
            .limit_nanos
            .map(|n| format!("{:.2}", n as f64 / 1e9))
            .unwrap_or_default(),
        limit_reset: key.limit_reset.clone().unwrap_or_default(),
        spend: ["Today", "This month", "All time"]
            .into_iter()
            .zip(spend.iter().map(|n| usd(*n)))
            .collect(),
        can_write: console.can(Permission::KeysWrite)
            || (own && console.can(Permission::KeysWriteOwn)),
        key: key_view(&key),
        error,
        secret,
    })
}

pub async fn key_detail(console: Console, Path(hash): Path<String>) -> WebResult {
    Ok(page(
        &key_page(&console, &hash, String::new(), String::new()).await?,
    ))
}

pub async fn update_key(
    console: Console,
    Path(hash): Path<String>,
    Form(form): Form<KeyForm>,
) -> WebResult {
    console.check_csrf(&form.csrf)?;
    let invalid = |e: String| async {
        let mut r = page(&key_page(&console, &hash, e, String::new()).await?);
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        Ok::<_, WebError>(r)
    };
    if form.name.trim().is_empty() {
        return invalid("The name must not be empty.".into()).await;
    }
    let limit = match parse_limit(&form.limit) {
        Ok(l) => l,
        Err(e) => return invalid(e).await,
    };
    let reset = (!form.limit_reset.is_empty()).then(|| form.limit_reset.clone());
    let answer = console
        .api(
            Method::PATCH,
            &format!("/api/v1/keys/{hash}"),
            Some(&json!({ "name": form.name.trim(), "limit": limit, "limit_reset": reset })),
        )
        .await?;
    if !answer.ok() {
        return invalid(answer.message()).await;
    }
    Ok(Redirect::to(&format!("/keys/{hash}")).into_response())
}

pub async fn toggle_key(
    console: Console,
    Path(hash): Path<String>,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    console.check_csrf(&form.csrf)?;
    let key = console.state.store.get_key(console.org_id(), &hash).await?;
    let answer = console
        .api(
            Method::PATCH,
            &format!("/api/v1/keys/{hash}"),
            Some(&json!({ "disabled": !key.disabled })),
        )
        .await?;
    if !answer.ok() {
        return Err(WebError::Forbidden(answer.message()));
    }
    Ok(Redirect::to(&format!("/keys/{hash}")).into_response())
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    l: Layout,
    question: String,
    detail: String,
    action: String,
    button: String,
    cancel: String,
}

async fn confirm(
    console: &Console,
    title: &str,
    section: &'static str,
    question: String,
    detail: &str,
    action: String,
    cancel: String,
) -> WebResult {
    // The confirming button says what the page title says ("Delete key").
    Ok(page(&ConfirmPage {
        l: console.layout(title, section).await?,
        question,
        detail: detail.to_owned(),
        action,
        button: title.to_owned(),
        cancel,
    }))
}

pub async fn rotate_confirm(console: Console, Path(hash): Path<String>) -> WebResult {
    console.require(Permission::KeysRead)?;
    let key = console.state.store.get_key(console.org_id(), &hash).await?;
    confirm(
        &console,
        "Rotate key",
        "keys",
        format!("Rotate the key “{}”?", key.name),
        "A new secret is created and shown once. The old secret keeps working for 24 hours, then stops.",
        format!("/keys/{hash}/rotate"),
        format!("/keys/{hash}"),
    )
    .await
}

pub async fn rotate_key(
    console: Console,
    Path(hash): Path<String>,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    console.check_csrf(&form.csrf)?;
    let answer = console
        .api(
            Method::POST,
            &format!("/api/v1/keys/{hash}/rotate"),
            Some(&json!({})),
        )
        .await?;
    if !answer.ok() {
        return Ok(page(
            &key_page(&console, &hash, answer.message(), String::new()).await?,
        ));
    }
    let new_hash = answer.body["data"]["hash"]
        .as_str()
        .unwrap_or(&hash)
        .to_owned();
    let secret = answer.body["key"].as_str().unwrap_or_default().to_owned();
    let mut p = key_page(&console, &new_hash, String::new(), secret).await?;
    p.l.notice = "Key rotated. The previous secret works for 24 more hours.".into();
    Ok(page(&p))
}

pub async fn delete_confirm(console: Console, Path(hash): Path<String>) -> WebResult {
    console.require(Permission::KeysRead)?;
    let key = console.state.store.get_key(console.org_id(), &hash).await?;
    confirm(
        &console,
        "Delete key",
        "keys",
        format!("Delete the key “{}”?", key.name),
        "Requests with this key are refused at once. Its usage history stays. This cannot be undone.",
        format!("/keys/{hash}/delete"),
        format!("/keys/{hash}"),
    )
    .await
}

pub async fn delete_key(
    console: Console,
    Path(hash): Path<String>,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    console.check_csrf(&form.csrf)?;
    let answer = console
        .api(Method::DELETE, &format!("/api/v1/keys/{hash}"), None)
        .await?;
    if !answer.ok() {
        return Ok(page(
            &key_page(&console, &hash, answer.message(), String::new()).await?,
        ));
    }
    Ok(Redirect::to("/keys").into_response())
}

// ---------------------------------------------------------------------------------------
// Request log

pub(crate) struct RequestView {
    pub id: String,
    pub when: String,
    pub model: String,
    pub provider: String,
    pub key: String,
    pub status: String,
    pub failed: bool,
    pub latency: String,
    pub ttft: String,
    pub tokens_in: String,
    pub tokens_out: String,
    pub cost: String,
}

/// The id clients see (`gen-<uuid>`) for a stored request id.
fn generation_id(request_id: &str) -> String {
    uuid::Uuid::parse_str(request_id)
        .map(|u| switchyard_proto::GenerationId::from_uuid(u).to_string())
        .unwrap_or_else(|_| request_id.to_owned())
}

fn request_view(r: &UsageRow, key_name: &str) -> RequestView {
    let failed = r.http_status >= 400 || !r.error_type.is_empty();
    RequestView {
        id: generation_id(&r.request_id),
        when: when(r.finished_at),
        model: r.model.clone(),
        provider: r.provider_slug.clone(),
        key: key_name.to_owned(),
        status: if r.error_type.is_empty() {
            r.http_status.to_string()
        } else {
            format!("{} {}", r.http_status, r.error_type)
        },
        failed,
        latency: format!("{} ms", thousands(r.finished_at - r.started_at)),
        ttft: r
            .ttft_ms
            .map_or("—".into(), |t| format!("{} ms", thousands(t))),
        tokens_in: thousands(r.input_tokens),
        tokens_out: thousands(r.output_tokens),
        cost: usd(r.cost_nanos),
    }
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    l: Layout,
    rows: Vec<RequestView>,
    model: String,
    errors_only: bool,
    next: String,
    filtered: bool,
}

#[derive(Deserialize, Default)]
pub struct RequestsQuery {
    #[serde(default)]
    model: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    errors: String,
    before: Option<i64>,
}

pub async fn requests(console: Console, Query(q): Query<RequestsQuery>) -> WebResult {
    console.require(Permission::UsageRead)?;
    let store = &console.state.store;
    let query = UsageQuery {
        before: q.before,
        model: (!q.model.trim().is_empty()).then(|| q.model.trim().to_owned()),
        key_hash: (!q.key.is_empty()).then(|| q.key.clone()),
        errors_only: !q.errors.is_empty(),
        limit: PAGE_SIZE,
    };
    let rows = store.list_usage(console.org_id(), &query).await?;
    let names: std::collections::HashMap<String, String> = store
        .list_keys(console.org_id(), 0, 1000, true)
        .await?
        .into_iter()
        .map(|k| (k.hash, k.name))
        .collect();
    let next = match rows.last() {
        Some(last) if rows.len() as i64 == PAGE_SIZE => format!(
            "/requests?model={}&key={}&errors={}&before={}",
            super::format::url_encode(&q.model),
            super::format::url_encode(&q.key),
            super::format::url_encode(&q.errors),
            last.finished_at
        ),
        _ => String::new(),
    };
    Ok(page(&RequestsPage {
        l: console.layout("Request log", "requests").await?,
        rows: rows
            .iter()
            .map(|r| {
                request_view(
                    r,
                    names
                        .get(&r.key_hash)
                        .map_or("(deleted key)", String::as_str),
                )
            })
            .collect(),
        filtered: query.model.is_some()
            || query.key_hash.is_some()
            || query.errors_only
            || q.before.is_some(),
        model: q.model,
        errors_only: query.errors_only,
        next,
    }))
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    l: Layout,
    r: RequestView,
    /// (label, value) rows of every stored dimension.
    fields: Vec<(&'static str, String)>,
}

pub async fn request_detail(console: Console, Path(id): Path<String>) -> WebResult {
    console.require(Permission::UsageRead)?;
    let store = &console.state.store;
    // Either the generation id clients see or the stored request id.
    let request_id = id
        .parse::<switchyard_proto::GenerationId>()
        .map(|g| g.uuid().to_string())
        .unwrap_or_else(|_| id.clone());
    let row = store
        .get_usage(console.org_id(), &request_id)
        .await?
        .ok_or_else(|| {
            WebError::NotFound(format!(
                "No generation {id} in this org (usage can take a few seconds to arrive)."
            ))
        })?;
    let key_name = store
        .get_key(console.org_id(), &row.key_hash)
        .await
        .map(|k| k.name)
        .unwrap_or_else(|_| "(deleted key)".into());
    let fields = vec![
        ("Generation id", generation_id(&row.request_id)),
        ("Started", when(row.started_at)),
        ("Finished", when(row.finished_at)),
        ("API", row.api.clone()),
        ("Model", row.model.clone()),
        ("Provider", row.provider_slug.clone()),
        ("Upstream model", row.upstream_model.clone()),
        ("Upstream id", row.upstream_id.clone()),
        ("Streamed", row.streamed.to_string()),
        ("Cancelled", row.cancelled.to_string()),
        ("Finish reason", row.finish_reason.clone()),
        ("Native finish reason", row.native_finish_reason.clone()),
        ("HTTP status", row.http_status.to_string()),
        (
            "Error type",
            if row.error_type.is_empty() {
                "—".into()
            } else {
                row.error_type.clone()
            },
        ),
        ("Input tokens", thousands(row.input_tokens)),
        ("Output tokens", thousands(row.output_tokens)),
        ("Reasoning tokens", thousands(row.reasoning_tokens)),
        ("Cache read tokens", thousands(row.cache_read_tokens)),
        (
            "Cache write tokens (5 min)",
            thousands(row.cache_write_5m_tokens),
        ),
        (
            "Cache write tokens (1 h)",
            thousands(row.cache_write_1h_tokens),
        ),
        ("Cost (ledger)", usd(row.cost_nanos)),
        ("Cost shown to client", usd(row.gateway_cost_nanos)),
        ("Token counts estimated", row.estimated.to_string()),
        ("Gateway node", row.node_id.clone()),
        ("Config version", row.config_version.to_string()),
    ];
    Ok(page(&RequestPage {
        l: console.layout("Generation", "requests").await?,
        r: request_view(&row, &key_name),
        fields,
    }))
}

// ---------------------------------------------------------------------------------------
// Members, roles, invitations

pub(crate) struct MemberView {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub since: String,
    pub is_self: bool,
    /// Roles this user may give them, with " selected" on the current one; empty when their
    /// current role is beyond what this user may change.
    pub options: Vec<(&'static str, &'static str)>,
}

fn role_options(roles: &[&'static str], current: &str) -> Vec<(&'static str, &'static str)> {
    if !roles.contains(&current) {
        return Vec::new();
    }
    roles
        .iter()
        .map(|r| (*r, if *r == current { " selected" } else { "" }))
        .collect()
}

pub(crate) struct InvitationView {
    pub id: String,
    pub email: String,
    pub role: String,
    pub status: &'static str,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    l: Layout,
    members: Vec<MemberView>,
    invitations: Vec<InvitationView>,
    invite_roles: Vec<(&'static str, &'static str)>,
    can_write: bool,
    invite_email: String,
    error: String,
    /// Token of a new invitation, shown once.
    token: String,
}

#[derive(Deserialize, Default, Clone)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

async fn members_page(
    console: &Console,
    form: &InviteForm,
    error: String,
    token: String,
) -> Result<MembersPage, WebError> {
    console.require(Permission::MembersRead)?;
    let store = &console.state.store;
    let me = console.principal.user_id().unwrap_or_default();
    let now = now_ms();
    let members = store.list_members(console.org_id()).await?;
    let invitations = store.list_invitations(console.org_id()).await?;
    let roles: Vec<&'static str> = Role::ALL
        .into_iter()
        .filter(|r| {
            console
                .role()
                .is_some_and(|a| crate::identity::may_assign(a, *r))
        })
        .map(Role::as_str)
        .collect();
    Ok(MembersPage {
        l: console.layout("Members", "members").await?,
        members: members
            .iter()
            .map(|m| MemberView {
                user_id: m.user_id.clone(),
                email: m.email.clone(),
                name: m.name.clone(),
                role: m.role.clone(),
                since: when(m.created_at),
                is_self: m.user_id == me,
                options: role_options(&roles, &m.role),
            })
            .collect(),
        invitations: invitations
            .iter()
            .map(|i| InvitationView {
                id: i.id.clone(),
                email: i.email.clone(),
                role: i.role.clone(),
                status: if i.accepted_at.is_some() {
                    "accepted"
                } else if i.revoked_at.is_some() {
                    "revoked"
                } else if i.expires_at <= now {
                    "expired"
                } else {
                    "pending"
                },
                expires: when(i.expires_at),
            })
            .collect(),
        can_write: role_can(console.role(), Permission::MembersWrite),
        invite_roles: {
            let wanted = if form.role.is_empty() {
                "developer"
            } else {
                form.role.as_str()
            };
            roles
                .iter()
                .map(|r| (*r, if *r == wanted { " selected" } else { "" }))
                .collect()
        },
        invite_email: form.email.clone(),
        error,
        token,
    })
}

pub async fn members(console: Console) -> WebResult {
    Ok(page(
        &members_page(
            &console,
            &InviteForm::default(),
            String::new(),
            String::new(),
        )
        .await?,
    ))
}

pub async fn invite(console: Console, Form(form): Form<InviteForm>) -> WebResult {
    console.check_csrf(&form.csrf)?;
    if !form.email.contains('@') {
        let mut r = page(
            &members_page(
                &console,
                &form,
                "Enter the email address of the person to invite.".into(),
                String::new(),
            )
            .await?,
        );
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(r);
    }
    let path = format!("/api/v1/orgs/{}/invitations", console.org_id());
    let answer = console
        .api(
            Method::POST,
            &path,
            Some(&json!({ "email": form.email.trim(), "role": form.role })),
        )
        .await?;
    if !answer.ok() {
        let mut r = page(&members_page(&console, &form, answer.message(), String::new()).await?);
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(r);
    }
    let token = answer.body["token"].as_str().unwrap_or_default().to_owned();
    let mut p = members_page(&console, &InviteForm::default(), String::new(), token).await?;
    p.l.notice = format!("Invitation created for {}.", form.email.trim());
    Ok(page(&p))
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    csrf: String,
    role: String,
}

pub async fn change_role(
    console: Console,
    Path(user): Path<String>,
    Form(form): Form<RoleForm>,
) -> WebResult {
    console.check_csrf(&form.csrf)?;
    let path = format!("/api/v1/orgs/{}/members/{user}", console.org_id());
    let answer = console
        .api(Method::PATCH, &path, Some(&json!({ "role": form.role })))
        .await?;
    if !answer.ok() {
        return Ok(page(
            &members_page(
                &console,
                &InviteForm::default(),
                answer.message(),
                String::new(),
            )
            .await?,
        ));
    }
    Ok(Redirect::to("/members").into_response())
}

pub async fn remove_confirm(console: Console, Path(user): Path<String>) -> WebResult {
    console.require(Permission::MembersWrite)?;
    let m = console
        .state
        .store
        .get_member(console.org_id(), &user)
        .await?;
    confirm(
        &console,
        "Remove member",
        "members",
        format!("Remove {} from this org?", m.email),
        "They lose access at once; their keys stay until you delete them.",
        format!("/members/{user}/remove"),
        "/members".into(),
    )
    .await
}

pub async fn remove_member(
    console: Console,
    Path(user): Path<String>,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    console.check_csrf(&form.csrf)?;
    let path = format!("/api/v1/orgs/{}/members/{user}", console.org_id());
    let answer = console.api(Method::DELETE, &path, None).await?;
    if !answer.ok() {
        return Ok(page(
            &members_page(
                &console,
                &InviteForm::default(),
                answer.message(),
                String::new(),
            )
            .await?,
        ));
    }
    Ok(Redirect::to("/members").into_response())
}

pub async fn revoke_invitation(
    console: Console,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    console.check_csrf(&form.csrf)?;
    let path = format!("/api/v1/orgs/{}/invitations/{id}", console.org_id());
    let answer = console.api(Method::DELETE, &path, None).await?;
    if !answer.ok() {
        return Ok(page(
            &members_page(
                &console,
                &InviteForm::default(),
                answer.message(),
                String::new(),
            )
            .await?,
        ));
    }
    Ok(Redirect::to("/members").into_response())
}

// ---------------------------------------------------------------------------------------
// Providers, models, gateways, audit

#[derive(Template)]
#[template(path = "providers.html")]
pub(crate) struct ProvidersPage {
    pub l: Layout,
    /// slug, name, kind, base url, masked credential, policy
    pub rows: Vec<[String; 6]>,
    pub can_test: bool,
    /// The last "Test connection": (provider slug, succeeded, what happened).
    pub tested: (String, bool, String),
}

pub async fn providers(console: Console) -> WebResult {
    Ok(page(&providers_page(&console, Default::default()).await?))
}

pub(crate) async fn providers_page(
    console: &Console,
    tested: (String, bool, String),
) -> Result<ProvidersPage, WebError> {
    console.require(Permission::ProvidersRead)?;
    let rows = console.state.store.list_providers(console.org_id()).await?;
    Ok(ProvidersPage {
        l: console.layout("Providers", "providers").await?,
        rows: rows
            .iter()
            .map(|p| {
                let mut policy = Vec::new();
                if p.zero_data_retention {
                    policy.push("zero data retention");
                }
                if p.trains_on_prompts {
                    policy.push("may train on prompts");
                }
                [
                    p.slug.clone(),
                    p.name.clone(),
                    p.kind.clone(),
                    p.base_url.clone(),
                    mask(p.api_key.as_deref()),
                    policy.join(", "),
                ]
            })
            .collect(),
        can_test: console.can(Permission::ProvidersWrite),
        tested,
    })
}

pub(crate) struct ModelView {
    pub id: String,
    pub name: String,
    pub context: String,
    /// provider, upstream, input, output, cache read, per request
    pub endpoints: Vec<[String; 6]>,
}

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    l: Layout,
    models: Vec<ModelView>,
}

pub async fn models(console: Console) -> WebResult {
    console.require(Permission::ModelsRead)?;
    let store = &console.state.store;
    let providers: std::collections::HashMap<String, String> = store
        .list_providers(console.org_id())
        .await?
        .into_iter()
        .map(|p| (p.id, p.slug))
        .collect();
    let models = store.list_models(console.org_id()).await?;
    Ok(page(&ModelsPage {
        l: console.layout("Models & prices", "models").await?,
        models: models
            .iter()
            .map(|m| ModelView {
                id: m.model.id.clone(),
                name: m.model.name.clone(),
                context: thousands(m.model.context_length),
                endpoints: m
                    .endpoints
                    .iter()
                    .map(|e| {
                        [
                            providers
                                .get(&e.provider_id)
                                .cloned()
                                .unwrap_or_else(|| e.provider_id.clone()),
                            e.upstream_model.clone(),
                            per_mtok(e.price_input),
                            per_mtok(e.price_output),
                            per_mtok(e.price_cache_read),
                            usd(e.price_per_request),
                        ]
                    })
                    .collect(),
            })
            .collect(),
    }))
}

#[derive(Template)]
#[template(path = "gateways.html")]
struct GatewaysPage {
    l: Layout,
    current: i64,
    /// node, version, in sync, status, info, first seen, last seen
    nodes: Vec<[String; 7]>,
}

pub async fn gateways(console: Console) -> WebResult {
    // Nodes serve every org: only those who may change config see them.
    console.require(Permission::ProvidersWrite)?;
    let store = &console.state.store;
    let current = i64::try_from(store.config_version().await?).unwrap_or(i64::MAX);
    let nodes = store.list_nodes().await?;
    Ok(page(&GatewaysPage {
        l: console.layout("Gateways", "gateways").await?,
        current,
        nodes: nodes
            .iter()
            .map(|n| {
                [
                    n.node_id.clone(),
                    n.applied_version.to_string(),
                    if n.applied_version >= current {
                        "yes".into()
                    } else {
                        format!("{} behind", current - n.applied_version)
                    },
                    if n.ok {
                        "ok".into()
                    } else {
                        format!("error: {}", n.last_error)
                    },
                    n.node_info.clone(),
                    when(n.first_seen),
                    when(n.last_seen),
                ]
            })
            .collect(),
    }))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    q: AuditQuery,
    /// when, actor, action, target, ip
    rows: Vec<[String; 5]>,
    next: String,
    error: String,
}

#[derive(Deserialize, Default, Clone)]
pub struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    target_type: String,
    #[serde(default)]
    since: String,
    before: Option<i64>,
}

pub async fn audit(console: Console, Query(q): Query<AuditQuery>) -> WebResult {
    console.require(Permission::AuditRead)?;
    let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let mut error = String::new();
    let since = match opt(&q.since) {
        None => None,
        Some(d) => match time::Date::parse(
            &d,
            time::macros::format_description!("[year]-[month]-[day]"),
        ) {
            Ok(date) => Some(date.midnight().assume_utc().unix_timestamp() * 1000),
            Err(_) => {
                error = format!("“{d}” is not a date: use YYYY-MM-DD.");
                None
            }
        },
    };
    let filter = AuditFilter {
        actor_id: opt(&q.actor),
        action: opt(&q.action),
        target_type: opt(&q.target_type),
        target_id: None,
        since,
        until: None,
        before_seq: q.before,
        limit: PAGE_SIZE,
    };
    let entries = console
        .state
        .store
        .list_audit(console.org_id(), &filter)
        .await?;
    let next = match entries.last() {
        Some(last) if entries.len() as i64 == PAGE_SIZE => format!(
            "/audit?action={}&actor={}&target_type={}&since={}&before={}",
            super::format::url_encode(&q.action),
            super::format::url_encode(&q.actor),
            super::format::url_encode(&q.target_type),
            super::format::url_encode(&q.since),
            last.seq
        ),
        _ => String::new(),
    };
    Ok(page(&AuditPage {
        l: console.layout("Audit log", "audit").await?,
        rows: entries
            .iter()
            .map(|e| {
                [
                    when(e.at),
                    format!("{}: {}", e.actor_type, e.actor_id),
                    e.action.clone(),
                    format!("{} {}", e.target_type, e.target_id),
                    e.ip.clone(),
                ]
            })
            .collect(),
        q,
        next,
        error,
    }))
}

// ---------------------------------------------------------------------------------------
// Playground

#[derive(Template)]
#[template(path = "playground.html")]
struct PlaygroundPage {
    l: Layout,
    models: Vec<String>,
    can_create: bool,
}

pub async fn playground(console: Console) -> WebResult {
    console.require(Permission::ModelsRead)?;
    let models = console.state.store.list_models(console.org_id()).await?;
    Ok(page(&PlaygroundPage {
        l: console.layout("Playground", "playground").await?,
        models: models.into_iter().map(|m| m.model.id).collect(),
        can_create: console.can(Permission::KeysWrite) || console.can(Permission::KeysWriteOwn),
    }))
}

/// Mints a one-hour inference key for the playground (owned by the user, audited like any
/// other key), answered as JSON to the page's script.
pub async fn playground_key(console: Console, Form(form): Form<CsrfForm>) -> WebResult {
    console.check_csrf(&form.csrf)?;
    let expires = crate::api::timefmt::iso(now_ms() + 3_600_000);
    let answer = console
        .api(
            Method::POST,
            "/api/v1/keys",
            Some(&json!({ "name": format!("playground ({})", console.email), "expires_at": expires })),
        )
        .await?;
    let body: Value = if answer.ok() {
        json!({ "key": answer.body["key"], "expires_at": expires })
    } else {
        json!({ "error": answer.message() })
    };
    Ok((answer.status, axum::Json(body)).into_response())
}
