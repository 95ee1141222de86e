//! The Redis backend of the response cache, shared by every gateway pointed at the same
//! server. Answers are JSON under `switchyard:rc:v1:<key>` with a server-side expiry, so
//! Redis evicts them itself. The connection is made lazily and re-made after failures; a
//! Redis outage turns lookups into misses and skips stores — it never fails a request.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{CacheKey, CachedAnswer};

const PREFIX: &str = "switchyard:rc:v1:";
/// A cache that answers slower than this is treated as a miss.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connect, requests skip the cache this long instead of each waiting for
/// another connect timeout.
const RECONNECT_AFTER: Duration = Duration::from_secs(5);

pub struct RedisStore {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl RedisStore {
    pub fn new(url: &str) -> Result<Self, String> {
        // The URL may hold a password: errors name the problem, never the URL.
        let client = redis::Client::open(url).map_err(|e| format!("Redis URL: {e}"))?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            failed_at: std::sync::Mutex::new(None),
        })
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        if let Some(conn) = self.conn.get() {
            return Some(conn.clone());
        }
        let recently_failed = self
            .failed_at
            .lock()
            .ok()
            .and_then(|f| *f)
            .is_some_and(|at| at.elapsed() < RECONNECT_AFTER);
        if recently_failed {
            return None;
        }
        let made = self
            .conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT)
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await;
        match made {
            Ok(conn) => Some(conn.clone()),
            Err(err) => {
                if let Ok(mut failed) = self.failed_at.lock() {
                    *failed = Some(std::time::Instant::now());
                }
                tracing::warn!(error = %err, "response cache: Redis unreachable; treating as a miss");
                None
            }
        }
    }

    pub async fn get(&self, key: &CacheKey) -> Option<CachedAnswer> {
        let mut conn = self.connection().await?;
        let raw: Option<Vec<u8>> = match conn.get(format!("{PREFIX}{}", key.as_str())).await {
            Ok(raw) => raw,
            Err(err) => {
                tracing::warn!(error = %err, "response cache: Redis GET failed; treating as a miss");
                return None;
            }
        };
        match serde_json::from_slice(&raw?) {
            Ok(answer) => Some(answer),
            Err(err) => {
                // Another version's format, or corruption: a miss, and the entry is replaced.
                tracing::warn!(error = %err, "response cache: unreadable Redis entry");
                None
            }
        }
    }

    /// A text value and its remaining lifetime, for small shared state (sticky pins).
    pub async fn get_text(&self, key: &str) -> Option<(String, Duration)> {
        let mut conn = self.connection().await?;
        let read: redis::RedisResult<(Option<String>, i64)> = redis::pipe()
            .get(key)
            .pttl(key)
            .query_async(&mut conn)
            .await;
        match read {
            Ok((Some(value), ttl_ms)) if ttl_ms > 0 => Some((
                value,
                Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
            )),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(error = %err, "shared state: Redis read failed");
                None
            }
        }
    }

    pub async fn set_text(&self, key: &str, value: &str, ttl: Duration) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let stored: redis::RedisResult<()> = conn.pset_ex(key, value, ttl_ms).await;
        if let Err(err) = stored {
            tracing::warn!(error = %err, "shared state: Redis write failed");
        }
    }

    pub async fn put(&self, key: &CacheKey, answer: &CachedAnswer) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let ttl_ms = u64::try_from(answer.expires_at_ms - crate::unix_now_ms()).unwrap_or(0);
        if ttl_ms == 0 {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(answer) else {
            return;
        };
        let stored: redis::RedisResult<()> = conn
            .pset_ex(format!("{PREFIX}{}", key.as_str()), bytes, ttl_ms)
            .await;
        if let Err(err) = stored {
            tracing::warn!(error = %err, "response cache: Redis SET failed; answer not cached");
        }
    }
}
