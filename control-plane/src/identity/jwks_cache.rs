//! Issuers' signing keys (JWKS), cached per `jwks_uri` so a single sign-on does not fetch them
//! every time. A token signed with a key the cached set lacks (the issuer rotated its keys)
//! fetches the set again before it is refused; a refetch needs a real code exchange with the
//! issuer first, so bogus key ids cannot turn callbacks into a fetch flood.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::oidc::{Discovery, OidcError, fetch_jwks};

/// Keys are fetched again after this long even when they still match, so revoked keys leave.
const TTL: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct JwksCache {
    sets: Mutex<HashMap<String, (Instant, Arc<JwkSet>)>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").finish_non_exhaustive()
    }
}

fn holds(set: &JwkSet, kid: Option<&str>) -> bool {
    match kid {
        Some(kid) => set.find(kid).is_some(),
        None => set.keys.len() == 1,
    }
}

impl JwksCache {
    /// The issuer's keys, from the cache when it is fresh and holds the token's `kid`.
    pub async fn keys_for(
        &self,
        http: &reqwest::Client,
        discovery: &Discovery,
        kid: Option<&str>,
    ) -> Result<Arc<JwkSet>, OidcError> {
        let cached = self
            .lock()
            .get(&discovery.jwks_uri)
            .filter(|(at, set)| at.elapsed() < TTL && holds(set, kid))
            .map(|(_, set)| set.clone());
        if let Some(set) = cached {
            return Ok(set);
        }
        // Not held across the fetch: a slow issuer must not stall other orgs' logins; two
        // concurrent misses fetch twice, which is harmless.
        let set = Arc::new(fetch_jwks(http, discovery).await?);
        self.lock()
            .insert(discovery.jwks_uri.clone(), (Instant::now(), set.clone()));
        Ok(set)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<JwkSet>)>> {
        self.sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
