//! A fake Stripe API for top-up tests: `POST /v1/checkout/sessions` answers with Stripe's
//! `checkout.session` object (form-encoded request, `Authorization: Bearer sk_…`,
//! `Idempotency-Key` honoured), and [`FakeStripe::completed_event`] / [`sign`] produce the
//! `checkout.session.completed` event and `Stripe-Signature` header Stripe would send.
//! `POST /v1/payment_intents` confirms off-session charges (auto top-up) at once, or declines
//! [`DECLINED_PAYMENT_METHOD`] with Stripe's 402 `card_error`.
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
    intents: Vec<FakeIntent>,
    intents_by_idempotency_key: HashMap<String, String>,
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
        // Required by Stripe's schema (and so by async-stripe's deserializer).
        "automatic_tax": { "enabled": false, "liability": null, "provider": null, "status": null },
        "custom_fields": [],
        "custom_text": { "after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null },
        "payment_method_types": ["card"],
        "shipping_options": [],
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

/// A payment method id that Stripe's test mode declines off-session.
pub const DECLINED_PAYMENT_METHOD: &str = "pm_card_chargeDeclined";

#[derive(Debug, Clone)]
pub struct FakeIntent {
    pub id: String,
    pub form: HashMap<String, String>,
    pub idempotency_key: Option<String>,
    pub object: Value,
}

/// `POST /v1/payment_intents` (confirm + off_session): succeeds at once, except for
/// [`DECLINED_PAYMENT_METHOD`], which answers Stripe's 402 `card_error`.
async fn create_payment_intent(
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
        .and_then(|k| inner.intents_by_idempotency_key.get(k))
        .and_then(|id| inner.intents.iter().find(|i| &i.id == id))
    {
        return axum::Json(existing.object.clone()).into_response();
    }
    let Some(amount) = form.get("amount").and_then(|v| v.parse::<i64>().ok()) else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Missing required param: amount.",
        );
    };
    if form.get("payment_method").map(String::as_str) == Some(DECLINED_PAYMENT_METHOD) {
        return (
            StatusCode::PAYMENT_REQUIRED,
            axum::Json(json!({ "error": {
                "type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                "message": "Your card was declined.",
            } })),
        )
            .into_response();
    }
    let n = inner.intents.len() + 1;
    let id = format!("pi_3Fake{n:08}Switchyard");
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), json!(v)))
        })
        .collect();
    let object = json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": amount,
        "capture_method": "automatic_async",
        "confirmation_method": "automatic",
        "created": 1_700_000_000 + n,
        "currency": form.get("currency").cloned().unwrap_or_else(|| "usd".into()),
        "customer": form.get("customer"),
        "description": form.get("description"),
        "livemode": false,
        "metadata": metadata,
        "payment_method": form.get("payment_method"),
        "payment_method_types": ["card"],
        "status": "succeeded",
    });
    inner.intents.push(FakeIntent {
        id: id.clone(),
        form,
        idempotency_key: key.clone(),
        object: object.clone(),
    });
    if let Some(k) = key {
        inner.intents_by_idempotency_key.insert(k, id);
    }
    axum::Json(object).into_response()
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
            .route("/v1/payment_intents", post(create_payment_intent))
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

    /// PaymentIntents created (idempotent replays are not counted twice).
    pub fn payment_intents(&self) -> Vec<FakeIntent> {
        self.inner
            .lock()
            .map(|i| i.intents.clone())
            .unwrap_or_default()
    }

    /// The `payment_intent.succeeded` event of an intent, as Stripe sends it.
    pub fn intent_succeeded_event(
        &self,
        event_id: &str,
        intent_id: &str,
    ) -> anyhow::Result<String> {
        let object = self
            .payment_intents()
            .into_iter()
            .find(|i| i.id == intent_id)
            .map(|i| i.object)
            .ok_or_else(|| anyhow::anyhow!("no payment intent {intent_id}"))?;
        Ok(json!({
            "id": event_id,
            "object": "event",
            "api_version": "2025-08-27.basil",
            "created": unix_now(),
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null },
            "type": "payment_intent.succeeded",
        })
        .to_string())
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
