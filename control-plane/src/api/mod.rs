//! The control plane's REST API (OpenRouter-compatible where OpenRouter has the route).

mod catalog;
mod generation;
mod keys;
mod principal;
pub mod timefmt;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::routing::get;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use catalog::{PROVIDER_KINDS, default_base_url};

use crate::error::ApiError;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingested: Arc<tokio::sync::Notify>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/keys", get(keys::list).post(keys::create))
        .route(
            "/api/v1/keys/{hash}",
            get(keys::get).patch(keys::update).delete(keys::delete),
        )
        .route("/api/v1/key", get(keys::current))
        .route("/api/v1/generation", get(generation::get))
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
        .fallback(|request: Request| async move {
            ApiError::NotFound(format!(
                "no route for {} {}",
                request.method(),
                request.uri().path()
            ))
        })
        .with_state(state)
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal(
                "handler panicked".into(),
            ))
        }))
}

/// JSON body whose rejections use the API's error envelope and say what is wrong.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
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
