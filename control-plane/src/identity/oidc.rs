//! OIDC single sign-on, authorization code flow with PKCE (RFC 7636, S256), against an
//! org's configured issuer. The id token is verified against the issuer's JWKS (signature,
//! `iss`, `aud`, `exp`, and the `nonce` this flow sent).
//!
//! The flow's secrets (state, nonce, PKCE verifier) travel in a short-lived HS256 token in
//! an HttpOnly cookie signed with the session key: nothing is stored server-side, and a
//! callback without the browser's own cookie fails the state check.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::session::random_token;

pub const FLOW_COOKIE: &str = "sy_oidc";
pub const FLOW_TTL_SECS: i64 = 600;
const PURPOSE: &str = "oidc-flow";

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider answered unexpectedly: {0}")]
    Protocol(String),
    #[error("the id token is not valid: {0}")]
    InvalidToken(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// What the browser carries between `/login` and `/callback`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowState {
    pub purpose: String,
    pub org: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub exp: i64,
}

impl FlowState {
    pub fn new(org: &str, now_secs: i64) -> Self {
        FlowState {
            purpose: PURPOSE.into(),
            org: org.into(),
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            exp: now_secs + FLOW_TTL_SECS,
        }
    }

    pub fn is_flow(&self) -> bool {
        self.purpose == PURPOSE
    }

    /// `BASE64URL(SHA-256(verifier))`, the S256 challenge.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }
}

/// The claims Switchyard reads from an id token.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub nonce: Option<String>,
}

fn url_with(base: &str, params: &[(&str, &str)]) -> Result<String, OidcError> {
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| OidcError::Protocol(format!("bad URL `{base}`: {e}")))?;
    url.query_pairs_mut().extend_pairs(params);
    Ok(url.into())
}

pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, OidcError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: Discovery = http
        .get(&url)
        .send()
        .await
        .map_err(|e| OidcError::Unreachable(e.to_string()))?
        .error_for_status()
        .map_err(|e| OidcError::Protocol(e.to_string()))?
        .json()
        .await
        .map_err(|e| OidcError::Protocol(format!("discovery document: {e}")))?;
    // OIDC Discovery §4.3: the document must name the issuer it was fetched for.
    if doc.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(OidcError::Protocol(format!(
            "discovery names issuer `{}`, not `{issuer}`",
            doc.issuer
        )));
    }
    Ok(doc)
}

pub fn authorize_url(
    d: &Discovery,
    client_id: &str,
    redirect_uri: &str,
    flow: &FlowState,
) -> Result<String, OidcError> {
    let challenge = flow.challenge();
    url_with(
        &d.authorization_endpoint,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", "openid email profile"),
            ("state", &flow.state),
            ("nonce", &flow.nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

/// Redeems `code` (with the PKCE verifier) for an id token.
pub async fn exchange_code(
    http: &reqwest::Client,
    d: &Discovery,
    client_id: &str,
    client_secret: Option<&str>,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> Result<String, OidcError> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ];
    if let Some(secret) = client_secret {
        form.push(("client_secret", secret));
    }
    let resp = http
        .post(&d.token_endpoint)
        .form(&form)
        .send()
        .await
        .map_err(|e| OidcError::Unreachable(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(OidcError::Protocol(format!(
            "token endpoint answered {}",
            resp.status()
        )));
    }
    let body: TokenResponse = resp
        .json()
        .await
        .map_err(|e| OidcError::Protocol(format!("token response: {e}")))?;
    body.id_token
        .ok_or_else(|| OidcError::Protocol("the token response has no id_token".into()))
}

pub async fn fetch_jwks(http: &reqwest::Client, d: &Discovery) -> Result<JwkSet, OidcError> {
    http.get(&d.jwks_uri)
        .send()
        .await
        .map_err(|e| OidcError::Unreachable(e.to_string()))?
        .error_for_status()
        .map_err(|e| OidcError::Protocol(e.to_string()))?
        .json()
        .await
        .map_err(|e| OidcError::Protocol(format!("JWKS: {e}")))
}

/// The `kid` of a token's header, to pick (or refresh) the issuer's keys before verifying.
pub fn token_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid)
}

/// Verifies the id token's signature against `jwks` and its issuer, audience, expiry and
/// nonce. Only asymmetric algorithms: an HMAC "signature" keyed with a public value proves
/// nothing.
pub fn verify_id_token(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<IdClaims, OidcError> {
    let bad = |m: String| OidcError::InvalidToken(m);
    let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
    if !matches!(
        header.alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    ) {
        return Err(bad(format!("algorithm {:?} is not accepted", header.alg)));
    }
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or_else(|| bad("no key in the issuer's JWKS matches the token".into()))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(e.to_string()))?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[client_id]);
    validation.set_issuer(&[issuer, issuer.trim_end_matches('/')]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 60;
    let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
        .map_err(|e| bad(e.to_string()))?
        .claims;
    if claims.nonce.as_deref() != Some(nonce) {
        return Err(bad("the nonce does not match this login".into()));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        // RFC 7636 appendix B.
        let flow = FlowState {
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
            ..FlowState::new("o", 0)
        };
        assert_eq!(
            flow.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let a = FlowState::new("o", 0);
        let b = FlowState::new("o", 0);
        assert_ne!(
            (a.state, a.nonce, a.verifier),
            (b.state, b.nonce, b.verifier)
        );
    }
}
