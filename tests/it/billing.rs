//! Money end to end: the ledger's usage equals what clients were shown, a corrected price
//! re-rates past usage, and Stripe Checkout top-ups run against a fake Stripe (real HTTP,
//! Stripe's JSON shapes and signature scheme): checkout → webhook → credits, with replayed
//! and forged webhooks changing nothing.

use serde_json::{Value, json};
use switchyard_control_plane::billing::stripe::StripeConfig;
use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::store::{self, now_ms};
use switchyard_control_plane::{Listeners, RunOptions};
use switchyard_e2e::fake_stripe::{self, FakeStripe};
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const USD: i64 = 1_000_000_000;

async fn credits(system: &System, key: &str) -> Value {
    let r = system.get("/credits", key).await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["data"].clone()
}

/// The meter hands records off without blocking responses: poll the ledger until it has them.
async fn wait_for_usage(system: &System, key: &str, nanos: i64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let c = credits(system, key).await;
        if c["total_usage_nanos"] == json!(nanos) {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ledger usage never reached {nanos} nano-USD: {c}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ledger_usage_equals_the_cost_shown_and_corrections_rerate_it() {
    let mock = MockOpenAi::start(MockConfig {
        fixed_usage: Some((1_000, 500)),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let system = System::start().await.unwrap();
    system
        .add_openai_model(
            &mock.base_url(),
            "acme/billed",
            "gpt-4o-mini",
            "0.000001",
            "0.000002",
        )
        .await
        .unwrap();
    let mgmt = system.management_key().to_owned();
    let grant = system
        .post(
            "/credits/grants",
            &mgmt,
            &json!({ "amount": 5, "reason": "e2e" }),
        )
        .await
        .unwrap();
    assert_eq!(grant.status(), 201);

    let mut shown = 0.0;
    for stream in [false, true] {
        let r = system
            .post(
                "/chat/completions",
                system.api_key(),
                &json!({ "model": "acme/billed", "stream": stream, "messages": [{"role": "user", "content": "hi"}] }),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let usage = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .chain(std::iter::once(text.as_str()))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get("usage").filter(|u| !u.is_null()).cloned())
            .next_back()
            .unwrap();
        shown += usage["cost"].as_f64().unwrap();
    }
    // 1000 × $1/M + 500 × $2/M = $0.002 per request.
    let c = wait_for_usage(&system, system.api_key(), 4_000_000).await;
    assert!((c["total_usage"].as_f64().unwrap() - shown).abs() < 1e-12);
    assert_eq!(c["total_credits"], json!(5.0));

    // The provider's price was really double from an hour ago: both requests are re-rated
    // and the catalog (what the gateway quotes) follows.
    let from = switchyard_control_plane::api::timefmt::iso(now_ms() - 3_600_000);
    let r = system
        .post(
            "/models/acme/billed/prices",
            &mgmt,
            &json!({ "effective_from": from, "pricing": { "prompt": "0.000002", "completion": "0.000004" } }),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["rerated"]["adjusted"], json!(2), "{body}");
    assert_eq!(body["data"]["catalog_updated"], json!(true));
    let c = credits(&system, &mgmt).await;
    assert_eq!(c["total_usage_nanos"], json!(8_000_000));
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();
    let r = system
        .post(
            "/chat/completions",
            system.api_key(),
            &json!({ "model": "acme/billed", "messages": [{"role": "user", "content": "hi"}] }),
        )
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!((body["usage"]["cost"].as_f64().unwrap() - 0.004).abs() < 1e-12);
    wait_for_usage(&system, &mgmt, 12_000_000).await;

    let org = system.secrets.org_id.clone();
    assert!(
        system
            .store
            .unbalanced_postings(&org)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        system
            .store
            .usage_posting_anomalies(&org)
            .await
            .unwrap()
            .is_empty()
    );
}

struct StripeSystem {
    base: String,
    mgmt: String,
    org: String,
    http: reqwest::Client,
    store: std::sync::Arc<dyn store::Store>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for StripeSystem {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn control_plane_with_stripe(stripe: &FakeStripe) -> StripeSystem {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("switchyard.db").display());
    let store = store::connect(&url).await.unwrap();
    let first = bootstrap::ensure(&store, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap();
    let listeners = Listeners {
        http: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        grpc: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let base = format!("http://{}/api/v1", listeners.http.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(switchyard_control_plane::run(
        store.clone(),
        listeners,
        RunOptions {
            stripe: Some(StripeConfig {
                api_base: stripe.api_base(),
                secret_key: fake_stripe::SECRET_KEY.into(),
                webhook_secret: fake_stripe::WEBHOOK_SECRET.into(),
                success_url: "http://localhost:8080/console/billing?ok".into(),
                cancel_url: "http://localhost:8080/console/billing?cancel".into(),
            }),
            ..RunOptions::default()
        },
        shutdown.clone(),
    ));
    StripeSystem {
        base,
        mgmt: first.management_key.expose().to_owned(),
        org: first.org_id.clone(),
        http: reqwest::Client::new(),
        store,
        shutdown,
        _dir: dir,
    }
}

impl StripeSystem {
    async fn webhook(&self, payload: &str, signature: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/stripe/webhook", self.base))
            .header("Stripe-Signature", signature)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(payload.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn credits_nanos(&self) -> i64 {
        let r = self
            .http
            .get(format!("{}/credits", self.base))
            .bearer_auth(&self.mgmt)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["data"]["total_credits_nanos"]
            .as_i64()
            .unwrap()
    }

    async fn checkout(&self, amount: Value, idempotency_key: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/credits/checkout", self.base))
            .bearer_auth(&self.mgmt)
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({ "amount": amount }))
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn stripe_checkout_then_webhook_credits_once_and_rejects_forgeries() {
    let stripe = FakeStripe::start().await.unwrap();
    let cp = control_plane_with_stripe(&stripe).await;

    let r = cp.checkout(json!(25), "topup-1").await;
    assert_eq!(r.status(), 201);
    let session: Value = r.json().await.unwrap();
    let session_id = session["data"]["id"].as_str().unwrap().to_owned();
    assert!(
        session["data"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/c/pay/cs_test_")
    );
    // What Stripe received: a one-off USD payment of 2500 cents tagged with the org.
    let sent = &stripe.sessions()[0];
    assert_eq!(sent.form["mode"], "payment");
    assert_eq!(sent.form["line_items[0][price_data][unit_amount]"], "2500");
    assert_eq!(sent.form["line_items[0][price_data][currency]"], "usd");
    assert_eq!(sent.form["client_reference_id"], cp.org);
    // A retried request with the same Idempotency-Key opens no second session.
    let again: Value = cp
        .checkout(json!(25), "topup-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["data"]["id"], json!(session_id));
    assert_eq!(stripe.sessions().len(), 1);
    // Amounts Stripe cannot charge are refused before calling it.
    assert_eq!(cp.checkout(json!(0.5), "x").await.status(), 400);
    assert_eq!(cp.checkout(json!("10.001"), "y").await.status(), 400);
    assert_eq!(stripe.request_count(), 2);

    let event = stripe
        .completed_event("evt_1PaidSwitchyard", &session_id)
        .unwrap();
    let now = fake_stripe::unix_now();

    // Forged: wrong secret, tampered body, stale timestamp, no header. 400, nothing credited.
    let tampered = event.replace("\"paid\"", "\"paid\" ");
    for (payload, signature) in [
        (
            event.clone(),
            fake_stripe::sign(&event, "whsec_attacker", now),
        ),
        (
            tampered.clone(),
            fake_stripe::sign(&event, fake_stripe::WEBHOOK_SECRET, now),
        ),
        (
            event.clone(),
            fake_stripe::sign(&event, fake_stripe::WEBHOOK_SECRET, now - 600),
        ),
        (event.clone(), String::new()),
    ] {
        let (status, _) = cp.webhook(&payload, &signature).await;
        assert_eq!(status, 400);
    }
    assert_eq!(cp.credits_nanos().await, 0);

    let signature = fake_stripe::sign(&event, fake_stripe::WEBHOOK_SECRET, now);
    let (status, reply) = cp.webhook(&event, &signature).await;
    assert_eq!((status, reply["handled"].clone()), (200, json!("credited")));
    assert_eq!(cp.credits_nanos().await, 25 * USD);

    // Stripe redelivers; an attacker replays within the tolerance: no double credit.
    let (status, reply) = cp.webhook(&event, &signature).await;
    assert_eq!(
        (status, reply["handled"].clone()),
        (200, json!("duplicate_event"))
    );
    let resigned = fake_stripe::sign(&event, fake_stripe::WEBHOOK_SECRET, now + 1);
    let (_, reply) = cp.webhook(&event, &resigned).await;
    assert_eq!(reply["handled"], json!("duplicate_event"));
    assert_eq!(cp.credits_nanos().await, 25 * USD);

    // The top-up is a balanced posting referencing the session.
    let r = cp
        .http
        .get(format!("{}/credits/transactions?kind=topup", cp.base))
        .bearer_auth(&cp.mgmt)
        .send()
        .await
        .unwrap();
    let txs: Value = r.json().await.unwrap();
    assert_eq!(txs["data"][0]["reference"], json!(session_id));
    assert_eq!(txs["data"][0]["amount"], json!(25.0));
    assert!(
        cp.store
            .unbalanced_postings(&cp.org)
            .await
            .unwrap()
            .is_empty()
    );
}

impl StripeSystem {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.mgmt);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Polls the auto top-up attempts until `done` holds (the check runs in the background).
    async fn wait_for_topups(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (_, body) = self
                .send(reqwest::Method::GET, "/billing/auto-topups", None)
                .await;
            let rows = body["data"].as_array().cloned().unwrap_or_default();
            if done(&rows) {
                return rows;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "auto top-ups never settled: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn auto_topup_charges_once_per_crossing_and_stops_after_a_decline() {
    let stripe = FakeStripe::start().await.unwrap();
    let cp = control_plane_with_stripe(&stripe).await;
    let (status, _) = cp
        .send(
            reqwest::Method::POST,
            "/credits/grants",
            Some(json!({ "amount": 1, "reason": "seed" })),
        )
        .await;
    assert_eq!(status, 201);

    // Enabling needs a threshold, whole-cent amount and a saved customer + payment method.
    let (status, body) = cp
        .send(
            reqwest::Method::PUT,
            "/billing/auto-topup",
            Some(json!({ "enabled": true, "threshold": 5, "amount": 10 })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stripe_customer_id")
    );

    // Balance $1 is below the $5 threshold: one off-session charge of $10, credited once.
    let (status, body) = cp
        .send(
            reqwest::Method::PUT,
            "/billing/auto-topup",
            Some(json!({ "enabled": true, "threshold": 5, "amount": 10,
                "stripe_customer_id": "cus_FakeSwitchyard", "stripe_payment_method_id": "pm_card_visa" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["auto_topup"]["stripe_customer"],
        json!("...yard")
    );
    let rows = cp
        .wait_for_topups(|r| r.first().is_some_and(|t| t["status"] == json!("succeeded")))
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(cp.credits_nanos().await, 11 * USD);
    let intents = stripe.payment_intents();
    assert_eq!(intents.len(), 1);
    let intent = &intents[0];
    assert_eq!(intent.form["amount"], "1000");
    assert_eq!(intent.form["currency"], "usd");
    assert_eq!(intent.form["off_session"], "true");
    assert_eq!(intent.form["confirm"], "true");
    assert_eq!(intent.form["customer"], "cus_FakeSwitchyard");
    assert_eq!(intent.form["metadata[org_id]"], cp.org);
    // The attempt row names the crossing and is the idempotency key.
    assert_eq!(
        intent.idempotency_key.as_deref(),
        Some(format!("auto-topup:{}:0", cp.org).as_str())
    );

    // Saving again above the threshold charges nothing; Stripe's webhook for the same intent
    // is accepted and changes nothing.
    let (status, _) = cp
        .send(
            reqwest::Method::PUT,
            "/billing/auto-topup",
            Some(json!({ "enabled": true })),
        )
        .await;
    assert_eq!(status, 200);
    let event = stripe
        .intent_succeeded_event("evt_pi_1", &intent.id)
        .unwrap();
    let signature = fake_stripe::sign(&event, fake_stripe::WEBHOOK_SECRET, fake_stripe::unix_now());
    let (status, reply) = cp.webhook(&event, &signature).await;
    assert_eq!(
        (status, reply["handled"].clone()),
        (200, json!("auto_topup_settled"))
    );
    assert_eq!(cp.credits_nanos().await, 11 * USD);
    assert_eq!(stripe.payment_intents().len(), 1);

    // A higher threshold with a card that declines: one failed attempt, no credit, and no
    // retry until the settings are saved again.
    let (status, _) = cp
        .send(
            reqwest::Method::PUT,
            "/billing/auto-topup",
            Some(json!({ "threshold": 50, "stripe_payment_method_id": fake_stripe::DECLINED_PAYMENT_METHOD })),
        )
        .await;
    assert_eq!(status, 200);
    let rows = cp
        .wait_for_topups(|r| r.get(1).is_some_and(|t| t["status"] == json!("failed")))
        .await;
    assert!(
        rows[1]["error"].as_str().unwrap().contains("declined"),
        "{rows:?}"
    );
    assert_eq!(cp.credits_nanos().await, 11 * USD);
    let requests = stripe.request_count();
    let (status, _) = cp
        .send(
            reqwest::Method::POST,
            "/credits/grants",
            Some(json!({ "amount": 1, "reason": "nudge" })),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(stripe.request_count(), requests);
    assert!(
        cp.store
            .unbalanced_postings(&cp.org)
            .await
            .unwrap()
            .is_empty()
    );
}
