//! Conformance stories of `IdentityStore` and `AuditStore`: each runs on SQLite and on Postgres
//! (when `SWITCHYARD_TEST_DATABASE_URL` is set; required under `CI=true`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use sqlx::Connection;
use switchyard_control_plane::audit::{ChainError, verify_chain};
use switchyard_control_plane::store::{
    AuditFilter, Invitee, KeyKind, KeyPolicy, NewAuditEntry, NewInvitation, NewKey, NewUser, Org,
    Role, SessionRecord, Store, StoreError, TeamRecord, now_ms,
};

both_backends!(
    story_orgs_members_and_last_owner,
    story_teams,
    story_sessions,
    story_login_failures_lock,
    story_invitations_are_single_use_and_expire,
    story_key_policies_and_rotation,
    story_audit_chain_detects_modification,
    story_audit_chain_detects_deletion,
    story_audit_listing_is_org_scoped_filtered_and_paged,
    story_secrets_and_guardrail_policies,
);

/// Runs one statement on a raw connection: what an attacker with database access could do.
pub async fn exec_raw(url: &str, sql: &str) -> u64 {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let n = sqlx::query(sql)
            .execute(&mut conn)
            .await
            .unwrap()
            .rows_affected();
        conn.close().await.unwrap();
        n
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let n = sqlx::query(sql)
            .execute(&mut conn)
            .await
            .unwrap()
            .rows_affected();
        conn.close().await.unwrap();
        n
    }
}

fn user(id: &str, email: &str) -> NewUser {
    NewUser {
        id: id.to_owned(),
        email: email.to_owned(),
        name: id.to_owned(),
        password_hash: Some("$argon2id$fake".to_owned()),
    }
}

fn org(id: &str) -> Org {
    Org {
        id: id.to_owned(),
        name: format!("Org {id}"),
        created_at: now_ms(),
    }
}

fn key(org_id: &str, hash: &str) -> NewKey {
    NewKey {
        hash: hash.to_owned(),
        org_id: org_id.to_owned(),
        name: format!("key {hash}"),
        label: "sk-sy-v1-...abcd".to_owned(),
        kind: KeyKind::Inference,
        limit_nanos: Some(5_000),
        limit_reset: Some("daily".to_owned()),
        include_byok_in_limit: false,
        expires_at: None,
    }
}

/// Two orgs: `a` owned by `alice`, `b` owned by `bob`.
async fn two_orgs(store: &dyn Store) {
    store
        .create_user(&user("alice", "alice@a.test"))
        .await
        .unwrap();
    store.create_user(&user("bob", "bob@b.test")).await.unwrap();
    store.create_org(&org("a"), "alice").await.unwrap();
    store.create_org(&org("b"), "bob").await.unwrap();
}

async fn story_orgs_members_and_last_owner(store: &dyn Store, _url: &str) {
    two_orgs(store).await;
    let found = store
        .find_user_by_email("alice@a.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "alice");
    assert!(
        !format!("{found:?}").contains("argon2"),
        "Debug must not show the hash"
    );
    assert!(matches!(
        store.create_user(&user("alice2", "alice@a.test")).await,
        Err(StoreError::Conflict(_))
    ));

    // Bob joins org a too: a user can belong to several orgs.
    store.add_member("a", "bob", Role::Developer).await.unwrap();
    let bobs: Vec<String> = store
        .list_user_orgs("bob")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.org_id)
        .collect();
    assert_eq!(bobs.len(), 2);
    assert!(bobs.contains(&"a".to_owned()) && bobs.contains(&"b".to_owned()));
    assert!(matches!(
        store.add_member("a", "bob", Role::Viewer).await,
        Err(StoreError::Conflict(_))
    ));

    let members = store.list_members("a").await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| (m.user_id.as_str(), m.role.as_str()))
            .collect::<Vec<_>>(),
        vec![("alice", "owner"), ("bob", "developer")]
    );
    // Org-scoped: org b's listing never shows org a's developer role for bob.
    assert_eq!(store.get_member("b", "bob").await.unwrap().role, "owner");
    assert!(matches!(
        store.get_member("b", "alice").await,
        Err(StoreError::NotFound)
    ));

    // The last owner can be neither demoted nor removed ...
    assert!(matches!(
        store.set_member_role("a", "alice", Role::Admin).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.remove_member("a", "alice").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_member("a", "alice").await.unwrap().role,
        "owner",
        "the refused change rolled back"
    );
    // ... but can once another owner exists.
    store
        .set_member_role("a", "bob", Role::Owner)
        .await
        .unwrap();
    store
        .set_member_role("a", "alice", Role::Viewer)
        .await
        .unwrap();
    store.remove_member("a", "alice").await.unwrap();
    assert!(matches!(
        store.remove_member("a", "alice").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.set_member_role("zzz", "bob", Role::Admin).await,
        Err(StoreError::NotFound)
    ));
}

async fn story_teams(store: &dyn Store, _url: &str) {
    two_orgs(store).await;
    store.add_member("a", "bob", Role::Developer).await.unwrap();
    let team = TeamRecord {
        id: "t1".into(),
        org_id: "a".into(),
        name: "Search".into(),
        created_at: now_ms(),
    };
    store.create_team(&team).await.unwrap();
    assert!(matches!(
        store
            .create_team(&TeamRecord {
                id: "t2".into(),
                ..team.clone()
            })
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        matches!(store.get_team("b", "t1").await, Err(StoreError::NotFound)),
        "teams are org-scoped"
    );

    store.add_team_member("a", "t1", "bob").await.unwrap();
    assert!(matches!(
        store.add_team_member("a", "t1", "bob").await,
        Err(StoreError::Conflict(_))
    ));
    // Only members of the team's org can join it, and only through that org.
    store
        .create_user(&user("carol", "carol@c.test"))
        .await
        .unwrap();
    assert!(matches!(
        store.add_team_member("a", "t1", "carol").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.add_team_member("b", "t1", "bob").await,
        Err(StoreError::NotFound)
    ));
    let members = store.list_team_members("a", "t1").await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| m.user_id.as_str())
            .collect::<Vec<_>>(),
        vec!["bob"]
    );
    assert!(store.list_team_members("b", "t1").await.unwrap().is_empty());

    // A team-owned key loses its owner (and keeps working) when the team goes.
    let owned = KeyPolicy {
        hash: "k-team".into(),
        owner_team_id: Some("t1".into()),
        ..KeyPolicy::default()
    };
    store
        .create_key_with_policy(&key("a", "k-team"), &owned)
        .await
        .unwrap();
    let version = store.config_version().await.unwrap();
    assert!(matches!(
        store.delete_team("b", "t1").await,
        Err(StoreError::NotFound)
    ));
    store.rename_team("a", "t1", "Search & Ads").await.unwrap();
    store.delete_team("a", "t1").await.unwrap();
    assert_eq!(
        store
            .get_key_policy("a", "k-team")
            .await
            .unwrap()
            .owner_team_id,
        None
    );
    assert!(
        store.config_version().await.unwrap() > version,
        "gateways learn the owner change"
    );
    assert!(store.list_team_members("a", "t1").await.unwrap().is_empty());

    // Leaving the org leaves its teams and disables the keys one owns there (only there).
    let t3 = TeamRecord {
        id: "t3".into(),
        org_id: "a".into(),
        name: "Ops".into(),
        created_at: now_ms(),
    };
    store.create_team(&t3).await.unwrap();
    store.add_team_member("a", "t3", "bob").await.unwrap();
    let bobs = |hash: &str| KeyPolicy {
        hash: hash.into(),
        owner_user_id: Some("bob".into()),
        ..KeyPolicy::default()
    };
    store
        .create_key_with_policy(&key("a", "k-bob-a"), &bobs("k-bob-a"))
        .await
        .unwrap();
    store
        .create_key_with_policy(&key("b", "k-bob-b"), &bobs("k-bob-b"))
        .await
        .unwrap();
    store
        .set_guardrail_policy("a", "team", "t3", Some("{}"))
        .await
        .unwrap();
    store.remove_member("a", "bob").await.unwrap();
    assert!(store.list_team_members("a", "t3").await.unwrap().is_empty());
    assert!(store.get_key("a", "k-bob-a").await.unwrap().disabled);
    assert!(!store.get_key("b", "k-bob-b").await.unwrap().disabled);
    store.delete_team("a", "t3").await.unwrap();
    assert_eq!(
        store.get_guardrail_policy("a", "team", "t3").await.unwrap(),
        None,
        "a team's policy goes with it"
    );
}

async fn story_sessions(store: &dyn Store, _url: &str) {
    two_orgs(store).await;
    let now = now_ms();
    let s = SessionRecord {
        id: "sid-1".into(),
        user_id: "alice".into(),
        org_id: "a".into(),
        created_at: now,
        expires_at: now + 60_000,
        revoked_at: None,
    };
    store.create_session(&s).await.unwrap();
    let got = store.get_session("sid-1").await.unwrap().unwrap();
    assert_eq!(
        (got.user_id.as_str(), got.org_id.as_str(), got.revoked_at),
        ("alice", "a", None)
    );
    store.set_session_org("sid-1", "b").await.unwrap();
    assert_eq!(
        store.get_session("sid-1").await.unwrap().unwrap().org_id,
        "b"
    );
    store.revoke_session("sid-1").await.unwrap();
    assert!(
        store
            .get_session("sid-1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(
        matches!(
            store.set_session_org("sid-1", "a").await,
            Err(StoreError::NotFound)
        ),
        "revoked sessions stay revoked"
    );
    assert!(store.get_session("nope").await.unwrap().is_none());
}

async fn story_login_failures_lock(store: &dyn Store, _url: &str) {
    two_orgs(store).await;
    let until = now_ms() + 900_000;
    for expected in 1..=2 {
        assert_eq!(
            store.record_login_failure("alice", 3, until).await.unwrap(),
            expected
        );
        assert_eq!(store.get_user("alice").await.unwrap().locked_until, None);
    }
    assert_eq!(
        store.record_login_failure("alice", 3, until).await.unwrap(),
        3
    );
    assert_eq!(
        store.get_user("alice").await.unwrap().locked_until,
        Some(until)
    );
    store.record_login_success("alice").await.unwrap();
    let u = store.get_user("alice").await.unwrap();
    assert_eq!((u.failed_logins, u.locked_until), (0, None));
    store.set_password("alice", "$argon2id$new").await.unwrap();
    assert_eq!(
        store
            .get_user("alice")
            .await
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$new")
    );
}

fn invitation(
    id: &str,
    org_id: &str,
    token_hash: &str,
    expires_at: i64,
    team: Option<&str>,
) -> NewInvitation {
    NewInvitation {
        id: id.into(),
        token_hash: token_hash.into(),
        org_id: org_id.into(),
        email: "new@x.test".into(),
        role: Role::Billing,
        team_id: team.map(str::to_owned),
        invited_by: "user:alice".into(),
        expires_at,
    }
}

async fn story_invitations_are_single_use_and_expire(store: &dyn Store, _url: &str) {
    two_orgs(store).await;
    let team = TeamRecord {
        id: "t1".into(),
        org_id: "a".into(),
        name: "Finance".into(),
        created_at: now_ms(),
    };
    store.create_team(&team).await.unwrap();
    let now = now_ms();
    store
        .create_invitation(&invitation("i1", "a", "h1", now + 60_000, Some("t1")))
        .await
        .unwrap();
    store
        .create_invitation(&invitation("i2", "a", "h2", now - 1, None))
        .await
        .unwrap();
    store
        .create_invitation(&invitation("i3", "a", "h3", now + 60_000, None))
        .await
        .unwrap();
    assert_eq!(store.list_invitations("a").await.unwrap().len(), 3);
    assert!(store.list_invitations("b").await.unwrap().is_empty());
    assert!(
        matches!(
            store.revoke_invitation("b", "i3").await,
            Err(StoreError::NotFound)
        ),
        "org-scoped"
    );
    store.revoke_invitation("a", "i3").await.unwrap();

    let newcomer = Invitee::New(user("nina", "new@x.test"));
    let (accepted, user_id) = store
        .accept_invitation("h1", &newcomer, now_ms())
        .await
        .unwrap();
    assert_eq!(
        (user_id.as_str(), accepted.accepted_by.as_deref()),
        ("nina", Some("nina"))
    );
    assert_eq!(store.get_member("a", "nina").await.unwrap().role, "billing");
    assert_eq!(
        store.list_team_members("a", "t1").await.unwrap()[0].user_id,
        "nina"
    );

    // Single use: the same token again, by anyone, finds nothing and creates nobody.
    let again = Invitee::New(user("nina2", "new2@x.test"));
    assert!(matches!(
        store.accept_invitation("h1", &again, now_ms()).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .find_user_by_email("new2@x.test")
            .await
            .unwrap()
            .is_none(),
        "rolled back"
    );
    // Expired and revoked invitations cannot be accepted either.
    let existing = Invitee::Existing {
        user_id: "bob".into(),
    };
    assert!(matches!(
        store.accept_invitation("h2", &existing, now_ms()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.accept_invitation("h3", &existing, now_ms()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_member("a", "bob").await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .find_invitation("h1")
            .await
            .unwrap()
            .unwrap()
            .accepted_at
            .is_some()
    );
}

async fn story_key_policies_and_rotation(store: &dyn Store, _url: &str) {
    two_orgs(store).await;
    let policy = KeyPolicy {
        hash: "k1".into(),
        owner_user_id: Some("alice".into()),
        owner_team_id: None,
        allowed_models: vec!["openai/gpt-4o-mini".into()],
        allowed_providers: vec!["openai".into(), "azure".into()],
        rotated_from: None,
    };
    store
        .create_key_with_policy(&key("a", "k1"), &policy)
        .await
        .unwrap();
    assert_eq!(store.get_key_policy("a", "k1").await.unwrap(), policy);
    assert!(
        matches!(
            store.get_key_policy("b", "k1").await,
            Err(StoreError::NotFound)
        ),
        "org-scoped"
    );
    // Keys created through the plain path have empty policies.
    store.create_key(&key("b", "k2")).await.unwrap();
    assert_eq!(
        store.get_key_policy("b", "k2").await.unwrap(),
        KeyPolicy {
            hash: "k2".into(),
            ..KeyPolicy::default()
        }
    );

    let narrowed = KeyPolicy {
        allowed_models: vec![],
        allowed_providers: vec!["openai".into()],
        ..policy.clone()
    };
    assert!(matches!(
        store.set_key_policy("b", &narrowed).await,
        Err(StoreError::NotFound)
    ));
    store.set_key_policy("a", &narrowed).await.unwrap();
    assert_eq!(store.get_key_policy("a", "k1").await.unwrap(), narrowed);

    let before = store.config_version().await.unwrap();
    let grace_end = now_ms() + 60_000;
    assert!(matches!(
        store
            .rotate_key("b", "k1", &key("b", "k1-new"), grace_end)
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .rotate_key("a", "k1", &key("a", "k1-new"), grace_end)
        .await
        .unwrap();
    assert!(store.config_version().await.unwrap() > before);
    let old = store.get_key("a", "k1").await.unwrap();
    let new = store.get_key("a", "k1-new").await.unwrap();
    assert_eq!(old.expires_at, Some(grace_end));
    assert_eq!(
        (new.expires_at, new.limit_nanos, new.disabled),
        (None, Some(5_000), false)
    );
    let new_policy = store.get_key_policy("a", "k1-new").await.unwrap();
    assert_eq!(new_policy.rotated_from.as_deref(), Some("k1"));
    assert_eq!(
        (new_policy.owner_user_id, new_policy.allowed_providers),
        (Some("alice".into()), vec!["openai".to_owned()])
    );
    // A rotation never lengthens the old key's life.
    store
        .rotate_key("a", "k1", &key("a", "k1-newer"), grace_end + 1_000_000)
        .await
        .unwrap();
    assert_eq!(
        store.get_key("a", "k1").await.unwrap().expires_at,
        Some(grace_end)
    );

    let all = store.all_key_policies().await.unwrap();
    assert_eq!(all.len(), 4);
    // The gateway snapshot carries owners and allowlists.
    let mut snapshot =
        switchyard_control_plane::snapshot::build(store.load_config().await.unwrap());
    switchyard_control_plane::snapshot::add_access_policies(&mut snapshot, store)
        .await
        .unwrap();
    let pb = snapshot
        .api_keys
        .iter()
        .find(|k| k.hash == "k1-new")
        .unwrap();
    assert_eq!(
        (pb.owner_user_id.as_str(), pb.allowed_providers.clone()),
        ("alice", vec!["openai".to_owned()])
    );
    assert_eq!(
        snapshot
            .api_keys
            .iter()
            .find(|k| k.hash == "k1")
            .unwrap()
            .expires_at_ms,
        Some(grace_end)
    );
}

fn entry(org_id: &str, action: &str, target: &str) -> NewAuditEntry {
    NewAuditEntry {
        org_id: org_id.into(),
        actor_type: "user".into(),
        actor_id: "alice".into(),
        action: action.into(),
        target_type: "key".into(),
        target_id: target.into(),
        before: None,
        after: Some(format!("{{\"name\":\"{target}\"}}")),
        ip: "10.0.0.1".into(),
        user_agent: "test".into(),
    }
}

async fn append_some(store: &dyn Store, n: usize) {
    for i in 0..n {
        store
            .append_audit(&entry(
                if i % 2 == 0 { "a" } else { "b" },
                "key.create",
                &format!("k{i}"),
            ))
            .await
            .unwrap();
    }
}

async fn story_audit_chain_detects_modification(store: &dyn Store, url: &str) {
    let empty = verify_chain(store).await.unwrap();
    assert_eq!((empty.entries, empty.head_seq), (0, 0));
    append_some(store, 5).await;
    let ok = verify_chain(store).await.unwrap();
    assert_eq!((ok.entries, ok.head_seq), (5, 5));
    let entries = store.audit_chain_page(0, 100).await.unwrap();
    for pair in entries.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "each entry commits to the previous"
        );
    }

    // Rewriting content: the entry no longer matches its hash.
    exec_raw(
        url,
        "UPDATE audit_log SET after_json = '{\"name\":\"forged\"}' WHERE seq = 3",
    )
    .await;
    assert!(matches!(
        verify_chain(store).await,
        Err(ChainError::Modified { seq: 3 })
    ));

    // Rewriting content and its hash: the next entry's link breaks.
    let forged = {
        let mut e = store.audit_chain_page(2, 1).await.unwrap().remove(0);
        e.hash = e.expected_hash();
        e.hash
    };
    exec_raw(
        url,
        &format!("UPDATE audit_log SET hash = '{forged}' WHERE seq = 3"),
    )
    .await;
    assert!(matches!(
        verify_chain(store).await,
        Err(ChainError::BrokenLink { seq: 4 })
    ));
}

async fn story_audit_chain_detects_deletion(store: &dyn Store, url: &str) {
    append_some(store, 6).await;
    assert!(verify_chain(store).await.is_ok());
    // Deleting the newest entry: the head still names it.
    assert_eq!(
        exec_raw(url, "DELETE FROM audit_log WHERE seq = 6").await,
        1
    );
    assert!(matches!(
        verify_chain(store).await,
        Err(ChainError::Head {
            last_seq: 5,
            head_seq: 6
        })
    ));
    // Deleting one in the middle: a gap.
    assert_eq!(
        exec_raw(url, "DELETE FROM audit_log WHERE seq = 2").await,
        1
    );
    assert!(matches!(
        verify_chain(store).await,
        Err(ChainError::Gap {
            expected: 2,
            found: 3
        })
    ));
}

async fn story_audit_listing_is_org_scoped_filtered_and_paged(store: &dyn Store, _url: &str) {
    append_some(store, 9).await;
    store
        .append_audit(&entry("a", "member.update", "u1"))
        .await
        .unwrap();
    let all_a = store
        .list_audit(
            "a",
            &AuditFilter {
                limit: 100,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all_a.len(), 6);
    assert!(all_a.iter().all(|e| e.org_id == "a"));
    assert!(
        all_a.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first"
    );

    let page1 = store
        .list_audit(
            "a",
            &AuditFilter {
                limit: 4,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    let page2 = store
        .list_audit(
            "a",
            &AuditFilter {
                limit: 4,
                before_seq: Some(page1[3].seq),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page1.len() + page2.len(), 6);
    assert!(page2.iter().all(|e| e.seq < page1[3].seq));

    let by_family = store
        .list_audit(
            "a",
            &AuditFilter {
                action: Some("member.".into()),
                limit: 100,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        by_family
            .iter()
            .map(|e| e.target_id.as_str())
            .collect::<Vec<_>>(),
        vec!["u1"]
    );
    let exact = store
        .list_audit(
            "a",
            &AuditFilter {
                action: Some("key.create".into()),
                target_id: Some("k4".into()),
                limit: 100,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(exact.len(), 1);
    let nobody = store
        .list_audit(
            "a",
            &AuditFilter {
                actor_id: Some("mallory".into()),
                limit: 100,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(nobody.is_empty());
    let future = store
        .list_audit(
            "a",
            &AuditFilter {
                since: Some(now_ms() + 60_000),
                limit: 100,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(future.is_empty());
    let past = store
        .list_audit(
            "a",
            &AuditFilter {
                until: Some(now_ms() + 60_000),
                limit: 100,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(past.len(), 6);
}

async fn story_secrets_and_guardrail_policies(store: &dyn Store, _url: &str) {
    let first = store
        .get_or_create_secret("session_hs256", "one")
        .await
        .unwrap();
    let second = store
        .get_or_create_secret("session_hs256", "two")
        .await
        .unwrap();
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("one", "one"),
        "the first value wins and stays"
    );

    two_orgs(store).await;
    let v = store.config_version().await.unwrap();
    store
        .set_guardrail_policy("a", "org", "a", Some("{\"max_prompt_chars\":10}"))
        .await
        .unwrap();
    assert!(store.config_version().await.unwrap() > v);
    store
        .set_guardrail_policy("a", "org", "a", Some("{\"max_prompt_chars\":20}"))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_guardrail_policy("a", "org", "a")
            .await
            .unwrap()
            .as_deref(),
        Some("{\"max_prompt_chars\":20}")
    );
    assert_eq!(
        store.get_guardrail_policy("b", "org", "a").await.unwrap(),
        None,
        "org-scoped"
    );
    assert_eq!(store.all_guardrail_policies().await.unwrap().len(), 1);
    store
        .set_guardrail_policy("a", "org", "a", None)
        .await
        .unwrap();
    assert!(store.all_guardrail_policies().await.unwrap().is_empty());
}
