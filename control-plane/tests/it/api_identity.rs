//! Console sessions, password policy, lockout, invitations, key rotation and allowlists, and
//! the audit API, through the real router.

// Story helpers are not `#[test]` functions, so clippy's allow-*-in-tests settings do not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use switchyard_control_plane::audit::verify_chain;

use crate::api_support::{App, Cred, PASSWORD, session_from};

#[tokio::test]
async fn login_sets_a_hardened_cookie_and_sessions_act_with_the_members_role() {
    let app = App::sqlite().await;
    app.add_member("owner@a.test", "owner").await;
    let r = app
        .post(
            "/api/v1/auth/login",
            &Cred::None,
            json!({ "email": "Owner@A.test ", "password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cookies: Vec<&str> = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("sy_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "plain HTTP without X-Forwarded-Proto"
    );
    assert_eq!(r.body["data"]["role"], "owner");
    assert!(
        r.body["data"]["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "audit.read")
    );
    let owner = session_from(&r);

    let me = app.get("/api/v1/auth/me", &owner).await;
    assert_eq!(
        (me.status, me.body["data"]["user"]["email"].clone()),
        (StatusCode::OK, json!("owner@a.test"))
    );
    // The session manages the org like a key would.
    let created = app
        .post(
            "/api/v1/keys",
            &owner,
            json!({ "name": "from the console" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

    // CSRF: a cookie without the echoed token cannot mutate, but can read.
    let Cred::Session { cookie, .. } = owner.clone() else {
        unreachable!()
    };
    let forged = app
        .post(
            "/api/v1/keys",
            &Cred::CookieOnly(cookie.clone()),
            json!({ "name": "csrf" }),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let wrong = Cred::Session {
        cookie: cookie.clone(),
        csrf: "0".repeat(64),
    };
    assert_eq!(
        app.post("/api/v1/keys", &wrong, json!({ "name": "csrf" }))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/keys", &Cred::CookieOnly(cookie.clone()))
            .await
            .status,
        StatusCode::OK
    );

    // A tampered token is refused.
    let tampered = Cred::Session {
        cookie: format!("{cookie}x"),
        csrf: String::new(),
    };
    assert_eq!(
        app.get("/api/v1/auth/me", &tampered).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Refresh issues a new token for the same session.
    let refreshed = app.post("/api/v1/auth/refresh", &owner, json!({})).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    assert!(
        refreshed
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("sy_session="))
    );

    // Logout revokes the session: the same cookie is refused afterwards.
    let out = app.post("/api/v1/auth/logout", &owner, json!({})).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    assert!(
        out.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|c| c.to_str().unwrap().contains("Max-Age=0"))
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &owner).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/keys", &owner).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn secure_cookies_behind_tls_proxies() {
    let app = App::sqlite().await;
    app.add_member("tls@a.test", "viewer").await;
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-proto", "https")
        .body(axum::body::Body::from(
            json!({ "email": "tls@a.test", "password": PASSWORD }).to_string(),
        ))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .all(|c| c.to_str().unwrap().ends_with("; Secure"))
    );
}

#[tokio::test]
async fn passwords_follow_the_policy_and_repeated_failures_lock_the_account() {
    let app = App::sqlite().await;
    let org = app.org.clone();
    for weak in ["short1A", "alllowercaseletters", "123456789012345"] {
        let r = app
            .post(
                &format!("/api/v1/orgs/{org}/members"),
                &app.mgmt(),
                json!({ "email": "w@a.test", "role": "viewer", "password": weak }),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{weak}: {}", r.text);
    }
    app.add_member("victim@a.test", "developer").await;
    let stored = app
        .store
        .find_user_by_email("victim@a.test")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.password_hash.unwrap().starts_with("$argon2id$"));

    // Unknown email and wrong password answer alike.
    let unknown = app
        .post(
            "/api/v1/auth/login",
            &Cred::None,
            json!({ "email": "nobody@a.test", "password": PASSWORD }),
        )
        .await;
    let wrong = app
        .post(
            "/api/v1/auth/login",
            &Cred::None,
            json!({ "email": "victim@a.test", "password": "wrong password 1" }),
        )
        .await;
    assert_eq!(
        (unknown.status, wrong.status),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        unknown.body["error"]["message"],
        wrong.body["error"]["message"]
    );
    for _ in 0..4 {
        let r = app
            .post(
                "/api/v1/auth/login",
                &Cred::None,
                json!({ "email": "victim@a.test", "password": "wrong password 1" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Five failures lock the account: even the right password is refused now.
    let locked = app
        .post(
            "/api/v1/auth/login",
            &Cred::None,
            json!({ "email": "victim@a.test", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text
    );
    assert!(locked.text.contains("locked"));

    // Every refused login is audited (`auth.login_failed`) in the member's org with its
    // reason and address, never the password; an unknown address goes to the system log
    // without the address itself.
    let log = app
        .get(
            "/api/v1/audit?action=auth.login_failed&limit=50",
            &app.mgmt(),
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    let entries = log.body["data"].as_array().unwrap();
    let reasons: Vec<&str> = entries
        .iter()
        .map(|e| e["after"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "bad_password").count(),
        5,
        "{reasons:?}"
    );
    assert_eq!(reasons.iter().filter(|r| **r == "locked").count(), 1);
    assert!(
        entries
            .iter()
            .all(|e| e["target"]["id"] == stored.id.as_str())
    );
    assert_eq!(entries[0]["user_agent"], "switchyard-tests");
    assert!(
        !log.text.contains("wrong password 1") && !log.text.contains(PASSWORD),
        "a password reached the audit log: {}",
        log.text
    );
    let system = app
        .store
        .list_audit(
            switchyard_control_plane::store::SYSTEM_ORG,
            &switchyard_control_plane::store::AuditFilter {
                action: Some("auth.login_failed".into()),
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(system.len(), 1, "{system:?}");
    assert!(
        system[0]
            .after_json
            .as_deref()
            .unwrap()
            .contains("unknown_user")
    );
    assert!(!format!("{system:?}").contains("nobody@a.test"));
    assert!(verify_chain(&*app.store).await.is_ok());
}

#[tokio::test]
async fn invitations_are_single_use_and_open_a_session() {
    let app = App::sqlite().await;
    let org = app.org.clone();
    let team = app
        .post(
            &format!("/api/v1/orgs/{org}/teams"),
            &app.mgmt(),
            json!({ "name": "Platform" }),
        )
        .await;
    let team_id = team.body["data"]["id"].as_str().unwrap().to_owned();
    let inv = app
        .post(
            &format!("/api/v1/orgs/{org}/invitations"),
            &app.mgmt(),
            json!({ "email": "New@X.test", "role": "developer", "team_id": team_id }),
        )
        .await;
    assert_eq!(inv.status, StatusCode::CREATED, "{}", inv.text);
    let token = inv.body["token"].as_str().unwrap().to_owned();
    assert_eq!(inv.body["data"]["status"], "pending");
    let listed = app
        .get(&format!("/api/v1/orgs/{org}/invitations"), &app.mgmt())
        .await;
    assert!(!listed.text.contains(&token), "tokens are shown once");

    let weak = app
        .post(
            "/api/v1/invitations/accept",
            &Cred::None,
            json!({ "token": token, "password": "weak" }),
        )
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    let ok = app
        .post(
            "/api/v1/invitations/accept",
            &Cred::None,
            json!({ "token": token, "password": PASSWORD, "name": "New" }),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["data"]["role"], "developer");
    let session = session_from(&ok);
    assert_eq!(
        app.get("/api/v1/auth/me", &session).await.body["data"]["user"]["email"],
        "new@x.test"
    );
    let members = app
        .get(&format!("/api/v1/orgs/{org}/teams/{team_id}"), &session)
        .await;
    assert_eq!(members.body["data"]["members"][0]["email"], "new@x.test");

    let again = app
        .post(
            "/api/v1/invitations/accept",
            &Cred::None,
            json!({ "token": token, "password": PASSWORD }),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let bogus = app
        .post(
            "/api/v1/invitations/accept",
            &Cred::None,
            json!({ "token": "f".repeat(64), "password": PASSWORD }),
        )
        .await;
    assert_eq!(bogus.status, StatusCode::NOT_FOUND);

    // A revoked invitation cannot be used; an existing account must prove its password.
    let inv2 = app
        .post(
            &format!("/api/v1/orgs/{org}/invitations"),
            &app.mgmt(),
            json!({ "email": "new@x.test", "role": "viewer" }),
        )
        .await;
    let id2 = inv2.body["data"]["id"].as_str().unwrap();
    let revoked = app
        .call(
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/invitations/{id2}"),
            &app.mgmt(),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    let used = app
        .post(
            "/api/v1/invitations/accept",
            &Cred::None,
            json!({ "token": inv2.body["token"], "password": PASSWORD }),
        )
        .await;
    assert_eq!(used.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_user_in_two_orgs_switches_between_them() {
    let app = App::sqlite().await;
    app.add_member("multi@a.test", "viewer").await;
    let session = app.login("multi@a.test").await;
    let created = app
        .post("/api/v1/orgs", &session, json!({ "name": "Second" }))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let second = created.body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/api/v1/orgs", &session).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Still a viewer in the first org: cannot create keys there ...
    assert_eq!(
        app.post("/api/v1/keys", &session, json!({ "name": "x" }))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // ... but owns the second after switching.
    let switched = app
        .post(
            "/api/v1/auth/switch-org",
            &session,
            json!({ "org_id": second }),
        )
        .await;
    assert_eq!(
        (switched.status, switched.body["data"]["role"].clone()),
        (StatusCode::OK, json!("owner"))
    );
    assert_eq!(
        app.post("/api/v1/keys", &session, json!({ "name": "x" }))
            .await
            .status,
        StatusCode::CREATED
    );
    let elsewhere = app
        .post(
            "/api/v1/auth/switch-org",
            &session,
            json!({ "org_id": "not-mine" }),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    // API keys cannot create orgs.
    assert_eq!(
        app.post("/api/v1/orgs", &app.mgmt(), json!({ "name": "k" }))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn rotation_keeps_the_old_key_for_the_grace_period_only() {
    let app = App::sqlite().await;
    let created = app
        .post(
            "/api/v1/keys",
            &app.mgmt(),
            json!({ "name": "svc", "allowed_models": ["switchyard/echo"] }),
        )
        .await;
    let old_secret = created.body["key"].as_str().unwrap().to_owned();
    let old_hash = created.body["data"]["hash"].as_str().unwrap().to_owned();

    let rotated = app
        .post(
            &format!("/api/v1/keys/{old_hash}/rotate"),
            &app.mgmt(),
            json!({ "grace_period_seconds": 3600 }),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.text);
    let new_secret = rotated.body["key"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    assert_eq!(
        rotated.body["data"]["allowed_models"],
        json!(["switchyard/echo"])
    );
    assert_eq!(rotated.body["data"]["rotated_from"], json!(old_hash));
    assert_eq!(rotated.body["data"]["name"], "svc");
    let expires = rotated.body["old_key"]["expires_at"].as_str().unwrap();
    let expires_ms = switchyard_control_plane::api::timefmt::parse_iso("x", expires).unwrap();
    let delta = expires_ms - switchyard_control_plane::store::now_ms();
    assert!(
        (3_500_000..=3_600_000).contains(&delta),
        "grace ends in about an hour, not {delta} ms"
    );
    // Both work during the grace period.
    assert_eq!(
        app.get("/api/v1/key", &Cred::Key(old_secret.clone()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/key", &Cred::Key(new_secret.clone()))
            .await
            .status,
        StatusCode::OK
    );
    // The snapshot tells gateways when the old key stops: its expires_at.
    let config = app.store.load_config().await.unwrap();
    assert_eq!(
        config
            .keys
            .iter()
            .find(|k| k.hash == old_hash)
            .unwrap()
            .expires_at,
        Some(expires_ms)
    );

    // A zero grace period retires the old key at once.
    let new_hash = rotated.body["data"]["hash"].as_str().unwrap().to_owned();
    let r2 = app
        .call(
            Method::POST,
            &format!("/api/v1/keys/{new_hash}/rotate"),
            &app.mgmt(),
            Some(json!({ "grace_period_seconds": 0 })),
        )
        .await;
    assert_eq!(r2.status, StatusCode::CREATED);
    let r = app.get("/api/v1/key", &Cred::Key(new_secret)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // An empty body takes the default grace period; bad values are refused.
    let newest = r2.body["data"]["hash"].as_str().unwrap().to_owned();
    assert_eq!(
        app.call(
            Method::POST,
            &format!("/api/v1/keys/{newest}/rotate"),
            &app.mgmt(),
            None
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let bad = app
        .post(
            &format!("/api/v1/keys/{newest}/rotate"),
            &app.mgmt(),
            json!({ "grace_period_seconds": -1 }),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn keys_carry_owners_and_allowlists_and_developers_manage_only_their_own() {
    let app = App::sqlite().await;
    let dev_id = app.add_member("dev@a.test", "developer").await;
    let dev = app.login("dev@a.test").await;
    let mine = app
        .post(
            "/api/v1/keys",
            &dev,
            json!({ "name": "mine", "allowed_providers": ["openai", "openai", " switchyard "] }),
        )
        .await;
    assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.text);
    assert_eq!(mine.body["data"]["owner_user_id"], json!(dev_id));
    assert_eq!(
        mine.body["data"]["allowed_providers"],
        json!(["openai", "switchyard"])
    );
    let my_hash = mine.body["data"]["hash"].as_str().unwrap().to_owned();
    // Developers: no management keys, no keys for others, no changes to others' keys.
    assert_eq!(
        app.post(
            "/api/v1/keys",
            &dev,
            json!({ "name": "m", "kind": "management" })
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let other = app
        .post("/api/v1/keys", &app.mgmt(), json!({ "name": "team key" }))
        .await;
    let other_hash = other.body["data"]["hash"].as_str().unwrap().to_owned();
    let patch = app
        .call(
            Method::PATCH,
            &format!("/api/v1/keys/{other_hash}"),
            &dev,
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(patch.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/api/v1/keys/{other_hash}"),
            &dev,
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // ... but their own they may change, narrow and rotate; not hand over.
    let narrowed = app
        .call(
            Method::PATCH,
            &format!("/api/v1/keys/{my_hash}"),
            &dev,
            Some(json!({ "allowed_models": ["switchyard/echo"] })),
        )
        .await;
    assert_eq!(
        (
            narrowed.status,
            narrowed.body["data"]["allowed_models"].clone()
        ),
        (StatusCode::OK, json!(["switchyard/echo"]))
    );
    let handover = app
        .call(
            Method::PATCH,
            &format!("/api/v1/keys/{my_hash}"),
            &dev,
            Some(json!({ "owner_user_id": null })),
        )
        .await;
    assert_eq!(handover.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.post(&format!("/api/v1/keys/{my_hash}/rotate"), &dev, json!({}))
            .await
            .status,
        StatusCode::CREATED
    );

    // Admins assign owners, but only within the org.
    let team = app
        .post(
            &format!("/api/v1/orgs/{}/teams", app.org),
            &app.mgmt(),
            json!({ "name": "ML" }),
        )
        .await;
    let team_id = team.body["data"]["id"].as_str().unwrap();
    let to_team = app
        .call(
            Method::PATCH,
            &format!("/api/v1/keys/{other_hash}"),
            &app.mgmt(),
            Some(json!({ "owner_team_id": team_id })),
        )
        .await;
    assert_eq!(
        (
            to_team.status,
            to_team.body["data"]["owner_team_id"].clone()
        ),
        (StatusCode::OK, json!(team_id))
    );
    let stranger = app
        .call(
            Method::PATCH,
            &format!("/api/v1/keys/{other_hash}"),
            &app.mgmt(),
            Some(json!({ "owner_team_id": null, "owner_user_id": "not-a-member" })),
        )
        .await;
    assert_eq!(
        stranger.status,
        StatusCode::BAD_REQUEST,
        "{}",
        stranger.text
    );
    let both = app
        .post(
            "/api/v1/keys",
            &app.mgmt(),
            json!({ "name": "b", "owner_user_id": dev_id, "owner_team_id": team_id }),
        )
        .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    // The snapshot carries the team owner.
    let mut snapshot =
        switchyard_control_plane::snapshot::build(app.store.load_config().await.unwrap());
    switchyard_control_plane::snapshot::add_access_policies(&mut snapshot, &*app.store)
        .await
        .unwrap();
    assert_eq!(
        snapshot
            .api_keys
            .iter()
            .find(|k| k.hash == other_hash)
            .unwrap()
            .owner_team_id,
        team_id
    );
}

#[tokio::test]
async fn guardrail_policies_are_validated_and_reach_the_snapshot() {
    let app = App::sqlite().await;
    let org = app.org.clone();
    let path = format!("/api/v1/orgs/{org}/guardrails");
    let bad = app.call(Method::PUT, &path, &app.mgmt(), Some(json!({ "rules": [{ "name": "r", "kind": "regex", "pattern": "(a)\\1", "action": "block" }] }))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    let policy = json!({
        "max_prompt_chars": 5000,
        "allowed_providers": ["openai"],
        "rules": [
            { "name": "cards", "kind": "payment_card", "action": "block" },
            { "name": "codenames", "kind": "regex", "pattern": "(?i)project\\s+x", "action": "redact" }
        ]
    });
    let ok = app
        .call(Method::PUT, &path, &app.mgmt(), Some(policy.clone()))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(
        app.get(&path, &app.mgmt()).await.body["data"]["policy"]["max_prompt_chars"],
        5000
    );
    let mut snapshot =
        switchyard_control_plane::snapshot::build(app.store.load_config().await.unwrap());
    switchyard_control_plane::snapshot::add_access_policies(&mut snapshot, &*app.store)
        .await
        .unwrap();
    let scope = snapshot
        .guardrails
        .iter()
        .find(|g| g.scope_kind == "org" && g.scope_id == org)
        .unwrap();
    let pb = scope.policy.as_ref().unwrap();
    assert_eq!((pb.max_prompt_chars, pb.rules.len()), (5000, 2));

    let key_path = format!(
        "/api/v1/keys/{}/guardrails",
        switchyard_proto::keys::KeyHash::of(&app.inference).as_str()
    );
    assert_eq!(
        app.call(
            Method::PUT,
            &key_path,
            &app.mgmt(),
            Some(json!({ "zdr_only": true }))
        )
        .await
        .status,
        StatusCode::OK
    );
    let dev_id = app.add_member("dev2@a.test", "developer").await;
    assert!(!dev_id.is_empty());
    let dev = app.login("dev2@a.test").await;
    assert_eq!(
        app.call(Method::DELETE, &key_path, &dev, None).await.status,
        StatusCode::FORBIDDEN,
        "developers cannot lift guardrails"
    );
    assert_eq!(
        app.call(Method::DELETE, &key_path, &app.mgmt(), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_mutation_is_audited_with_secrets_masked_and_the_chain_verifies() {
    let app = App::sqlite().await;
    let org = app.org.clone();
    let created = app
        .post("/api/v1/keys", &app.mgmt(), json!({ "name": "audited" }))
        .await;
    let secret = created.body["key"].as_str().unwrap().to_owned();
    let hash = created.body["data"]["hash"].as_str().unwrap().to_owned();
    app.call(
        Method::PATCH,
        &format!("/api/v1/keys/{hash}"),
        &app.mgmt(),
        Some(json!({ "name": "renamed" })),
    )
    .await;
    let provider = app
        .post("/api/v1/providers", &app.mgmt(), json!({ "kind": "openai_compatible", "slug": "local", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-upstream-secret-123456" }))
        .await;
    assert_eq!(provider.status, StatusCode::CREATED, "{}", provider.text);
    app.add_member("audited@a.test", "viewer").await;

    let log = app.get("/api/v1/audit?limit=50", &app.mgmt()).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    let actions: Vec<&str> = log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in ["key.create", "key.update", "provider.create", "member.add"] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let update = log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "key.update")
        .unwrap();
    assert_eq!(
        (
            update["before"]["name"].clone(),
            update["after"]["name"].clone()
        ),
        (json!("audited"), json!("renamed"))
    );
    assert_eq!(update["actor"]["type"], "key");
    assert_eq!(update["user_agent"], "switchyard-tests");
    assert!(
        !log.text.contains(&secret) && !log.text.contains("sk-upstream-secret"),
        "no secret in the audit log"
    );

    // Filters and paging.
    let keys_only = app
        .get(
            &format!("/api/v1/audit?action=key.&target={hash}"),
            &app.mgmt(),
        )
        .await;
    assert_eq!(keys_only.body["data"].as_array().unwrap().len(), 2);
    let page = app.get("/api/v1/audit?limit=1", &app.mgmt()).await;
    let cursor = page.body["next_before"].as_i64().unwrap();
    let next = app
        .get(
            &format!("/api/v1/audit?limit=1&before={cursor}"),
            &app.mgmt(),
        )
        .await;
    assert!(next.body["data"][0]["seq"].as_i64().unwrap() < cursor);
    let export = app
        .get("/api/v1/audit/export?action=key.", &app.mgmt())
        .await;
    assert_eq!(export.status, StatusCode::OK);
    assert_eq!(export.headers[header::CONTENT_TYPE], "application/x-ndjson");
    let lines: Vec<Value> = export
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["org_id"] == json!(org)));

    // Viewers may not read the audit log; inference keys manage nothing.
    let viewer = app.login("audited@a.test").await;
    assert_eq!(
        app.get("/api/v1/audit", &viewer).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/audit", &Cred::Key(app.inference.clone()))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert!(verify_chain(&*app.store).await.is_ok());
}
