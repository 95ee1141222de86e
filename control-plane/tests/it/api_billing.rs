//! The billing REST API over the real router and store: credits and grants with RBAC,
//! refunds bounded by the generation's cost, the price book with re-rating, analytics and
//! activity, and Stripe's webhook (signature, replay, forgery).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard_control_plane::api::{self, AppState};
use switchyard_control_plane::billing::stripe::{self, StripeConfig};
use switchyard_control_plane::store::{CheckoutRow, UsageRow, now_ms};
use switchyard_proto::GenerationId;
use tower::ServiceExt;

use crate::api_support::{App, Cred};

const USD: i64 = 1_000_000_000;
const WEBHOOK_SECRET: &str = "whsec_switchyard_tests";

fn usage(app: &App, request_id: &str, key_hash: &str, started_at: i64, cost: i64) -> UsageRow {
    UsageRow {
        request_id: request_id.to_owned(),
        org_id: app.org.clone(),
        key_hash: key_hash.to_owned(),
        model: "switchyard/echo".to_owned(),
        endpoint_id: "ep".to_owned(),
        provider_id: "prov".to_owned(),
        provider_slug: "switchyard".to_owned(),
        upstream_model: "echo".to_owned(),
        node_id: "n".to_owned(),
        config_version: 1,
        api: "chat".to_owned(),
        started_at,
        finished_at: started_at + 5,
        ttft_ms: None,
        streamed: false,
        cancelled: false,
        estimated: false,
        finish_reason: "stop".to_owned(),
        native_finish_reason: "stop".to_owned(),
        http_status: 200,
        error_type: String::new(),
        input_tokens: 10,
        output_tokens: 20,
        cache_read_tokens: 0,
        cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: 3,
        cost_nanos: cost,
        gateway_cost_nanos: cost,
        upstream_id: String::new(),
        ingested_at: started_at + 10,
        provider_responses: "[]".to_owned(),
    }
}

fn inference_hash(app: &App) -> String {
    switchyard_proto::keys::KeyHash::of(&app.inference)
        .as_str()
        .to_owned()
}

#[tokio::test]
async fn credits_grants_and_transactions_follow_rbac() {
    let app = App::sqlite().await;
    // Any key of the org reads `/credits`, in OpenRouter's shape.
    let r = app
        .get("/api/v1/credits", &Cred::Key(app.inference.clone()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["total_credits"], json!(0.0));
    assert_eq!(r.body["data"]["total_usage"], json!(0.0));

    let r = app
        .post(
            "/api/v1/credits/grants",
            &app.mgmt(),
            json!({ "amount": 12.5, "reason": "pilot budget" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["amount_nanos"], json!(12 * USD + USD / 2));
    assert_eq!(r.body["data"]["kind"], json!("grant"));

    for (body, what) in [
        (json!({ "amount": 1 }), "reason"),
        (json!({ "amount": -1, "reason": "x" }), "positive"),
        (json!({ "amount": "0.0000000001", "reason": "x" }), "amount"),
        (
            json!({ "amount": 1, "reason": "x", "kind": "gift" }),
            "kind",
        ),
    ] {
        let r = app.post("/api/v1/credits/grants", &app.mgmt(), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(r.text.contains(what), "{what}: {}", r.text);
    }
    // Inference keys, viewers, developers and admins move no money; owners and billing do.
    let r = app
        .post(
            "/api/v1/credits/grants",
            &Cred::Key(app.inference.clone()),
            json!({ "amount": 1, "reason": "x" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    for (email, role, status) in [
        ("viewer@example.com", "viewer", StatusCode::FORBIDDEN),
        ("dev@example.com", "developer", StatusCode::FORBIDDEN),
        ("admin@example.com", "admin", StatusCode::FORBIDDEN),
        ("billing@example.com", "billing", StatusCode::CREATED),
    ] {
        app.add_member(email, role).await;
        let cred = app.login(email).await;
        let r = app
            .post(
                "/api/v1/credits/grants",
                &cred,
                json!({ "amount": "2", "reason": format!("by {role}") }),
            )
            .await;
        assert_eq!(r.status, status, "{role}: {}", r.text);
    }
    let viewer = app.login("viewer@example.com").await;
    assert_eq!(
        app.get("/api/v1/credits", &viewer).await.status,
        StatusCode::FORBIDDEN
    );
    let billing = app.login("billing@example.com").await;
    let r = app.get("/api/v1/credits", &billing).await;
    assert_eq!(r.body["data"]["total_credits"], json!(14.5));

    let r = app
        .get("/api/v1/credits/transactions?limit=1", &billing)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"][0]["memo"], json!("by billing"));
    let next = r.body["next_before"].as_i64().unwrap();
    let r = app
        .get(
            &format!("/api/v1/credits/transactions?limit=10&before={next}"),
            &billing,
        )
        .await;
    assert_eq!(r.body["data"][0]["memo"], json!("pilot budget"));
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);

    // Grants are audited.
    let r = app
        .get("/api/v1/audit?action=credits.grant", &app.mgmt())
        .await;
    assert!(r.text.contains("credits.grant"), "{}", r.text);
}

#[tokio::test]
async fn refunds_are_bounded_by_the_generation_cost() {
    let app = App::sqlite().await;
    let request_id = uuid::Uuid::now_v7();
    let generation = GenerationId::from_uuid(request_id).to_string();
    app.store
        .ingest_usage(&[usage(&app, &request_id.to_string(), "k", now_ms(), 3 * USD)])
        .await
        .unwrap();
    let refund = |amount: &str| json!({ "amount": amount, "reason": "hallucinated", "kind": "refund", "generation_id": generation });
    let r = app
        .post("/api/v1/credits/grants", &app.mgmt(), refund("2"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .post("/api/v1/credits/grants", &app.mgmt(), refund("1.01"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = app
        .post("/api/v1/credits/grants", &app.mgmt(), refund("1"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app.get("/api/v1/credits", &app.mgmt()).await;
    assert_eq!(r.body["data"]["total_usage"], json!(0.0));
    assert_eq!(r.body["data"]["total_credits"], json!(0.0));
    // Someone else's generation id is not found.
    let other = GenerationId::from_uuid(uuid::Uuid::now_v7()).to_string();
    let r = app
        .post(
            "/api/v1/credits/grants",
            &app.mgmt(),
            json!({ "amount": 1, "reason": "x", "kind": "refund", "generation_id": other }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(
        app.store
            .unbalanced_postings(&app.org)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn corrected_prices_rerate_past_usage_through_the_api() {
    let app = App::sqlite().await;
    let model = app
        .store
        .get_model(&app.org, "switchyard/echo")
        .await
        .unwrap();
    let endpoint = model.endpoints[0].clone();
    let t0 = now_ms() - 3_600_000;
    let mut row = usage(&app, &uuid::Uuid::now_v7().to_string(), "k", t0, 0);
    row.provider_id = endpoint.provider_id.clone();
    row.endpoint_id = endpoint.id.clone();
    row.input_tokens = 1_000_000;
    row.output_tokens = 0;
    row.cost_nanos = endpoint
        .prices()
        .cost(&switchyard_proto::UsageDims {
            input_tokens: 1_000_000,
            ..Default::default()
        })
        .nanos();
    app.store.ingest_usage(&[row.clone()]).await.unwrap();

    let from = switchyard_control_plane::api::timefmt::iso(t0 - 60_000);
    let to = switchyard_control_plane::api::timefmt::iso(t0 + 60_000);
    let r = app
        .post(
            "/api/v1/models/switchyard/echo/prices",
            &app.mgmt(),
            json!({
                "effective_from": from,
                "effective_to": to,
                "pricing": { "prompt": "0.000005", "completion": "0.00001" },
                "long_context": { "threshold": 100000, "pricing": { "prompt": "0.00001", "completion": "0.00002" } },
                "note": "provider corrected its invoice",
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // 1M prompt tokens > 100k threshold: $10/M → $10.
    assert_eq!(r.body["data"]["rerated"]["requests"], json!(1));
    assert_eq!(
        r.body["data"]["rerated"]["delta_nanos"],
        json!(10 * USD - row.cost_nanos)
    );
    assert_eq!(r.body["data"]["catalog_updated"], json!(false));

    let r = app
        .get("/api/v1/models/switchyard/echo/prices", &app.mgmt())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let versions = r.body["data"].as_array().unwrap();
    assert_eq!(versions.len(), 3, "{}", r.text);
    assert_eq!(versions[1]["long_context"]["threshold"], json!(100000));
    assert_eq!(versions[1]["pricing"]["prompt"], json!("0.000005"));

    let r = app.get("/api/v1/credits", &app.mgmt()).await;
    assert_eq!(r.body["data"]["total_usage"], json!(10.0));

    for (body, what) in [
        (json!({ "effective_from": "yesterday" }), "effective_from"),
        (
            json!({ "effective_from": to, "effective_to": from }),
            "effective_to",
        ),
        (json!({ "pricing": { "prompt": "abc" } }), "pricing.prompt"),
        (json!({ "provider": "nope" }), "provider"),
        (
            json!({ "long_context": { "threshold": 0, "pricing": {} } }),
            "threshold",
        ),
    ] {
        let r = app
            .post("/api/v1/models/switchyard/echo/prices", &app.mgmt(), body)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
        assert!(r.text.contains(what), "{what}: {}", r.text);
    }
    // Developers read prices but cannot change them.
    app.add_member("dev@example.com", "developer").await;
    let dev = app.login("dev@example.com").await;
    let r = app
        .post(
            "/api/v1/models/switchyard/echo/prices",
            &dev,
            json!({ "pricing": { "prompt": "0.000001" } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(
        app.store
            .unbalanced_postings(&app.org)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn analytics_groups_by_many_dimensions_and_scopes_inference_keys() {
    let app = App::sqlite().await;
    let now = now_ms();
    let own = inference_hash(&app);
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    app.store
        .ingest_usage(&[
            usage(&app, &ids[0], &own, now - 1_000, 100),
            usage(&app, &ids[1], &own, now - 900, 200),
            usage(&app, &ids[2], "someone-else", now - 800, 400),
        ])
        .await
        .unwrap();
    app.store
        .add_usage_tags(&[
            (
                ids[0].clone(),
                app.org.clone(),
                vec![("team".into(), "search".into())],
            ),
            (
                ids[2].clone(),
                app.org.clone(),
                vec![("team".into(), "ads".into())],
            ),
        ])
        .await
        .unwrap();
    let query = json!({
        "metrics": ["cost", "requests", "input_tokens"],
        "dimensions": ["tag:team", "key", "model", "day"],
    });
    let r = app
        .post("/api/v1/analytics/query", &app.mgmt(), query.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows = r.body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{}", r.text);
    assert_eq!(rows[0]["tag:team"], json!("ads"));
    assert_eq!(rows[0]["cost_nanos"], json!(400));
    assert_eq!(rows[0]["model"], json!("switchyard/echo"));
    assert!(rows[0]["day"].as_str().unwrap().len() == 10);

    // An inference key sees its own usage only.
    let r = app
        .post(
            "/api/v1/analytics/query",
            &Cred::Key(app.inference.clone()),
            query,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let total: i64 = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 2);

    let r = app
        .post(
            "/api/v1/analytics/query",
            &app.mgmt(),
            json!({ "dimensions": ["key"], "filters": { "tag:team": "search" } }),
        )
        .await;
    assert_eq!(r.body["data"][0]["requests"], json!(1), "{}", r.text);

    for body in [
        json!({ "dimensions": ["colour"] }),
        json!({ "dimensions": ["tag:bad key"] }),
        json!({ "metrics": ["vibes"] }),
        json!({ "time_range": { "from": "2026-01-02", "to": "2026-01-01" } }),
    ] {
        let r = app.post("/api/v1/analytics/query", &app.mgmt(), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    }

    let r = app.get("/api/v1/activity", &app.mgmt()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let row = &r.body["data"][0];
    assert_eq!(row["model"], json!("switchyard/echo"));
    assert_eq!(row["requests"], json!(3));
    assert_eq!(row["prompt_tokens"], json!(30));
    assert_eq!(row["reasoning_tokens"], json!(9));
    let r = app
        .get(&format!("/api/v1/activity?api_key_hash={own}"), &app.mgmt())
        .await;
    assert_eq!(r.body["data"][0]["requests"], json!(2), "{}", r.text);
    let r = app
        .get("/api/v1/activity?date=1999-01-01", &app.mgmt())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = app
        .get("/api/v1/usage/export?group_by=key,model", &app.mgmt())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.text.starts_with("key,model,requests,errors,cost_usd"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("\"someone-else\",\"switchyard/echo\",1,0,0.0000004,400"),
        "{}",
        r.text
    );
}

fn stripe_config() -> StripeConfig {
    StripeConfig {
        api_base: "http://127.0.0.1:9".into(),
        secret_key: "sk_test_x".into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        success_url: "http://localhost/ok".into(),
        cancel_url: "http://localhost/cancel".into(),
    }
}

async fn webhook(router: &axum::Router, body: &str, signature: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/stripe/webhook")
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn completed_event(event_id: &str, session_id: &str) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": "2025-08-27.basil",
        "created": now_ms() / 1000,
        "livemode": false,
        "type": "checkout.session.completed",
        "data": { "object": {
            "id": session_id,
            "object": "checkout.session",
            "amount_total": 2500,
            "currency": "usd",
            "mode": "payment",
            "payment_status": "paid",
            "status": "complete",
        } },
    })
    .to_string()
}

#[tokio::test]
async fn stripe_webhook_verifies_signatures_and_credits_once() {
    let app = App::sqlite().await;
    let state = AppState::new(
        app.store.clone(),
        Arc::new(tokio::sync::Notify::new()),
        false,
    )
    .await
    .unwrap()
    .with_stripe(Some(stripe_config()));
    let router = api::router(state);
    app.store
        .create_checkout(&CheckoutRow {
            id: "cs_test_a1".into(),
            org_id: app.org.clone(),
            amount_nanos: 25 * USD,
            url: String::new(),
            created_by: "test".into(),
            created_at: now_ms(),
            completed_at: None,
        })
        .await
        .unwrap();
    let body = completed_event("evt_1", "cs_test_a1");
    let now = now_ms() / 1000;

    // Forged, stale, tampered and missing signatures: 400 and nothing changes.
    for signature in [
        stripe::sign(body.as_bytes(), "whsec_attacker", now),
        stripe::sign(body.as_bytes(), WEBHOOK_SECRET, now - 301),
        stripe::sign(b"{}", WEBHOOK_SECRET, now),
        String::new(),
    ] {
        let (status, _) = webhook(&router, &body, &signature).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{signature}");
    }
    assert_eq!(
        app.store
            .credit_totals(&app.org)
            .await
            .unwrap()
            .credits_nanos,
        0
    );

    let good = stripe::sign(body.as_bytes(), WEBHOOK_SECRET, now);
    let (status, reply) = webhook(&router, &body, &good).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["handled"], json!("credited"));
    // Replays, even freshly signed, credit nothing.
    let (_, reply) = webhook(&router, &body, &good).await;
    assert_eq!(reply["handled"], json!("duplicate_event"));
    let again = completed_event("evt_2", "cs_test_a1");
    let (_, reply) = webhook(
        &router,
        &again,
        &stripe::sign(again.as_bytes(), WEBHOOK_SECRET, now),
    )
    .await;
    assert_eq!(reply["handled"], json!("already_completed"));
    assert_eq!(
        app.store
            .credit_totals(&app.org)
            .await
            .unwrap()
            .credits_nanos,
        25 * USD
    );
    // Without Stripe configured the routes do not exist.
    let r = app
        .post(
            "/api/v1/credits/checkout",
            &app.mgmt(),
            json!({ "amount": 10 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}
