//! Outbound checks the console starts: "Test connection" of a provider (the control plane
//! lists the provider's models with its stored credential, through the SSRF guard that
//! provider URLs pass on creation) and single sign-on from the sign-in page.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use switchyard_gateway::ssrf::{UrlPolicy, check_ip, check_url};

use super::format::url_encode;
use super::pages::{LoginPage, providers_page, safe_next};
use super::{Console, WebError, page};
use crate::api::AppState;
use crate::identity::Permission;
use crate::store::ProviderRecord;

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of an error body shown back (providers explain bad keys there).
const MAX_SHOWN: usize = 200;

#[derive(Deserialize, Default)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn test_provider(
    console: Console,
    policy: Option<Extension<UrlPolicy>>,
    Path(slug): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    console.check_csrf(&form.csrf)?;
    // It spends the stored credential: only those who may change providers may test them.
    console.require(Permission::ProvidersWrite)?;
    let provider = console
        .state
        .store
        .get_provider(console.org_id(), &slug)
        .await?;
    let policy = policy.map(|p| p.0).unwrap_or_default();
    let (ok, message) = match probe(&provider, policy).await {
        Ok(m) => (true, m),
        Err(m) => (false, m),
    };
    tracing::info!(provider = %provider.slug, ok, "provider connection test");
    Ok(page(&providers_page(&console, (provider.slug, ok, message)).await?).into_response())
}

/// Resolves the host and checks every address against `policy`; the request is then pinned
/// to a checked address, so DNS cannot answer differently between check and connect.
async fn resolve_checked(url: &reqwest::Url, policy: UrlPolicy) -> Result<SocketAddr, String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("could not resolve {host}: {e}"))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| format!("{host} has no address"))?;
    for a in &addrs {
        check_ip(a.ip(), policy).map_err(|why| format!("refused: {host} {why}"))?;
    }
    Ok(first)
}

async fn probe(p: &ProviderRecord, policy: UrlPolicy) -> Result<String, String> {
    if p.kind == "echo" {
        return Ok(
            "built-in echo provider: answers inside the gateway, nothing to connect to.".into(),
        );
    }
    let url = format!("{}/models", p.base_url.trim_end_matches('/'));
    check_url(&url, policy).map_err(|why| format!("refused: the base URL {why}"))?;
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("bad base URL: {e}"))?;
    let addr = resolve_checked(&parsed, policy).await?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, addr)
        .build()
        .map_err(|e| format!("could not build an HTTP client: {e}"))?;
    let key = p.api_key.clone().unwrap_or_default();
    let mut request = client.get(parsed);
    request = match p.kind.as_str() {
        "anthropic" => request
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01"),
        "gemini" => request.header("x-goog-api-key", key),
        _ if key.is_empty() => request,
        _ => request.bearer_auth(key),
    };
    let started = Instant::now();
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {} s", PROBE_TIMEOUT.as_secs())
        } else {
            format!("could not connect: {}", e.without_url())
        }
    })?;
    let elapsed = started.elapsed().as_millis();
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    if status.is_success() {
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let models = json["data"]
            .as_array()
            .or_else(|| json["models"].as_array())
            .map(Vec::len);
        return Ok(match models {
            Some(n) => format!("connected in {elapsed} ms: HTTP {status}, {n} models listed."),
            None => format!("connected in {elapsed} ms: HTTP {status}."),
        });
    }
    if status.as_u16() == 401 || status.as_u16() == 403 {
        return Err(format!(
            "the provider refused the credential (HTTP {status}); check the API key."
        ));
    }
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .take(MAX_SHOWN)
        .collect();
    Err(format!(
        "the provider answered HTTP {status} in {elapsed} ms: {text}"
    ))
}

#[derive(Deserialize, Default)]
pub struct SsoQuery {
    #[serde(default)]
    org: String,
    #[serde(default)]
    next: String,
}

/// The sign-in page's "Sign in with SSO": on to the org's issuer when it has one, else back
/// to the sign-in page with the reason.
pub async fn sso_start(
    State(state): State<AppState>,
    Query(q): Query<SsoQuery>,
) -> Result<Response, WebError> {
    let org = q.org.trim();
    let back = |error: &str| {
        let mut r = page(&LoginPage {
            email: String::new(),
            next: safe_next(&q.next),
            error: String::new(),
            sso_org: org.to_owned(),
            sso_ready: false,
            sso_error: error.to_owned(),
        });
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    if org.is_empty() {
        return Ok(back(
            "Enter your organization's ID to sign in with single sign-on.",
        ));
    }
    match state.store.get_oidc_config(org).await {
        Ok(Some(_)) => Ok(
            Redirect::to(&format!("/api/v1/auth/oidc/{}/login", url_encode(org))).into_response(),
        ),
        Ok(None) | Err(crate::store::StoreError::NotFound) => Ok(back(
            "This organization has no single sign-on configured; sign in with your email and password.",
        )),
        Err(e) => Err(e.into()),
    }
}
