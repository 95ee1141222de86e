//! Chargeback end to end: tags from the request (`metadata`, `user`, `session_id`, `trace`,
//! `X-Switchyard-Tags`) reach the usage records and analytics groups spend by tag × model ×
//! day; the platform fee is a separate ledger posting shown in `cost_details`; the monthly
//! statement reconciles with the ledger and the FOCUS export sums to the same usage; the
//! reference catalog lists ≥30 priced models that operators can edit and import.

use std::collections::HashMap;

use serde_json::{Value, json};
use switchyard_control_plane::store::now_ms;
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};

/// 1000 prompt + 500 completion tokens at $1/M and $2/M: $0.002 a request.
const REQUEST_NANOS: i64 = 2_000_000;

async fn system_with_model(models: &[&str]) -> (System, MockOpenAi) {
    let mock = MockOpenAi::start(MockConfig {
        fixed_usage: Some((1_000, 500)),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let system = System::start().await.unwrap();
    for m in models {
        system
            .add_openai_model(&mock.base_url(), m, "gpt-4o-mini", "0.000001", "0.000002")
            .await
            .unwrap();
    }
    (system, mock)
}

async fn chat(system: &System, tags: Option<&str>, body: Value) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("{}/chat/completions", system.base_url()))
        .bearer_auth(system.api_key())
        .json(&body);
    if let Some(t) = tags {
        r = r.header("X-Switchyard-Tags", t);
    }
    r.send().await.unwrap()
}

async fn json_of(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"))
}

/// The meter hands records off without blocking responses: poll the ledger until it has them.
async fn wait_for_usage(system: &System, nanos: i64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let c = json_of(
            system
                .get("/credits", system.management_key())
                .await
                .unwrap(),
        )
        .await;
        if c["data"]["total_usage_nanos"] == json!(nanos) {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ledger usage never reached {nanos} nano-USD: {c}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn put(system: &System, path: &str, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .put(format!("{}{path}", system.base_url()))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn analytics_groups_spend_by_tag_model_and_day() {
    let (system, _mock) = system_with_model(&["acme/alpha", "acme/beta"]).await;
    let msg = json!([{"role": "user", "content": "hi"}]);
    // team=search: 2 × alpha (header), 1 × beta (metadata); team=ads: 1 × alpha; untagged: 1 × beta.
    let sent = [
        (
            Some("team=search,env=prod"),
            json!({"model": "acme/alpha", "messages": msg, "user": "u-1"}),
        ),
        (
            Some("team=search"),
            json!({"model": "acme/alpha", "messages": msg, "stream": true, "session_id": "s-9"}),
        ),
        (
            None,
            json!({"model": "acme/beta", "messages": msg, "metadata": {"team": "search", "cost center": "cc-7"}, "trace": {"trace_id": "tr-1"}}),
        ),
        (
            Some("team=ads"),
            json!({"model": "acme/alpha", "messages": msg}),
        ),
        (None, json!({"model": "acme/beta", "messages": msg})),
    ];
    for (tags, body) in sent {
        let r = chat(&system, tags, body).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    // Bad tags are refused before any provider is called, with a message naming the problem.
    for (header, needle) in [
        ("team", "not key=value"),
        ("bad key=x", "key `bad key`"),
        ("a=1,a=2", "appears twice"),
    ] {
        let r = chat(
            &system,
            Some(header),
            json!({"model": "acme/alpha", "messages": msg}),
        )
        .await;
        assert_eq!(r.status(), 400, "{header}");
        let body = json_of(r).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message}");
    }
    let r = chat(
        &system,
        None,
        json!({"model": "acme/alpha", "messages": msg, "metadata": {"n": 1}}),
    )
    .await;
    assert_eq!(r.status(), 400);
    wait_for_usage(&system, 5 * REQUEST_NANOS).await;

    let r = system
        .post(
            "/analytics/query",
            system.management_key(),
            &json!({"dimensions": ["tag:team", "model", "day"], "metrics": ["cost", "requests"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json_of(r).await;
    let today = switchyard_control_plane::api::timefmt::iso(now_ms())[..10].to_owned();
    let mut got: HashMap<(String, String), (i64, i64)> = HashMap::new();
    for row in body["data"].as_array().unwrap() {
        assert_eq!(row["day"], json!(today), "{row}");
        got.insert(
            (
                row["tag:team"].as_str().unwrap().to_owned(),
                row["model"].as_str().unwrap().to_owned(),
            ),
            (
                row["requests"].as_i64().unwrap(),
                row["cost_nanos"].as_i64().unwrap(),
            ),
        );
    }
    let want: HashMap<(String, String), (i64, i64)> = [
        (("search", "acme/alpha"), 2),
        (("search", "acme/beta"), 1),
        (("ads", "acme/alpha"), 1),
        (("", "acme/beta"), 1),
    ]
    .into_iter()
    .map(|((t, m), n)| ((t.to_owned(), m.to_owned()), (n, n * REQUEST_NANOS)))
    .collect();
    assert_eq!(got, want, "{body}");

    // The other sources are tags too: user, session_id, normalised metadata keys, trace.
    for (dim, value) in [
        ("user", "u-1"),
        ("session_id", "s-9"),
        ("tag:cost_center", "cc-7"),
        ("tag:trace.trace_id", "tr-1"),
        ("tag:env", "prod"),
    ] {
        let r = system
            .post(
                "/analytics/query",
                system.management_key(),
                &json!({"dimensions": [dim], "filters": {dim: value}, "metrics": ["requests"]}),
            )
            .await
            .unwrap();
        let body = json_of(r).await;
        assert_eq!(body["data"][0]["requests"], json!(1), "{dim}: {body}");
    }
}

#[tokio::test]
async fn platform_fee_posts_separately_and_statements_and_focus_reconcile() {
    let (system, _mock) = system_with_model(&["acme/fee"]).await;
    let mgmt = system.management_key().to_owned();
    let msg = json!([{"role": "user", "content": "hi"}]);
    let grant = system
        .post(
            "/credits/grants",
            &mgmt,
            &json!({"amount": 3, "reason": "e2e"}),
        )
        .await
        .unwrap();
    assert_eq!(grant.status(), 201);

    // Default: no fee.
    let s = json_of(system.get("/billing/settings", &mgmt).await.unwrap()).await;
    assert_eq!(s["data"]["platform_fee_bps"], json!(0));
    let r = chat(
        &system,
        Some("team=a"),
        json!({"model": "acme/fee", "messages": msg}),
    )
    .await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    wait_for_usage(&system, REQUEST_NANOS).await;

    // Only an owner or a management key sets the fee; bad values are refused.
    let r = put(
        &system,
        "/billing/platform-fee",
        system.api_key(),
        &json!({"bps": 100}),
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = put(
        &system,
        "/billing/platform-fee",
        &mgmt,
        &json!({"bps": 10_001}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = put(
        &system,
        "/billing/platform-fee",
        &mgmt,
        &json!({"bps": 1_250}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["data"]["platform_fee_bps"], json!(1_250));

    let r = chat(
        &system,
        Some("team=b"),
        json!({"model": "acme/fee", "messages": msg}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = json_of(r).await["id"].as_str().unwrap().to_owned();
    let fee = REQUEST_NANOS * 1_250 / 10_000;
    wait_for_usage(&system, 2 * REQUEST_NANOS + fee).await;
    let g = json_of(
        system
            .get(&format!("/generation?id={id}"), &mgmt)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        g["data"]["cost_details"]["provider_cost_nanos"],
        json!(REQUEST_NANOS)
    );
    assert_eq!(g["data"]["cost_details"]["platform_fee_nanos"], json!(fee));
    let tx = json_of(
        system
            .get("/credits/transactions?kind=fee", &mgmt)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tx["data"].as_array().unwrap().len(), 1, "{tx}");
    assert_eq!(tx["data"][0]["amount_nanos"], json!(-fee));
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

    // The month's statement: 3 USD granted, two generations, one fee; it reconciles.
    let month = switchyard_control_plane::api::timefmt::iso(now_ms())[..7].to_owned();
    let st = json_of(
        system
            .get(&format!("/statements/{month}"), &mgmt)
            .await
            .unwrap(),
    )
    .await;
    let d = &st["data"];
    assert_eq!(d["reconciled"], json!(true), "{st}");
    assert_eq!(d["opening_balance"]["nanos"], json!(0));
    assert_eq!(d["grants"]["nanos"], json!(3_000_000_000_i64));
    assert_eq!(d["usage"]["total"]["nanos"], json!(2 * REQUEST_NANOS));
    assert_eq!(d["usage"]["by_model"][0]["model"], json!("acme/fee"));
    assert_eq!(d["usage"]["by_model"][0]["requests"], json!(2));
    assert_eq!(d["platform_fees"]["nanos"], json!(fee));
    assert_eq!(
        d["closing_balance"]["nanos"],
        json!(3_000_000_000_i64 - 2 * REQUEST_NANOS - fee)
    );
    assert_eq!(
        json_of(system.get("/credits", &mgmt).await.unwrap()).await["data"]["balance_nanos"],
        d["closing_balance"]["nanos"]
    );
    let r = system.get("/statements/2026-13", &mgmt).await.unwrap();
    assert_eq!(r.status(), 400);

    // FOCUS rows: one per charge (2 usage + 1 fee), summing to the ledger's usage.
    let day = switchyard_control_plane::api::timefmt::iso(now_ms() - 86_400_000)[..10].to_owned();
    let tomorrow =
        switchyard_control_plane::api::timefmt::iso(now_ms() + 86_400_000)[..10].to_owned();
    let r = system
        .get(&format!("/exports/focus?from={day}&to={tomorrow}"), &mgmt)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in [
        "BilledCost",
        "EffectiveCost",
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "ServiceName",
        "ResourceId",
        "Tags",
    ] {
        assert!(header.contains(&col), "{col} missing: {header:?}");
    }
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<String>> = lines
        .map(|l| {
            l.trim_matches('"')
                .split("\",\"")
                .map(|c| c.replace("\"\"", "\""))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let billed: i64 = rows
        .iter()
        .map(|r| {
            let (whole, frac) = r[col("BilledCost")].split_once('.').unwrap();
            whole.parse::<i64>().unwrap() * 1_000_000_000 + frac.parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(billed, 2 * REQUEST_NANOS + fee);
    let fee_row = rows
        .iter()
        .find(|r| r[col("ServiceName")] == "Switchyard platform fee")
        .unwrap();
    assert_eq!(fee_row[col("ResourceId")], id);
    assert_eq!(fee_row[col("Tags")], r#"{"team":"b"}"#);
    assert!(rows.iter().any(|r| r[col("Tags")] == r#"{"team":"a"}"#));
}

#[tokio::test]
async fn catalog_lists_priced_models_and_operators_edit_and_import_them() {
    let (system, mock) = system_with_model(&[]).await;
    let mgmt = system.management_key().to_owned();
    let body = json_of(system.get("/catalog", &mgmt).await.unwrap()).await;
    let models = body["data"].as_array().unwrap();
    assert!(models.len() >= 30, "only {} catalog models", models.len());
    let vendors: std::collections::BTreeSet<&str> = models
        .iter()
        .map(|m| m["vendor"].as_str().unwrap())
        .collect();
    for v in [
        "openai",
        "anthropic",
        "google",
        "meta",
        "mistral",
        "deepseek",
    ] {
        assert!(vendors.contains(v), "no {v} model");
    }
    for m in models {
        assert!(
            m["pricing_nanos_per_mtok"]["input"].as_i64().unwrap() > 0,
            "{m}"
        );
        assert_eq!(m["as_of"].as_str().unwrap().len(), 10, "{m}");
    }
    let sonnet = models
        .iter()
        .find(|m| m["id"] == json!("anthropic/claude-sonnet-4"))
        .unwrap();
    assert_eq!(sonnet["pricing"]["prompt"], json!("0.000003"));
    assert_eq!(sonnet["pricing"]["input_cache_write"], json!("0.00000375"));
    assert_eq!(sonnet["long_context"]["threshold"], json!(200_000));

    // An operator corrects a price and adds a custom model; the seeded row is untouched for
    // other orgs, and this org sees its own.
    let r = put(
        &system,
        "/catalog/openai/gpt-4o-mini",
        &mgmt,
        &json!({"pricing": {"prompt": "0.0000002", "completion": "0.0000008"}, "as_of": "2026-01-15"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = put(
        &system,
        "/catalog/acme/house",
        &mgmt,
        &json!({"context_length": 32000}),
    )
    .await;
    assert_eq!(r.status(), 400, "a custom model needs prices");
    let r = put(
        &system,
        "/catalog/acme/house",
        &mgmt,
        &json!({"upstream_model": "gpt-4o-mini", "context_length": 32000, "pricing": {"prompt": "0.000001", "completion": "0.000002"}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body = json_of(system.get("/catalog", &mgmt).await.unwrap()).await;
    let find = |id: &str| {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == json!(id))
            .cloned()
            .unwrap()
    };
    assert_eq!(
        find("openai/gpt-4o-mini")["pricing"]["prompt"],
        json!("0.0000002")
    );
    assert_eq!(find("openai/gpt-4o-mini")["custom"], json!(true));
    assert_eq!(find("acme/house")["custom"], json!(true));
    let (_, other_mgmt, _) = system.add_org("other").await.unwrap();
    let theirs = json_of(system.get("/catalog", &other_mgmt).await.unwrap()).await;
    let seeded = theirs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == json!("openai/gpt-4o-mini"))
        .cloned()
        .unwrap();
    assert_eq!(seeded["pricing"]["prompt"], json!("0.00000015"));
    assert!(
        theirs["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != json!("acme/house"))
    );

    // Import makes it routable at one of the org's providers, at the catalog's price.
    let r = system
        .post(
            "/providers",
            &mgmt,
            &json!({"slug": "house", "kind": "openai_compatible", "base_url": mock.base_url(), "api_key": "sk-mock"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = system
        .post(
            "/catalog/import",
            &mgmt,
            &json!({"provider": "house", "models": ["acme/house", "nope/missing"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = system
        .post(
            "/catalog/import",
            &mgmt,
            &json!({"provider": "house", "models": ["acme/house"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();
    let r = chat(
        &system,
        None,
        json!({"model": "acme/house", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body = json_of(r).await;
    assert!(
        (body["usage"]["cost"].as_f64().unwrap() - 0.002).abs() < 1e-12,
        "{body}"
    );
}

/// What the ledger took from the org's credits for one generation: its usage and fee entries.
async fn ledger_debit(system: &System, generation: &str) -> i64 {
    let tx = json_of(
        system
            .get("/credits/transactions?limit=1000", system.management_key())
            .await
            .unwrap(),
    )
    .await;
    let entries: Vec<&Value> = tx["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["generation_id"] == json!(generation))
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "a usage and a fee entry for {generation}: {tx}"
    );
    -entries
        .iter()
        .map(|e| e["amount_nanos"].as_i64().unwrap())
        .sum::<i64>()
}

/// The `usage` object of a streamed response: the last data chunk that carries one.
async fn streamed_usage(r: reqwest::Response) -> (String, Value) {
    let text = r.text().await.unwrap();
    let mut found = None;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if chunk["usage"].is_object() {
            found = Some((
                chunk["id"].as_str().unwrap().to_owned(),
                chunk["usage"].clone(),
            ));
        }
    }
    found.unwrap_or_else(|| panic!("no usage chunk in the stream: {text}"))
}

#[tokio::test]
async fn client_cost_includes_the_platform_fee_and_equals_generation_and_ledger() {
    // 1000 × 333 + 500 × 777 nano-USD = 721 500 provider cost; 5.5 % of it is 39 682.5,
    // which the ledger rounds down to 39 682.
    const PROVIDER: i64 = 721_500;
    const FEE: i64 = 39_682;
    let (system, mock) = system_with_model(&[]).await;
    system
        .add_openai_model(
            &mock.base_url(),
            "acme/odd",
            "gpt-4o-mini",
            "0.000000333",
            "0.000000777",
        )
        .await
        .unwrap();
    let mgmt = system.management_key().to_owned();
    let grant = system
        .post(
            "/credits/grants",
            &mgmt,
            &json!({"amount": 1, "reason": "e2e"}),
        )
        .await
        .unwrap();
    assert_eq!(grant.status(), 201);
    let r = put(
        &system,
        "/billing/platform-fee",
        &mgmt,
        &json!({"bps": 550}),
    )
    .await;
    assert_eq!(r.status(), 200);
    // The fee travels to the gateway in the config snapshot.
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();

    let msg = json!([{"role": "user", "content": "hi"}]);
    let body =
        json_of(chat(&system, None, json!({"model": "acme/odd", "messages": msg})).await).await;
    let plain = (
        body["id"].as_str().unwrap().to_owned(),
        body["usage"].clone(),
    );
    let r = chat(
        &system,
        None,
        json!({"model": "acme/odd", "messages": msg, "stream": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let streamed = streamed_usage(r).await;
    // The ledger's usage total counts fees too.
    wait_for_usage(&system, 2 * (PROVIDER + FEE)).await;

    for (id, usage) in [plain, streamed] {
        let details = &usage["cost_details"];
        assert_eq!(details["provider_cost_nanos"], json!(PROVIDER), "{usage}");
        assert_eq!(details["platform_fee_nanos"], json!(FEE), "{usage}");
        // `cost` is USD as f64; to the nano it is provider cost + fee.
        let client_nanos = (usage["cost"].as_f64().unwrap() * 1e9).round() as i64;
        assert_eq!(client_nanos, PROVIDER + FEE, "{usage}");

        let g = json_of(
            system
                .get(&format!("/generation?id={id}"), &mgmt)
                .await
                .unwrap(),
        )
        .await;
        let g = &g["data"];
        assert_eq!(
            g["cost_details"]["provider_cost_nanos"],
            json!(PROVIDER),
            "{g}"
        );
        assert_eq!(g["cost_details"]["platform_fee_nanos"], json!(FEE), "{g}");
        assert_eq!(g["total_cost"], usage["cost"], "{g}");
        assert_eq!(ledger_debit(&system, &id).await, PROVIDER + FEE);
    }
}
