//! Identity: password policy and hashing, roles and permissions, console session tokens,
//! and login rate limiting. Persistence is `crate::store::IdentityStore`; HTTP handlers are
//! in `crate::api`.

pub mod jwks_cache;
pub mod oidc;
pub mod password;
pub mod ratelimit;
pub mod rbac;
pub mod session;

pub use rbac::{Permission, allows, may_assign};
pub use session::SessionKeys;

/// Emails are compared and stored lowercased and trimmed.
pub fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let plausible = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    plausible.then_some(email)
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            super::normalize_email("  Alice@Example.COM ").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(super::normalize_email("nope"), None);
        assert_eq!(super::normalize_email("a@b"), None);
        assert_eq!(super::normalize_email("a b@c.d"), None);
    }
}
