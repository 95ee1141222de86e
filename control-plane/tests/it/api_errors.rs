//! Framework rejections on the control plane's API (404 for an unknown route, 405 for a
//! known path with another method, 413 for an oversized body, an extractor's 400) come in the
//! same JSON envelope as the handlers' own errors.

#![allow(clippy::unwrap_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::api_support::App;

async fn send(
    router: axum::Router,
    request: Request<Body>,
) -> (StatusCode, header::HeaderMap, Value) {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {:?}", String::from_utf8_lossy(&bytes)));
    (status, headers, body)
}

fn assert_envelope(
    status: StatusCode,
    headers: &header::HeaderMap,
    body: &Value,
    error_type: &str,
) {
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json",
        "{body}"
    );
    assert_eq!(body["error"]["code"], status.as_u16(), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["error"]["metadata"]["error_type"], error_type,
        "{body}"
    );
}

#[tokio::test]
async fn framework_rejections_use_the_json_error_envelope() {
    let app = App::sqlite().await;
    let bearer = format!("Bearer {}", app.mgmt);

    // Unknown route.
    let (status, headers, body) = send(
        app.router.clone(),
        Request::get("/api/v1/no-such-thing")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(status, &headers, &body, "not_found");

    // A known path with a method it does not have: 405, `Allow` kept.
    let (status, headers, body) = send(
        app.router.clone(),
        Request::builder()
            .method(Method::DELETE)
            .uri("/api/v1/key")
            .header(header::AUTHORIZATION, &bearer)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_envelope(status, &headers, &body, "method_not_allowed");
    let allow = headers.get(header::ALLOW).unwrap().to_str().unwrap();
    assert!(allow.contains("GET"), "{allow}");

    // A body over the limit: 413 (not a generic 400).
    let limited = app
        .router
        .clone()
        .layer(axum::extract::DefaultBodyLimit::max(1024));
    let big = format!(r#"{{"name":"{}"}}"#, "k".repeat(4096));
    let (status, headers, body) = send(
        limited,
        Request::post("/api/v1/keys")
            .header(header::AUTHORIZATION, &bearer)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(big))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_envelope(status, &headers, &body, "payload_too_large");

    // An extractor's own rejection (a query parameter of the wrong type).
    let (status, headers, body) = send(
        app.router.clone(),
        Request::get("/api/v1/keys?offset=lots")
            .header(header::AUTHORIZATION, &bearer)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope(status, &headers, &body, "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("offset"),
        "{body}"
    );

    // Handlers' errors are unchanged, and console pages are not JSON-wrapped.
    let (status, headers, body) = send(
        app.router.clone(),
        Request::get("/api/v1/keys").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_envelope(status, &headers, &body, "authentication");
    let page = app
        .router
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::DELETE)
                .uri("/login")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        page.headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v != "application/json")
    );
}
