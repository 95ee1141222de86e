//! Switchyard's exact-match response cache. Opt-in per request (`X-Switchyard-Cache: true`,
//! or OpenRouter's `X-OpenRouter-Cache`) or per org policy; keyed by API key, model, skin,
//! stream flag and the normalised body (`key.rs`). Answers are kept in canonical form —
//! the provider's `chat.completion`, or its `chat.completion.chunk` sequence — so a hit is
//! replayed through the same relay as a live answer: a new generation id, a zero-cost usage
//! record, and a stream stays a stream.
//!
//! Backends: in-process memory bounded by bytes (moka with a weigher), or Redis when
//! configured so every gateway shares one cache. Identical cacheable requests in flight at
//! the same time are coalesced: the first goes upstream, the others wait for its answer.

pub mod key;
pub(crate) mod redis_store;
pub mod warning;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

pub use key::CacheKey;
use switchyard_proto::pb;

use crate::error::ApiError;

/// Bytes of answers the in-memory backend keeps before evicting the least useful.
const MEMORY_BUDGET_BYTES: u64 = 256 * 1024 * 1024;
/// TTL when caching is asked for without one.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The longest TTL a request or policy may ask for (one day, like OpenRouter).
pub const MAX_TTL_SECS: u64 = 86_400;
/// How long an identical request waits for the one in flight before going upstream itself.
const COALESCE_WAIT: Duration = Duration::from_secs(120);

/// What the request asked of the response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Caching is not enabled for this request (no header, no policy): no status header.
    Off,
    /// The client explicitly opted out (`X-Switchyard-Cache: false`).
    Bypass,
    /// Look up, and store a successful answer for `ttl`.
    Use { ttl: Duration },
}

impl CacheMode {
    /// Reads the cache headers (Switchyard's or OpenRouter's spelling) and the org policy.
    pub fn from_request(
        headers: &HeaderMap,
        policy: Option<&pb::CachePolicy>,
    ) -> Result<CacheMode, ApiError> {
        // Looked up by `HeaderName`: a `&str` name is parsed on every lookup, and these four
        // run for every request.
        static ENABLED: [HeaderName; 2] = [
            HeaderName::from_static("x-switchyard-cache"),
            HeaderName::from_static("x-openrouter-cache"),
        ];
        static TTL: [HeaderName; 2] = [
            HeaderName::from_static("x-switchyard-cache-ttl"),
            HeaderName::from_static("x-openrouter-cache-ttl"),
        ];
        let header = |names: &'static [HeaderName; 2]| {
            names.iter().find_map(|n| {
                headers.get(n).map(|v| {
                    (
                        n.as_str(),
                        v.to_str().unwrap_or("\u{fffd}").trim().to_owned(),
                    )
                })
            })
        };
        let enabled = match header(&ENABLED) {
            None => None,
            Some((_, v)) if v.eq_ignore_ascii_case("true") || v == "1" => Some(true),
            Some((_, v)) if v.eq_ignore_ascii_case("false") || v == "0" => Some(false),
            Some((name, v)) => {
                return Err(ApiError::BadRequest(format!(
                    "header `{name}` must be `true` or `false`, not `{v}`"
                )));
            }
        };
        let ttl = match header(&TTL) {
            None => None,
            Some((name, v)) => match v.parse::<u64>() {
                Ok(secs) if (1..=MAX_TTL_SECS).contains(&secs) => Some(Duration::from_secs(secs)),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "header `{name}` must be a whole number of seconds from 1 to {MAX_TTL_SECS}, not `{v}`"
                    )));
                }
            },
        };
        let policy_ttl = policy
            .map(|p| u64::from(p.response_cache_ttl_secs).min(MAX_TTL_SECS))
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        Ok(match (enabled, policy_ttl) {
            (Some(false), _) => CacheMode::Bypass,
            (Some(true), p) => CacheMode::Use {
                ttl: ttl.or(p).unwrap_or(DEFAULT_TTL),
            },
            (None, Some(p)) => CacheMode::Use {
                ttl: ttl.unwrap_or(p),
            },
            (None, None) => CacheMode::Off,
        })
    }
}

/// A cached answer in canonical form, with what is needed to replay and meter it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedAnswer {
    /// Catalog model and endpoint that produced it (the replay reports them again).
    pub model: String,
    pub endpoint_id: String,
    pub stored_at_ms: i64,
    pub expires_at_ms: i64,
    pub body: CachedBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum CachedBody {
    /// A whole `chat.completion`.
    Complete(Value),
    /// Every `chat.completion.chunk`, usage chunk included, in order.
    Stream(Vec<Value>),
}

impl CachedAnswer {
    /// Seconds since the answer was stored, for the `Age` header.
    pub fn age_secs(&self, now_ms: i64) -> u64 {
        u64::try_from((now_ms - self.stored_at_ms).max(0) / 1000).unwrap_or(0)
    }

    fn ttl(&self, now_ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(self.expires_at_ms - now_ms).unwrap_or(0))
    }
}

/// Cache-related facts the usage record carries.
#[derive(Debug, Clone, Default)]
pub struct UsageMarks {
    pub response_cache_hit: bool,
    pub conversation_id: String,
    pub sticky_fallback_reason: String,
}

/// The answer of `lookup`.
pub enum Lookup {
    Hit(Arc<CachedAnswer>),
    /// Not cached. With a flight, this request leads: identical requests wait until the
    /// flight is dropped (after the answer is stored, or on failure). Without one, the
    /// leader this request waited for produced nothing cacheable.
    Miss(Option<Flight>),
}

type Inflight = Arc<Mutex<HashMap<CacheKey, watch::Receiver<()>>>>;

/// Leadership of one cache key's upstream call; dropping it releases the waiters.
pub struct Flight {
    key: CacheKey,
    inflight: Inflight,
    // Never sent on: waiters wake when it is dropped.
    _done: watch::Sender<()>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Ok(mut map) = self.inflight.lock() {
            map.remove(&self.key);
        }
    }
}

#[derive(Clone)]
struct Weighed(Arc<CachedAnswer>, u32);

struct ExpireAtStoredTime;

impl moka::Expiry<CacheKey, Weighed> for ExpireAtStoredTime {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Weighed,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.0.ttl(crate::unix_now_ms()))
    }
}

enum Backend {
    Memory(moka::future::Cache<CacheKey, Weighed>),
    Redis(redis_store::RedisStore),
}

/// The gateway's response cache (one per node; with Redis, shared by all nodes).
pub struct ResponseCache {
    backend: Backend,
    inflight: Inflight,
}

impl ResponseCache {
    pub fn memory() -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(MEMORY_BUDGET_BYTES)
            .weigher(|_k: &CacheKey, v: &Weighed| v.1)
            .expire_after(ExpireAtStoredTime)
            .build();
        Self {
            backend: Backend::Memory(cache),
            inflight: Inflight::default(),
        }
    }

    /// A cache shared through the Redis server at `url` (`redis://host:port/db`, or
    /// `redis+unix:///path`). Connecting is lazy; while Redis is unreachable every lookup
    /// is a miss and answers are not stored, so requests never fail because of the cache.
    pub fn redis(url: &str) -> Result<Self, String> {
        Ok(Self {
            backend: Backend::Redis(redis_store::RedisStore::new(url)?),
            inflight: Inflight::default(),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    async fn get(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        let answer = match &self.backend {
            Backend::Memory(cache) => cache.get(key).await.map(|w| w.0),
            Backend::Redis(redis) => redis.get(key).await.map(Arc::new),
        }?;
        // Expiry is approximate in both backends; never serve past the promised TTL.
        (answer.expires_at_ms > crate::unix_now_ms()).then_some(answer)
    }

    /// Stores a successful answer. Failures are logged, never surfaced: the client already
    /// has its answer.
    pub async fn put(&self, key: &CacheKey, answer: CachedAnswer) {
        match &self.backend {
            Backend::Memory(cache) => {
                let bytes = serde_json::to_vec(&answer).map_or(0, |b| b.len());
                let weight = u32::try_from(bytes + key.as_str().len()).unwrap_or(u32::MAX);
                cache
                    .insert(key.clone(), Weighed(Arc::new(answer), weight))
                    .await;
            }
            Backend::Redis(redis) => redis.put(key, &answer).await,
        }
    }

    /// A cached answer, or leadership of the upstream call, or — after waiting for an
    /// identical request in flight that produced nothing cacheable — a plain miss.
    pub async fn lookup(&self, key: &CacheKey) -> Lookup {
        if let Some(hit) = self.get(key).await {
            return Lookup::Hit(hit);
        }
        match self.join_or_lead(key) {
            None => return Lookup::Miss(None),
            Some(Ok(flight)) => {
                // The previous leader may have stored its answer between our miss and
                // taking the lead.
                if let Some(hit) = self.get(key).await {
                    return Lookup::Hit(hit);
                }
                return Lookup::Miss(Some(flight));
            }
            Some(Err(mut rx)) => {
                // Err once the leader's flight is dropped: that is the signal.
                let _ = tokio::time::timeout(COALESCE_WAIT, rx.changed()).await;
            }
        }
        match self.get(key).await {
            Some(hit) => Lookup::Hit(hit),
            None => Lookup::Miss(None),
        }
    }
}

impl ResponseCache {
    /// Leadership of `key`'s flight, or a receiver that wakes when the leader is done.
    fn join_or_lead(&self, key: &CacheKey) -> Option<Result<Flight, watch::Receiver<()>>> {
        let mut map = self.inflight.lock().ok()?;
        if let Some(rx) = map.get(key) {
            return Some(Err(rx.clone()));
        }
        let (tx, rx) = watch::channel(());
        map.insert(key.clone(), rx);
        Some(Ok(Flight {
            key: key.clone(),
            inflight: self.inflight.clone(),
            _done: tx,
        }))
    }
}

/// Whether a canonical whole answer is worth caching: no error inside it.
pub fn cacheable_completion(value: &Value) -> bool {
    value.get("error").is_none_or(Value::is_null)
        && value
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
            != Some("error")
        && value.get("choices").and_then(Value::as_array).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, axum::http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn headers_and_policy_decide_the_mode() {
        assert_eq!(
            CacheMode::from_request(&headers(&[]), None).unwrap(),
            CacheMode::Off
        );
        assert_eq!(
            CacheMode::from_request(&headers(&[("x-switchyard-cache", "true")]), None).unwrap(),
            CacheMode::Use { ttl: DEFAULT_TTL }
        );
        assert_eq!(
            CacheMode::from_request(
                &headers(&[
                    ("x-openrouter-cache", "true"),
                    ("x-openrouter-cache-ttl", "7")
                ]),
                None
            )
            .unwrap(),
            CacheMode::Use {
                ttl: Duration::from_secs(7)
            }
        );
        let policy = pb::CachePolicy {
            response_cache_ttl_secs: 60,
            auto_breakpoints: false,
        };
        assert_eq!(
            CacheMode::from_request(&headers(&[]), Some(&policy)).unwrap(),
            CacheMode::Use {
                ttl: Duration::from_secs(60)
            }
        );
        assert_eq!(
            CacheMode::from_request(&headers(&[("x-switchyard-cache", "false")]), Some(&policy))
                .unwrap(),
            CacheMode::Bypass
        );
        let err = CacheMode::from_request(&headers(&[("x-switchyard-cache", "yes")]), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("x-switchyard-cache"), "{err}");
        let err = CacheMode::from_request(
            &headers(&[
                ("x-switchyard-cache", "true"),
                ("x-switchyard-cache-ttl", "0"),
            ]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("from 1 to 86400"), "{err}");
    }

    #[tokio::test]
    async fn identical_lookups_coalesce_behind_one_leader() {
        let cache = Arc::new(ResponseCache::memory());
        let key = CacheKey::of(
            "k",
            "chat",
            &crate::chat_request::ChatRequest::parse(
                br#"{"model":"m/a","messages":[{"role":"user","content":"x"}]}"#,
            )
            .unwrap(),
        );
        let Lookup::Miss(Some(flight)) = cache.lookup(&key).await else {
            panic!("the first lookup leads");
        };
        let follower = tokio::spawn({
            let (cache, key) = (cache.clone(), key.clone());
            async move { matches!(cache.lookup(&key).await, Lookup::Hit(_)) }
        });
        let now = crate::unix_now_ms();
        cache
            .put(
                &key,
                CachedAnswer {
                    model: "m/a".into(),
                    endpoint_id: "e".into(),
                    stored_at_ms: now,
                    expires_at_ms: now + 60_000,
                    body: CachedBody::Complete(serde_json::json!({"choices": []})),
                },
            )
            .await;
        drop(flight);
        assert!(
            follower.await.unwrap(),
            "the follower replays the leader's answer"
        );
    }
}
