//! Console sessions: an HS256 JWT (jsonwebtoken) in an HttpOnly cookie. The token names the
//! session row (`sid`); the row holds the current org and the revocation, so logout and
//! removal take effect at once. The CSRF token is a random claim of the signed token: a
//! cross-site page can neither read it nor forge a token carrying another.
//!
//! Lifetimes: a token is valid for `TOKEN_TTL`; `POST /auth/refresh` issues a new one while
//! the session itself (`SESSION_TTL` from login) lasts.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub const COOKIE: &str = "sy_session";
/// Readable by the console's script, which echoes it in `X-CSRF-Token`.
pub const CSRF_COOKIE: &str = "sy_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Name of the signing secret in `server_secrets`.
pub const SECRET_NAME: &str = "session_hs256";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Session id.
    pub sid: String,
    pub csrf: String,
    pub iat: i64,
    /// Seconds since the epoch, checked by jsonwebtoken.
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid session token")]
pub struct InvalidToken;

/// Signing keys; `Debug` never shows them.
#[derive(Clone)]
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Add `Secure` to cookies (the control plane is served over TLS).
    pub secure_cookies: bool,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("secure_cookies", &self.secure_cookies)
            .finish_non_exhaustive()
    }
}

/// 32 random bytes, hex: session secrets, ids, CSRF and invitation tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl SessionKeys {
    pub fn new(secret: &[u8], secure_cookies: bool) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            secure_cookies,
        }
    }

    pub fn issue(&self, claims: &Claims) -> Result<String, InvalidToken> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|_| InvalidToken)
    }

    /// Signs any claims (e.g. an OIDC flow state) with the session key.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, InvalidToken> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|_| InvalidToken)
    }

    /// Opens a token made by `sign` (checks signature and `exp`).
    pub fn open<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, InvalidToken> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        jsonwebtoken::decode::<T>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|_| InvalidToken)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|_| InvalidToken)
    }

    /// `Set-Cookie` values that install a session token and its CSRF token.
    pub fn cookies(&self, token: &str, csrf: &str, max_age: Duration, secure: bool) -> [String; 2] {
        let secure = if secure || self.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        let age = max_age.as_secs();
        [
            format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={age}{secure}"),
            format!("{CSRF_COOKIE}={csrf}; Path=/; SameSite=Lax; Max-Age={age}{secure}"),
        ]
    }

    /// `Set-Cookie` values that clear both cookies.
    pub fn clearing_cookies(&self, secure: bool) -> [String; 2] {
        let secure = if secure || self.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        [
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
            format!("{CSRF_COOKIE}=; Path=/; SameSite=Lax; Max-Age=0{secure}"),
        ]
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "u1".into(),
            sid: "s1".into(),
            csrf: "c".into(),
            iat: 0,
            exp,
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering_expiry_and_other_keys() {
        let keys = SessionKeys::new(b"0123456789abcdef0123456789abcdef", false);
        let far = i64::MAX / 2_000;
        let token = keys.issue(&claims(far)).unwrap();
        assert_eq!(keys.verify(&token).unwrap(), claims(far));

        let other = SessionKeys::new(b"another secret, another server!!", false);
        assert!(other.verify(&token).is_err());

        let expired = keys.issue(&claims(1)).unwrap();
        assert!(keys.verify(&expired).is_err());

        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(keys.verify(&parts.join(".")).is_err());
        // "alg: none" must never pass.
        let none = format!("eyJhbGciOiJub25lIn0.{}.", token.split('.').nth(1).unwrap());
        assert!(keys.verify(&none).is_err());
    }

    #[test]
    fn cookies_are_httponly_lax_and_secure_when_asked() {
        let keys = SessionKeys::new(b"k", false);
        let [session, csrf] = keys.cookies("t", "c", TOKEN_TTL, false);
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"));
        assert!(!session.contains("Secure"));
        assert!(!csrf.contains("HttpOnly"));
        let [session, _] = keys.cookies("t", "c", TOKEN_TTL, true);
        assert!(session.ends_with("; Secure"));
        assert_eq!(
            cookie_value("a=1; sy_session=xyz; b=2", COOKIE),
            Some("xyz")
        );
    }
}
