//! Framework rejections on `/api/` routes (axum's plain-text 413 for an oversized body,
//! the empty 405 of a known path with another method, an extractor's text error) rendered in
//! the API's JSON error envelope, so clients parse every error the same way. The console's
//! HTML pages keep their own responses.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Rejection texts are one line; anything longer is not one and is not read.
const MAX_REJECTION_TEXT: usize = 1024;

pub async fn render_as_api_errors(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    if !api || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let message = match (status, text) {
        (axum::http::StatusCode::PAYLOAD_TOO_LARGE, _) => {
            "the request body is larger than this server accepts".to_owned()
        }
        (axum::http::StatusCode::METHOD_NOT_ALLOWED, _) => format!(
            "method not allowed{}",
            parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .map(|allow| format!("; allowed: {allow}"))
                .unwrap_or_default()
        ),
        (_, Some(text)) => text,
        (_, None) => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase(),
    };
    let mut rendered = ApiError::Rejected { status, message }.into_response();
    // Keep what the framework said besides the body (`Allow` on a 405, for one).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().append(name.clone(), value.clone());
        }
    }
    rendered
}
