//! A fake Stripe API for top-up tests: `POST /v1/checkout/sessions` answers with Stripe's
//! `checkout.session` object (form-encoded request, `Authorization: Bearer sk_…`,
//! `Idempotency-Key` honoured), and [`FakeStripe::completed_event`] / [`sign`] produce the
//! `checkout.session.completed` event and `Stripe-Signature` header Stripe would send.
//!
//! Signing is implemented here independently of the control plane's verifier (HMAC-SHA256 of
//! `"{t}.{payload}"` keyed with the endpoint secret, hex, `t=…,v1=…`), so a test that passes
//! proves both agree with Stripe's documented scheme rather than with each other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const SECRET_KEY: &str = "sk_test_switchyard_fake";
pub const WEBHOOK_SECRET: &str = "whsec_switchyard_fake";

#[derive(Debug, Clone)]
pub struct FakeSession {
    pub id: String,
    /// The form fields the session was created with.
    pub form: HashMap<String, String>,
    pub object: Value,
}

#[derive(Default)]
struct Inner {
    sessions: Vec<FakeSession>,
    by_idempotency_key: HashMap<String, String>,
    requests: usize,
    /// Set by `start_hosted`: checkout URLs point at this fake's own (loopback) payment page
    /// instead of checkout.stripe.com, so a browser test never leaves loopback.
    hosted_base: Option<String>,
}

pub struct FakeStripe {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    shutdown: CancellationToken,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn stripe_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "type": kind, "message": message } })),
    )
        .into_response()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

async fn create_session(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("Bearer {SECRET_KEY}") {
        return stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided",
        );
    }
    let form = parse_form(&body);
    let Ok(mut inner) = inner.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    inner.requests += 1;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(existing) = key
        .as_ref()
        .and_then(|k| inner.by_idempotency_key.get(k))
        .and_then(|id| inner.sessions.iter().find(|s| &s.id == id))
    {
        return axum::Json(existing.object.clone()).into_response();
    }
    for required in ["mode", "success_url", "line_items[0][quantity]"] {
        if !form.contains_key(required) {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("Missing required param: {required}."),
            );
        }
    }
    let Some(unit_amount) = form
        .get("line_items[0][price_data][unit_amount]")
        .and_then(|v| v.parse::<i64>().ok())
    else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Invalid integer: line_items[0][price_data][unit_amount]",
        );
    };
    let n = inner.sessions.len() + 1;
    let id = format!("cs_test_a1{n:08}FakeSwitchyard");
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), json!(v)))
        })
        .collect();
    // The fields of Stripe's `checkout.session` object that callers commonly read.
    let object = json!({
        "id": id,
        "object": "checkout.session",
        "amount_subtotal": unit_amount,
        "amount_total": unit_amount,
        "cancel_url": form.get("cancel_url"),
        "client_reference_id": form.get("client_reference_id"),
        "created": 1_700_000_000 + n,
        "currency": form.get("line_items[0][price_data][currency]").cloned().unwrap_or_else(|| "usd".into()),
        "customer": null,
        "expires_at": 1_700_086_400 + n,
        "livemode": false,
        "metadata": metadata,
        "mode": form.get("mode"),
        "payment_intent": null,
        "payment_status": "unpaid",
        "status": "open",
        "success_url": form.get("success_url"),
        "url": match &inner.hosted_base {
            Some(base) => format!("{base}/c/pay/{id}"),
            None => format!("https://checkout.stripe.com/c/pay/{id}#fidkdWxOYHwnPyd1blpxYHZxWjA0"),
        },
    });
    inner.sessions.push(FakeSession {
        id: id.clone(),
        form,
        object: object.clone(),
    });
    if let Some(k) = key {
        inner.by_idempotency_key.insert(k, id);
    }
    axum::Json(object).into_response()
}

/// The hosted payment page of `start_hosted`: names the session and its amount.
async fn hosted_page(
    State(inner): State<Arc<Mutex<Inner>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let amount = inner.lock().ok().and_then(|i| {
        i.sessions
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.object["amount_total"].clone())
    });
    match amount {
        Some(cents) => axum::response::Html(format!(
            "<!doctype html><title>Fake Stripe Checkout</title><h1 id=\"fake-checkout\">Fake Stripe Checkout</h1>\
             <p id=\"session\">{id}</p><p id=\"amount-cents\">{cents}</p>"
        ))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl FakeStripe {
    pub async fn start() -> anyhow::Result<FakeStripe> {
        Self::start_with(false).await
    }

    /// Like `start`, but checkout URLs lead to a payment page served by this fake on loopback.
    pub async fn start_hosted() -> anyhow::Result<FakeStripe> {
        Self::start_with(true).await
    }

    async fn start_with(hosted: bool) -> anyhow::Result<FakeStripe> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            hosted_base: hosted.then(|| format!("http://{addr}")),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/v1/checkout/sessions", post(create_session))
            .route("/c/pay/{id}", axum::routing::get(hosted_page))
            .with_state(inner.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        Ok(FakeStripe {
            addr,
            inner,
            shutdown,
        })
    }

    /// What the control plane's `--stripe-api-base` should be.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn sessions(&self) -> Vec<FakeSession> {
        self.inner
            .lock()
            .map(|i| i.sessions.clone())
            .unwrap_or_default()
    }

    pub fn request_count(&self) -> usize {
        self.inner.lock().map(|i| i.requests).unwrap_or_default()
    }

    /// The `checkout.session.completed` event for a paid session, as Stripe sends it.
    pub fn completed_event(&self, event_id: &str, session_id: &str) -> anyhow::Result<String> {
        let mut object = self
            .sessions()
            .into_iter()
            .find(|s| s.id == session_id)
            .map(|s| s.object)
            .ok_or_else(|| anyhow::anyhow!("no session {session_id}"))?;
        object["payment_status"] = json!("paid");
        object["status"] = json!("complete");
        object["payment_intent"] = json!("pi_3FakeSwitchyard");
        Ok(json!({
            "id": event_id,
            "object": "event",
            "api_version": "2025-08-27.basil",
            "created": unix_now(),
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null },
            "type": "checkout.session.completed",
        })
        .to_string())
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The `Stripe-Signature` header for `payload` signed at unix time `t` with `secret`.
pub fn sign(payload: &str, secret: &str, t: i64) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{t}.{payload}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}
