//! The control plane's REST API (OpenRouter-compatible where OpenRouter has the route).

pub mod activity;
pub mod audit;
mod auth;
mod billing;
mod billing_settings;
mod budgets;
pub mod cache_stats;
mod catalog;
mod credits;
mod exports;
mod generation;
mod guardrails;
mod invitations;
mod keys;
mod orgs;
pub mod principal;
mod rate_limits;
mod reference_catalog;
mod rejections;
mod routing_policy;
mod sso;
mod statements;
mod teams;
pub mod timefmt;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use tower_http::catch_panic::CatchPanicLayer;

pub use catalog::{PROVIDER_KINDS, default_base_url};

use crate::error::ApiError;
use crate::identity::SessionKeys;
use crate::identity::ratelimit::LoginLimiter;
use crate::identity::session::{SECRET_NAME, random_token};
use crate::store::{Store, StoreResult};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingested: Arc<tokio::sync::Notify>,
    pub sessions: SessionKeys,
    pub login_limiter: Arc<LoginLimiter>,
    /// For OIDC discovery, token and JWKS requests.
    pub http: reqwest::Client,
    /// Issuers' signing keys, shared by every SSO callback of this replica.
    pub jwks: Arc<crate::identity::jwks_cache::JwksCache>,
    /// Stripe top-ups; `None` answers the checkout and webhook routes with 404.
    pub stripe: Option<Arc<crate::billing::stripe::StripeClient>>,
}

impl AppState {
    /// Loads (on first start: creates) the session-signing secret shared by all replicas.
    pub async fn new(
        store: Arc<dyn Store>,
        ingested: Arc<tokio::sync::Notify>,
        secure_cookies: bool,
    ) -> StoreResult<Self> {
        let secret = store
            .get_or_create_secret(SECRET_NAME, &random_token())
            .await?;
        Ok(Self {
            store,
            ingested,
            sessions: SessionKeys::new(secret.as_bytes(), secure_cookies),
            login_limiter: Arc::new(LoginLimiter::default()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            jwks: Arc::default(),
            stripe: None,
        })
    }

    pub fn with_stripe(mut self, config: Option<crate::billing::stripe::StripeConfig>) -> Self {
        self.stripe = config.map(|c| Arc::new(crate::billing::stripe::StripeClient::new(c)));
        self
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/keys", get(keys::list).post(keys::create))
        .route(
            "/api/v1/keys/{hash}",
            get(keys::get).patch(keys::update).delete(keys::delete),
        )
        .route("/api/v1/keys/{hash}/rotate", post(keys::rotate))
        .route("/api/v1/key", get(keys::current))
        .route(
            "/api/v1/keys/{hash}/rate-limit",
            get(rate_limits::get_key).put(rate_limits::put_key),
        )
        .route(
            "/api/v1/rate-limit",
            get(rate_limits::get_org).put(rate_limits::put_org),
        )
        .route("/api/v1/cache/stats", get(cache_stats::stats))
        .route(
            "/api/v1/routing-policy",
            get(routing_policy::get)
                .put(routing_policy::put)
                .delete(routing_policy::delete),
        )
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/refresh", post(auth::refresh))
        .route("/api/v1/auth/me", get(auth::me))
        .route("/api/v1/auth/switch-org", post(auth::switch_org))
        .route("/api/v1/orgs", get(orgs::list).post(orgs::create))
        .route("/api/v1/orgs/{org}", get(orgs::get))
        .route(
            "/api/v1/orgs/{org}/members",
            get(orgs::list_members).post(orgs::add_member),
        )
        .route(
            "/api/v1/orgs/{org}/members/{user}",
            axum::routing::patch(orgs::update_member).delete(orgs::remove_member),
        )
        .route(
            "/api/v1/orgs/{org}/teams",
            get(teams::list).post(teams::create),
        )
        .route(
            "/api/v1/orgs/{org}/teams/{team}",
            get(teams::get).patch(teams::rename).delete(teams::delete),
        )
        .route(
            "/api/v1/orgs/{org}/teams/{team}/members/{user}",
            put(teams::add_member).delete(teams::remove_member),
        )
        .route(
            "/api/v1/orgs/{org}/invitations",
            get(invitations::list).post(invitations::create),
        )
        .route(
            "/api/v1/orgs/{org}/invitations/{id}",
            axum::routing::delete(invitations::revoke),
        )
        .route("/api/v1/invitations/accept", post(invitations::accept))
        .route(
            "/api/v1/orgs/{org}/guardrails",
            get(guardrails::get_org)
                .put(guardrails::put_org)
                .delete(guardrails::delete_org),
        )
        .route(
            "/api/v1/orgs/{org}/teams/{team}/guardrails",
            get(guardrails::get_team)
                .put(guardrails::put_team)
                .delete(guardrails::delete_team),
        )
        .route(
            "/api/v1/keys/{hash}/guardrails",
            get(guardrails::get_key)
                .put(guardrails::put_key)
                .delete(guardrails::delete_key),
        )
        .route(
            "/api/v1/orgs/{org}/sso",
            get(sso::get_config)
                .put(sso::put_config)
                .delete(sso::delete_config),
        )
        .route("/api/v1/auth/oidc/{org}/login", get(sso::login))
        .route("/api/v1/auth/oidc/callback", get(sso::callback))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/audit/export", get(audit::export))
        .route("/api/v1/generation", get(generation::get))
        .route("/api/v1/credits", get(credits::totals))
        .route("/api/v1/credits/grants", post(credits::grant))
        .route("/api/v1/credits/transactions", get(credits::transactions))
        .route("/api/v1/credits/checkout", post(credits::checkout))
        .route("/api/v1/stripe/webhook", post(credits::stripe_webhook))
        .route(
            "/api/v1/models/{author}/{slug}/prices",
            get(billing::list_prices).post(billing::add_price),
        )
        .route("/api/v1/budgets", get(budgets::list).post(budgets::create))
        .route(
            "/api/v1/budgets/{id}",
            get(budgets::get)
                .patch(budgets::update)
                .delete(budgets::delete),
        )
        .route(
            "/api/v1/budget-settings",
            get(budgets::get_settings).put(budgets::put_settings),
        )
        .route("/api/v1/billing/settings", get(billing_settings::get))
        .route(
            "/api/v1/billing/platform-fee",
            put(billing_settings::put_platform_fee),
        )
        .route(
            "/api/v1/billing/auto-topup",
            put(billing_settings::put_auto_topup),
        )
        .route(
            "/api/v1/billing/auto-topups",
            get(billing_settings::list_auto_topups),
        )
        .route("/api/v1/catalog", get(reference_catalog::list))
        .route("/api/v1/catalog/import", post(reference_catalog::import))
        .route(
            "/api/v1/catalog/{author}/{slug}",
            put(reference_catalog::put),
        )
        .route("/api/v1/exports/focus", get(exports::focus))
        .route("/api/v1/statements/{month}", get(statements::get))
        .route("/api/v1/activity", get(activity::activity))
        .route("/api/v1/analytics/query", post(activity::analytics))
        .route("/api/v1/usage/export", get(activity::export_csv))
        .route(
            "/api/v1/providers",
            get(catalog::list_providers).post(catalog::create_provider),
        )
        .route(
            "/api/v1/models",
            get(catalog::list_models).post(catalog::create_model),
        )
        .route(
            "/api/v1/models/{author}/{slug}",
            get(catalog::get_model).patch(catalog::update_model),
        )
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::web::routes())
        .route("/metrics", get(crate::telemetry::metrics_handler))
        .route("/readyz", get(crate::telemetry::readyz_handler))
        .fallback(|request: Request| async move {
            ApiError::NotFound(format!(
                "no route for {} {}",
                request.method(),
                request.uri().path()
            ))
        })
        .with_state(state)
        // One `layer` call: each separate one would box every route again (see the
        // gateway's `api::router`).
        .layer(
            tower::ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(|_| {
                    axum::response::IntoResponse::into_response(ApiError::Internal(
                        "handler panicked".into(),
                    ))
                }))
                .layer(switchyard_gateway::telemetry::http_trace_layer())
                .layer(axum::middleware::from_fn(rejections::render_as_api_errors)),
        )
}

/// JSON body whose rejections use the API's error envelope and say what is wrong.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                // The body limit: 413, not a generic 400.
                axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::Rejected {
                    status: e.status(),
                    message: "the request body is larger than this server accepts".into(),
                },
                _ => ApiError::BadRequest(format!("could not read the request body: {e}")),
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("request body is not valid: {e}")))
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
