//! API-key format and hashing.
//!
//! A key is `sk-sy-v1-` followed by 64 lowercase hex characters (256 random bits). Only its
//! SHA-256 (lowercase hex) is stored anywhere; that hash is the key's public id.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "sk-sy-v1-";
const SECRET_HEX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("API keys start with `{KEY_PREFIX}`")]
    Prefix,
    #[error("API keys have 64 lowercase hex characters after `{KEY_PREFIX}`")]
    Body,
}

/// A full API-key secret. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_HEX_LEN / 2];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{KEY_PREFIX}{}", hex::encode(bytes)))
    }

    pub fn parse(text: &str) -> Result<Self, KeyFormatError> {
        validate(text)?;
        Ok(Self(text.to_owned()))
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }

    /// The secret itself, for showing once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(***)")
    }
}

/// Checks the key format without allocating; used on the hot path before hashing.
pub fn validate(text: &str) -> Result<(), KeyFormatError> {
    let body = text
        .strip_prefix(KEY_PREFIX)
        .ok_or(KeyFormatError::Prefix)?;
    let well_formed = body.len() == SECRET_HEX_LEN
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if well_formed {
        Ok(())
    } else {
        Err(KeyFormatError::Body)
    }
}

/// Lowercase hex SHA-256 of a key secret: the key's public id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(String);

impl KeyHash {
    pub fn of(secret: &str) -> Self {
        let mut text = String::new();
        crate::hex::push_hex(&mut text, &Sha256::digest(secret.as_bytes()));
        Self(text)
    }

    /// Accepts a stored or client-supplied hash; rejects anything but 64 lowercase hex.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.0)
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hex SHA-256 of any token (node tokens, invitation tokens); same scheme as API keys.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_format() {
        let key = ApiKeySecret::generate();
        assert!(key.expose().starts_with(KEY_PREFIX));
        assert_eq!(key.expose().len(), KEY_PREFIX.len() + 64);
        assert_eq!(ApiKeySecret::parse(key.expose()).unwrap(), key);
        assert_ne!(ApiKeySecret::generate(), key);
    }

    #[test]
    fn rejects_malformed_keys() {
        assert_eq!(
            ApiKeySecret::parse("sk-or-v1-abc").unwrap_err(),
            KeyFormatError::Prefix
        );
        assert_eq!(
            ApiKeySecret::parse("sk-sy-v1-abc").unwrap_err(),
            KeyFormatError::Body
        );
        let upper = format!("{KEY_PREFIX}{}", "A".repeat(64));
        assert_eq!(
            ApiKeySecret::parse(&upper).unwrap_err(),
            KeyFormatError::Body
        );
    }

    #[test]
    fn hash_is_sha256_hex_and_debug_hides_the_secret() {
        let key = ApiKeySecret::parse(&format!("{KEY_PREFIX}{}", "0".repeat(64))).unwrap();
        assert_eq!(key.hash().as_str().len(), 64);
        assert_eq!(key.hash(), KeyHash::of(key.expose()));
        assert!(!format!("{key:?}").contains("000"));
        assert!(KeyHash::parse(key.hash().as_str()).is_some());
        assert!(KeyHash::parse("xyz").is_none());
    }

    #[test]
    fn key_hash_is_lowercase_sha256_hex() {
        // FIPS 180-2's "abc" vector.
        assert_eq!(
            KeyHash::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let long = "sk-sy-v1-".to_owned() + &"f".repeat(64);
        assert_eq!(
            KeyHash::of(&long).as_str(),
            hex::encode(Sha256::digest(long.as_bytes()))
        );
    }
}
