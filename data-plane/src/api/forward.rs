//! Management routes (`/api/v1/keys`, `/key`, `/generation`, `/providers`, …) are served by
//! the control plane; the gateway forwards them so OpenRouter clients need one base URL.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;
use crate::tls::{ClientTlsFiles, TlsError};

const MAX_FORWARD_BODY: usize = 4 * 1024 * 1024;
/// Hop-by-hop headers are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::HOST,
];

/// The control plane's HTTP API as the gateway reaches it: its base URL and a client of its
/// own, which trusts `--control-plane-ca` (and presents the node's certificate) like the gRPC
/// channel does. The providers' client trusts only public roots and must not learn a
/// private CA.
#[derive(Debug, Clone)]
pub struct ControlPlaneHttp {
    base: String,
    client: reqwest::Client,
}

impl ControlPlaneHttp {
    pub fn new(base: &str, tls: Option<&ClientTlsFiles>) -> Result<Self, TlsError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            // Redirects are the client's to follow, not the proxy's.
            .redirect(reqwest::redirect::Policy::none());
        let builder = match tls {
            Some(files) => files.reqwest_builder(builder)?,
            None => builder,
        };
        let client = builder
            .build()
            .map_err(|e| TlsError::Config(format!("control plane HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }
}

pub async fn forward(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(control_plane) = &state.control_plane_http else {
        return Err(ApiError::NotFound(format!(
            "no route for {}",
            request.uri().path()
        )));
    };
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
        .map_err(|_| ApiError::BadRequest("unsupported method".into()))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in request.headers() {
        if HOP_BY_HOP.contains(name) || name == header::CONTENT_LENGTH {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    // The control plane's span is this request's child, not a sibling under the client's
    // span: the current context replaces the client's `traceparent` (with tracing off,
    // nothing is injected and the client's passes through).
    for (name, value) in &crate::telemetry::otel::inject(&tracing::Span::current()) {
        headers.insert(name.clone(), value.clone());
    }
    let body: Bytes = axum::body::to_bytes(request.into_body(), MAX_FORWARD_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit: MAX_FORWARD_BODY,
        })?;
    let upstream = control_plane
        .client
        .request(method, format!("{}{path_and_query}", control_plane.base))
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "control plane unreachable for a management request");
            ApiError::Upstream(crate::error::UpstreamFailure {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error_type: "temporarily_unavailable",
                message: "the control plane is unreachable; management requests fail while inference keeps working".into(),
                provider: "switchyard".into(),
                provider_code: None,
                retry_after_secs: Some(1),
            })
        })?;
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::builder().status(status);
    for (name, value) in upstream.headers() {
        if name == reqwest::header::TRANSFER_ENCODING || name == reqwest::header::CONNECTION {
            continue;
        }
        response = response.header(name.as_str(), value.as_bytes());
    }
    let body = Body::from_stream(upstream.bytes_stream());
    Ok(response
        .body(body)
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()))
}
