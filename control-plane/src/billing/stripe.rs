//! Stripe, through the async-stripe 1.x crates with only the resources used enabled
//! (`async-stripe-checkout`: Checkout Sessions; `async-stripe-core`: PaymentIntents for auto
//! top-ups) over hyper-rustls, the TLS stack reqwest already brings. The client is pointed at
//! `StripeConfig::api_base`, so tests run against a fake Stripe. Webhook signatures are
//! verified here (HMAC-SHA256 as Stripe documents) and events read into the few fields acted
//! on, so an event with fields newer than the bindings is still accepted.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use stripe::{Client, ClientBuilder};
use stripe::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ProductData,
};
use stripe_core::payment_intent::{CreatePaymentIntent, CreatePaymentIntentOffSession};
use stripe_shared::{CheckoutSessionMode, PaymentIntentStatus};

/// Stripe's default tolerance between the signature's timestamp and now.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

#[derive(Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or a fake in tests.
    pub api_base: String,
    pub secret_key: String,
    pub webhook_secret: String,
    /// Where Checkout sends the payer afterwards; `{CHECKOUT_SESSION_ID}` is filled by Stripe.
    pub success_url: String,
    pub cancel_url: String,
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .field("success_url", &self.success_url)
            .field("cancel_url", &self.cancel_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("the Stripe client is not usable: {0}")]
    Config(String),
    #[error("Stripe answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("could not reach Stripe or read its answer: {0}")]
    Transport(String),
}

impl From<stripe::StripeError> for StripeError {
    fn from(err: stripe::StripeError) -> Self {
        match err {
            stripe::StripeError::Stripe(api, status) => StripeError::Api {
                status,
                message: api
                    .message
                    .clone()
                    .unwrap_or_else(|| "no message".to_owned()),
            },
            stripe::StripeError::ConfigError(m) => StripeError::Config(m),
            other => StripeError::Transport(other.to_string()),
        }
    }
}

/// What the control plane keeps of a created Checkout Session.
#[derive(Debug, Clone)]
pub struct CheckoutSession {
    pub id: String,
    pub url: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
}

/// The outcome of an off-session PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOutcome {
    pub id: String,
    /// Stripe's status: `succeeded`, `processing`, `requires_action`, …
    pub status: String,
    pub succeeded: bool,
}

pub struct StripeClient {
    config: StripeConfig,
    client: Result<Client, String>,
}

impl StripeClient {
    pub fn new(config: StripeConfig) -> Self {
        // async-stripe appends `v1/<path>` to the base as given, so it must end in a slash.
        let base = format!("{}/", config.api_base.trim_end_matches('/'));
        let client = ClientBuilder::new(config.secret_key.clone())
            .url(base)
            .timeout(Duration::from_secs(20))
            .app_info(
                "switchyard",
                Some(env!("CARGO_PKG_VERSION").to_owned()),
                None,
            )
            .build()
            .map_err(|e| e.to_string());
        if let Err(e) = &client {
            tracing::error!(error = %e, "the Stripe client could not be built; top-ups will fail");
        }
        Self { config, client }
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    fn client(&self) -> Result<&Client, StripeError> {
        self.client
            .as_ref()
            .map_err(|e| StripeError::Config(e.clone()))
    }

    fn strategy(idempotency_key: &str) -> Result<RequestStrategy, StripeError> {
        IdempotencyKey::new(idempotency_key)
            .map(RequestStrategy::Idempotent)
            .map_err(|e| StripeError::Config(format!("idempotency key: {e}")))
    }

    /// Creates a one-off payment Checkout Session for `amount_cents` USD credited to `org_id`.
    pub async fn create_checkout_session(
        &self,
        org_id: &str,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, StripeError> {
        let mut price = CreateCheckoutSessionLineItemsPriceData::new(stripe_types::Currency::USD);
        price.unit_amount = Some(amount_cents);
        price.product_data = Some(ProductData::new("Switchyard credits"));
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price_data = Some(price);
        item.quantity = Some(1);
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .success_url(self.config.success_url.clone())
            .cancel_url(self.config.cancel_url.clone())
            .client_reference_id(org_id)
            .metadata(HashMap::from([("org_id".to_owned(), org_id.to_owned())]))
            .line_items(vec![item])
            .customize()
            // A retried top-up request never opens two sessions.
            .request_strategy(Self::strategy(idempotency_key)?)
            .send(self.client()?)
            .await?;
        Ok(CheckoutSession {
            id: session.id.to_string(),
            url: session.url,
            amount_total: session.amount_total,
            currency: session.currency.map(|c| c.to_string()),
        })
    }

    /// Charges a saved payment method off-session (auto top-up). `idempotency_key` names the
    /// threshold crossing, so a retry never charges twice.
    pub async fn charge_off_session(
        &self,
        org_id: &str,
        amount_cents: i64,
        customer: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<PaymentOutcome, StripeError> {
        let intent = CreatePaymentIntent::new(amount_cents, stripe_types::Currency::USD)
            .customer(customer)
            .payment_method(payment_method)
            .off_session(CreatePaymentIntentOffSession::Bool(true))
            .confirm(true)
            .description("Switchyard credits (auto top-up)")
            .metadata(HashMap::from([
                ("org_id".to_owned(), org_id.to_owned()),
                ("switchyard_kind".to_owned(), "auto_topup".to_owned()),
                // Lets the `payment_intent.succeeded` webhook settle the same attempt.
                ("auto_topup_id".to_owned(), idempotency_key.to_owned()),
            ]))
            .customize()
            .request_strategy(Self::strategy(idempotency_key)?)
            .send(self.client()?)
            .await?;
        Ok(PaymentOutcome {
            id: intent.id.to_string(),
            status: intent.status.as_str().to_owned(),
            succeeded: intent.status == PaymentIntentStatus::Succeeded,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed Stripe-Signature header")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches the payload")]
    Mismatch,
}

/// Verifies a `Stripe-Signature: t=…,v1=…[,v1=…]` header over the raw body, as Stripe's
/// libraries do: HMAC-SHA256 of `"{t}.{body}"` keyed with the endpoint secret, compared in
/// constant time, and `t` within the tolerance of `now_secs`.
pub fn verify_signature(
    header: &str,
    payload: &[u8],
    secret: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp: Option<&str> = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", sig)) => signatures.push(sig),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    let t_secs: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_secs - t_secs).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    for sig in signatures {
        let Ok(expected) = hex::decode(sig) else {
            continue;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return Err(SignatureError::Mismatch);
        };
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(payload);
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The `Stripe-Signature` header Stripe would send for `payload` at `t` (tests, fakes).
pub fn sign(payload: &[u8], secret: &str, t: i64) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm is unreachable in practice.
        Err(_) => return format!("t={t},v1="),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The parts of a Stripe event this control plane acts on.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: EventObject,
}

#[derive(Debug, Deserialize)]
pub struct EventObject {
    pub id: Option<String>,
    pub object: Option<String>,
    pub payment_status: Option<String>,
    /// PaymentIntents: `succeeded`, … (auto top-ups).
    pub status: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn accepts_what_it_signs_within_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, SECRET, 1_700_000_000);
        assert_eq!(
            verify_signature(&header, body, SECRET, 1_700_000_100, 300),
            Ok(())
        );
    }

    #[test]
    fn rejects_tampering_wrong_secret_staleness_and_garbage() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, SECRET, 1_700_000_000);
        let now = 1_700_000_000;
        assert_eq!(
            verify_signature(&header, br#"{"id":"evt_2"}"#, SECRET, now, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&header, body, "whsec_other", now, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&header, body, SECRET, now + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature("v1=abc", body, SECRET, now, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn any_of_several_v1_signatures_may_match() {
        // During secret rotation Stripe sends one v1 per active secret.
        let body = b"{}";
        let good = sign(body, SECRET, 10);
        let good_sig = good.split("v1=").nth(1).unwrap_or_default();
        let header = format!("t=10,v1={},v1={good_sig},v0=ignored", "00".repeat(32));
        assert_eq!(verify_signature(&header, body, SECRET, 10, 300), Ok(()));
    }

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // python3: hmac.new(b"whsec_test_secret", b"1614556800.{}", hashlib.sha256).hexdigest()
        let header = sign(b"{}", SECRET, 1_614_556_800);
        assert_eq!(
            header,
            "t=1614556800,v1=abb0b905e130a1185b747822884803b510d0e61726b7bfaab61b84669c35f791"
        );
        assert_eq!(
            verify_signature(&header, b"{}", SECRET, 1_614_556_800, 300),
            Ok(())
        );
    }
}
