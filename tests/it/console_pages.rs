//! The console pages added for issue #9, in real headless Chromium against a control plane with
//! a fake Stripe (loopback only): the usage explorer (filters change the table, grouping,
//! CSV, inline errors), credits & billing (bad amount refused inline; "Add credits" reaches
//! the fake Stripe Checkout page and, after the signed webhook, the balance shows the
//! top-up), price editing (a past effective date re-rates usage; the explorer's rollup then
//! agrees with the analytics API), teams (create, duplicate refused inline, add a member, a
//! forged post without the CSRF token refused), provider "Test connection" (a good and a
//! refused credential) and the SSO sign-in button. Screenshots go to
//! `target/console-screenshots/`.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_control_plane::billing::stripe::StripeConfig;
use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::store::{self, Store, UsageRow, now_ms};
use switchyard_control_plane::{Listeners, RunOptions};
use switchyard_e2e::browser::Browser;
use switchyard_e2e::fake_stripe::{self, FakeStripe};
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const OWNER: &str = "owner@example.com";
const PASSWORD: &str = "correct horse battery staple";
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

struct Console {
    base: String,
    org: String,
    mgmt: String,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Console {
    async fn start(stripe: &FakeStripe) -> Console {
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
        let base = format!("http://{}", listeners.http.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(switchyard_control_plane::run(
            store.clone(),
            listeners,
            RunOptions {
                stripe: Some(StripeConfig {
                    api_base: stripe.api_base(),
                    secret_key: fake_stripe::SECRET_KEY.into(),
                    webhook_secret: fake_stripe::WEBHOOK_SECRET.into(),
                    success_url: format!("{base}/billing?checkout=success"),
                    cancel_url: format!("{base}/billing?checkout=cancel"),
                }),
                ..RunOptions::default()
            },
            shutdown.clone(),
        ));
        Console {
            base,
            org: first.org_id.clone(),
            mgmt: first.management_key.expose().to_owned(),
            store,
            http: reqwest::Client::new(),
            shutdown,
            _dir: dir,
        }
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.mgmt)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

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

#[allow(clippy::too_many_arguments)]
fn usage_row(
    org: &str,
    key_hash: &str,
    model: &str,
    endpoint_id: &str,
    provider: (&str, &str),
    started_at: i64,
    cost_nanos: i64,
    failed: bool,
) -> UsageRow {
    UsageRow {
        request_id: uuid::Uuid::now_v7().to_string(),
        org_id: org.to_owned(),
        key_hash: key_hash.to_owned(),
        model: model.to_owned(),
        endpoint_id: endpoint_id.to_owned(),
        provider_id: provider.0.to_owned(),
        provider_slug: provider.1.to_owned(),
        upstream_model: "gpt-test".to_owned(),
        node_id: "node-test".to_owned(),
        config_version: 1,
        api: "chat".to_owned(),
        started_at,
        finished_at: started_at + 400,
        ttft_ms: Some(80),
        streamed: false,
        cancelled: false,
        estimated: false,
        finish_reason: "stop".to_owned(),
        native_finish_reason: "stop".to_owned(),
        http_status: if failed { 502 } else { 200 },
        error_type: String::new(),
        input_tokens: 1_000,
        output_tokens: 500,
        cache_read_tokens: 0,
        cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: 0,
        cost_nanos,
        gateway_cost_nanos: 0,
        upstream_id: String::new(),
        ingested_at: started_at + 1_000,
        provider_responses: "[]".to_owned(),
    }
}

/// UTC (year, month, day, hour, minute) of unix ms (Howard Hinnant's civil-from-days).
fn civil(ms: i64) -> (i64, i64, i64, i64, i64) {
    let days = ms.div_euclid(DAY_MS);
    let secs = ms.rem_euclid(DAY_MS) / 1000;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60)
}

fn day_text(ms: i64) -> String {
    let (y, m, d, _, _) = civil(ms);
    format!("{y:04}-{m:02}-{d:02}")
}

#[tokio::test]
async fn console_explorer_billing_prices_teams_providers_in_chromium() {
    let Some(b) = Browser::start().await.unwrap() else {
        return;
    };
    let stripe = FakeStripe::start_hosted().await.unwrap();
    let cp = Console::start(&stripe).await;
    let org = cp.org.clone();
    let base = cp.base.clone();
    let (status, _) = cp
        .api(
            reqwest::Method::POST,
            &format!("/orgs/{org}/members"),
            &json!({ "email": OWNER, "role": "owner", "password": PASSWORD, "name": "Olive Owner" }),
        )
        .await;
    assert_eq!(status, 201);

    // A mock provider with a real credential, the same server with a wrong one, a model on it.
    let upstream = MockOpenAi::start(MockConfig {
        api_key: Some("sk-upstream".into()),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for (slug, key) in [("mock-good", "sk-upstream"), ("mock-bad", "sk-wrong")] {
        let (status, body) = cp
            .api(
                reqwest::Method::POST,
                "/providers",
                &json!({ "slug": slug, "kind": "openai_compatible", "base_url": upstream.base_url(), "api_key": key }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // $1 / M input, $2 / M output: 1,000 in + 500 out cost $0.002.
    let (status, body) = cp
        .api(
            reqwest::Method::POST,
            "/models",
            &json!({ "id": "acme/chat", "context_length": 128000, "endpoints": [{
                "provider": "mock-good", "model": "gpt-test",
                "pricing": { "prompt": "0.000001", "completion": "0.000002" }
            }]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let model = cp.store.get_model(&org, "acme/chat").await.unwrap();
    let endpoint = model.endpoints[0].clone();
    let provider = cp.store.get_provider(&org, "mock-good").await.unwrap();
    let mut keys = Vec::new();
    for name in ["alpha", "beta"] {
        let (status, body) = cp
            .api(reqwest::Method::POST, "/keys", &json!({ "name": name }))
            .await;
        assert_eq!(status, 201, "{body}");
        keys.push(body["data"]["hash"].as_str().unwrap().to_owned());
    }

    // Usage: acme/chat 6× on alpha and 4× on beta (one failed), another model 3× on beta.
    let now = now_ms();
    let mut rows = Vec::new();
    for i in 0..10 {
        rows.push(usage_row(
            &org,
            &keys[usize::from(i >= 6)],
            "acme/chat",
            &endpoint.id,
            (&provider.id, "mock-good"),
            now - HOUR_MS - i64::from(i) * 60_000,
            2_000_000,
            i == 9,
        ));
    }
    for i in 0..3 {
        rows.push(usage_row(
            &org,
            &keys[1],
            "acme/other",
            "ep-other",
            ("prov-other", "other"),
            now - 2 * HOUR_MS - i * 60_000,
            500_000,
            false,
        ));
    }
    let outcome = cp.store.ingest_usage(&rows).await.unwrap();
    assert_eq!(outcome.inserted, 13);

    // SSO: this org has none yet, so the sign-in page says so; once configured it offers the button.
    b.goto(&format!("{base}/login?org={org}")).await.unwrap();
    assert!(
        b.text("#sso-error")
            .await
            .unwrap()
            .contains("no single sign-on")
    );
    let (status, body) = cp
        .api(
            reqwest::Method::PUT,
            &format!("/orgs/{org}/sso"),
            &json!({ "issuer": "http://127.0.0.1:9/issuer", "client_id": "switchyard", "redirect_uri": format!("{base}/api/v1/auth/oidc/callback") }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    b.goto(&format!("{base}/login?org={org}")).await.unwrap();
    let sso = b.find("#sso-button").await.unwrap();
    assert_eq!(
        sso.attr("href").await.unwrap().unwrap_or_default(),
        format!("/api/v1/auth/oidc/{org}/login")
    );
    b.screenshot("login-sso").await.unwrap();
    b.goto(&format!("{base}/login/sso?org=no-such-org"))
        .await
        .unwrap();
    assert!(
        b.text("#sso-error")
            .await
            .unwrap()
            .contains("no single sign-on")
    );

    b.goto(&format!("{base}/login?next=/usage")).await.unwrap();
    b.fill("#email", OWNER).await.unwrap();
    b.fill("#password", PASSWORD).await.unwrap();
    b.submit("#sign-in").await.unwrap();
    assert_eq!(b.path().await.unwrap(), "/usage");

    // Usage explorer: all usage, then a model filter changes the table, then grouping by key.
    let total = b.text("#explorer-total").await.unwrap();
    assert!(
        total.contains("13") && total.contains(&usd(10 * 2_000_000 + 3 * 500_000)),
        "{total}"
    );
    assert!(b.exists("svg.chart .bar").await.unwrap());
    b.select("#u-model", "acme/chat").await.unwrap();
    b.submit("#explore-button").await.unwrap();
    let total = b.text("#explorer-total").await.unwrap();
    assert!(total.contains("10") && total.contains("$0.02"), "{total}");
    assert!(!total.contains("13"), "{total}");
    b.select("#u-group1", "key").await.unwrap();
    b.submit("#explore-button").await.unwrap();
    let table = b.text("#explorer-table tbody").await.unwrap();
    assert!(table.contains("alpha") && table.contains("beta"), "{table}");
    assert!(
        table.contains("$0.012") && table.contains("$0.008"),
        "{table}"
    );
    b.screenshot("usage-explorer").await.unwrap();
    // CSV of what is shown, with the session's cookie.
    let href = b
        .find("#csv-link")
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap_or_default();
    let (status, csv) = b.fetch(&href).await.unwrap();
    assert_eq!(status, 200, "{csv}");
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("key,requests,errors,cost_usd,cost_nanos"),
        "{csv}"
    );
    assert!(
        csv.contains(&format!("\"{}\",6,0,0.012,12000000", keys[0])),
        "{csv}"
    );
    assert!(
        csv.contains(&format!("\"{}\",4,1,0.008,8000000", keys[1])),
        "{csv}"
    );
    // Bad input is explained inline, with the form kept.
    b.goto(&format!("{base}/usage?from=2026-13-40&to=2026-01-01"))
        .await
        .unwrap();
    assert!(
        b.text("#explorer-error")
            .await
            .unwrap()
            .contains("YYYY-MM-DD")
    );
    b.goto(&format!("{base}/usage?from=2026-02-01&to=2026-01-01"))
        .await
        .unwrap();
    assert!(b.text("#explorer-error").await.unwrap().contains("after"));

    // Credits & billing: a bad amount is refused inline; 25 goes to (fake) Stripe Checkout.
    b.goto(&format!("{base}/billing")).await.unwrap();
    assert_eq!(b.text("#credit-total").await.unwrap(), "$0.00");
    b.fill("#topup-amount", "0.5").await.unwrap();
    b.submit("#topup-button").await.unwrap();
    assert!(b.text("#topup-error").await.unwrap().contains("$1"));
    assert_eq!(b.value("#topup-amount").await.unwrap(), "0.5");
    assert!(stripe.sessions().is_empty(), "nothing reached Stripe");
    b.fill("#topup-amount", "25").await.unwrap();
    b.submit("#topup-button").await.unwrap();
    // The console's page moves on to Stripe's by itself (meta refresh, no script).
    b.find("#fake-checkout").await.unwrap();
    assert!(b.path().await.unwrap().starts_with("/c/pay/cs_test_"));
    let session = b.text("#session").await.unwrap();
    assert_eq!(b.text("#amount-cents").await.unwrap(), "2500");
    b.screenshot("stripe-checkout").await.unwrap();
    let sessions = stripe.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, session);
    assert_eq!(
        sessions[0].form.get("success_url").map(String::as_str),
        Some(format!("{base}/billing?checkout=success").as_str())
    );
    // Stripe confirms the payment with a signed webhook; the browser returns to success_url.
    let event = stripe.completed_event("evt_console_1", &session).unwrap();
    let signature = fake_stripe::sign(&event, fake_stripe::WEBHOOK_SECRET, fake_stripe::unix_now());
    let hook = cp
        .http
        .post(format!("{base}/api/v1/stripe/webhook"))
        .header("Stripe-Signature", signature)
        .header("Content-Type", "application/json")
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 200);
    b.goto(&format!("{base}/billing?checkout=success"))
        .await
        .unwrap();
    assert!(
        b.text(".notice")
            .await
            .unwrap()
            .contains("Payment received")
    );
    assert_eq!(b.text("#credit-total").await.unwrap(), "$25.00");
    let balance = cp.store.credit_totals(&org).await.unwrap().balance_nanos;
    assert_eq!(balance, 25_000_000_000 - 10 * 2_000_000 - 3 * 500_000);
    assert_eq!(b.text("#credit-balance").await.unwrap(), usd(balance));
    assert!(b.text("#transactions").await.unwrap().contains("topup"));
    b.screenshot("billing").await.unwrap();
    // Statements: the newest month's link opens it server-rendered, with the API's figures.
    let link = b.find("#statements li:first-child a").await.unwrap();
    let month = link.text().await.unwrap();
    b.submit("#statements li:first-child a").await.unwrap();
    assert_eq!(
        b.path().await.unwrap(),
        format!("/billing/statements/{month}")
    );
    let (status, statement) = cp
        .api(
            reqwest::Method::GET,
            &format!("/statements/{month}"),
            &Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{statement}");
    let figures = b.text("#statement").await.unwrap();
    let nanos = |field: &str| statement["data"][field]["nanos"].as_i64().unwrap();
    assert!(
        figures.contains(&usd(nanos("closing_balance")))
            && figures.contains(&usd(nanos("topups")))
            && figures.contains(&usd(statement["data"]["usage"]["total"]["nanos"]
                .as_i64()
                .unwrap())),
        "{figures} vs {statement}"
    );
    assert_eq!(statement["data"]["reconciled"], json!(true));
    assert!(
        b.text("#statement-reconciled")
            .await
            .unwrap()
            .starts_with("Reconciled")
    );
    assert!(
        b.text("#statement-usage")
            .await
            .unwrap()
            .contains("acme/chat")
    );
    b.screenshot("statement").await.unwrap();
    b.goto(&format!("{base}/billing/statements/2026-13"))
        .await
        .unwrap();
    assert!(b.text("main").await.unwrap().contains("2026-13"));

    // Price editing: bad input inline; then a new price from three days ago re-rates usage.
    b.goto(&format!("{base}/models")).await.unwrap();
    b.submit("a[href='/models/acme/chat/prices']")
        .await
        .unwrap();
    b.fill("#p-input", "abc").await.unwrap();
    b.submit("#price-button").await.unwrap();
    assert!(b.text("#price-error").await.unwrap().contains("Input"));
    b.fill("#p-input", "3").await.unwrap();
    b.fill("#p-output", "6").await.unwrap();
    let (y, mo, d, h, mi) = civil(now - 3 * DAY_MS);
    let from = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}");
    b.set_value("#p-from", &from).await.unwrap();
    b.fill("#p-note", "provider raised prices").await.unwrap();
    b.submit("#price-button").await.unwrap();
    let notice = b.text(".notice").await.unwrap();
    assert!(
        notice.contains("10 past requests were re-rated"),
        "{notice}"
    );
    assert!(
        b.text("#current-prices")
            .await
            .unwrap()
            .contains("$3.00 / M")
    );
    assert!(
        b.text("#price-history")
            .await
            .unwrap()
            .contains("provider raised prices")
    );
    b.screenshot("prices").await.unwrap();
    // The rollup moved with the re-rating: 10 × (1,000 × $3 + 500 × $6) / M = $0.06, and the
    // explorer agrees with the analytics API (which sums usage rows and adjustments).
    b.goto(&format!(
        "{base}/usage?group1=model&from={}&to={}",
        day_text(now - 2 * DAY_MS),
        day_text(now)
    ))
    .await
    .unwrap();
    let table = b.text("#explorer-table tbody").await.unwrap();
    assert!(
        table.contains("acme/chat") && table.contains("$0.06"),
        "{table}"
    );
    let (status, analytics) = cp
        .api(
            reqwest::Method::POST,
            "/analytics/query",
            &json!({ "dimensions": ["model"], "metrics": ["cost", "requests"], "filters": { "model": "acme/chat" } }),
        )
        .await;
    assert_eq!(status, 200, "{analytics}");
    assert_eq!(
        analytics["data"][0]["cost_nanos"],
        json!(60_000_000),
        "{analytics}"
    );

    // Teams: empty state, create, duplicate refused inline, add a member.
    b.goto(&format!("{base}/teams")).await.unwrap();
    assert!(b.exists("#no-teams").await.unwrap());
    b.fill("#team-name", "search").await.unwrap();
    b.submit("#create-team-button").await.unwrap();
    assert!(b.text(".notice").await.unwrap().contains("search"));
    assert!(b.exists("section[data-team='search']").await.unwrap());
    b.fill("#team-name", "search").await.unwrap();
    b.submit("#create-team-button").await.unwrap();
    assert!(b.text("#team-error").await.unwrap().contains("exists"));
    assert_eq!(b.value("#team-name").await.unwrap(), "search");
    let owner_id = cp
        .store
        .list_members(&org)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.email == OWNER)
        .unwrap()
        .user_id;
    b.select(
        "section[data-team='search'] select[name=user_id]",
        &owner_id,
    )
    .await
    .unwrap();
    b.submit("section[data-team='search'] form.add-member button")
        .await
        .unwrap();
    assert!(
        b.text("section[data-team='search'] .team-members")
            .await
            .unwrap()
            .contains(OWNER)
    );
    b.screenshot("teams").await.unwrap();
    // A post without the session's CSRF token changes nothing.
    b.client
        .execute("window.__switchyardOldPage = true;", vec![])
        .await
        .unwrap();
    b.client
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '/teams';
             for (const [k, v] of [['csrf', 'forged'], ['name', 'sneaky']]) {
               const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
             }
             document.body.appendChild(f); f.submit();",
            vec![],
        )
        .await
        .unwrap();
    b.wait_for_new_page().await.unwrap();
    assert!(b.text("main").await.unwrap().contains("CSRF"));
    assert_eq!(cp.store.list_teams(&org).await.unwrap().len(), 1);

    // Explorer owner filters: alpha owned by the owner (user), beta by the team "search".
    let team_id = cp.store.list_teams(&org).await.unwrap()[0].id.clone();
    for (hash, field, owner) in [
        (&keys[0], "owner_user_id", &owner_id),
        (&keys[1], "owner_team_id", &team_id),
    ] {
        let (status, body) = cp
            .api(
                reqwest::Method::PATCH,
                &format!("/keys/{hash}"),
                &json!({ field: owner }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // Costs were re-rated by the price edit above: expect each key's spend from the rollup.
    let mut spent = Vec::new();
    for hash in &keys {
        spent.push(
            cp.store
                .key_spend_from_days(&org, hash, &[i64::MIN])
                .await
                .unwrap()[0],
        );
    }
    b.goto(&format!("{base}/usage")).await.unwrap();
    b.select("#u-user", &owner_id).await.unwrap();
    b.submit("#explore-button").await.unwrap();
    let total = b.text("#explorer-total").await.unwrap();
    assert!(
        total.contains('6') && total.contains(&usd(spent[0])) && !total.contains("13"),
        "alpha's usage only: {total}"
    );
    b.select("#u-user", "").await.unwrap();
    b.select("#u-team", &team_id).await.unwrap();
    b.submit("#explore-button").await.unwrap();
    let total = b.text("#explorer-total").await.unwrap();
    assert!(
        total.contains('7') && total.contains(&usd(spent[1])),
        "beta's usage only: {total}"
    );
    b.screenshot("usage-by-team").await.unwrap();

    // Explorer tag filter: the three acme/other generations carry project=apollo.
    let tags: Vec<_> = rows[10..]
        .iter()
        .map(|r| {
            let tag = vec![("project".to_owned(), "apollo".to_owned())];
            (r.request_id.clone(), org.clone(), tag)
        })
        .collect();
    cp.store.add_usage_tags(&tags).await.unwrap();
    b.select("#u-team", "").await.unwrap();
    b.set_value("#u-tag", "project=apollo").await.unwrap();
    b.submit("#explore-button").await.unwrap();
    let total = b.text("#explorer-total").await.unwrap();
    assert!(
        total.contains('3') && total.contains(&usd(3 * 500_000)) && !total.contains("13"),
        "the tagged generations only: {total}"
    );
    b.set_value("#u-tag", "apollo").await.unwrap();
    b.submit("#explore-button").await.unwrap();
    assert!(
        b.text("#explorer-error")
            .await
            .unwrap()
            .contains("not key=value")
    );
    b.set_value("#u-tag", "").await.unwrap();

    // Providers: test connection with the right and a wrong credential.
    b.goto(&format!("{base}/providers")).await.unwrap();
    b.submit("#test-mock-good").await.unwrap();
    let result = b.text("#test-result").await.unwrap();
    assert!(
        result.contains("connected") && result.contains("models listed"),
        "{result}"
    );
    b.screenshot("providers-test").await.unwrap();
    b.submit("#test-mock-bad").await.unwrap();
    let result = b.text("#test-result").await.unwrap();
    assert!(result.contains("refused the credential"), "{result}");
    assert!(
        !b.text("main").await.unwrap().contains("sk-wrong"),
        "no credential is shown"
    );

    // Budgets: bad limit and a team budget without its team are refused inline; an org
    // budget is listed with a spend bar showing what the budgets API reports.
    b.goto(&format!("{base}/budgets")).await.unwrap();
    assert!(b.exists("#no-budgets").await.unwrap());
    b.fill("#b-limit", "ten dollars").await.unwrap();
    b.submit("#create-budget-button").await.unwrap();
    assert!(
        b.text("#budget-error")
            .await
            .unwrap()
            .contains("dollar amount")
    );
    b.fill("#b-limit", "50").await.unwrap();
    b.select("#b-scope", "team").await.unwrap();
    b.submit("#create-budget-button").await.unwrap();
    assert!(b.text("#budget-error").await.unwrap().contains("team"));
    b.select("#b-scope", "org").await.unwrap();
    b.select("#b-window", "lifetime").await.unwrap();
    b.fill("#b-name", "Org cap").await.unwrap();
    b.fill("#b-limit", "0.02").await.unwrap();
    b.submit("#create-budget-button").await.unwrap();
    assert!(b.text(".notice").await.unwrap().contains("Budget created"));
    let (status, listed) = cp.api(reqwest::Method::GET, "/budgets", &Value::Null).await;
    assert_eq!(status, 200, "{listed}");
    let spent = listed["data"][0]["spent_nanos"].as_i64().unwrap();
    assert!(
        spent > 20_000_000,
        "the usage so far is over $0.02: {listed}"
    );
    let row = b.text("#budgets tbody tr").await.unwrap();
    assert!(
        row.contains("Org cap") && row.contains(&usd(spent)) && row.contains("over"),
        "{row}"
    );
    assert!(b.exists("#budgets svg.meter .bar.over").await.unwrap());
    b.screenshot("budgets").await.unwrap();
    // The overview shows spend against the org's budget.
    b.goto(&base).await.unwrap();
    let stats = b.text(".stats").await.unwrap();
    assert!(
        stats.contains("Org budget") && stats.contains(&usd(spent)),
        "{stats}"
    );

    b.close().await.unwrap();
}
