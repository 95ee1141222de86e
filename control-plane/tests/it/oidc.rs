//! OIDC single sign-on against a small identity provider run in the test (axum on
//! 127.0.0.1:0: discovery, authorize, token with PKCE check, JWKS) that signs id tokens with
//! the throwaway RSA key in tests/fixtures/oidc.

// Story helpers are not `#[test]` functions, so clippy's allow-*-in-tests settings do not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api_support::{App, Cred, PASSWORD};

const KEY_PEM: &str = include_str!("../../../tests/fixtures/oidc/test-rsa-key.pem");
const JWKS: &str = include_str!("../../../tests/fixtures/oidc/jwks.json");
const CLIENT_ID: &str = "switchyard-test";
const REDIRECT_URI: &str = "http://switchyard.test/api/v1/auth/oidc/callback";

/// How the identity provider misbehaves, to prove each check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Honest,
    WrongAudience,
    WrongNonce,
    /// HS256 keyed with the public modulus: the classic algorithm-confusion forgery.
    SymmetricForgery,
    Expired,
}

struct Pending {
    challenge: String,
    nonce: String,
    email: String,
}

#[derive(Clone)]
struct Idp {
    issuer: String,
    codes: Arc<Mutex<HashMap<String, Pending>>>,
    mode: Arc<Mutex<Mode>>,
    /// The key id the issuer signs with and publishes (changed to simulate a key rotation).
    kid: Arc<Mutex<String>>,
    jwks_fetches: Arc<std::sync::atomic::AtomicUsize>,
}

async fn discovery(State(idp): State<Idp>) -> Response {
    axum::Json(json!({
        "issuer": idp.issuer,
        "authorization_endpoint": format!("{}/authorize", idp.issuer),
        "token_endpoint": format!("{}/token", idp.issuer),
        "jwks_uri": format!("{}/jwks", idp.issuer),
    }))
    .into_response()
}

async fn jwks(State(idp): State<Idp>) -> Response {
    idp.jwks_fetches
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let kid = idp.kid.lock().unwrap().clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        JWKS.replace("test-key-1", &kid),
    )
        .into_response()
}

async fn authorize(State(idp): State<Idp>, Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    let code = format!("code-{}", uuid::Uuid::now_v7().simple());
    idp.codes.lock().unwrap().insert(
        code.clone(),
        Pending {
            challenge: q["code_challenge"].clone(),
            nonce: q["nonce"].clone(),
            email: q["login_hint"].clone(),
        },
    );
    Redirect::to(&format!(
        "{}?code={code}&state={}",
        q["redirect_uri"], q["state"]
    ))
    .into_response()
}

async fn token(State(idp): State<Idp>, body: Bytes) -> Response {
    let form: HashMap<String, String> =
        reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(&body)))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
    // Codes are single-use; PKCE: the verifier must hash to the challenge of the authorize step.
    let Some(pending) = idp.codes.lock().unwrap().remove(&form["code"]) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_grant" })),
        )
            .into_response();
    };
    let verifier_hash = URL_SAFE_NO_PAD.encode(Sha256::digest(form["code_verifier"].as_bytes()));
    if verifier_hash != pending.challenge
        || form["redirect_uri"] != REDIRECT_URI
        || form["client_id"] != CLIENT_ID
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_grant" })),
        )
            .into_response();
    }
    let mode = *idp.mode.lock().unwrap();
    let kid = idp.kid.lock().unwrap().clone();
    let now = switchyard_control_plane::store::now_ms() / 1000;
    let claims = json!({
        "iss": idp.issuer,
        "aud": if mode == Mode::WrongAudience { "someone-else" } else { CLIENT_ID },
        "sub": format!("sub-{}", pending.email),
        "email": pending.email,
        "email_verified": true,
        "nonce": if mode == Mode::WrongNonce { "another-nonce" } else { pending.nonce.as_str() },
        "iat": now,
        "exp": if mode == Mode::Expired { now - 3600 } else { now + 300 },
    });
    let id_token = if mode == Mode::SymmetricForgery {
        let n: Value = serde_json::from_str(JWKS).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("test-key-1".into());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(n["keys"][0]["n"].as_str().unwrap().as_bytes()),
        )
        .unwrap()
    } else {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid);
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(KEY_PEM.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    axum::Json(json!({ "access_token": "at", "token_type": "Bearer", "id_token": id_token }))
        .into_response()
}

async fn start_idp() -> Idp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = Idp {
        issuer: format!("http://{}", listener.local_addr().unwrap()),
        codes: Arc::default(),
        mode: Arc::new(Mutex::new(Mode::Honest)),
        kid: Arc::new(Mutex::new("test-key-1".into())),
        jwks_fetches: Arc::default(),
    };
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    idp
}

async fn configured() -> (App, Idp) {
    let app = App::sqlite().await;
    let idp = start_idp().await;
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/orgs/{}/sso", app.org),
            &app.mgmt(),
            Some(json!({
                "issuer": idp.issuer, "client_id": CLIENT_ID, "client_secret": "shh-client-secret",
                "redirect_uri": REDIRECT_URI, "allowed_domains": ["Corp.test"], "default_role": "developer"
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["has_client_secret"], true);
    assert!(!r.text.contains("shh-client-secret"));
    (app, idp)
}

/// Drives the browser: start at the control plane, log in at the issuer as `email`, come
/// back to the callback with the flow cookie. Returns the callback's answer.
async fn sso_login(app: &App, email: &str) -> crate::api_support::Reply {
    let start = app
        .get(&format!("/api/v1/auth/oidc/{}/login", app.org), &Cred::None)
        .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.text);
    let location = start.headers[header::LOCATION].to_str().unwrap().to_owned();
    let flow_cookie = start.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        start.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("HttpOnly")
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let at_idp = browser
        .get(format!("{location}&login_hint={email}"))
        .send()
        .await
        .unwrap();
    assert_eq!(at_idp.status(), 303);
    let back = at_idp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let path = back
        .strip_prefix("http://switchyard.test")
        .expect("redirected to our callback");
    app.get(path, &Cred::CookieOnly(flow_cookie)).await
}

#[tokio::test]
async fn sso_login_verifies_the_id_token_and_joins_allowed_domains_just_in_time() {
    let (app, _idp) = configured().await;
    let r = sso_login(&app, "alice@corp.test").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["role"], "developer");
    let session = crate::api_support::session_from(&r);
    let me = app.get("/api/v1/auth/me", &session).await;
    assert_eq!(me.body["data"]["user"]["email"], "alice@corp.test");
    let user = app
        .store
        .find_user_by_email("alice@corp.test")
        .await
        .unwrap()
        .unwrap();
    assert!(user.password_hash.is_none(), "SSO users get no password");
    // The session is a normal console session: RBAC applies.
    assert_eq!(
        app.post("/api/v1/keys", &session, json!({ "name": "mine" }))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.get("/api/v1/audit", &session).await.status,
        StatusCode::FORBIDDEN
    );
    // A second login finds the member; no second account.
    let again = sso_login(&app, "alice@corp.test").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let log = app.get("/api/v1/audit?action=auth.", &app.mgmt()).await;
    let actions: Vec<&str> = log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["auth.sso_login", "auth.sso_join"]);
}

#[tokio::test]
async fn sso_admits_existing_members_of_other_domains_and_refuses_strangers() {
    let (app, _idp) = configured().await;
    app.add_member("bob@partner.test", "viewer").await;
    let bob = sso_login(&app, "bob@partner.test").await;
    assert_eq!(
        (bob.status, bob.body["data"]["role"].clone()),
        (StatusCode::OK, json!("viewer"))
    );
    let stranger = sso_login(&app, "eve@elsewhere.test").await;
    assert_eq!(stranger.status, StatusCode::FORBIDDEN, "{}", stranger.text);
    assert!(
        app.store
            .find_user_by_email("eve@elsewhere.test")
            .await
            .unwrap()
            .is_none()
    );
    // Password login still works for bob, and SSO did not touch his password.
    let r = app
        .post(
            "/api/v1/auth/login",
            &Cred::None,
            json!({ "email": "bob@partner.test", "password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn forged_or_mismatched_id_tokens_and_states_are_refused() {
    let (app, idp) = configured().await;
    for mode in [
        Mode::WrongAudience,
        Mode::WrongNonce,
        Mode::SymmetricForgery,
        Mode::Expired,
    ] {
        *idp.mode.lock().unwrap() = mode;
        let r = sso_login(&app, "mallory@corp.test").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    assert!(
        app.store
            .find_user_by_email("mallory@corp.test")
            .await
            .unwrap()
            .is_none()
    );
    *idp.mode.lock().unwrap() = Mode::Honest;

    // A callback without this browser's flow cookie, or with another state, is refused.
    let start = app
        .get(&format!("/api/v1/auth/oidc/{}/login", app.org), &Cred::None)
        .await;
    let location = start.headers[header::LOCATION].to_str().unwrap().to_owned();
    let flow_cookie = start.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = browser
        .get(format!("{location}&login_hint=x@corp.test"))
        .send()
        .await
        .unwrap();
    let path = back.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .strip_prefix("http://switchyard.test")
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get(&path, &Cred::None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (base, _) = path.split_once("&state=").unwrap();
    let wrong_state = format!("{base}&state={}", "0".repeat(64));
    assert_eq!(
        app.get(&wrong_state, &Cred::CookieOnly(flow_cookie.clone()))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A session cookie is no flow cookie.
    app.add_member("s@corp.test", "viewer").await;
    let Cred::Session { cookie, .. } = app.login("s@corp.test").await else {
        unreachable!()
    };
    let swapped = cookie.replacen("sy_session=", "sy_oidc=", 1);
    assert_eq!(
        app.get(&path, &Cred::CookieOnly(swapped)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The genuine pair works once; the code cannot be replayed.
    assert_eq!(
        app.get(&path, &Cred::CookieOnly(flow_cookie.clone()))
            .await
            .status,
        StatusCode::OK
    );
    assert_ne!(
        app.get(&path, &Cred::CookieOnly(flow_cookie)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn sso_settings_need_the_right_to_grant_their_default_role() {
    let (app, _idp) = configured().await;
    let path = format!("/api/v1/orgs/{}/sso", app.org);
    let owner_grant = app
        .call(Method::PUT, &path, &app.mgmt(), Some(json!({ "issuer": "https://idp.test", "client_id": "c", "redirect_uri": REDIRECT_URI, "default_role": "owner" })))
        .await;
    // The bootstrap org has no owner yet, so the admin key may grant it; add one and retry.
    assert_eq!(owner_grant.status, StatusCode::OK, "{}", owner_grant.text);
    app.add_member("boss@corp.test", "owner").await;
    let again = app
        .call(Method::PUT, &path, &app.mgmt(), Some(json!({ "issuer": "https://idp.test", "client_id": "c", "redirect_uri": REDIRECT_URI, "default_role": "owner" })))
        .await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.text);
    app.add_member("dev@corp.test", "developer").await;
    let dev = app.login("dev@corp.test").await;
    assert_eq!(app.get(&path, &dev).await.status, StatusCode::OK);
    assert_eq!(
        app.call(Method::DELETE, &path, &dev, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(Method::DELETE, &path, &app.mgmt(), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/api/v1/auth/oidc/{}/login", app.org), &Cred::None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_issuers_keys_are_cached_and_refetched_when_it_rotates() {
    let (app, idp) = configured().await;
    let fetches = || idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    for email in ["one@corp.test", "two@corp.test", "three@corp.test"] {
        let r = sso_login(&app, email).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert_eq!(fetches(), 1, "three logins, one JWKS fetch");

    // The issuer rotates to a new key id: the cached set lacks it, so the next login fetches
    // the keys again instead of refusing the token, and later logins use the new set.
    *idp.kid.lock().unwrap() = "test-key-2".into();
    let r = sso_login(&app, "four@corp.test").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(fetches(), 2);
    let r = sso_login(&app, "five@corp.test").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(fetches(), 2);
}
