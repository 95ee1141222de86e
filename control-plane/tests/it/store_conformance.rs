//! The store conformance suite: every story runs once against SQLite and once against Postgres
//! (when `SWITCHYARD_TEST_DATABASE_URL` is set; required under `CI=true`), so both backends
//! keep the same behaviour.
//!
//! Each story gets a fresh database. `url` names it, for the few things the `Store` trait
//! cannot do itself (creating a second org).

// The stories are helpers of `#[tokio::test]`s, not tests themselves, so clippy's
// allow-*-in-tests settings do not reach them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use switchyard_control_plane::store::{
    BootstrapPlan, CacheFact, CacheStatsFilter, IngestOutcome, KeyKind, KeyPatch, KeyRecord,
    ModelPatch, NewEndpoint, NewKey, NewModel, NewProvider, NodeAck, Org, PLATFORM_FEES, Posting,
    ProviderPolicy, Store, StoreError, UsageBatchWrite, UsageRow, accounts, chargeback_kinds,
    now_ms,
};
use switchyard_proto::PriceSheet;

use crate::common;

both_backends!(
    story_bootstrap,
    story_keys,
    story_providers_and_models,
    story_config_snapshot,
    story_usage_exactly_once,
    story_usage_batch_all_or_nothing,
    story_usage_batches_of_any_size,
    story_concurrent_ingestion,
    story_concurrent_ingestion_mixed_order,
    story_nodes,
    story_node_first_ack_failed,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

const ORG: &str = "org-1";
const OTHER_ORG: &str = "org-2";
const INFERENCE_KEY: &str = "hash-inference";
const MANAGEMENT_KEY: &str = "hash-management";
const ECHO_PROVIDER: &str = "prov-echo";
const ECHO_MODEL: &str = "switchyard/echo";
const ECHO_ENDPOINT: &str = "ep-echo";
const NODE_TOKEN: &str = "hash-node-token";

fn echo_prices() -> PriceSheet {
    PriceSheet {
        input: 1_000_000,
        output: 2_000_000,
        cache_read: 100_000,
        cache_write_5m: 1_250_000,
        cache_write_1h: 2_000_000,
        reasoning: Some(3_000_000),
        per_request_nanos: 7,
    }
}

fn new_key(org_id: &str, hash: &str, name: &str, kind: KeyKind) -> NewKey {
    NewKey {
        hash: hash.to_owned(),
        org_id: org_id.to_owned(),
        name: name.to_owned(),
        label: format!("sk-sy-…{}", &hash[hash.len().saturating_sub(4)..]),
        kind,
        limit_nanos: None,
        limit_reset: None,
        include_byok_in_limit: false,
        expires_at: None,
    }
}

fn new_provider(org_id: &str, id: &str, slug: &str) -> NewProvider {
    NewProvider {
        id: id.to_owned(),
        org_id: org_id.to_owned(),
        slug: slug.to_owned(),
        name: format!("Provider {slug}"),
        kind: "openai".to_owned(),
        base_url: format!("http://127.0.0.1:9/{slug}"),
        api_key: Some(format!("secret-{id}")),
        policy: ProviderPolicy {
            trains_on_prompts: true,
            first_byte_timeout_ms: 1500,
            ..ProviderPolicy::default()
        },
    }
}

fn new_endpoint(id: &str, provider_id: &str, prices: PriceSheet) -> NewEndpoint {
    NewEndpoint {
        id: id.to_owned(),
        provider_id: provider_id.to_owned(),
        upstream_model: format!("upstream-{id}"),
        context_length: 8192,
        max_output_tokens: 1024,
        prices,
        quantization: "fp8".to_owned(),
        supported_parameters: vec!["tools".to_owned(), "response_format".to_owned()],
    }
}

fn plan() -> BootstrapPlan {
    BootstrapPlan {
        org: Org {
            id: ORG.to_owned(),
            name: "Org One".to_owned(),
            created_at: 1_700_000_000_000,
        },
        keys: vec![
            new_key(ORG, INFERENCE_KEY, "default", KeyKind::Inference),
            new_key(ORG, MANAGEMENT_KEY, "admin", KeyKind::Management),
        ],
        providers: vec![NewProvider {
            id: ECHO_PROVIDER.to_owned(),
            org_id: ORG.to_owned(),
            slug: "echo".to_owned(),
            name: "Echo".to_owned(),
            kind: "echo".to_owned(),
            base_url: "echo://local".to_owned(),
            api_key: None,
            policy: ProviderPolicy::default(),
        }],
        models: vec![NewModel {
            org_id: ORG.to_owned(),
            id: ECHO_MODEL.to_owned(),
            name: "Echo".to_owned(),
            description: "Replies with its input".to_owned(),
            context_length: 8192,
            endpoints: vec![NewEndpoint {
                id: ECHO_ENDPOINT.to_owned(),
                provider_id: ECHO_PROVIDER.to_owned(),
                upstream_model: "echo".to_owned(),
                context_length: 8192,
                max_output_tokens: 4096,
                prices: echo_prices(),
                quantization: String::new(),
                supported_parameters: Vec::new(),
            }],
        }],
        node_token_hash: NODE_TOKEN.to_owned(),
    }
}

async fn bootstrap(store: &dyn Store) {
    store.bootstrap(&plan()).await.expect("bootstrap");
}

fn usage(
    org_id: &str,
    key_hash: &str,
    request_id: &str,
    cost_nanos: i64,
    finished_at: i64,
) -> UsageRow {
    UsageRow {
        request_id: request_id.to_owned(),
        org_id: org_id.to_owned(),
        key_hash: key_hash.to_owned(),
        model: ECHO_MODEL.to_owned(),
        endpoint_id: ECHO_ENDPOINT.to_owned(),
        provider_id: ECHO_PROVIDER.to_owned(),
        provider_slug: "echo".to_owned(),
        upstream_model: "echo".to_owned(),
        node_id: "node-a".to_owned(),
        config_version: 2,
        api: "chat".to_owned(),
        started_at: finished_at - 250,
        finished_at,
        ttft_ms: Some(40),
        streamed: true,
        cancelled: false,
        estimated: false,
        finish_reason: "stop".to_owned(),
        native_finish_reason: "stop".to_owned(),
        http_status: 200,
        error_type: String::new(),
        input_tokens: 120,
        output_tokens: 30,
        cache_read_tokens: 20,
        cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: 5,
        cost_nanos,
        gateway_cost_nanos: cost_nanos,
        upstream_id: format!("up-{request_id}"),
        ingested_at: finished_at + 10,
        provider_responses: "[]".to_owned(),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "{what}: expected NotFound, got {result:?}"
    );
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Conflict(_))),
        "{what}: expected Conflict, got {result:?}"
    );
}

fn hashes(keys: &[KeyRecord]) -> Vec<String> {
    keys.iter().map(|k| k.hash.clone()).collect()
}

async fn version(store: &dyn Store) -> u64 {
    store.config_version().await.expect("config_version")
}

// ---------------------------------------------------------------------------------------------
// Stories

async fn story_bootstrap(store: &dyn Store, _url: &str) {
    let mut changes = store.config_changes();
    let before = version(store).await;
    assert_eq!(
        *changes.borrow_and_update(),
        before,
        "the watch starts at the stored version"
    );
    assert!(!store.is_bootstrapped().await.expect("is_bootstrapped"));

    bootstrap(store).await;
    assert!(store.is_bootstrapped().await.expect("is_bootstrapped"));
    let after = version(store).await;
    assert!(
        after > before,
        "bootstrap bumps the config version ({before} -> {after})"
    );
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("config_changes fires after bootstrap")
        .expect("config watch open");
    assert_eq!(
        *changes.borrow_and_update(),
        after,
        "the watch carries the new version"
    );

    let org = store.get_org(ORG).await.expect("get_org");
    assert_eq!(
        (org.id.as_str(), org.name.as_str(), org.created_at),
        (ORG, "Org One", 1_700_000_000_000)
    );
    assert_not_found(store.get_org("no-such-org").await, "get_org(missing)");

    let inference = store
        .find_key(INFERENCE_KEY)
        .await
        .expect("find_key")
        .expect("inference key exists");
    assert_eq!(inference.org_id, ORG);
    assert_eq!(inference.kind(), Some(KeyKind::Inference));
    assert!(!inference.disabled);
    let management = store
        .get_key(ORG, MANAGEMENT_KEY)
        .await
        .expect("get_key(management)");
    assert_eq!(management.kind(), Some(KeyKind::Management));
    assert_eq!(management.name, "admin");

    let echo = store
        .get_provider(ORG, "echo")
        .await
        .expect("get_provider(echo)");
    assert_eq!(
        (
            echo.id.as_str(),
            echo.kind.as_str(),
            echo.api_key.as_deref()
        ),
        (ECHO_PROVIDER, "echo", None)
    );
    let model = store
        .get_model(ORG, ECHO_MODEL)
        .await
        .expect("get_model(echo)");
    assert_eq!(model.model.name, "Echo");
    assert_eq!(model.endpoints.len(), 1);
    assert_eq!(model.endpoints[0].id, ECHO_ENDPOINT);
    assert_eq!(model.endpoints[0].provider_id, ECHO_PROVIDER);
    assert_eq!(model.endpoints[0].prices(), echo_prices());
    assert_eq!(
        store
            .endpoint_prices(ECHO_ENDPOINT)
            .await
            .expect("endpoint_prices"),
        Some(echo_prices())
    );
    assert!(
        store
            .node_token_exists(NODE_TOKEN)
            .await
            .expect("node_token_exists"),
        "bootstrap stores the node token"
    );

    // A second bootstrap is refused and changes nothing, the version included.
    let mut again = plan();
    again.org.id = "org-again".to_owned();
    again.keys = vec![new_key(
        "org-again",
        "hash-again",
        "again",
        KeyKind::Inference,
    )];
    again.providers.clear();
    again.models.clear();
    again.node_token_hash = "hash-node-again".to_owned();
    assert_conflict(store.bootstrap(&again).await, "second bootstrap");
    assert_eq!(
        version(store).await,
        after,
        "a refused bootstrap leaves the version alone"
    );
    assert_not_found(
        store.get_org("org-again").await,
        "org of the refused bootstrap",
    );
    assert!(
        store
            .find_key("hash-again")
            .await
            .expect("find_key")
            .is_none()
    );
    assert!(
        !store
            .node_token_exists("hash-node-again")
            .await
            .expect("node_token_exists")
    );
    assert!(
        !changes.has_changed().expect("config watch open"),
        "a refused bootstrap announces nothing"
    );
}

async fn story_keys(store: &dyn Store, url: &str) {
    bootstrap(store).await;

    // create / find / get
    let mut limited = new_key(ORG, "hash-k1", "limited", KeyKind::Inference);
    limited.limit_nanos = Some(5_000_000_000);
    limited.limit_reset = Some("monthly".to_owned());
    limited.include_byok_in_limit = true;
    limited.expires_at = Some(4_000_000_000_000);
    let created = store.create_key(&limited).await.expect("create_key");
    assert_eq!(created.hash, "hash-k1");
    assert_eq!(created.org_id, ORG);
    assert_eq!(created.name, "limited");
    assert_eq!(created.label, limited.label);
    assert_eq!(created.kind(), Some(KeyKind::Inference));
    assert!(!created.disabled);
    assert_eq!(created.limit_nanos, Some(5_000_000_000));
    assert_eq!(created.limit_reset.as_deref(), Some("monthly"));
    assert!(created.include_byok_in_limit);
    assert_eq!(created.expires_at, Some(4_000_000_000_000));
    assert!(created.created_at > 0 && created.updated_at >= created.created_at);

    let found = store
        .find_key("hash-k1")
        .await
        .expect("find_key")
        .expect("key found by hash");
    assert_eq!(
        (found.hash.as_str(), found.org_id.as_str()),
        ("hash-k1", ORG)
    );
    assert!(
        store
            .find_key("hash-missing")
            .await
            .expect("find_key(missing)")
            .is_none()
    );
    assert_eq!(
        store.get_key(ORG, "hash-k1").await.expect("get_key").name,
        "limited"
    );
    assert_not_found(store.get_key(ORG, "hash-missing").await, "get_key(missing)");

    for i in 2..=4 {
        store
            .create_key(&new_key(
                ORG,
                &format!("hash-k{i}"),
                &format!("key {i}"),
                KeyKind::Inference,
            ))
            .await
            .expect("create_key");
    }

    // list: everything, pagination, disabled keys
    let all = store.list_keys(ORG, 0, 100, true).await.expect("list_keys");
    let all_hashes: BTreeSet<String> = hashes(&all).into_iter().collect();
    let expected: BTreeSet<String> = [
        INFERENCE_KEY,
        MANAGEMENT_KEY,
        "hash-k1",
        "hash-k2",
        "hash-k3",
        "hash-k4",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(all_hashes, expected);
    assert_eq!(all.len(), 6);
    let mut paged = Vec::new();
    for page in 0..4 {
        let rows = store
            .list_keys(ORG, page * 2, 2, true)
            .await
            .expect("list_keys page");
        assert!(rows.len() <= 2, "limit is honoured");
        paged.extend(hashes(&rows));
    }
    assert_eq!(
        paged,
        hashes(&all),
        "pages concatenate to the full list in a stable order"
    );
    assert!(
        store
            .list_keys(ORG, 6, 10, true)
            .await
            .expect("list_keys past end")
            .is_empty()
    );
    assert_eq!(
        hashes(&store.list_keys(ORG, 1, 3, true).await.expect("list_keys")),
        hashes(&all)[1..4].to_vec()
    );

    // update: None leaves a field alone, Some(None) clears it
    let v = version(store).await;
    let renamed = store
        .update_key(
            ORG,
            "hash-k1",
            &KeyPatch {
                name: Some("renamed".to_owned()),
                ..KeyPatch::default()
            },
        )
        .await
        .expect("update_key(name)");
    assert_eq!(version(store).await, v + 1);
    assert_eq!(renamed.name, "renamed");
    assert_eq!(
        renamed.limit_nanos,
        Some(5_000_000_000),
        "unpatched fields are unchanged"
    );
    assert_eq!(renamed.limit_reset.as_deref(), Some("monthly"));
    assert!(renamed.include_byok_in_limit);
    assert_eq!(renamed.expires_at, Some(4_000_000_000_000));
    assert!(!renamed.disabled);
    assert_eq!(renamed.created_at, created.created_at);
    assert!(renamed.updated_at >= created.updated_at);

    let cleared = store
        .update_key(
            ORG,
            "hash-k1",
            &KeyPatch {
                limit_nanos: Some(None),
                limit_reset: Some(None),
                expires_at: Some(None),
                include_byok_in_limit: Some(false),
                ..KeyPatch::default()
            },
        )
        .await
        .expect("update_key(clear)");
    assert_eq!(cleared.name, "renamed", "name is kept when not patched");
    assert_eq!(
        (
            cleared.limit_nanos,
            cleared.limit_reset.as_deref(),
            cleared.expires_at
        ),
        (None, None, None)
    );
    assert!(!cleared.include_byok_in_limit);

    let reset = store
        .update_key(
            ORG,
            "hash-k1",
            &KeyPatch {
                limit_nanos: Some(Some(42)),
                ..KeyPatch::default()
            },
        )
        .await
        .expect("update_key(set limit)");
    assert_eq!(reset.limit_nanos, Some(42));
    assert_eq!(reset.limit_reset, None);

    let disabled = store
        .update_key(
            ORG,
            "hash-k2",
            &KeyPatch {
                disabled: Some(true),
                ..KeyPatch::default()
            },
        )
        .await
        .expect("update_key(disable)");
    assert!(disabled.disabled);
    assert_eq!(disabled.name, "key 2");
    let enabled_only = hashes(
        &store
            .list_keys(ORG, 0, 100, false)
            .await
            .expect("list_keys(enabled)"),
    );
    assert!(
        !enabled_only.contains(&"hash-k2".to_owned()),
        "disabled keys are hidden by default"
    );
    assert_eq!(enabled_only.len(), 5);
    assert!(
        hashes(
            &store
                .list_keys(ORG, 0, 100, true)
                .await
                .expect("list_keys(all)")
        )
        .contains(&"hash-k2".to_owned())
    );
    assert!(
        store
            .find_key("hash-k2")
            .await
            .expect("find_key")
            .expect("disabled key still found")
            .disabled
    );

    assert_not_found(
        store
            .update_key(ORG, "hash-missing", &KeyPatch::default())
            .await,
        "update_key(missing)",
    );

    // delete
    let v = version(store).await;
    store.delete_key(ORG, "hash-k3").await.expect("delete_key");
    assert_eq!(version(store).await, v + 1);
    assert_not_found(store.get_key(ORG, "hash-k3").await, "get_key(deleted)");
    assert!(store.find_key("hash-k3").await.expect("find_key").is_none());
    assert_not_found(
        store.delete_key(ORG, "hash-k3").await,
        "delete_key(deleted)",
    );
    assert_eq!(
        version(store).await,
        v + 1,
        "failed deletes do not bump the version"
    );

    // tenant isolation: org 2's key is invisible to, and untouchable from, org 1
    common::insert_org(url, OTHER_ORG, "Org Two").await;
    let theirs = store
        .create_key(&new_key(
            OTHER_ORG,
            "hash-theirs",
            "theirs",
            KeyKind::Management,
        ))
        .await
        .expect("create_key(org 2)");
    let v = version(store).await;
    assert_not_found(
        store.get_key(ORG, "hash-theirs").await,
        "get_key across orgs",
    );
    assert!(
        !hashes(&store.list_keys(ORG, 0, 100, true).await.expect("list_keys"))
            .contains(&"hash-theirs".to_owned())
    );
    let hostile = KeyPatch {
        name: Some("pwned".to_owned()),
        disabled: Some(true),
        limit_nanos: Some(Some(1)),
        ..KeyPatch::default()
    };
    assert_not_found(
        store.update_key(ORG, "hash-theirs", &hostile).await,
        "update_key across orgs",
    );
    assert_not_found(
        store.delete_key(ORG, "hash-theirs").await,
        "delete_key across orgs",
    );
    assert_eq!(
        version(store).await,
        v,
        "refused cross-org writes change nothing"
    );
    let still = store
        .get_key(OTHER_ORG, "hash-theirs")
        .await
        .expect("org 2 key intact");
    assert_eq!(
        (still.name.as_str(), still.disabled, still.limit_nanos),
        ("theirs", false, None)
    );
    assert_eq!(still.updated_at, theirs.updated_at);
    assert_eq!(
        hashes(
            &store
                .list_keys(OTHER_ORG, 0, 100, true)
                .await
                .expect("list_keys(org 2)")
        ),
        vec!["hash-theirs".to_owned()]
    );
    // …and org 1's keys are equally invisible from org 2.
    assert_not_found(
        store.get_key(OTHER_ORG, INFERENCE_KEY).await,
        "get_key from org 2",
    );
    assert_not_found(
        store.delete_key(OTHER_ORG, INFERENCE_KEY).await,
        "delete_key from org 2",
    );
    assert!(store.get_key(ORG, INFERENCE_KEY).await.is_ok());

    // a hash is unique across all orgs
    let v = version(store).await;
    assert_conflict(
        store
            .create_key(&new_key(ORG, "hash-k1", "dup", KeyKind::Inference))
            .await,
        "duplicate hash, same org",
    );
    assert_conflict(
        store
            .create_key(&new_key(ORG, "hash-theirs", "dup", KeyKind::Inference))
            .await,
        "duplicate hash, other org",
    );
    assert_eq!(
        version(store).await,
        v,
        "conflicting creates do not bump the version"
    );
    assert_eq!(
        store.get_key(ORG, "hash-k1").await.expect("get_key").name,
        "renamed"
    );
}

async fn story_providers_and_models(store: &dyn Store, url: &str) {
    bootstrap(store).await;

    let created = store
        .create_provider(&new_provider(ORG, "prov-b", "bravo"))
        .await
        .expect("create_provider");
    assert_eq!(
        (
            created.id.as_str(),
            created.org_id.as_str(),
            created.slug.as_str()
        ),
        ("prov-b", ORG, "bravo")
    );
    assert_eq!(created.api_key.as_deref(), Some("secret-prov-b"));
    assert!(created.trains_on_prompts && !created.zero_data_retention);
    assert_eq!(created.first_byte_timeout_ms, 1500);
    assert_eq!(
        store
            .get_provider(ORG, "prov-b")
            .await
            .expect("get_provider(id)")
            .slug,
        "bravo"
    );
    assert_eq!(
        store
            .get_provider(ORG, "bravo")
            .await
            .expect("get_provider(slug)")
            .id,
        "prov-b"
    );
    assert_not_found(
        store.get_provider(ORG, "nope").await,
        "get_provider(missing)",
    );
    let slugs: Vec<String> = store
        .list_providers(ORG)
        .await
        .expect("list_providers")
        .into_iter()
        .map(|p| p.slug)
        .collect();
    assert_eq!(slugs, ["bravo", "echo"]);
    assert_conflict(
        store
            .create_provider(&new_provider(ORG, "prov-b2", "bravo"))
            .await,
        "duplicate slug in one org",
    );

    // Two endpoints keep the order they were given in (deliberately not alphabetical).
    let cheap = PriceSheet {
        input: 100,
        output: 200,
        reasoning: None,
        ..PriceSheet::default()
    };
    let dear = PriceSheet {
        input: 3_000_000,
        output: 15_000_000,
        cache_read: 300_000,
        per_request_nanos: 1,
        ..PriceSheet::default()
    };
    let model = NewModel {
        org_id: ORG.to_owned(),
        id: "acme/chat".to_owned(),
        name: "Acme Chat".to_owned(),
        description: "chat model".to_owned(),
        context_length: 32_000,
        endpoints: vec![
            new_endpoint("ep-z", "prov-b", dear),
            new_endpoint("ep-a", ECHO_PROVIDER, cheap),
        ],
    };
    let record = store.create_model(&model).await.expect("create_model");
    assert_eq!(record.model.name, "Acme Chat");
    assert_eq!(record.model.context_length, 32_000);
    let ids: Vec<&str> = record.endpoints.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["ep-z", "ep-a"]);
    assert_eq!(record.endpoints[0].prices(), dear);
    assert_eq!(record.endpoints[0].provider_id, "prov-b");
    assert_eq!(record.endpoints[0].upstream_model, "upstream-ep-z");
    assert_eq!(record.endpoints[0].quantization, "fp8");
    assert_eq!(
        record.endpoints[0].supported_parameters,
        "tools,response_format"
    );
    assert!(
        record
            .endpoints
            .iter()
            .all(|e| e.org_id == ORG && e.model_id == "acme/chat")
    );
    assert_eq!(
        store
            .endpoint_prices("ep-z")
            .await
            .expect("endpoint_prices"),
        Some(dear)
    );
    assert_eq!(
        store
            .endpoint_prices("ep-a")
            .await
            .expect("endpoint_prices"),
        Some(cheap)
    );
    assert_eq!(
        store
            .endpoint_prices("ep-missing")
            .await
            .expect("endpoint_prices"),
        None
    );

    let models = store.list_models(ORG).await.expect("list_models");
    let listed: Vec<(&str, Vec<&str>)> = models
        .iter()
        .map(|m| {
            (
                m.model.id.as_str(),
                m.endpoints.iter().map(|e| e.id.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("acme/chat", vec!["ep-z", "ep-a"]),
            (ECHO_MODEL, vec![ECHO_ENDPOINT])
        ]
    );

    // update_model replaces name and endpoints, keeps what the patch leaves out
    let v = version(store).await;
    let updated = store
        .update_model(
            ORG,
            "acme/chat",
            &ModelPatch {
                name: Some("Acme Chat 2".to_owned()),
                endpoints: Some(vec![
                    new_endpoint("ep-n", ECHO_PROVIDER, cheap),
                    new_endpoint("ep-m", "prov-b", dear),
                ]),
                ..ModelPatch::default()
            },
        )
        .await
        .expect("update_model");
    assert_eq!(version(store).await, v + 1);
    assert_eq!(updated.model.name, "Acme Chat 2");
    assert_eq!(
        updated.model.description, "chat model",
        "description unchanged"
    );
    assert_eq!(
        updated.model.context_length, 32_000,
        "context length unchanged"
    );
    let ids: Vec<&str> = updated.endpoints.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["ep-n", "ep-m"]);
    let fetched = store.get_model(ORG, "acme/chat").await.expect("get_model");
    assert_eq!(
        fetched
            .endpoints
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["ep-n", "ep-m"]
    );

    // Name-only patch keeps the endpoints.
    let renamed = store
        .update_model(
            ORG,
            "acme/chat",
            &ModelPatch {
                description: Some("new".to_owned()),
                ..ModelPatch::default()
            },
        )
        .await
        .expect("update_model(description)");
    assert_eq!(renamed.model.description, "new");
    assert_eq!(renamed.model.name, "Acme Chat 2");
    assert_eq!(
        renamed.endpoints.len(),
        2,
        "endpoints kept when the patch has none"
    );
    assert_not_found(
        store
            .update_model(ORG, "no/such", &ModelPatch::default())
            .await,
        "update_model(missing)",
    );
    assert_not_found(store.get_model(ORG, "no/such").await, "get_model(missing)");

    // Cross-org: never route one tenant's traffic through another tenant's provider.
    common::insert_org(url, OTHER_ORG, "Org Two").await;
    store
        .create_provider(&new_provider(OTHER_ORG, "prov-theirs", "theirs"))
        .await
        .expect("create_provider(org 2)");
    assert_eq!(
        store
            .list_providers(ORG)
            .await
            .expect("list_providers")
            .len(),
        2,
        "org 2's provider is not listed for org 1"
    );
    assert_not_found(
        store.get_provider(ORG, "prov-theirs").await,
        "get_provider across orgs",
    );
    assert_not_found(
        store.get_provider(ORG, "theirs").await,
        "get_provider(slug) across orgs",
    );
    let v = version(store).await;
    let mut hijack = model.clone();
    hijack.id = "acme/hijack".to_owned();
    hijack.endpoints = vec![
        new_endpoint("ep-h1", ECHO_PROVIDER, cheap),
        new_endpoint("ep-h2", "prov-theirs", cheap),
    ];
    assert_conflict(
        store.create_model(&hijack).await,
        "create_model with another org's provider",
    );
    assert_not_found(
        store.get_model(ORG, "acme/hijack").await,
        "model of a refused create",
    );
    assert_eq!(
        store
            .endpoint_prices("ep-h1")
            .await
            .expect("endpoint_prices"),
        None,
        "refused create leaves no endpoints"
    );
    assert_conflict(
        store
            .update_model(
                ORG,
                "acme/chat",
                &ModelPatch {
                    name: Some("hijacked".to_owned()),
                    endpoints: Some(vec![new_endpoint("ep-h3", "prov-theirs", cheap)]),
                    ..ModelPatch::default()
                },
            )
            .await,
        "update_model with another org's provider",
    );
    let intact = store.get_model(ORG, "acme/chat").await.expect("get_model");
    assert_eq!(
        intact.model.name, "Acme Chat 2",
        "refused update rolls back"
    );
    assert_eq!(
        intact
            .endpoints
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["ep-n", "ep-m"]
    );
    assert_eq!(
        version(store).await,
        v,
        "refused model writes do not bump the version"
    );

    // Org 2 sees none of org 1's models, and cannot change them.
    assert!(
        store
            .list_models(OTHER_ORG)
            .await
            .expect("list_models(org 2)")
            .is_empty()
    );
    assert_not_found(
        store.get_model(OTHER_ORG, "acme/chat").await,
        "get_model across orgs",
    );
    assert_not_found(
        store
            .update_model(
                OTHER_ORG,
                "acme/chat",
                &ModelPatch {
                    name: Some("x".to_owned()),
                    ..ModelPatch::default()
                },
            )
            .await,
        "update_model across orgs",
    );
    assert_eq!(
        store
            .get_model(ORG, "acme/chat")
            .await
            .expect("get_model")
            .model
            .name,
        "Acme Chat 2"
    );
}

async fn story_config_snapshot(store: &dyn Store, _url: &str) {
    let empty = store.load_config().await.expect("load_config(empty)");
    assert_eq!(empty.version, version(store).await);
    assert!(empty.orgs.is_empty() && empty.keys.is_empty() && empty.models.is_empty());

    bootstrap(store).await;
    let config = store.load_config().await.expect("load_config");
    assert_eq!(config.version, version(store).await);
    assert_eq!(
        config
            .orgs
            .iter()
            .map(|o| o.id.as_str())
            .collect::<Vec<_>>(),
        [ORG]
    );
    let mut key_hashes = hashes(&config.keys);
    key_hashes.sort();
    assert_eq!(key_hashes, [INFERENCE_KEY, MANAGEMENT_KEY]);
    assert_eq!(
        config
            .providers
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        [ECHO_PROVIDER]
    );
    assert_eq!(
        config
            .models
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        [ECHO_MODEL]
    );
    assert_eq!(config.endpoints.len(), 1);
    assert_eq!(config.endpoints[0].prices(), echo_prices());

    let mut changes = store.config_changes();
    changes.mark_unchanged();
    let mut expected = config.version;

    store
        .create_key(&new_key(ORG, "hash-c1", "c1", KeyKind::Inference))
        .await
        .expect("create_key");
    expected += 1;
    assert_eq!(version(store).await, expected, "create_key bumps by 1");
    store
        .update_key(
            ORG,
            "hash-c1",
            &KeyPatch {
                disabled: Some(true),
                ..KeyPatch::default()
            },
        )
        .await
        .expect("update_key");
    expected += 1;
    assert_eq!(version(store).await, expected, "update_key bumps by 1");
    store
        .create_provider(&new_provider(ORG, "prov-c", "charlie"))
        .await
        .expect("create_provider");
    expected += 1;
    assert_eq!(version(store).await, expected, "create_provider bumps by 1");
    let model = NewModel {
        org_id: ORG.to_owned(),
        id: "c/model".to_owned(),
        name: "C".to_owned(),
        description: String::new(),
        context_length: 1000,
        endpoints: vec![new_endpoint("ep-c", "prov-c", echo_prices())],
    };
    store.create_model(&model).await.expect("create_model");
    expected += 1;
    assert_eq!(version(store).await, expected, "create_model bumps by 1");
    store
        .update_model(
            ORG,
            "c/model",
            &ModelPatch {
                context_length: Some(2000),
                ..ModelPatch::default()
            },
        )
        .await
        .expect("update_model");
    expected += 1;
    assert_eq!(version(store).await, expected, "update_model bumps by 1");
    store
        .delete_key(ORG, MANAGEMENT_KEY)
        .await
        .expect("delete_key");
    expected += 1;
    assert_eq!(version(store).await, expected, "delete_key bumps by 1");

    // Usage is not configuration: ingesting it must not push a new config to every gateway.
    store
        .ingest_usage(&[usage(ORG, INFERENCE_KEY, "req-cfg", 10, now_ms())])
        .await
        .expect("ingest_usage");
    assert_eq!(
        version(store).await,
        expected,
        "ingest_usage does not bump the version"
    );

    let config = store.load_config().await.expect("load_config");
    assert_eq!(config.version, expected);
    let mut key_hashes = hashes(&config.keys);
    key_hashes.sort();
    assert_eq!(key_hashes, ["hash-c1", INFERENCE_KEY]);
    assert!(
        config
            .keys
            .iter()
            .find(|k| k.hash == "hash-c1")
            .expect("c1 in snapshot")
            .disabled,
        "disabled keys are in the snapshot"
    );
    assert_eq!(config.providers.len(), 2);
    let models: Vec<(&str, i64)> = config
        .models
        .iter()
        .map(|m| (m.id.as_str(), m.context_length))
        .collect();
    assert_eq!(models, [("c/model", 2000), (ECHO_MODEL, 8192)]);
    let endpoints: Vec<&str> = config.endpoints.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(endpoints, ["ep-c", ECHO_ENDPOINT]);

    tokio::time::timeout(Duration::from_secs(5), async {
        while *changes.borrow_and_update() < expected {
            changes.changed().await.expect("config watch open");
        }
    })
    .await
    .expect("config_changes reaches the latest version");
    assert_eq!(*changes.borrow(), expected);

    // Concurrent config writes are serialized: each bumps the version exactly once.
    let new_keys: Vec<NewKey> = (0..10)
        .map(|i| {
            new_key(
                ORG,
                &format!("hash-par-{i}"),
                &format!("par {i}"),
                KeyKind::Inference,
            )
        })
        .collect();
    let created =
        futures_util::future::join_all(new_keys.iter().map(|k| store.create_key(k))).await;
    for (i, result) in created.into_iter().enumerate() {
        result.unwrap_or_else(|err| panic!("concurrent create_key {i} failed: {err:?}"));
    }
    expected += 10;
    assert_eq!(
        version(store).await,
        expected,
        "10 concurrent writes bump by exactly 10"
    );
    let config = store.load_config().await.expect("load_config");
    assert_eq!(config.version, expected);
    assert_eq!(config.keys.len(), 12);
}

async fn story_usage_exactly_once(store: &dyn Store, _url: &str) {
    bootstrap(store).await;
    let t0 = 1_800_000_000_000_i64;
    let hour = 3_600_000_i64;
    let first = vec![
        usage(ORG, INFERENCE_KEY, "req-1", 1_000, t0 - 3 * hour),
        usage(ORG, INFERENCE_KEY, "req-2", 20_000, t0 - hour),
        usage(ORG, INFERENCE_KEY, "req-3", 300_000, t0 - 10 * 60_000),
    ];
    let outcome = store.ingest_usage(&first).await.expect("ingest_usage");
    assert_eq!(
        outcome,
        IngestOutcome {
            inserted: 3,
            duplicates: 0
        }
    );

    // Redelivery of the same rows plus one new: only the new one lands. The redelivered
    // req-1 even carries a different cost, which must not be billed.
    let mut again = first.clone();
    again[0].cost_nanos = 999_999_999;
    let mut fourth = usage(ORG, INFERENCE_KEY, "req-4", 4_000_000, t0);
    fourth.ttft_ms = None;
    fourth.streamed = false;
    fourth.cancelled = true;
    fourth.estimated = true;
    fourth.http_status = 499;
    fourth.error_type = "client_cancelled".to_owned();
    fourth.gateway_cost_nanos = 3_999_999;
    again.push(fourth.clone());
    let outcome = store
        .ingest_usage(&again)
        .await
        .expect("ingest_usage(redelivery)");
    assert_eq!(
        outcome,
        IngestOutcome {
            inserted: 1,
            duplicates: 3
        }
    );
    assert_eq!(store.count_usage(ORG).await.expect("count_usage"), 4);
    assert_eq!(
        store.ingest_usage(&[]).await.expect("ingest_usage(empty)"),
        IngestOutcome::default()
    );

    // A batch that repeats a request id bills it once.
    let twice = [
        usage(ORG, MANAGEMENT_KEY, "req-5", 50, t0),
        usage(ORG, MANAGEMENT_KEY, "req-5", 50, t0),
    ];
    assert_eq!(
        store
            .ingest_usage(&twice)
            .await
            .expect("ingest_usage(dup in batch)"),
        IngestOutcome {
            inserted: 1,
            duplicates: 1
        }
    );
    assert_eq!(store.count_usage(ORG).await.expect("count_usage"), 5);

    // Double-entry ledger: the org's credits go down by exactly what revenue goes up by.
    let total: i64 = 1_000 + 20_000 + 300_000 + 4_000_000 + 50;
    assert_billed(store, total).await;
    assert_eq!(
        store
            .account_balance(ORG, "no-such-account")
            .await
            .expect("balance"),
        0
    );

    // Rows round-trip exactly, and only within their org.
    assert_eq!(
        store.get_usage(ORG, "req-2").await.expect("get_usage"),
        Some(first[1].clone())
    );
    assert_eq!(
        store.get_usage(ORG, "req-1").await.expect("get_usage"),
        Some(first[0].clone()),
        "first delivery wins"
    );
    assert_eq!(
        store.get_usage(ORG, "req-4").await.expect("get_usage"),
        Some(fourth)
    );
    assert_eq!(
        store
            .get_usage(ORG, "req-missing")
            .await
            .expect("get_usage"),
        None
    );
    assert_eq!(
        store
            .get_usage(OTHER_ORG, "req-2")
            .await
            .expect("get_usage(other org)"),
        None
    );
    assert_eq!(
        store
            .count_usage(OTHER_ORG)
            .await
            .expect("count_usage(other org)"),
        0
    );
    assert_eq!(
        store
            .account_balance(OTHER_ORG, accounts::ORG_CREDITS)
            .await
            .expect("balance"),
        0
    );

    // Another org's usage lands in its own ledger; a request id is globally unique.
    let theirs = usage(OTHER_ORG, "hash-theirs", "req-theirs", 777, t0);
    assert_eq!(
        store
            .ingest_usage(std::slice::from_ref(&theirs))
            .await
            .expect("ingest_usage(org 2)")
            .inserted,
        1
    );
    assert_eq!(
        store
            .account_balance(OTHER_ORG, accounts::ORG_CREDITS)
            .await
            .expect("balance"),
        -777
    );
    assert_eq!(
        store
            .account_balance(ORG, accounts::ORG_CREDITS)
            .await
            .expect("balance"),
        -total,
        "org 1 unaffected"
    );
    assert_eq!(
        store.get_usage(ORG, "req-theirs").await.expect("get_usage"),
        None
    );
    assert_eq!(
        store
            .get_usage(OTHER_ORG, "req-theirs")
            .await
            .expect("get_usage"),
        Some(theirs)
    );

    // Spend windows of one key: [t0-3h] 1_000, [t0-1h] 20_000, [t0-10min] 300_000, [t0] 4_000_000.
    let spend = store
        .key_spend_since(
            ORG,
            INFERENCE_KEY,
            &[
                t0 - 4 * hour,
                t0 - 2 * hour,
                t0 - hour,
                t0 - 30 * 60_000,
                t0,
                t0 + 1,
            ],
        )
        .await
        .expect("key_spend_since");
    assert_eq!(
        spend,
        [4_321_000, 4_320_000, 4_320_000, 4_300_000, 4_000_000, 0]
    );
    assert_eq!(
        store
            .key_spend_since(ORG, MANAGEMENT_KEY, &[0])
            .await
            .expect("key_spend_since"),
        [50]
    );
    assert_eq!(
        store
            .key_spend_since(ORG, INFERENCE_KEY, &[])
            .await
            .expect("key_spend_since")
            .len(),
        0
    );
    assert_eq!(
        store
            .key_spend_since(OTHER_ORG, INFERENCE_KEY, &[0])
            .await
            .expect("key_spend_since(other org)"),
        [0],
        "spend is scoped by org"
    );
}

/// Concurrent redelivery: 8 ingesters push overlapping batches of the same 50 request ids.
/// Every batch lists its ids in the same (ascending) order, as retries of one spool do.
/// A gateway's batch (tags, caching facts, a stream's provisional row, a final row and its
/// fee) commits whole or not at all: a batch that fails part-way leaves nothing behind for
/// its redelivery to trip over, and the redelivery writes everything once.
/// Double-entry ledger: `ORG`'s credits went down by exactly what revenue went up by.
async fn assert_billed(store: &dyn Store, total: i64) {
    assert_eq!(
        store
            .account_balance(ORG, accounts::ORG_CREDITS)
            .await
            .expect("balance"),
        -total
    );
    assert_eq!(
        store
            .account_balance(ORG, accounts::PLATFORM_REVENUE)
            .await
            .expect("balance"),
        total
    );
}

/// Batches are written in runs of a few fixed sizes (`store::chunks`): batches around every
/// cut, some redelivered in part, land each row and its two postings exactly once.
async fn story_usage_batches_of_any_size(store: &dyn Store, _url: &str) {
    bootstrap(store).await;
    let t0 = 1_800_000_000_000_i64;
    let mut next = 0;
    let mut batch = |size: usize, redelivered: usize| -> Vec<UsageRow> {
        let first = next - redelivered;
        next = first + size;
        (first..next)
            .map(|i| {
                usage(
                    ORG,
                    INFERENCE_KEY,
                    &format!("req-{i:05}"),
                    1_000 + i64::try_from(i).unwrap(),
                    t0,
                )
            })
            .collect()
    };
    let mut expected = 0;
    for (size, redelivered) in [
        (1, 0),
        (127, 0),
        (128, 0),
        (129, 0),
        (255, 64),
        (256, 0),
        (300, 129),
        (3, 3),
    ] {
        let rows = batch(size, redelivered);
        let outcome = store.ingest_usage(&rows).await.expect("ingest_usage");
        let fresh = u32::try_from(size - redelivered).unwrap();
        let again = u32::try_from(redelivered).unwrap();
        assert_eq!(
            outcome,
            IngestOutcome {
                inserted: fresh,
                duplicates: again
            },
            "a batch of {size}, {redelivered} of them redelivered"
        );
        expected += size - redelivered;
    }
    assert_eq!(
        store.count_usage(ORG).await.expect("count_usage"),
        i64::try_from(expected).unwrap()
    );
    assert_billed(
        store,
        (0..expected)
            .map(|i| 1_000 + i64::try_from(i).unwrap())
            .sum(),
    )
    .await;
    assert!(
        store
            .usage_posting_anomalies(ORG)
            .await
            .expect("anomalies")
            .is_empty(),
        "every row has exactly its two postings"
    );
}

async fn story_usage_batch_all_or_nothing(store: &dyn Store, _url: &str) {
    bootstrap(store).await;
    let t0 = 1_800_000_000_000_i64;
    let mut done = usage(ORG, INFERENCE_KEY, "req-final", 2_000_000, t0);
    done.streamed = false;
    let streaming = usage(ORG, INFERENCE_KEY, "req-streaming", 500_000, t0);
    let fact = |hit: bool, reason: &str| CacheFact {
        request_id: done.request_id.clone(),
        org_id: ORG.to_owned(),
        key_hash: INFERENCE_KEY.to_owned(),
        conversation_id: "conv-1".to_owned(),
        response_cache_hit: hit,
        sticky_fallback_reason: reason.to_owned(),
        finished_at: t0,
    };
    let fee = |id: &str, legs: [i64; 2]| Posting {
        id: id.to_owned(),
        org_id: ORG.to_owned(),
        kind: chargeback_kinds::FEE,
        memo: ECHO_MODEL.to_owned(),
        ref_id: Some(done.request_id.clone()),
        created_at: t0,
        legs: vec![
            (accounts::ORG_CREDITS.to_owned(), legs[0]),
            (PLATFORM_FEES.to_owned(), legs[1]),
        ],
    };
    let tags = |value: &str| {
        vec![(
            done.request_id.clone(),
            ORG.to_owned(),
            vec![("team".to_owned(), value.to_owned())],
        )]
    };

    // The last write of the batch (an unbalanced posting) fails.
    let failing_tags = tags("from-the-failed-batch");
    let failing_facts = [fact(false, "from the failed batch")];
    let failing_fees = [
        fee("fee:req-final", [-110_000, 110_000]),
        fee("fee:unbalanced", [-1, 2]),
    ];
    // The same stream and final row each time; tags, facts and fees vary.
    let batch = |tags, cache_facts, fees| UsageBatchWrite {
        tags,
        cache_facts,
        provisional: std::slice::from_ref(&streaming),
        rows: std::slice::from_ref(&done),
        fees,
    };
    let failed = store
        .ingest_batch(&batch(&failing_tags, &failing_facts, &failing_fees))
        .await;
    assert_conflict(failed, "a batch with an unbalanced fee posting");
    assert_eq!(store.count_usage(ORG).await.unwrap(), 0, "no usage row");
    assert_eq!(
        store.count_provisional_usage().await.unwrap(),
        0,
        "no provisional row"
    );
    assert_eq!(
        store
            .account_balance(ORG, accounts::ORG_CREDITS)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.fee_of(ORG, "req-final").await.unwrap(), 0, "no fee");

    // The redelivery (fixed) lands whole, with its own tags and facts, not the failed ones.
    let good_tags = tags("search");
    let good_facts = [fact(true, "")];
    let good_fees = [fee("fee:req-final", [-110_000, 110_000])];
    let batch = batch(&good_tags, &good_facts, &good_fees);
    let outcome = store.ingest_batch(&batch).await.expect("ingest_batch");
    assert_eq!(
        outcome,
        IngestOutcome {
            inserted: 1,
            duplicates: 0
        }
    );
    let check = |what: &'static str| async move {
        assert_eq!(
            store.count_usage(ORG).await.unwrap(),
            1,
            "{what}: usage rows"
        );
        assert_eq!(
            store.count_provisional_usage().await.unwrap(),
            1,
            "{what}: held stream"
        );
        assert_eq!(
            store
                .account_balance(ORG, accounts::ORG_CREDITS)
                .await
                .unwrap(),
            -2_110_000,
            "{what}: usage and fee debited once"
        );
        assert_eq!(
            store.fee_of(ORG, "req-final").await.unwrap(),
            110_000,
            "{what}: fee"
        );
        assert_eq!(
            store.window_tags(ORG, t0, t0 + 1_000).await.unwrap(),
            [(
                "req-final".to_owned(),
                "team".to_owned(),
                "search".to_owned()
            )],
            "{what}: tags"
        );
        let stats = store
            .cache_stats(&CacheStatsFilter {
                org_id: ORG.to_owned(),
                since_ms: 0,
                ..CacheStatsFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            stats
                .iter()
                .map(|r| (r.requests, r.response_cache_hits, r.sticky_fallbacks))
                .collect::<Vec<_>>(),
            [(1, 1, 0)],
            "{what}: caching facts"
        );
    };
    check("after the redelivery").await;

    // Delivered again: every part is idempotent.
    let outcome = store
        .ingest_batch(&batch)
        .await
        .expect("ingest_batch(again)");
    assert_eq!(
        outcome,
        IngestOutcome {
            inserted: 0,
            duplicates: 1
        }
    );
    check("after a second delivery").await;
    assert_eq!(
        store
            .ingest_batch(&UsageBatchWrite::default())
            .await
            .expect("empty batch"),
        IngestOutcome::default()
    );
}

async fn story_concurrent_ingestion(store: &dyn Store, _url: &str) {
    concurrent_ingestion(store, false).await;
}

/// As above, but half of the ingesters send their batch in reverse order: the store must
/// neither deadlock nor fail a batch because rows arrive in a different order.
async fn story_concurrent_ingestion_mixed_order(store: &dyn Store, _url: &str) {
    concurrent_ingestion(store, true).await;
}

async fn concurrent_ingestion(store: &dyn Store, mixed_order: bool) {
    bootstrap(store).await;
    let t0 = now_ms();
    let rows: Vec<UsageRow> = (0..50_i64)
        .map(|i| {
            usage(
                ORG,
                INFERENCE_KEY,
                &format!("req-{i:02}"),
                1_000 + i * 37,
                t0 - i,
            )
        })
        .collect();
    let total: i64 = rows.iter().map(|r| r.cost_nanos).sum();
    let batches: Vec<Vec<UsageRow>> = (0..8_usize)
        .map(|task| {
            // Each id is in 6 of the 8 batches; batches overlap heavily but differ.
            let mut batch: Vec<UsageRow> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| (i + task) % 4 != 0)
                .map(|(_, r)| r.clone())
                .collect();
            if mixed_order && task % 2 == 1 {
                batch.reverse();
            }
            batch
        })
        .collect();
    let submitted: usize = batches.iter().map(Vec::len).sum();
    let results =
        futures_util::future::join_all(batches.iter().map(|batch| store.ingest_usage(batch))).await;
    let mut inserted = 0_u32;
    let mut duplicates = 0_u32;
    for (task, result) in results.into_iter().enumerate() {
        let outcome = result
            .unwrap_or_else(|err| panic!("ingester {task} failed under concurrency: {err:?}"));
        inserted += outcome.inserted;
        duplicates += outcome.duplicates;
    }
    assert_eq!(
        inserted, 50,
        "each request id is inserted exactly once across all ingesters"
    );
    assert_eq!(
        usize::try_from(inserted + duplicates).expect("fits"),
        submitted,
        "every submitted row is accounted for"
    );
    assert_eq!(store.count_usage(ORG).await.expect("count_usage"), 50);
    assert_billed(store, total).await;
    for row in &rows {
        assert_eq!(
            store
                .get_usage(ORG, &row.request_id)
                .await
                .expect("get_usage")
                .as_ref(),
            Some(row)
        );
    }
}

async fn story_nodes(store: &dyn Store, _url: &str) {
    assert!(
        !store
            .node_token_exists("hash-node-1")
            .await
            .expect("node_token_exists")
    );
    store
        .add_node_token("hash-node-1", "edge-1")
        .await
        .expect("add_node_token");
    assert!(
        store
            .node_token_exists("hash-node-1")
            .await
            .expect("node_token_exists")
    );
    store
        .add_node_token("hash-node-1", "edge-1 again")
        .await
        .expect("add_node_token is idempotent");
    assert!(
        !store
            .node_token_exists("hash-node-2")
            .await
            .expect("node_token_exists")
    );

    assert!(store.list_nodes().await.expect("list_nodes").is_empty());
    let ack = |node: &str, version: u64, ok: bool, error: &str, info: &str| NodeAck {
        node_id: node.to_owned(),
        version,
        ok,
        error: error.to_owned(),
        node_info: info.to_owned(),
    };
    store
        .record_node_ack(&ack("node-b", 5, true, "", "gw 0.1.0"))
        .await
        .expect("record_node_ack");
    let nodes = store.list_nodes().await.expect("list_nodes");
    assert_eq!(nodes.len(), 1);
    let first = nodes[0].clone();
    assert_eq!(
        (first.node_id.as_str(), first.applied_version, first.ok),
        ("node-b", 5, true)
    );
    assert_eq!(
        (first.last_error.as_str(), first.node_info.as_str()),
        ("", "gw 0.1.0")
    );
    assert!(first.first_seen > 0 && first.last_seen >= first.first_seen);

    // A failed ack records the error but keeps the last good version (and, when it carries
    // no node info, the last known info).
    store
        .record_node_ack(&ack("node-b", 6, false, "bad config: boom", ""))
        .await
        .expect("record_node_ack(failed)");
    let failed = store.list_nodes().await.expect("list_nodes")[0].clone();
    assert_eq!(
        failed.applied_version, 5,
        "a failed ack keeps the last good applied_version"
    );
    assert!(!failed.ok);
    assert_eq!(failed.last_error, "bad config: boom");
    assert_eq!(failed.node_info, "gw 0.1.0");
    assert_eq!(
        failed.first_seen, first.first_seen,
        "upsert keeps first_seen"
    );
    assert!(failed.last_seen >= first.last_seen);

    store
        .record_node_ack(&ack("node-b", 7, true, "", "gw 0.2.0"))
        .await
        .expect("record_node_ack(recovered)");
    let recovered = store.list_nodes().await.expect("list_nodes")[0].clone();
    assert_eq!((recovered.applied_version, recovered.ok), (7, true));
    assert_eq!(recovered.last_error, "", "a good ack clears the error");
    assert_eq!(recovered.node_info, "gw 0.2.0");
    assert_eq!(recovered.first_seen, first.first_seen);

    store
        .record_node_ack(&ack("node-a", 7, true, "", "gw 0.2.0"))
        .await
        .expect("record_node_ack(second node)");
    let nodes = store.list_nodes().await.expect("list_nodes");
    assert_eq!(
        nodes.iter().map(|n| n.node_id.as_str()).collect::<Vec<_>>(),
        ["node-a", "node-b"]
    );
}

/// A node whose very first ack is a failure has applied nothing yet: it must not be shown as
/// running the version it failed to apply.
async fn story_node_first_ack_failed(store: &dyn Store, _url: &str) {
    let ack = NodeAck {
        node_id: "node-new".to_owned(),
        version: 9,
        ok: false,
        error: "boom".to_owned(),
        node_info: "gw".to_owned(),
    };
    store.record_node_ack(&ack).await.expect("record_node_ack");
    let node = store.list_nodes().await.expect("list_nodes")[0].clone();
    assert!(!node.ok);
    assert_eq!(node.last_error, "boom");
    assert_eq!(
        node.applied_version, 0,
        "a node that never applied a config has applied_version 0, not the failed version"
    );
}

// ---------------------------------------------------------------------------------------------

/// Both backends must ship the same migrations, or one of them drifts.
#[test]
fn migrations_have_the_same_versions_on_both_backends() {
    // Cargo's run-time value: a reused build may carry another checkout's compile-time path.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let root = std::path::Path::new(&manifest_dir).join("../migrations");
    let versions = |backend: &str| -> BTreeSet<u64> {
        let dir = root.join(backend);
        let mut versions = BTreeSet::new();
        for entry in
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        {
            let name = entry
                .expect("dir entry")
                .file_name()
                .into_string()
                .expect("UTF-8 file name");
            if !name.ends_with(".sql") {
                continue;
            }
            let (number, rest) = name
                .split_once('_')
                .unwrap_or_else(|| panic!("{backend}/{name}: expected NNNN_<name>.sql"));
            assert!(
                number.len() == 4
                    && number.bytes().all(|b| b.is_ascii_digit())
                    && rest.len() > ".sql".len(),
                "{backend}/{name}: expected NNNN_<name>.sql"
            );
            let version: u64 = number.parse().expect("digits");
            assert!(
                versions.insert(version),
                "{backend}: migration version {version} appears twice"
            );
        }
        versions
    };
    let sqlite = versions("sqlite");
    let postgres = versions("postgres");
    assert!(
        !sqlite.is_empty(),
        "no migrations found under {}",
        root.display()
    );
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres must have the same version numbers"
    );
}
