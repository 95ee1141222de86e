//! The web console in real headless Chromium: sign in, create a key, call the gateway with
//! it, find the generation and its cost in the request log; invite a viewer, who then
//! cannot create keys; an org budget set below the spend makes the gateway refuse the key
//! (402) and the overview show the overspend. Screenshots of every main page go to `target/console-screenshots/`.

use serde_json::{Value, json};
use switchyard_e2e::browser::Browser;
use switchyard_e2e::harness::System;

const OWNER: &str = "owner@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// Same format as the console's: dollars, 2 to 9 decimals.
fn usd(nanos: i64) -> String {
    let frac = format!("{:09}", nanos % 1_000_000_000);
    let trimmed = frac.trim_end_matches('0');
    let frac = if trimmed.len() < 2 {
        &frac[..2]
    } else {
        trimmed
    };
    format!("${}.{frac}", nanos / 1_000_000_000)
}

async fn sign_in(b: &Browser, base: &str, email: &str, password: &str) {
    b.goto(&format!("{base}/login")).await.unwrap();
    b.fill("#email", email).await.unwrap();
    b.fill("#password", password).await.unwrap();
    b.submit("#sign-in").await.unwrap();
}

#[tokio::test]
async fn console_key_to_request_log_and_viewer_rbac_in_chromium() {
    let Some(b) = Browser::start().await.unwrap() else {
        return;
    };
    let system = System::start().await.unwrap();
    let org = system.secrets.org_id.clone();
    let base = format!("http://{}", system.control_plane.http_addr);
    let created = system
        .post(
            &format!("/orgs/{org}/members"),
            system.management_key(),
            &json!({ "email": OWNER, "role": "owner", "password": PASSWORD, "name": "Olive Owner" }),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());

    // Signed out, any page leads to sign-in; a wrong password is answered inline.
    b.goto(&format!("{base}/keys")).await.unwrap();
    assert_eq!(b.path().await.unwrap(), "/login");
    b.screenshot("login").await.unwrap();
    b.fill("#email", OWNER).await.unwrap();
    b.fill("#password", "wrong password").await.unwrap();
    b.submit("#sign-in").await.unwrap();
    assert!(
        b.text("#login-error")
            .await
            .unwrap()
            .contains("invalid email or password")
    );
    b.fill("#password", PASSWORD).await.unwrap();
    b.submit("#sign-in").await.unwrap();
    assert_eq!(
        b.path().await.unwrap(),
        "/keys",
        "sign-in returns to the page asked for"
    );

    // An empty name is refused inline; then a key is created and its secret shown once.
    b.fill("#key-name", "browser-key").await.unwrap();
    b.fill("#key-limit", "not money").await.unwrap();
    b.submit("#create-key-button").await.unwrap();
    assert!(
        b.text("#key-error")
            .await
            .unwrap()
            .contains("dollar amount")
    );
    assert_eq!(
        b.value("#key-name").await.unwrap(),
        "browser-key",
        "the form keeps its input"
    );
    b.fill("#key-limit", "5").await.unwrap();
    b.submit("#create-key-button").await.unwrap();
    let secret = b.value("#new-secret").await.unwrap();
    assert!(secret.starts_with("sk-"), "secret shown once: {secret}");
    assert!(b.exists("button[data-copy='new-secret']").await.unwrap());
    b.screenshot("keys").await.unwrap();
    b.goto(&format!("{base}/keys")).await.unwrap();
    assert!(
        !b.exists("#new-secret").await.unwrap(),
        "the secret is never shown again"
    );

    // The gateway serves the new key; its generation reaches the request log with its cost.
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();
    let answer = system
        .post(
            "/chat/completions",
            &secret,
            &json!({ "model": "switchyard/echo", "messages": [{ "role": "user", "content": "hello from the browser test" }] }),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    // `GET /generation` waits until the gateway's usage record has been ingested.
    let generation = system
        .get(&format!("/generation?id={id}"), system.management_key())
        .await
        .unwrap();
    assert_eq!(generation.status(), 200);
    let request_id = id.strip_prefix("gen-").unwrap_or(&id);
    let row = system
        .store
        .get_usage(&org, request_id)
        .await
        .unwrap()
        .unwrap();
    assert!(row.cost_nanos > 0, "the echo model is priced");

    b.goto(&format!("{base}/requests")).await.unwrap();
    let log = b.text("#request-log").await.unwrap();
    assert!(
        log.contains("switchyard/echo") && log.contains("browser-key"),
        "{log}"
    );
    assert!(
        log.contains(&usd(row.cost_nanos)),
        "cost {} in {log}",
        usd(row.cost_nanos)
    );
    b.screenshot("requests").await.unwrap();
    b.submit(&format!("a[href='/requests/{id}']"))
        .await
        .unwrap();
    assert_eq!(b.text("#gen-cost").await.unwrap(), usd(row.cost_nanos));
    b.screenshot("request-detail").await.unwrap();

    b.goto(&base).await.unwrap();
    let stats = b.text(".stats").await.unwrap();
    assert!(stats.contains(&usd(row.cost_nanos)), "{stats}");
    assert!(b.exists("svg.chart .bar").await.unwrap());
    b.screenshot("overview").await.unwrap();
    b.client.set_window_size(390, 844).await.unwrap();
    b.screenshot("overview-phone").await.unwrap();
    b.client.set_window_size(1280, 900).await.unwrap();

    // The key page's spend (today / this month / all time, read from the daily rollup)
    // counts the generation in each figure.
    let hash = system
        .store
        .list_keys(&org, 0, 100, true)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "browser-key")
        .unwrap()
        .hash;
    b.goto(&format!("{base}/keys/{hash}")).await.unwrap();
    let key_page = b.text("main").await.unwrap();
    assert!(
        key_page.contains("Spend all time") && key_page.matches(&usd(row.cost_nanos)).count() >= 3,
        "{key_page}"
    );

    // Over budget: an org budget below what was already spent, set in the console, makes the
    // gateway refuse the key's next call with 402, and the overview shows spend over it.
    assert!(
        row.cost_nanos >= 2 && row.cost_nanos < 1_000_000_000,
        "a limit below the spend must be expressible: {}",
        row.cost_nanos
    );
    let limit_nanos = row.cost_nanos / 2;
    b.goto(&format!("{base}/budgets")).await.unwrap();
    b.select("#b-scope", "org").await.unwrap();
    b.select("#b-window", "lifetime").await.unwrap();
    b.fill("#b-name", "Tiny org cap").await.unwrap();
    b.fill("#b-limit", &format!("0.{limit_nanos:09}"))
        .await
        .unwrap();
    b.submit("#create-budget-button").await.unwrap();
    assert!(b.text(".notice").await.unwrap().contains("Budget created"));
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();
    let refused = system
        .post(
            "/chat/completions",
            &secret,
            &json!({ "model": "switchyard/echo", "messages": [{ "role": "user", "content": "one more, please" }] }),
        )
        .await
        .unwrap();
    let status = refused.status();
    let body = refused.text().await.unwrap();
    assert_eq!(status, 402, "over-budget call refused: {body}");
    let budgets: Value = system
        .get("/budgets", system.management_key())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org_budget = &budgets["data"][0];
    assert_eq!(org_budget["limit_nanos"], json!(limit_nanos), "{budgets}");
    let percent = org_budget["percent_used"].as_f64().unwrap();
    assert!(percent > 100.0, "spend is over the budget: {budgets}");
    b.goto(&base).await.unwrap();
    let stats = b.text(".stats").await.unwrap();
    assert!(
        stats.contains("Org budget")
            && stats.contains(&format!("{percent:.1}%"))
            && stats.contains(&format!(
                "{} of {}",
                usd(org_budget["spent_nanos"].as_i64().unwrap()),
                usd(limit_nanos)
            )),
        "{stats}"
    );
    b.screenshot("overview-over-budget").await.unwrap();

    for (page, name) in [
        ("/providers", "providers"),
        ("/models", "models"),
        ("/gateways", "gateways"),
        ("/audit", "audit"),
        ("/playground", "playground"),
    ] {
        b.goto(&format!("{base}{page}")).await.unwrap();
        assert_eq!(b.path().await.unwrap(), page);
        assert!(b.exists("main h1").await.unwrap());
        b.screenshot(name).await.unwrap();
    }
    let audit = {
        b.goto(&format!("{base}/audit?action=key.")).await.unwrap();
        b.text("#audit-log").await.unwrap()
    };
    assert!(
        audit.contains("key.create") && !audit.contains("member."),
        "{audit}"
    );
    let gateways = {
        b.goto(&format!("{base}/gateways")).await.unwrap();
        b.text("#gateways").await.unwrap()
    };
    assert!(gateways.contains("test-gateway-"), "{gateways}");

    // Invite a viewer; the token is shown once.
    b.goto(&format!("{base}/members")).await.unwrap();
    b.fill("#invite-email", "viewer@example.com").await.unwrap();
    b.client
        .find(fantoccini::Locator::Css("#invite-role"))
        .await
        .unwrap()
        .select_by_value("viewer")
        .await
        .unwrap();
    b.submit("#invite-button").await.unwrap();
    let token = b.value("#invite-token").await.unwrap();
    assert!(!token.is_empty());
    assert!(
        b.text("#invitations")
            .await
            .unwrap()
            .contains("viewer@example.com")
    );
    b.screenshot("members").await.unwrap();

    // Sign out, accept as the viewer: no key form, and a forged post is refused.
    b.submit("form[action='/logout'] button").await.unwrap();
    assert_eq!(b.path().await.unwrap(), "/login");
    b.goto(&format!("{base}/invite?token={token}"))
        .await
        .unwrap();
    b.fill("#name", "Vic Viewer").await.unwrap();
    b.fill("#password", PASSWORD).await.unwrap();
    b.submit("#accept").await.unwrap();
    if b.path().await.unwrap() == "/login" {
        sign_in(&b, &base, "viewer@example.com", PASSWORD).await;
    }
    b.goto(&format!("{base}/keys")).await.unwrap();
    assert!(b.text(".role").await.unwrap().contains("viewer"));
    assert!(b.exists("#no-create").await.unwrap());
    assert!(!b.exists("#create-key").await.unwrap());
    b.screenshot("keys-viewer").await.unwrap();
    let keys_before = system
        .store
        .list_keys(&org, 0, 100, true)
        .await
        .unwrap()
        .len();
    b.client
        .execute("window.__switchyardOldPage = true;", vec![])
        .await
        .unwrap();
    b.client
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '/keys';
             const csrf = document.querySelector('input[name=csrf]').value;
             for (const [k, v] of [['csrf', csrf], ['name', 'sneaky']]) {
               const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
             }
             document.body.appendChild(f); f.submit();",
            vec![],
        )
        .await
        .unwrap();
    b.wait_for_new_page().await.unwrap();
    let page = b.text("main").await.unwrap();
    assert!(
        page.contains("viewer") && page.contains("permission"),
        "{page}"
    );
    assert_eq!(
        system
            .store
            .list_keys(&org, 0, 100, true)
            .await
            .unwrap()
            .len(),
        keys_before,
        "the viewer created no key"
    );
    b.close().await.unwrap();
}
