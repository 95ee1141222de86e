//! Stripe Checkout top-ups, spoken over plain `reqwest`: one form-encoded `POST
//! /v1/checkout/sessions` and the verification of webhook signatures. The async-stripe crates
//! would bring a second HTTP client stack (hyper-tls / hyper-rustls) and a large generated
//! type crate for two calls.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

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
    #[error("could not reach Stripe: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("Stripe answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("Stripe's answer was not understood: {0}")]
    Decode(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

pub struct StripeClient {
    config: StripeConfig,
    http: reqwest::Client,
}

impl StripeClient {
    pub fn new(config: StripeConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap_or_default();
        Self { config, http }
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    /// Creates a one-off payment Checkout Session for `amount_cents` USD credited to `org_id`.
    pub async fn create_checkout_session(
        &self,
        org_id: &str,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, StripeError> {
        let url = format!(
            "{}/v1/checkout/sessions",
            self.config.api_base.trim_end_matches('/')
        );
        let form = [
            ("mode", "payment".to_owned()),
            ("success_url", self.config.success_url.clone()),
            ("cancel_url", self.config.cancel_url.clone()),
            ("client_reference_id", org_id.to_owned()),
            ("metadata[org_id]", org_id.to_owned()),
            ("line_items[0][quantity]", "1".to_owned()),
            ("line_items[0][price_data][currency]", "usd".to_owned()),
            (
                "line_items[0][price_data][unit_amount]",
                amount_cents.to_string(),
            ),
            (
                "line_items[0][price_data][product_data][name]",
                "Switchyard credits".to_owned(),
            ),
        ];
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.config.secret_key)
            // A retried top-up request never opens two sessions.
            .header("Idempotency-Key", idempotency_key)
            .form(&form)
            .send()
            .await
            .map_err(StripeError::Transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(StripeError::Transport)?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .ok()
                .and_then(|b| b.error.message)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(StripeError::Api {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| StripeError::Decode(e.to_string()))
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
