//! Budgets (`/budgets`): every budget of the org with its spend in the current window as a
//! bar, and a form to create one. Reads and writes go through `/api/v1/budgets` in-process,
//! so the spend shown is the API's (summed from the ledger) and RBAC/audit stay there.

use askama::Template;
use axum::Form;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::Money;

use super::format::usd;
use super::{Console, Layout, WebError, charts, page};
use crate::identity::Permission;

type WebResult = Result<Response, WebError>;

pub(crate) struct BudgetView {
    pub name: String,
    pub scope: String,
    pub window: String,
    pub spent: String,
    pub limit: String,
    pub percent: String,
    pub over: bool,
    pub bar: String,
}

#[derive(Template)]
#[template(path = "budgets.html")]
struct BudgetsPage {
    l: Layout,
    budgets: Vec<BudgetView>,
    can_write: bool,
    /// (team id, name) for the scope picker's hint.
    teams: Vec<(String, String)>,
    form: BudgetForm,
    error: String,
}

#[derive(Deserialize, Default, Clone)]
pub struct BudgetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub scope_id: String,
    #[serde(default)]
    pub limit: String,
    #[serde(default)]
    pub window: String,
}

impl BudgetsPage {
    fn scope_is(&self, s: &str) -> bool {
        self.form.scope == s || (self.form.scope.is_empty() && s == "org")
    }

    fn window_is(&self, w: &str) -> bool {
        self.form.window == w || (self.form.window.is_empty() && w == "monthly")
    }
}

fn view(b: &Value) -> BudgetView {
    let spent = b["spent_nanos"].as_i64().unwrap_or(0);
    let limit = b["limit_nanos"].as_i64().unwrap_or(0);
    let percent = b["percent_used"].as_f64().unwrap_or(0.0);
    let scope = match (b["scope"].as_str(), b["scope_id"].as_str()) {
        (Some(s), Some(id)) if !id.is_empty() => format!("{s} {id}"),
        (Some(s), _) => s.to_owned(),
        _ => String::new(),
    };
    let name = b["name"].as_str().unwrap_or_default();
    BudgetView {
        name: if name.is_empty() {
            scope.clone()
        } else {
            name.to_owned()
        },
        window: b["window"].as_str().unwrap_or_default().to_owned(),
        spent: usd(spent),
        limit: usd(limit),
        percent: format!("{percent:.1}%"),
        over: limit > 0 && spent >= limit,
        bar: charts::meter(&format!("{} of {}", usd(spent), usd(limit)), percent),
        scope,
    }
}

async fn budgets_page(
    console: &Console,
    form: BudgetForm,
    error: String,
) -> Result<BudgetsPage, WebError> {
    console.require(Permission::BillingRead)?;
    let answer = console.api(Method::GET, "/api/v1/budgets", None).await?;
    if !answer.ok() {
        return Err(WebError::Internal(answer.message()));
    }
    let budgets = answer.body["data"]
        .as_array()
        .map(|a| a.iter().map(view).collect())
        .unwrap_or_default();
    let teams = console
        .state
        .store
        .list_teams(console.org_id())
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    Ok(BudgetsPage {
        l: console.layout("Budgets", "budgets").await?,
        budgets,
        can_write: console.can(Permission::BillingWrite),
        teams,
        form,
        error,
    })
}

pub async fn budgets(console: Console) -> WebResult {
    Ok(page(
        &budgets_page(&console, BudgetForm::default(), String::new()).await?,
    ))
}

/// The form's limit as a USD number for the API (which takes a JSON number).
fn limit_usd(text: &str) -> Result<f64, String> {
    let t = text.trim().trim_start_matches('$').replace(',', "");
    match Money::parse_usd(&t) {
        Ok(m) if m.nanos() > 0 => Ok(m.as_usd_f64()),
        _ => Err(format!(
            "Limit must be a dollar amount above zero, such as 100 or 2500.50, not “{}”.",
            text.trim()
        )),
    }
}

pub async fn create_budget(console: Console, Form(form): Form<BudgetForm>) -> WebResult {
    console.check_csrf(&form.csrf)?;
    console.require(Permission::BillingWrite)?;
    let invalid = |e: String| async {
        let mut r = page(&budgets_page(&console, form.clone(), e).await?);
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok::<_, WebError>(r)
    };
    let limit = match limit_usd(&form.limit) {
        Ok(l) => l,
        Err(e) => return invalid(e).await,
    };
    let scope = if form.scope.is_empty() {
        "org"
    } else {
        form.scope.as_str()
    };
    let scope_id = form.scope_id.trim();
    if scope != "org" && scope_id.is_empty() {
        return invalid(format!(
            "A {scope} budget needs its {}.",
            match scope {
                "team" => "team",
                "user" => "member's user ID",
                _ => "tag as key=value",
            }
        ))
        .await;
    }
    let window = if form.window.is_empty() {
        "monthly"
    } else {
        form.window.as_str()
    };
    let mut body = json!({ "scope": scope, "limit": limit, "window": window });
    if scope != "org" {
        body["scope_id"] = json!(scope_id);
    }
    if !form.name.trim().is_empty() {
        body["name"] = json!(form.name.trim());
    }
    let answer = console
        .api(Method::POST, "/api/v1/budgets", Some(&body))
        .await?;
    if !answer.ok() {
        return invalid(answer.message()).await;
    }
    let mut p = budgets_page(&console, BudgetForm::default(), String::new()).await?;
    p.l.notice = "Budget created.".into();
    Ok(page(&p))
}

#[cfg(test)]
mod tests {
    #[test]
    fn budget_limits() {
        assert_eq!(super::limit_usd("$1,000.50"), Ok(1000.5));
        assert!(super::limit_usd("0").is_err());
        assert!(super::limit_usd("ten").unwrap_err().contains("dollar"));
    }
}
