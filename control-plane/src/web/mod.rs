//! The web console: server-rendered pages (askama templates from `web/templates`, compiled
//! into the binary), a stylesheet and a little project-owned script from `web/static`, and
//! server-rendered SVG charts. Mounted at `/` on the control plane's HTTP listener.
//!
//! Reads go straight to the store, scoped by the session's org and gated by the same
//! `Permission` checks as the REST API. Every change is made by dispatching the form, as
//! JSON, to the REST API in-process (`Console::api`) with the session cookie and CSRF token:
//! validation, RBAC, audit and config versioning stay in one place.

mod billing;
mod budgets;
mod charts;
mod connections;
mod explorer;
mod format;
mod pages;
mod statements;
mod teams;

use std::net::SocketAddr;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tower::ServiceExt;

use crate::api::AppState;
use crate::api::principal::{Principal, RequestMeta, from_session};
use crate::identity::{Permission, allows};
use crate::store::{Role, StoreError};

const CSS: &str = include_str!("../../../web/static/console.css");
const JS: &str = include_str!("../../../web/static/console.js");
/// Largest API answer the console reads back.
const MAX_API_BODY: usize = 4 << 20;

/// Console routes, merged into the API router (which owns the state and the fallback).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/switch-org", post(pages::switch_org))
        .route("/invite", get(pages::accept_form).post(pages::accept))
        .route("/keys", get(pages::keys).post(pages::create_key))
        .route(
            "/keys/{hash}",
            get(pages::key_detail).post(pages::update_key),
        )
        .route("/keys/{hash}/disable", post(pages::toggle_key))
        .route(
            "/keys/{hash}/rotate",
            get(pages::rotate_confirm).post(pages::rotate_key),
        )
        .route(
            "/keys/{hash}/delete",
            get(pages::delete_confirm).post(pages::delete_key),
        )
        .route("/usage", get(explorer::usage))
        .route("/usage.csv", get(explorer::usage_csv))
        .route("/requests", get(pages::requests))
        .route("/requests/{id}", get(pages::request_detail))
        .route("/members", get(pages::members))
        .route("/members/invite", post(pages::invite))
        .route("/members/{user}/role", post(pages::change_role))
        .route(
            "/members/{user}/remove",
            get(pages::remove_confirm).post(pages::remove_member),
        )
        .route("/invitations/{id}/revoke", post(pages::revoke_invitation))
        .route("/teams", get(teams::teams).post(teams::create_team))
        .route("/teams/{team}/members", post(teams::add_member))
        .route(
            "/teams/{team}/members/{user}/remove",
            post(teams::remove_member),
        )
        .route("/providers", get(pages::providers))
        .route("/providers/{slug}/test", post(connections::test_provider))
        .route("/login/sso", get(connections::sso_start))
        .route("/models", get(pages::models))
        .route(
            "/models/{author}/{slug}/prices",
            get(billing::prices).post(billing::add_price),
        )
        .route("/billing", get(billing::billing))
        .route(
            "/budgets",
            get(budgets::budgets).post(budgets::create_budget),
        )
        .route("/billing/checkout", post(billing::checkout))
        .route("/billing/statements/{month}", get(statements::statement))
        .route("/gateways", get(pages::gateways))
        .route("/audit", get(pages::audit))
        .route("/playground", get(pages::playground))
        .route("/playground/key", post(pages::playground_key))
        .route(
            "/static/console.css",
            get(|| async { asset(CSS, "text/css") }),
        )
        .route(
            "/static/console.js",
            get(|| async { asset(JS, "text/javascript") }),
        )
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, format!("{kind}; charset=utf-8")),
            (header::CACHE_CONTROL, "public, max-age=300".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// Renders a template as a page with the console's security headers.
pub(crate) fn page<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => with_headers(Html(html).into_response()),
        Err(err) => {
            tracing::error!(error = %err, "rendering a console page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not render this page",
            )
                .into_response()
        }
    }
}

fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src *; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Navigation entries: (path, label, section).
pub(crate) const NAV: &[(&str, &str, &str)] = &[
    ("/", "Overview", "overview"),
    ("/keys", "API keys", "keys"),
    ("/usage", "Usage explorer", "usage"),
    ("/requests", "Request log", "requests"),
    ("/billing", "Credits & billing", "billing"),
    ("/budgets", "Budgets", "budgets"),
    ("/members", "Members", "members"),
    ("/teams", "Teams", "teams"),
    ("/providers", "Providers", "providers"),
    ("/models", "Models & prices", "models"),
    ("/gateways", "Gateways", "gateways"),
    ("/audit", "Audit log", "audit"),
    ("/playground", "Playground", "playground"),
];

/// What the layout shows around every signed-in page.
pub(crate) struct Layout {
    pub title: String,
    pub section: &'static str,
    pub email: String,
    pub org_id: String,
    pub org_name: String,
    pub role: String,
    /// (id, name) of every org the user belongs to.
    pub orgs: Vec<(String, String)>,
    pub csrf: String,
    /// One-time notice at the top of the page.
    pub notice: String,
}

impl Layout {
    pub fn nav(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        NAV
    }

    pub fn is_current(&self, section: &str) -> bool {
        self.section == section
    }

    pub fn is_org(&self, org_id: &str) -> bool {
        self.org_id == org_id
    }
}

/// A signed-in console user in the session's current org.
pub(crate) struct Console {
    pub state: AppState,
    pub principal: Principal,
    pub email: String,
    pub csrf: String,
    headers: HeaderMap,
    connect: Option<ConnectInfo<SocketAddr>>,
}

/// Why a console request could not be answered; renders as a page.
pub(crate) enum WebError {
    SignIn(String),
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    Internal(String),
}

impl From<StoreError> for WebError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => WebError::NotFound("Not found.".into()),
            other => {
                tracing::error!(error = %other, "console store error");
                WebError::Internal("The database is unavailable; try again shortly.".into())
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            WebError::SignIn(next) => {
                let target = if next.is_empty() || next == "/" {
                    "/login".to_owned()
                } else {
                    format!("/login?next={}", format::url_encode(&next))
                };
                return Redirect::to(&target).into_response();
            }
            WebError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            WebError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            WebError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            WebError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", m),
        };
        let mut response = page(&ErrorPage {
            title,
            message: &message,
        });
        *response.status_mut() = status;
        response
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let next = if parts.method == Method::GET {
            next
        } else {
            String::new()
        };
        // The session is read as for a GET: forms carry their CSRF token in the body, checked
        // by `check_csrf`, and the REST API checks it again on every change.
        let (mut probe, ()) = Request::new(()).into_parts();
        probe.headers = parts.headers.clone();
        probe.extensions = parts.extensions.clone();
        let meta = RequestMeta::from_parts(parts);
        let principal = match from_session(state, &probe, meta).await {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => return Err(WebError::SignIn(next)),
        };
        let (email, csrf) = match &principal.actor {
            crate::api::principal::Actor::User { email, claims, .. } => {
                (email.clone(), claims.csrf.clone())
            }
            crate::api::principal::Actor::Key { .. } => return Err(WebError::SignIn(next)),
        };
        Ok(Console {
            state: state.clone(),
            principal,
            email,
            csrf,
            headers: parts.headers.clone(),
            connect: parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned(),
        })
    }
}

/// The browser's address, when the listener recorded it (for the audit log and login limits).
pub(crate) struct Peer(pub Option<ConnectInfo<SocketAddr>>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned(),
        ))
    }
}

/// The REST API's answer to an in-process call.
pub(crate) struct ApiAnswer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl ApiAnswer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The API's error message (its `{"error":{"message"}}` envelope).
    pub fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the request failed ({})", self.status))
    }

    /// Redirects to `to`, passing on any cookies the API set.
    pub fn redirect_with_cookies(&self, to: &str) -> Response {
        let mut response = Redirect::to(to).into_response();
        for cookie in self.headers.get_all(header::SET_COOKIE) {
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie.clone());
        }
        response
    }
}

/// Calls the REST API in-process with the browser's cookies and address.
pub(crate) async fn dispatch(
    state: &AppState,
    incoming: &HeaderMap,
    connect: Option<ConnectInfo<SocketAddr>>,
    csrf: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<ApiAnswer, WebError> {
    let mut builder = Request::builder().method(method).uri(path);
    for name in [
        header::COOKIE,
        header::USER_AGENT,
        header::HeaderName::from_static("x-forwarded-for"),
        header::HeaderName::from_static("x-forwarded-proto"),
    ] {
        for value in incoming.get_all(&name) {
            builder = builder.header(&name, value);
        }
    }
    if let Some(csrf) = csrf {
        builder = builder.header(crate::identity::session::CSRF_HEADER, csrf);
    }
    let request_body = match body {
        Some(v) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let mut request = builder
        .body(request_body)
        .map_err(|e| WebError::Internal(format!("could not build the API request: {e}")))?;
    if let Some(c) = connect {
        request.extensions_mut().insert(c);
    }
    let response = match crate::api::router(state.clone()).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_API_BODY)
        .await
        .map_err(|e| WebError::Internal(format!("could not read the API's answer: {e}")))?;
    Ok(ApiAnswer {
        status: parts.status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers: parts.headers,
    })
}

impl Console {
    pub fn can(&self, permission: Permission) -> bool {
        self.principal.can(permission)
    }

    pub fn role(&self) -> Option<Role> {
        self.principal.role
    }

    pub fn org_id(&self) -> &str {
        self.principal.org_id()
    }

    pub fn require(&self, permission: Permission) -> Result<(), WebError> {
        if self.can(permission) {
            return Ok(());
        }
        let role = self.role().map_or("no".to_owned(), |r| r.to_string());
        Err(WebError::Forbidden(format!(
            "Your role ({role}) does not have the `{permission}` permission. Ask an admin of this org."
        )))
    }

    /// A form's CSRF token must be the session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), WebError> {
        if !token.is_empty() && token == self.csrf {
            Ok(())
        } else {
            Err(WebError::Forbidden(
                "This form has expired (missing or wrong CSRF token). Reload the page and try again."
                    .into(),
            ))
        }
    }

    /// Calls the REST API as this session (after `check_csrf`).
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiAnswer, WebError> {
        dispatch(
            &self.state,
            &self.headers,
            self.connect,
            Some(&self.csrf),
            method,
            path,
            body,
        )
        .await
    }

    pub async fn layout(&self, title: &str, section: &'static str) -> Result<Layout, WebError> {
        let user_id = self.principal.user_id().unwrap_or_default().to_owned();
        let memberships = self.state.store.list_user_orgs(&user_id).await?;
        let org_name = memberships
            .iter()
            .find(|m| m.org_id == self.org_id())
            .map(|m| m.org_name.clone())
            .unwrap_or_else(|| self.org_id().to_owned());
        Ok(Layout {
            title: title.to_owned(),
            section,
            email: self.email.clone(),
            org_id: self.org_id().to_owned(),
            org_name,
            role: self.role().map_or("none".to_owned(), |r| r.to_string()),
            orgs: memberships
                .into_iter()
                .map(|m| (m.org_id, m.org_name))
                .collect(),
            csrf: self.csrf.clone(),
            notice: String::new(),
        })
    }
}

/// Whether `role` may do `permission` (for templates deciding what to offer).
pub(crate) fn role_can(role: Option<Role>, permission: Permission) -> bool {
    role.is_some_and(|r| allows(r, permission))
}
