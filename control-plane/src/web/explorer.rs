//! The usage explorer (`/usage`): the daily rollup filtered by date range, key, model and
//! provider, grouped by up to three of day/key/model/provider, as a table, an SVG chart and a
//! CSV download (`/usage.csv`, same query string). A plain GET form: works without script.

use std::collections::HashMap;

use askama::Template;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::format::{thousands, url_encode, usd};
use super::{Console, Layout, WebError, charts, page};
use crate::identity::Permission;
use crate::store::console::{DAY_MS, Dimension, ExploreQuery, ExploreRow};
use crate::store::now_ms;

const MAX_DAYS: i64 = 366;
const ROW_LIMIT: i64 = 2_000;

#[derive(Deserialize, Default, Clone)]
pub struct ExploreForm {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub provider: String,
    /// Owner of the keys (user id).
    #[serde(default)]
    pub user: String,
    /// Owner of the keys (team id).
    #[serde(default)]
    pub team: String,
    /// One tag as `key=value` (request metadata, `X-Switchyard-Tags`, user, session).
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub group1: String,
    #[serde(default)]
    pub group2: String,
    #[serde(default)]
    pub group3: String,
}

fn day_text(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day * 86_400)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!("[year]-[month]-[day]"))
                .ok()
        })
        .unwrap_or_default()
}

fn parse_day(field: &str, text: &str) -> Result<i64, String> {
    time::Date::parse(
        text.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map(|d| {
        d.midnight()
            .assume_utc()
            .unix_timestamp()
            .div_euclid(86_400)
    })
    .map_err(|_| format!("{field} “{}” is not a date: use YYYY-MM-DD.", text.trim()))
}

/// Fills in the form's defaults and checks it: the form as shown, and the query or what is
/// wrong with it.
fn plan(mut f: ExploreForm) -> (ExploreForm, Result<ExploreQuery, String>) {
    let today = now_ms().div_euclid(DAY_MS);
    if f.to.trim().is_empty() {
        f.to = day_text(today);
    }
    if f.from.trim().is_empty() {
        f.from = day_text(today - 29);
    }
    let groups: Vec<String> = [&f.group1, &f.group2, &f.group3]
        .iter()
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty())
        .collect();
    if groups.is_empty() {
        f.group1 = "day".into();
    }
    let checked = (|| {
        let from = parse_day("From", &f.from)?;
        let to = parse_day("To", &f.to)?;
        if from > to {
            return Err("“From” must not be after “To”.".to_owned());
        }
        if to - from >= MAX_DAYS {
            return Err(format!(
                "Pick at most {MAX_DAYS} days; this range has {}.",
                to - from + 1
            ));
        }
        let mut group_by = Vec::new();
        for g in if groups.is_empty() {
            vec!["day".to_owned()]
        } else {
            groups.clone()
        } {
            let d = Dimension::parse(&g).ok_or_else(|| {
                format!("Unknown grouping “{g}”: use day, key, model or provider.")
            })?;
            if group_by.contains(&d) {
                return Err(format!("Group by “{g}” only once."));
            }
            group_by.push(d);
        }
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let tag = match f.tag.trim() {
            "" => None,
            text => match text.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    Some((k.trim().to_owned(), v.trim().to_owned()))
                }
                _ => {
                    return Err(format!(
                        "Tag “{text}” is not key=value (for example team=search)."
                    ));
                }
            },
        };
        Ok(ExploreQuery {
            from_day: from,
            to_day: to + 1,
            key_hash: opt(&f.key),
            model: opt(&f.model),
            provider: opt(&f.provider),
            owner_user: opt(&f.user),
            owner_team: opt(&f.team),
            tag,
            group_by,
            limit: ROW_LIMIT,
        })
    })();
    (f, checked)
}

fn query_string(f: &ExploreForm) -> String {
    [
        ("from", &f.from),
        ("to", &f.to),
        ("key", &f.key),
        ("model", &f.model),
        ("provider", &f.provider),
        ("user", &f.user),
        ("team", &f.team),
        ("tag", &f.tag),
        ("group1", &f.group1),
        ("group2", &f.group2),
        ("group3", &f.group3),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}", url_encode(v)))
    .collect::<Vec<_>>()
    .join("&")
}

pub(crate) struct ExploreView {
    pub keys: Vec<String>,
    pub requests: String,
    pub errors: String,
    pub tokens_in: String,
    pub tokens_out: String,
    pub cost: String,
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    l: Layout,
    f: ExploreForm,
    error: String,
    /// (value, label) choices for the filters.
    keys: Vec<(String, String)>,
    models: Vec<String>,
    providers: Vec<String>,
    /// (user id, name) and (team id, name) choices for the owner filters.
    users: Vec<(String, String)>,
    teams: Vec<(String, String)>,
    group_options: Vec<(usize, Vec<(&'static str, bool)>)>,
    headers: Vec<&'static str>,
    rows: Vec<ExploreView>,
    total: ExploreView,
    chart: String,
    csv: String,
    truncated: bool,
}

/// The three group-by selects: (slot, [(dimension, selected)]).
fn group_options(f: &ExploreForm) -> Vec<(usize, Vec<(&'static str, bool)>)> {
    [&f.group1, &f.group2, &f.group3]
        .iter()
        .enumerate()
        .map(|(i, g)| {
            (
                i + 1,
                Dimension::ALL
                    .iter()
                    .map(|d| (d.name(), g.as_str() == d.name()))
                    .collect(),
            )
        })
        .collect()
}

fn view(keys: Vec<String>, r: &ExploreRow) -> ExploreView {
    ExploreView {
        keys,
        requests: thousands(r.requests),
        errors: thousands(r.errors),
        tokens_in: thousands(r.input_tokens),
        tokens_out: thousands(r.output_tokens),
        cost: usd(r.cost_nanos),
    }
}

async fn key_names(console: &Console) -> Result<HashMap<String, String>, WebError> {
    Ok(console
        .state
        .store
        .list_keys(console.org_id(), 0, 1000, true)
        .await?
        .into_iter()
        .map(|k| (k.hash, k.name))
        .collect())
}

fn show(dim: Dimension, raw: &str, names: &HashMap<String, String>) -> String {
    match dim {
        Dimension::Day => raw.parse().map(day_text).unwrap_or_default(),
        Dimension::Key => names
            .get(raw)
            .cloned()
            .unwrap_or_else(|| format!("{}…", raw.get(..8).unwrap_or(raw))),
        _ => raw.to_owned(),
    }
}

pub async fn usage(
    console: Console,
    Query(form): Query<ExploreForm>,
) -> Result<Response, WebError> {
    console.require(Permission::UsageRead)?;
    let store = &console.state.store;
    let names = key_names(&console).await?;
    let (f, plan) = plan(form);
    let (plan, error) = match plan {
        Ok(q) => (Some(q), String::new()),
        Err(e) => (None, e),
    };
    let today = now_ms().div_euclid(DAY_MS);
    let (from_day, to_day) = plan
        .as_ref()
        .map_or((today - 29, today + 1), |q| (q.from_day, q.to_day));
    let choices = store
        .explore_choices(console.org_id(), from_day, to_day)
        .await?;
    let rows = match &plan {
        Some(q) => store.explore_usage(console.org_id(), q).await?,
        None => Vec::new(),
    };
    let dims = plan
        .as_ref()
        .map(|q| q.group_by.clone())
        .unwrap_or_default();
    let mut total = ExploreRow::default();
    for r in &rows {
        total.requests += r.requests;
        total.errors += r.errors;
        total.input_tokens += r.input_tokens;
        total.output_tokens += r.output_tokens;
        total.cost_nanos += r.cost_nanos;
    }
    let labelled: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            dims.iter()
                .zip(&r.keys)
                .map(|(d, k)| show(*d, k, &names))
                .collect()
        })
        .collect();
    let chart = if dims == [Dimension::Day] {
        // Every day of the range, zero where nothing ran.
        let by_day: HashMap<&str, i64> = rows
            .iter()
            .filter_map(|r| r.keys.first().map(|k| (k.as_str(), r.cost_nanos)))
            .collect();
        let points: Vec<(String, i64, String)> = (from_day..to_day)
            .map(|d| {
                let cost = by_day.get(d.to_string().as_str()).copied().unwrap_or(0);
                (day_text(d), cost.max(0), usd(cost))
            })
            .collect();
        charts::bars("Spend per day", &points)
    } else {
        let points: Vec<(String, i64, String)> = rows
            .iter()
            .zip(&labelled)
            .take(12)
            .map(|(r, l)| (l.join(" · "), r.cost_nanos.max(0), usd(r.cost_nanos)))
            .collect();
        charts::hbars("Spend by group", &points)
    };
    let mut keys: Vec<(String, String)> = choices
        .keys
        .iter()
        .map(|h| (h.clone(), show(Dimension::Key, h, &names)))
        .collect();
    if !f.key.is_empty() && !keys.iter().any(|(h, _)| *h == f.key) {
        keys.push((f.key.clone(), show(Dimension::Key, &f.key, &names)));
    }
    let p = UsagePage {
        l: console.layout("Usage explorer", "usage").await?,
        csv: format!("/usage.csv?{}", query_string(&f)),
        truncated: rows.len() as i64 >= ROW_LIMIT,
        rows: rows.iter().zip(labelled).map(|(r, l)| view(l, r)).collect(),
        total: view(Vec::new(), &total),
        headers: dims.iter().map(|d| header_of(*d)).collect(),
        group_options: group_options(&f),
        keys,
        models: choices.models,
        providers: choices.providers,
        // Owners to filter by: the org's members and teams (key ownership is by id).
        users: store
            .list_members(console.org_id())
            .await?
            .into_iter()
            .map(|m| (m.user_id, if m.name.is_empty() { m.email } else { m.name }))
            .collect(),
        teams: store
            .list_teams(console.org_id())
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect(),
        chart,
        f,
        error: error.clone(),
    };
    let mut response = page(&p);
    if !error.is_empty() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

fn header_of(d: Dimension) -> &'static str {
    match d {
        Dimension::Day => "Day",
        Dimension::Key => "Key",
        Dimension::Model => "Model",
        Dimension::Provider => "Provider",
    }
}

fn csv_field(s: &str) -> String {
    // Quote everything and neutralise spreadsheet formulas (CSV injection), as the API does.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The explorer's table as CSV (keys as their hashes, days as dates).
pub async fn usage_csv(
    console: Console,
    Query(form): Query<ExploreForm>,
) -> Result<Response, WebError> {
    console.require(Permission::UsageRead)?;
    let q = plan(form).1.map_err(WebError::BadRequest)?;
    let rows = console
        .state
        .store
        .explore_usage(console.org_id(), &q)
        .await?;
    let mut out: Vec<String> = q.group_by.iter().map(|d| d.name().to_owned()).collect();
    out.extend(
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
    let mut text = out.join(",");
    text.push('\n');
    let none = HashMap::new();
    for r in &rows {
        let mut fields: Vec<String> = q
            .group_by
            .iter()
            .zip(&r.keys)
            .map(|(d, k)| {
                let shown = if *d == Dimension::Key {
                    k.clone()
                } else {
                    show(*d, k, &none)
                };
                csv_field(&shown)
            })
            .collect();
        fields.extend([
            r.requests.to_string(),
            r.errors.to_string(),
            usd(r.cost_nanos).trim_start_matches('$').to_owned(),
            r.cost_nanos.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.reasoning_tokens.to_string(),
            r.cache_read_tokens.to_string(),
            r.cache_write_tokens.to_string(),
        ]);
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    let name = format!(
        "attachment; filename=\"usage-{}-{}.csv\"",
        day_text(q.from_day),
        day_text(q.to_day - 1)
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explorer_form_validation() {
        let ok = plan(ExploreForm {
            from: "2026-01-01".into(),
            to: "2026-01-31".into(),
            group1: "model".into(),
            group2: "day".into(),
            ..ExploreForm::default()
        })
        .1
        .ok();
        let q = ok.unwrap_or_default();
        assert_eq!(q.to_day - q.from_day, 31);
        assert_eq!(q.group_by, vec![Dimension::Model, Dimension::Day]);
        let bad = |f: ExploreForm| plan(f).1.err().unwrap_or_default();
        assert!(
            bad(ExploreForm {
                from: "yesterday".into(),
                ..ExploreForm::default()
            })
            .contains("YYYY-MM-DD")
        );
        assert!(
            bad(ExploreForm {
                from: "2026-02-01".into(),
                to: "2026-01-01".into(),
                ..ExploreForm::default()
            })
            .contains("after")
        );
        assert!(
            bad(ExploreForm {
                from: "2024-01-01".into(),
                to: "2026-01-01".into(),
                ..ExploreForm::default()
            })
            .contains("at most")
        );
        assert!(
            bad(ExploreForm {
                group1: "key".into(),
                group2: "key".into(),
                ..ExploreForm::default()
            })
            .contains("once")
        );
        assert!(
            bad(ExploreForm {
                group1: "colour".into(),
                ..ExploreForm::default()
            })
            .contains("Unknown grouping")
        );
        assert_eq!(csv_field("=HYPERLINK()"), "\"'=HYPERLINK()\"");
        assert_eq!(day_text(0), "1970-01-01");
    }
}
