//! Renders the router's body-size rejection (axum's plain-text 413) as the skin's JSON
//! error, so SDKs parse it like any other error.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// A 413 that is not already JSON becomes `PayloadTooLarge` in the error shape of the
/// route's skin (Anthropic's for `/messages`, OpenRouter's otherwise); other responses pass.
pub(crate) fn render_payload_too_large(
    response: Response,
    anthropic: bool,
    limit: usize,
) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return response;
    }
    let error = ApiError::PayloadTooLarge { limit };
    if anthropic {
        let mut rendered = (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(super::messages::error_body(&error)),
        )
            .into_response();
        rendered
            .extensions_mut()
            .insert(crate::telemetry::ErrorType(error.error_type()));
        rendered
    } else {
        error.into_response()
    }
}
