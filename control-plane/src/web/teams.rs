//! Teams (`/teams`): list teams with their members, create a team, add or remove a member.
//! Changes go through the REST API in-process (`/api/v1/orgs/{org}/teams…`), which checks
//! `teams.write` and audits them.

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::format::{url_encode, when};
use super::{Console, Layout, WebError, page};
use crate::identity::Permission;

type WebResult = Result<Response, WebError>;

pub(crate) struct TeamView {
    pub id: String,
    pub name: String,
    pub created: String,
    /// (user id, email)
    pub members: Vec<(String, String)>,
    /// Org members not yet in the team: (user id, email).
    pub candidates: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "teams.html")]
struct TeamsPage {
    l: Layout,
    teams: Vec<TeamView>,
    can_write: bool,
    name: String,
    error: String,
    /// The team whose add-member form failed, and why.
    member_error: (String, String),
}

async fn teams_page(
    console: &Console,
    name: String,
    error: String,
    member_error: (String, String),
) -> Result<TeamsPage, WebError> {
    console.require(Permission::MembersRead)?;
    let store = &console.state.store;
    let org = console.org_id();
    let members = store.list_members(org).await?;
    let mut teams = Vec::new();
    for t in store.list_teams(org).await? {
        let in_team = store.list_team_members(org, &t.id).await?;
        teams.push(TeamView {
            members: in_team
                .iter()
                .map(|m| (m.user_id.clone(), m.email.clone()))
                .collect(),
            candidates: members
                .iter()
                .filter(|m| !in_team.iter().any(|x| x.user_id == m.user_id))
                .map(|m| (m.user_id.clone(), m.email.clone()))
                .collect(),
            id: t.id,
            name: t.name,
            created: when(t.created_at),
        });
    }
    Ok(TeamsPage {
        l: console.layout("Teams", "teams").await?,
        teams,
        can_write: console.can(Permission::TeamsWrite),
        name,
        error,
        member_error,
    })
}

pub async fn teams(console: Console) -> WebResult {
    Ok(page(
        &teams_page(&console, String::new(), String::new(), Default::default()).await?,
    ))
}

#[derive(Deserialize, Default)]
pub struct TeamForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub async fn create_team(console: Console, Form(form): Form<TeamForm>) -> WebResult {
    console.check_csrf(&form.csrf)?;
    console.require(Permission::TeamsWrite)?;
    let invalid = |e: String| async {
        let mut r = page(&teams_page(&console, form.name.clone(), e, Default::default()).await?);
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok::<_, WebError>(r)
    };
    let name = form.name.trim();
    if name.is_empty() {
        return invalid("Give the team a name, such as “search” or “data science”.".into()).await;
    }
    if name.chars().count() > 200 {
        return invalid("Team names are at most 200 characters.".into()).await;
    }
    let answer = console
        .api(
            Method::POST,
            &format!("/api/v1/orgs/{}/teams", url_encode(console.org_id())),
            Some(&json!({ "name": name })),
        )
        .await?;
    if !answer.ok() {
        return invalid(answer.message()).await;
    }
    let mut p = teams_page(&console, String::new(), String::new(), Default::default()).await?;
    p.l.notice = format!("Team “{name}” created.");
    Ok(page(&p))
}

#[derive(Deserialize, Default)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_id: String,
}

pub async fn add_member(
    console: Console,
    Path(team): Path<String>,
    Form(form): Form<MemberForm>,
) -> WebResult {
    console.check_csrf(&form.csrf)?;
    console.require(Permission::TeamsWrite)?;
    if form.user_id.trim().is_empty() {
        let mut r = page(
            &teams_page(
                &console,
                String::new(),
                String::new(),
                (team, "Pick a member of the org to add.".into()),
            )
            .await?,
        );
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(r);
    }
    let answer = console
        .api(
            Method::PUT,
            &format!(
                "/api/v1/orgs/{}/teams/{}/members/{}",
                url_encode(console.org_id()),
                url_encode(&team),
                url_encode(form.user_id.trim())
            ),
            None,
        )
        .await?;
    if !answer.ok() {
        let mut r = page(
            &teams_page(
                &console,
                String::new(),
                String::new(),
                (team, answer.message()),
            )
            .await?,
        );
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(r);
    }
    Ok(Redirect::to("/teams").into_response())
}

pub async fn remove_member(
    console: Console,
    Path((team, user)): Path<(String, String)>,
    Form(form): Form<MemberForm>,
) -> WebResult {
    console.check_csrf(&form.csrf)?;
    console.require(Permission::TeamsWrite)?;
    let answer = console
        .api(
            Method::DELETE,
            &format!(
                "/api/v1/orgs/{}/teams/{}/members/{}",
                url_encode(console.org_id()),
                url_encode(&team),
                url_encode(&user)
            ),
            None,
        )
        .await?;
    if !answer.ok() {
        return Err(WebError::BadRequest(answer.message()));
    }
    Ok(Redirect::to("/teams").into_response())
}
