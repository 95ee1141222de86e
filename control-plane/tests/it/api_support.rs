//! A control-plane REST API in process (the real router over a real store), driven with
//! `tower::ServiceExt::oneshot`: no sockets, no sleeps.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard_control_plane::api::{self, AppState};
use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::store::Store;
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct App {
    pub router: Router,
    pub store: Arc<dyn Store>,
    /// The bootstrap org and its management and inference keys.
    pub org: String,
    pub mgmt: String,
    pub inference: String,
    _keep: Box<dyn std::any::Any + Send>,
}

/// Credentials of one request.
#[derive(Clone, Debug)]
pub enum Cred {
    None,
    Key(String),
    Session {
        cookie: String,
        csrf: String,
    },
    /// A session cookie without the CSRF header (what a cross-site form post sends).
    CookieOnly(String),
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl App {
    pub async fn sqlite() -> App {
        let (store, dir) = crate::common::sqlite_store().await;
        App::on(store, Box::new(dir)).await
    }

    pub async fn postgres() -> Option<App> {
        let (store, guard) = crate::common::postgres_store().await?;
        Some(App::on(store, Box::new(guard)).await)
    }

    async fn on(store: Arc<dyn Store>, keep: Box<dyn std::any::Any + Send>) -> App {
        let first = bootstrap::ensure(&store, BootstrapOptions::default())
            .await
            .unwrap()
            .expect("a fresh database bootstraps");
        let state = AppState::new(store.clone(), Arc::new(tokio::sync::Notify::new()), false)
            .await
            .unwrap();
        App {
            router: api::router(state),
            store,
            org: first.org_id.clone(),
            mgmt: first.management_key.expose().to_owned(),
            inference: first.api_key.expose().to_owned(),
            _keep: keep,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::USER_AGENT, "switchyard-tests");
        match cred {
            Cred::None => {}
            Cred::Key(k) => req = req.header(header::AUTHORIZATION, format!("Bearer {k}")),
            Cred::Session { cookie, csrf } => {
                req = req
                    .header(header::COOKIE, cookie)
                    .header("x-csrf-token", csrf);
            }
            Cred::CookieOnly(cookie) => req = req.header(header::COOKIE, cookie),
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, cred: &Cred) -> Reply {
        self.call(Method::GET, path, cred, None).await
    }

    pub async fn post(&self, path: &str, cred: &Cred, body: Value) -> Reply {
        self.call(Method::POST, path, cred, Some(body)).await
    }

    pub fn mgmt(&self) -> Cred {
        Cred::Key(self.mgmt.clone())
    }

    /// Creates (or adds) `email` as a member of the bootstrap org with `role`, via the API.
    pub async fn add_member(&self, email: &str, role: &str) -> String {
        let r = self
            .post(
                &format!("/api/v1/orgs/{}/members", self.org),
                &self.mgmt(),
                json!({ "email": email, "role": role, "password": PASSWORD }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["data"]["user_id"].as_str().unwrap().to_owned()
    }

    pub async fn login(&self, email: &str) -> Cred {
        let r = self
            .post(
                "/api/v1/auth/login",
                &Cred::None,
                json!({ "email": email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        session_from(&r)
    }
}

/// The session credentials a login (or invitation accept) answered with.
pub fn session_from(r: &Reply) -> Cred {
    let cookie = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("sy_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let csrf = r.body["data"]["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_owned();
    Cred::Session { cookie, csrf }
}
