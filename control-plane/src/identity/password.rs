//! Passwords: the policy new passwords must meet, and argon2id hashing.
//!
//! Policy: at least 12 and at most 256 characters, drawn from at least two of the classes
//! lowercase, uppercase, digit, other (so "aaaaaaaaaaaa" and "123456789012" fail), and not
//! the account's email address. Length beats composition rules (NIST SP 800-63B); the class
//! rule only rejects the most trivially guessable strings.
//!
//! Hashing uses argon2id with the crate defaults (19 MiB, 2 passes, 1 lane: OWASP's minimum)
//! and a random 16-byte salt, stored as a PHC string. Hashing and verifying run on the
//! blocking pool because each takes tens of milliseconds of CPU.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be at least {MIN_LEN} characters long")]
    TooShort,
    #[error("the password must be at most {MAX_LEN} characters long")]
    TooLong,
    #[error(
        "the password must mix at least two of: lowercase, uppercase, digits, other characters"
    )]
    OneClass,
    #[error("the password must not be the email address")]
    IsEmail,
    #[error("password hashing failed")]
    Hash,
}

pub fn check_policy(password: &str, email: &str) -> Result<(), PasswordError> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if len > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    let classes = [
        password.chars().any(char::is_lowercase),
        password.chars().any(char::is_uppercase),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 2 {
        return Err(PasswordError::OneClass);
    }
    if password.eq_ignore_ascii_case(email) {
        return Err(PasswordError::IsEmail);
    }
    Ok(())
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|_| PasswordError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The argon2id PHC string of `password` (the policy is checked by the caller).
pub async fn hash(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|_| PasswordError::Hash)?
}

/// Verifies `password` against `phc`. With no stored hash (unknown user, SSO-only user) it
/// still spends one verification, so response time does not reveal which emails exist.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_blocking(&password, &phc),
        None => {
            let _ = verify_blocking(&password, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("not a password anyone has").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rejects_short_single_class_and_email() {
        assert_eq!(
            check_policy("Short1!", "a@b.c"),
            Err(PasswordError::TooShort)
        );
        assert_eq!(
            check_policy("aaaaaaaaaaaaaaaa", "a@b.c"),
            Err(PasswordError::OneClass)
        );
        assert_eq!(
            check_policy("1234567890123", "a@b.c"),
            Err(PasswordError::OneClass)
        );
        assert_eq!(
            check_policy(&"aB".repeat(200), "a@b.c"),
            Err(PasswordError::TooLong)
        );
        assert_eq!(
            check_policy("Alice@Example.com", "alice@example.com"),
            Err(PasswordError::IsEmail)
        );
        assert_eq!(check_policy("correct horse battery", "a@b.c"), Ok(()));
        assert_eq!(check_policy("Tr0ub4dor&3xx", "a@b.c"), Ok(()));
    }

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse battery".into()).await.unwrap();
        let b = hash("correct horse battery".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salts must differ");
        assert!(verify("correct horse battery".into(), Some(a.clone())).await);
        assert!(!verify("correct horse batterz".into(), Some(a)).await);
        assert!(!verify("anything".into(), None).await);
    }
}
