//! Tenant isolation (another org's credentials get 404 and change nothing, on every
//! management endpoint) and the role matrix (each role × each endpoint family), through the
//! real router, on SQLite and Postgres.

// Story helpers are not `#[test]` functions, so clippy's allow-*-in-tests settings do not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_control_plane::identity::{Permission, allows};
use switchyard_control_plane::store::Role;

use crate::api_support::{App, Cred};

/// Org B beside the bootstrap org A: its owner, a management key, a team, an invitation, a
/// guardrail policy and one more key, all created through the API.
struct OrgB {
    id: String,
    owner: Cred,
    mgmt: String,
    key_hash: String,
    team_id: String,
    owner_id: String,
    invitation_id: String,
}

async fn org_b(app: &App) -> OrgB {
    app.add_member("b-owner@b.test", "viewer").await;
    let owner = app.login("b-owner@b.test").await;
    let created = app
        .post("/api/v1/orgs", &owner, json!({ "name": "Org B" }))
        .await;
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    let switched = app
        .post("/api/v1/auth/switch-org", &owner, json!({ "org_id": id }))
        .await;
    assert_eq!(switched.status, StatusCode::OK);
    let owner_id = switched.body["data"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mgmt = app
        .post(
            "/api/v1/keys",
            &owner,
            json!({ "name": "b-admin", "kind": "management" }),
        )
        .await;
    let key = app
        .post(
            "/api/v1/keys",
            &owner,
            json!({ "name": "b-key", "allowed_models": ["x/y"] }),
        )
        .await;
    let team = app
        .post(
            &format!("/api/v1/orgs/{id}/teams"),
            &owner,
            json!({ "name": "B team" }),
        )
        .await;
    let inv = app
        .post(
            &format!("/api/v1/orgs/{id}/invitations"),
            &owner,
            json!({ "email": "b-new@b.test" }),
        )
        .await;
    let guard = app
        .call(
            Method::PUT,
            &format!("/api/v1/orgs/{id}/guardrails"),
            &owner,
            Some(json!({ "max_prompt_chars": 7 })),
        )
        .await;
    assert_eq!(guard.status, StatusCode::OK, "{}", guard.text);
    OrgB {
        id,
        owner,
        mgmt: mgmt.body["key"].as_str().unwrap().to_owned(),
        key_hash: key.body["data"]["hash"].as_str().unwrap().to_owned(),
        team_id: team.body["data"]["id"].as_str().unwrap().to_owned(),
        owner_id,
        invitation_id: inv.body["data"]["id"].as_str().unwrap().to_owned(),
    }
}

/// Everything org B's owner can see of org B, to prove nothing changed.
async fn b_state(app: &App, b: &OrgB) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/api/v1/keys?include_disabled=true".to_owned(),
        format!("/api/v1/orgs/{}/members", b.id),
        format!("/api/v1/orgs/{}/teams/{}", b.id, b.team_id),
        format!("/api/v1/orgs/{}/invitations", b.id),
        format!("/api/v1/orgs/{}/guardrails", b.id),
        "/api/v1/providers".to_owned(),
        "/api/v1/models".to_owned(),
    ] {
        let r = app.get(&path, &b.owner).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let mut body = r.body["data"].clone();
        // Spend counters are computed, not state; drop volatile fields.
        if let Some(items) = body.as_array_mut() {
            for item in items {
                if let Some(o) = item.as_object_mut() {
                    o.remove("updated_at");
                }
            }
        }
        out.push(body);
    }
    out
}

async fn isolation(app: App) {
    let b = org_b(&app).await;
    let a_org = app.org.clone();
    let before = b_state(&app, &b).await;
    app.add_member("a-owner@a.test", "owner").await;
    let a_session = app.login("a-owner@a.test").await;
    let org = &b.id;
    let (key, team, user, inv) = (&b.key_hash, &b.team_id, &b.owner_id, &b.invitation_id);
    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/keys/{key}"), None),
        (
            Method::PATCH,
            format!("/api/v1/keys/{key}"),
            Some(json!({ "disabled": true, "allowed_models": [] })),
        ),
        (Method::DELETE, format!("/api/v1/keys/{key}"), None),
        (
            Method::POST,
            format!("/api/v1/keys/{key}/rotate"),
            Some(json!({})),
        ),
        (Method::GET, format!("/api/v1/keys/{key}/guardrails"), None),
        (
            Method::PUT,
            format!("/api/v1/keys/{key}/guardrails"),
            Some(json!({ "zdr_only": true })),
        ),
        (
            Method::DELETE,
            format!("/api/v1/keys/{key}/guardrails"),
            None,
        ),
        (Method::GET, format!("/api/v1/orgs/{org}"), None),
        (Method::GET, format!("/api/v1/orgs/{org}/members"), None),
        (
            Method::POST,
            format!("/api/v1/orgs/{org}/members"),
            Some(
                json!({ "email": "x@x.test", "role": "owner", "password": crate::api_support::PASSWORD }),
            ),
        ),
        (
            Method::PATCH,
            format!("/api/v1/orgs/{org}/members/{user}"),
            Some(json!({ "role": "viewer" })),
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/{org}/members/{user}"),
            None,
        ),
        (Method::GET, format!("/api/v1/orgs/{org}/teams"), None),
        (
            Method::POST,
            format!("/api/v1/orgs/{org}/teams"),
            Some(json!({ "name": "intruders" })),
        ),
        (
            Method::GET,
            format!("/api/v1/orgs/{org}/teams/{team}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/orgs/{org}/teams/{team}"),
            Some(json!({ "name": "pwned" })),
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/{org}/teams/{team}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/orgs/{org}/teams/{team}/members/{user}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/{org}/teams/{team}/members/{user}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/orgs/{org}/teams/{team}/guardrails"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/orgs/{org}/teams/{team}/guardrails"),
            Some(json!({})),
        ),
        (Method::GET, format!("/api/v1/orgs/{org}/invitations"), None),
        (
            Method::POST,
            format!("/api/v1/orgs/{org}/invitations"),
            Some(json!({ "email": "spy@x.test" })),
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/{org}/invitations/{inv}"),
            None,
        ),
        (Method::GET, format!("/api/v1/orgs/{org}/guardrails"), None),
        (
            Method::PUT,
            format!("/api/v1/orgs/{org}/guardrails"),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/{org}/guardrails"),
            None,
        ),
        // A team of org A addressed under org B's id, and org B's team under org A's id.
        (
            Method::GET,
            format!("/api/v1/orgs/{a_org}/teams/{team}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/orgs/{a_org}/teams/{team}"),
            Some(json!({ "name": "pwned" })),
        ),
        (
            Method::PUT,
            format!("/api/v1/orgs/{a_org}/teams/{team}/guardrails"),
            Some(json!({})),
        ),
    ];
    for cred in [app.mgmt(), a_session.clone()] {
        for (method, path, body) in &attempts {
            let r = app.call(method.clone(), path, &cred, body.clone()).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{method} {path} with {cred:?}: {}",
                r.text
            );
        }
        // Listings never include org B's rows.
        let keys = app.get("/api/v1/keys?include_disabled=true", &cred).await;
        assert!(!keys.text.contains(&b.key_hash));
        let audit = app.get("/api/v1/audit?limit=500", &cred).await;
        assert!(
            audit.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["org_id"] == json!(a_org))
        );
    }
    // Org B's key cannot reach into org A either.
    let a_key = switchyard_proto::keys::KeyHash::of(&app.inference)
        .as_str()
        .to_owned();
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{a_key}"),
            &Cred::Key(b.mgmt.clone()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get(
            &format!("/api/v1/orgs/{a_org}/members"),
            &Cred::Key(b.mgmt.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(b_state(&app, &b).await, before, "org B is unchanged");
}

#[tokio::test]
async fn sqlite_other_orgs_credentials_get_404_and_change_nothing() {
    isolation(App::sqlite().await).await;
}

#[tokio::test]
async fn postgres_other_orgs_credentials_get_404_and_change_nothing() {
    if let Some(app) = App::postgres().await {
        isolation(app).await;
    }
}

/// One representative call per endpoint family and permission, with what it needs.
fn probes(org: &str, key_hash: &str, n: usize) -> Vec<(Permission, Method, String, Option<Value>)> {
    vec![
        (
            Permission::KeysRead,
            Method::GET,
            "/api/v1/keys".into(),
            None,
        ),
        (
            Permission::KeysWrite,
            Method::PATCH,
            format!("/api/v1/keys/{key_hash}"),
            Some(json!({ "name": format!("renamed {n}") })),
        ),
        (
            Permission::ProvidersRead,
            Method::GET,
            "/api/v1/providers".into(),
            None,
        ),
        (
            Permission::ProvidersWrite,
            Method::POST,
            "/api/v1/providers".into(),
            Some(json!({ "kind": "echo", "slug": format!("echo-{n}") })),
        ),
        (
            Permission::ModelsRead,
            Method::GET,
            "/api/v1/models".into(),
            None,
        ),
        (
            Permission::ModelsWrite,
            Method::PATCH,
            "/api/v1/models/switchyard/echo".into(),
            Some(json!({ "description": format!("d{n}") })),
        ),
        (
            Permission::MembersRead,
            Method::GET,
            format!("/api/v1/orgs/{org}/members"),
            None,
        ),
        (
            Permission::MembersWrite,
            Method::POST,
            format!("/api/v1/orgs/{org}/invitations"),
            Some(json!({ "email": format!("i{n}@a.test"), "role": "viewer" })),
        ),
        (
            Permission::TeamsWrite,
            Method::POST,
            format!("/api/v1/orgs/{org}/teams"),
            Some(json!({ "name": format!("team {n}") })),
        ),
        (
            Permission::GuardrailsWrite,
            Method::PUT,
            format!("/api/v1/orgs/{org}/guardrails"),
            Some(json!({ "max_prompt_chars": n })),
        ),
        (
            Permission::AuditRead,
            Method::GET,
            "/api/v1/audit".into(),
            None,
        ),
    ]
}

#[tokio::test]
async fn role_matrix_each_role_on_each_endpoint_family() {
    let app = App::sqlite().await;
    let org = app.org.clone();
    let key_hash = switchyard_proto::keys::KeyHash::of(&app.inference)
        .as_str()
        .to_owned();
    let mut creds: Vec<(String, Cred, Option<Role>)> = Vec::new();
    for role in Role::ALL {
        let email = format!("{}@a.test", role.as_str());
        app.add_member(&email, role.as_str()).await;
        creds.push((
            role.as_str().to_owned(),
            app.login(&email).await,
            Some(role),
        ));
    }
    creds.push(("management key".into(), app.mgmt(), Some(Role::Admin)));
    creds.push((
        "inference key".into(),
        Cred::Key(app.inference.clone()),
        None,
    ));
    let mut n = 0;
    for (who, cred, role) in &creds {
        for (permission, method, path, body) in probes(&org, &key_hash, n) {
            n += 1;
            let r = app.call(method.clone(), &path, cred, body).await;
            let allowed = role.is_some_and(|r| allows(r, permission));
            if allowed {
                assert!(
                    r.status.is_success(),
                    "{who} should pass {permission} ({method} {path}): {} {}",
                    r.status,
                    r.text
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{who} must not pass {permission} ({method} {path}): {}",
                    r.text
                );
            }
        }
    }
    // Only owners grant or revoke the owner role; admins manage the rest.
    let admin = &creds[1].1;
    let owner = &creds[0].1;
    let viewer_id = app
        .store
        .find_user_by_email("viewer@a.test")
        .await
        .unwrap()
        .unwrap()
        .id;
    let path = format!("/api/v1/orgs/{org}/members/{viewer_id}");
    assert_eq!(
        app.call(
            Method::PATCH,
            &path,
            admin,
            Some(json!({ "role": "owner" }))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(
            Method::PATCH,
            &path,
            admin,
            Some(json!({ "role": "billing" }))
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(
            Method::PATCH,
            &path,
            owner,
            Some(json!({ "role": "owner" }))
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(
            Method::PATCH,
            &path,
            admin,
            Some(json!({ "role": "viewer" }))
        )
        .await
        .status,
        StatusCode::FORBIDDEN,
        "admins cannot demote owners"
    );
    // The last owner cannot leave the org ownerless.
    let owner_id = app
        .store
        .find_user_by_email("owner@a.test")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert_eq!(
        app.call(
            Method::PATCH,
            &path,
            owner,
            Some(json!({ "role": "viewer" }))
        )
        .await
        .status,
        StatusCode::OK
    );
    let last = app
        .call(
            Method::PATCH,
            &format!("/api/v1/orgs/{org}/members/{owner_id}"),
            owner,
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{}", last.text);
}
