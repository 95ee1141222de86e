//! Caching that saves real money (issue #8): the response cache (keying, per-key scoping,
//! TTL, streamed replays, Redis shared by gateways, coalescing), prompt-cache-aware sticky
//! routing with recorded fallbacks, automatic Anthropic breakpoints, the dynamic-prompt
//! warning, and the statistics endpoint.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::harness::{PATIENCE, System};
use switchyard_e2e::mock_anthropic::MockAnthropic;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};

use crate::sse;

const PRICING: &str = r#"{"prompt": "0.000001", "completion": "0.000002", "input_cache_read": "0.0000001", "input_cache_write": "0.00000125"}"#;

async fn add_provider(system: &System, slug: &str, kind: &str, base_url: &str) {
    let created = system
        .post(
            "/providers",
            system.management_key(),
            &json!({"slug": slug, "kind": kind, "base_url": base_url, "api_key": "sk-upstream"}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
}

/// A model whose endpoints are `(provider slug, upstream model)`, all at one price.
async fn add_model(system: &System, id: &str, endpoints: &[(&str, &str)]) {
    let pricing: Value = serde_json::from_str(PRICING).unwrap();
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(p, m)| json!({"provider": p, "model": m, "pricing": pricing}))
        .collect();
    let created = system
        .post(
            "/models",
            system.management_key(),
            &json!({"id": id, "context_length": 100000, "endpoints": endpoints}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    sync(system).await;
}

async fn sync(system: &System) {
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();
}

async fn set_cache_policy(system: &System, cache: Value) {
    let put = system
        .http
        .put(format!("{}/routing-policy", system.base_url()))
        .bearer_auth(system.management_key())
        .json(&json!({"cache": cache}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    sync(system).await;
}

/// POSTs a chat request with extra headers; returns (status, headers, body text).
async fn chat_at(
    system: &System,
    base: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = system
        .http
        .post(format!("{base}/chat/completions"))
        .bearer_auth(key)
        .json(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

async fn chat(
    system: &System,
    key: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    chat_at(system, &system.base_url(), key, headers, body).await
}

fn cache_status(headers: &reqwest::header::HeaderMap) -> &str {
    headers
        .get("x-switchyard-cache-status")
        .map_or("", |v| v.to_str().unwrap())
}

fn chat_requests(mock: &MockOpenAi) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count()
}

/// The cache statistics for `query`, once the usage of `requests` requests has been
/// ingested (records reach the control plane asynchronously).
async fn cache_stats(system: &System, query: &str, requests: u64) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = system
            .get(&format!("/cache/stats{query}"), system.management_key())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let data = response.json::<Value>().await.unwrap()["data"].clone();
        if data["requests"].as_u64() == Some(requests) {
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage never reached {requests} requests: {data}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ON: (&str, &str) = ("x-switchyard-cache", "true");

#[tokio::test]
async fn response_cache_hits_are_free_scoped_per_key_and_expire() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "oa", "openai_compatible", &mock.base_url()).await;
    add_model(&system, "c/mini", &[("oa", "gpt-mini")]).await;
    let key = system.api_key().to_owned();
    let body = json!({"model": "c/mini", "messages": [{"role": "user", "content": "cache me"}], "temperature": 0});

    let (status, h1, first) =
        chat(&system, &key, &[ON, ("x-switchyard-cache-ttl", "2")], &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(cache_status(&h1), "MISS");
    // Same request with keys reordered and other whitespace, and OpenRouter's header names.
    let reordered: Value = serde_json::from_str(
        r#"{ "temperature": 0, "messages": [ {"content": "cache me", "role": "user"} ], "model": "c/mini" }"#,
    )
    .unwrap();
    let (status, h2, second) = chat(
        &system,
        &key,
        &[
            ("x-openrouter-cache", "true"),
            ("x-openrouter-cache-ttl", "2"),
        ],
        &reordered,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(cache_status(&h2), "HIT");
    assert!(h2.get("age").is_some(), "a hit reports its age");
    assert_eq!(chat_requests(&mock), 1, "a hit never reaches the provider");
    let (first, second): (Value, Value) = (
        serde_json::from_str(&first).unwrap(),
        serde_json::from_str(&second).unwrap(),
    );
    assert_eq!(
        first["choices"][0]["message"]["content"],
        second["choices"][0]["message"]["content"]
    );
    assert_ne!(first["id"], second["id"], "a hit is a new generation");
    assert_eq!(h2["x-generation-id"].to_str().unwrap(), second["id"]);
    assert!(first["usage"]["cost"].as_f64().unwrap() > 0.0);
    assert_eq!(
        second["usage"]["cost"].as_f64().unwrap(),
        0.0,
        "hits are free"
    );
    assert_eq!(
        second["usage"]["prompt_tokens"],
        first["usage"]["prompt_tokens"]
    );

    // Another key of the same org never sees this key's answers.
    let created = system
        .post("/keys", system.management_key(), &json!({"name": "other"}))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let other = created.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    sync(&system).await;
    let (_, h, _) = chat(&system, &other, &[ON], &body).await;
    assert_eq!(cache_status(&h), "MISS", "no cross-key leakage");
    assert_eq!(chat_requests(&mock), 2);

    // Opting out, and a different sampling parameter, both go upstream.
    let (_, h, _) = chat(&system, &key, &[("x-switchyard-cache", "false")], &body).await;
    assert_eq!(cache_status(&h), "BYPASS");
    let mut hotter = body.clone();
    hotter["temperature"] = json!(1);
    let (_, h, _) = chat(&system, &key, &[ON], &hotter).await;
    assert_eq!(cache_status(&h), "MISS");
    assert_eq!(chat_requests(&mock), 4);

    // Bad headers are explicit errors.
    let (status, _, text) = chat(
        &system,
        &key,
        &[ON, ("x-switchyard-cache-ttl", "forever")],
        &body,
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("x-switchyard-cache-ttl"), "{text}");

    // The 2-second TTL runs out (waiting it out is the behaviour under test).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, h, _) = chat(&system, &key, &[ON], &body).await;
    assert_eq!(cache_status(&h), "MISS", "expired entries are not served");
    assert_eq!(chat_requests(&mock), 5);

    let hash = switchyard_proto::keys::sha256_hex(&key);
    let me = system.store.find_key(&hash).await.unwrap().unwrap();
    let stats = cache_stats(&system, &format!("?key={}", me.hash), 5).await;
    assert_eq!(stats["response_cache"]["hits"], 1, "{stats}");
    assert_eq!(stats["requests"], 5, "{stats}");
    // The hit's usage record is free and consumed nothing.
    let hit_id = second["id"].as_str().unwrap();
    let row = system
        .store
        .get_usage(&me.org_id, hit_id.trim_start_matches("gen-"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.cost_nanos, 0);
    assert_eq!(row.input_tokens, 0);
}

#[tokio::test]
async fn streamed_hits_replay_as_streams_in_the_same_skin() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "oa", "openai_compatible", &mock.base_url()).await;
    add_model(&system, "c/mini", &[("oa", "gpt-mini")]).await;
    let key = system.api_key().to_owned();
    let body = json!({"model": "c/mini", "stream": true, "messages": [{"role": "user", "content": "stream me please"}]});
    let (_, h1, first) = chat(&system, &key, &[ON], &body).await;
    let (_, h2, second) = chat(&system, &key, &[ON], &body).await;
    assert_eq!((cache_status(&h1), cache_status(&h2)), ("MISS", "HIT"));
    assert_eq!(h2["content-type"], "text/event-stream");
    let (a, done_a) = sse::chunks(&first);
    let (b, done_b) = sse::chunks(&second);
    assert!(done_a && done_b, "both end with [DONE]");
    let text = |chunks: &[Value]| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect()
    };
    assert_eq!(text(&a), "mock reply to: stream me please");
    assert_eq!(text(&a), text(&b));
    assert!(b.len() > 3, "replayed chunk by chunk: {second}");
    assert_ne!(a[0]["id"], b[0]["id"]);
    assert_eq!(b.last().unwrap()["usage"]["cost"].as_f64().unwrap(), 0.0);
    // A non-streamed request is a different entry.
    let mut whole = body.clone();
    whole["stream"] = json!(false);
    let (_, h, _) = chat(&system, &key, &[ON], &whole).await;
    assert_eq!(cache_status(&h), "MISS");
    assert_eq!(chat_requests(&mock), 2);

    // The Anthropic skin replays its own event stream.
    let messages = json!({"model": "c/mini", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "anthropic skin"}]});
    let mut replies = Vec::new();
    for _ in 0..2 {
        let response = system
            .http
            .post(format!("{}/messages", system.base_url()))
            .header("x-api-key", &key)
            .header("x-switchyard-cache", "true")
            .json(&messages)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let status = cache_status(response.headers()).to_owned();
        replies.push((status, response.text().await.unwrap()));
    }
    assert_eq!(replies[0].0, "MISS");
    assert_eq!(replies[1].0, "HIT");
    assert!(
        replies[1].1.contains("event: message_start"),
        "{}",
        replies[1].1
    );
    assert!(
        replies[1].1.contains("mock reply to: anthropic skin")
            || replies[1].1.contains("anthropic"),
        "{}",
        replies[1].1
    );
    assert!(replies[1].1.contains("event: message_stop"));
    assert_eq!(chat_requests(&mock), 3);
}

#[tokio::test]
async fn identical_requests_in_flight_coalesce_into_one_upstream_call() {
    let mock = MockOpenAi::start(MockConfig {
        delay: Duration::from_millis(400),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "oa", "openai_compatible", &mock.base_url()).await;
    add_model(&system, "c/mini", &[("oa", "gpt-mini")]).await;
    let body =
        json!({"model": "c/mini", "messages": [{"role": "user", "content": "popular question"}]});
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (http, url, key, body) = (
            system.http.clone(),
            format!("{}/chat/completions", system.base_url()),
            system.api_key().to_owned(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("x-switchyard-cache", "true")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = cache_status(r.headers()).to_owned();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "mock reply to: popular question"
        );
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(
        chat_requests(&mock),
        1,
        "6 identical requests, 1 upstream call"
    );
    assert_eq!(statuses, ["HIT", "HIT", "HIT", "HIT", "HIT", "MISS"]);
}

/// A private redis-server on a unix socket in a temporary directory, killed on drop.
struct Redis {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// `None` (with the reason printed) when redis-server is not installed, except under
    /// CI=true, where the Redis tests must run.
    async fn start() -> Option<Redis> {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let spawned = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "redis-server is required under CI=true: {err}"
                );
                // Straight to stderr: the harness hides captured output of passing tests.
                let _ = std::io::Write::write_fmt(
                    &mut std::io::stderr(),
                    format_args!(
                        "SKIPPED (redis): redis-server is not installed ({err}); apt-get install redis-server\n"
                    ),
                );
                return None;
            }
        };
        let redis = Redis {
            child,
            socket,
            _dir: dir,
        };
        wait_for_socket(&redis.socket).await;
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// Polls (with `redis-cli`) until `key` exists.
    async fn wait_for_key(&self, key: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let out = Command::new("redis-cli")
                .arg("-s")
                .arg(&self.socket)
                .args(["EXISTS", key])
                .output()
                .expect("redis-cli runs");
            if String::from_utf8_lossy(&out.stdout).trim() == "1" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{key} never appeared in Redis"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The Redis key of a conversation's sticky pin (see data-plane routing/sticky.rs).
fn pin_key(org_id: &str, conversation: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{org_id}\n{conversation}").as_bytes());
    format!("switchyard:sticky:v1:{}", hex::encode(digest))
}

async fn wait_for_socket(path: &Path) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("redis-server did not start listening");
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn redis_cache_is_shared_by_two_gateways() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "oa", "openai_compatible", &mock.base_url()).await;
    add_model(&system, "c/mini", &[("oa", "gpt-mini")]).await;
    let url = redis.url();
    let a = system
        .start_extra_gateway_with_redis(Some(&url))
        .await
        .unwrap();
    let b = system
        .start_extra_gateway_with_redis(Some(&url))
        .await
        .unwrap();
    let key = system.api_key().to_owned();
    let body =
        json!({"model": "c/mini", "messages": [{"role": "user", "content": "shared answer"}]});
    let base = |g: &switchyard_e2e::harness::Gateway| format!("http://{}/api/v1", g.addr);
    let (_, h, first) = chat_at(&system, &base(&a), &key, &[ON], &body).await;
    assert_eq!(cache_status(&h), "MISS", "{first}");
    // Stores happen just after the answer; poll the other gateway until it sees the entry.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let second = loop {
        let (_, h, text) = chat_at(&system, &base(&b), &key, &[ON], &body).await;
        if cache_status(&h) == "HIT" {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway B never saw A's answer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (first, second): (Value, Value) = (
        serde_json::from_str(&first).unwrap(),
        serde_json::from_str(&second).unwrap(),
    );
    assert_eq!(
        first["choices"][0]["message"]["content"],
        second["choices"][0]["message"]["content"]
    );
    // The gateway without Redis has its own memory cache: a miss there.
    let (_, h, _) = chat(&system, &key, &[ON], &body).await;
    assert_eq!(cache_status(&h), "MISS");
}

#[tokio::test]
async fn org_policy_caches_without_headers() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "oa", "openai_compatible", &mock.base_url()).await;
    add_model(&system, "c/mini", &[("oa", "gpt-mini")]).await;
    set_cache_policy(&system, json!({"response_cache_ttl_secs": 60})).await;
    let key = system.api_key().to_owned();
    let body = json!({"model": "c/mini", "messages": [{"role": "user", "content": "policy"}]});
    let (_, h1, _) = chat(&system, &key, &[], &body).await;
    let (_, h2, _) = chat(&system, &key, &[], &body).await;
    assert_eq!((cache_status(&h1), cache_status(&h2)), ("MISS", "HIT"));
    let (_, h3, _) = chat(&system, &key, &[("x-switchyard-cache", "false")], &body).await;
    assert_eq!(cache_status(&h3), "BYPASS");
    assert_eq!(chat_requests(&mock), 2);
    let bad = system
        .http
        .put(format!("{}/routing-policy", system.base_url()))
        .bearer_auth(system.management_key())
        .json(&json!({"cache": {"response_cache_ttl_secs": 100000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn sticky_routing_keeps_a_conversation_on_its_cache_endpoint_and_records_failover() {
    let one = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let two = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "p-one", "openai_compatible", &one.base_url()).await;
    add_provider(&system, "p-two", "openai_compatible", &two.base_url()).await;
    add_model(
        &system,
        "c/duo",
        &[("p-one", "up-one"), ("p-two", "up-two")],
    )
    .await;
    let key = system.api_key().to_owned();
    let turn = |n: usize, session: &str| {
        json!({"model": "c/duo", "session_id": session, "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": format!("turn {n}")}]})
    };
    // Equal prices: without stickiness, turns would spread over both endpoints.
    for n in 0..8 {
        let (status, _, text) = chat(&system, &key, &[], &turn(n, "conv-1")).await;
        assert_eq!(status, 200, "{text}");
    }
    let (c1, c2) = (chat_requests(&one), chat_requests(&two));
    assert!(
        (c1, c2) == (8, 0) || (c1, c2) == (0, 8),
        "every turn went to one endpoint: {c1} / {c2}"
    );
    // Conversations without a session id are named by their first user message.
    for n in 0..6 {
        chat(
            &system,
            &key,
            &[],
            &json!({"model": "c/duo", "messages": [
            {"role": "user", "content": "auto conversation"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": format!("more {n}")}]}),
        )
        .await;
    }
    let (d1, d2) = (chat_requests(&one) - c1, chat_requests(&two) - c2);
    assert!(
        d1 == 0 || d2 == 0,
        "auto-named conversation spread: {d1} / {d2}"
    );

    // The endpoint holding the cache goes away: the next turn falls back, with the reason.
    let (pinned, other) = if c1 > 0 { (one, two) } else { (two, one) };
    pinned.shutdown().await;
    let before = chat_requests(&other);
    let (status, _, text) = chat(&system, &key, &[], &turn(8, "conv-1")).await;
    assert_eq!(status, 200, "{text}");
    let (status, _, _) = chat(&system, &key, &[], &turn(9, "conv-1")).await;
    assert_eq!(status, 200);
    assert_eq!(
        chat_requests(&other),
        before + 2,
        "the conversation now sticks to the survivor"
    );

    let stats = cache_stats(&system, "?session=conv-1", 10).await;
    assert_eq!(stats["requests"], 10, "{stats}");
    assert_eq!(stats["sticky_routing"]["fallbacks"], 1, "{stats}");
    let reason = stats["sticky_routing"]["recent_fallbacks"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("failed") && reason.contains("fell back"),
        "{reason}"
    );
}

#[tokio::test]
async fn automatic_breakpoints_reach_anthropic_and_client_breakpoints_pass_through() {
    let mock = MockAnthropic::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "claude", "anthropic", &mock.base_url()).await;
    add_model(&system, "c/claude", &[("claude", "claude-cache")]).await;
    let key = system.api_key().to_owned();
    let conversation = json!({"model": "c/claude", "messages": [
        {"role": "system", "content": "Long stable instructions."},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"}]});

    // Off by default: nothing added.
    let (status, _, text) = chat(&system, &key, &[], &conversation).await;
    assert_eq!(status, 200, "{text}");
    let sent = mock.last_request().unwrap().body;
    assert!(!sent.to_string().contains("cache_control"), "{sent}");

    set_cache_policy(&system, json!({"auto_breakpoints": true})).await;
    let (status, _, text) = chat(&system, &key, &[], &conversation).await;
    assert_eq!(status, 200, "{text}");
    let sent = mock.last_request().unwrap().body;
    let eph = json!({"type": "ephemeral"});
    assert_eq!(sent["system"][0]["cache_control"], eph, "{sent}");
    assert_eq!(
        sent["messages"][2]["content"][0]["cache_control"], eph,
        "{sent}"
    );
    assert_eq!(
        sent["messages"][0]["content"][0]["cache_control"], eph,
        "{sent}"
    );
    let usage: Value = serde_json::from_str::<Value>(&text).unwrap()["usage"].clone();
    assert!(
        usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "the mock reports cache reads for `cache` models: {usage}"
    );

    // OpenAI-style parts with their own breakpoint: passed through, nothing added.
    let own = json!({"model": "c/claude", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
        {"role": "user", "content": "q"}]});
    let (status, _, _) = chat(&system, &key, &[], &own).await;
    assert_eq!(status, 200);
    let sent = mock.last_request().unwrap().body;
    assert_eq!(
        sent["system"][0]["cache_control"],
        json!({"type": "ephemeral", "ttl": "1h"})
    );
    assert!(
        sent["messages"][0]["content"][0]
            .get("cache_control")
            .is_none(),
        "{sent}"
    );

    let stats = cache_stats(&system, "", 3).await;
    assert!(
        stats["prompt_cache"]["cache_read_tokens"].as_i64().unwrap() > 0,
        "{stats}"
    );
    assert!(
        stats["prompt_cache"]["saved_nanos"].as_i64().unwrap() > 0,
        "{stats}"
    );
    assert!(
        stats["prompt_cache"]["hit_rate"].as_f64().unwrap() > 0.0,
        "{stats}"
    );
}

#[tokio::test]
async fn a_changing_system_prompt_gets_a_warning_naming_what_changed() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "oa", "openai_compatible", &mock.base_url()).await;
    add_model(&system, "c/mini", &[("oa", "gpt-mini")]).await;
    let key = system.api_key().to_owned();
    let turn = |system_prompt: &str, last: &str| {
        json!({"model": "c/mini", "session_id": "dyn-1", "messages": [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": last}]})
    };
    let stable = "You are a helpful agent. Current time: 2026-12-06T07:01:02Z. Be brief.";
    let (_, h, _) = chat(&system, &key, &[], &turn(stable, "one")).await;
    assert!(h.get("x-switchyard-cache-warning").is_none());
    let (_, h, _) = chat(&system, &key, &[], &turn(stable, "two")).await;
    assert!(
        h.get("x-switchyard-cache-warning").is_none(),
        "an unchanged prompt is fine"
    );
    let moved = "You are a helpful agent. Current time: 2026-12-06T07:01:09Z. Be brief.";
    let (_, h, _) = chat(&system, &key, &[], &turn(moved, "three")).await;
    let warning = h["x-switchyard-cache-warning"].to_str().unwrap();
    assert!(
        warning.contains("timestamp-like text '2026-12-06T07:01:02Z' -> '2026-12-06T07:01:09Z'"),
        "{warning}"
    );
    assert!(
        warning.contains("system prompt changed at char"),
        "{warning}"
    );
}

#[tokio::test]
async fn an_unreachable_redis_turns_the_cache_into_misses_not_errors() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "oa", "openai_compatible", &mock.base_url()).await;
    add_model(&system, "c/mini", &[("oa", "gpt-mini")]).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis+unix://{}", dir.path().join("nobody.sock").display());
    let gateway = system
        .start_extra_gateway_with_redis(Some(&url))
        .await
        .unwrap();
    let base = format!("http://{}/api/v1", gateway.addr);
    let body = json!({"model": "c/mini", "messages": [{"role": "user", "content": "still works"}]});
    for _ in 0..3 {
        let (status, h, text) = chat_at(&system, &base, system.api_key(), &[ON], &body).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(cache_status(&h), "MISS");
    }
    assert_eq!(chat_requests(&mock), 3);
}

/// Prints what a hit saves in latency against a provider that takes 50 ms (the numbers in a
/// report come from this output, not from a hand-typed table).
#[tokio::test]
async fn hits_answer_faster_than_the_provider() {
    let mock = MockOpenAi::start(MockConfig {
        delay: Duration::from_millis(50),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "oa", "openai_compatible", &mock.base_url()).await;
    add_model(&system, "c/mini", &[("oa", "gpt-mini")]).await;
    let key = system.api_key().to_owned();
    let (mut misses, mut hits) = (Vec::new(), Vec::new());
    for n in 0..20 {
        let body = json!({"model": "c/mini", "messages": [{"role": "user", "content": format!("question {n}")}]});
        for (expect, into) in [("MISS", &mut misses), ("HIT", &mut hits)] {
            let started = std::time::Instant::now();
            let (status, h, _) = chat(&system, &key, &[ON], &body).await;
            into.push(started.elapsed());
            assert_eq!((status, cache_status(&h)), (200, expect));
        }
    }
    misses.sort();
    hits.sort();
    let (miss, hit) = (misses[misses.len() / 2], hits[hits.len() / 2]);
    println!(
        "response cache, 20 requests each: median MISS {miss:?} (provider delay 50 ms), median HIT {hit:?}"
    );
    assert!(
        hit < miss,
        "a hit must be faster than a provider call: {hit:?} vs {miss:?}"
    );
}

#[tokio::test]
async fn sticky_pins_are_shared_by_gateways_through_redis() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let one = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let two = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    add_provider(&system, "p-one", "openai_compatible", &one.base_url()).await;
    add_provider(&system, "p-two", "openai_compatible", &two.base_url()).await;
    add_model(
        &system,
        "c/duo",
        &[("p-one", "up-one"), ("p-two", "up-two")],
    )
    .await;
    let url = redis.url();
    let a = system
        .start_extra_gateway_with_redis(Some(&url))
        .await
        .unwrap();
    let b = system
        .start_extra_gateway_with_redis(Some(&url))
        .await
        .unwrap();
    let base = |g: &switchyard_e2e::harness::Gateway| format!("http://{}/api/v1", g.addr);
    let key = system.api_key().to_owned();
    let served_by = |one: &MockOpenAi| chat_requests(one);
    // Eight conversations: turn 1 through gateway A, turn 2 through gateway B. Without
    // shared pins, B would choose between two equal endpoints on its own (1 in 256 chance
    // of matching A every time).
    for n in 0..8 {
        let session = format!("shared-{n}");
        let turn = |t: usize| json!({"model": "c/duo", "session_id": session, "messages": [{"role": "user", "content": format!("turn {t}")}]});
        let before = served_by(&one);
        let (status, _, text) = chat_at(&system, &base(&a), &key, &[], &turn(1)).await;
        assert_eq!(status, 200, "{text}");
        let first_on_one = served_by(&one) > before;
        // The pin is written just after the answer; wait until it is in Redis.
        redis
            .wait_for_key(&pin_key(&system.secrets.org_id, &session))
            .await;
        let before = served_by(&one);
        let (status, _, _) = chat_at(&system, &base(&b), &key, &[], &turn(2)).await;
        assert_eq!(status, 200);
        let second_on_one = served_by(&one) > before;
        assert_eq!(
            first_on_one, second_on_one,
            "conversation {n} moved between gateways' endpoints"
        );
    }
}
