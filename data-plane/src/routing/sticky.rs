//! Prompt-cache-aware sticky routing. A provider's prompt cache lives on one endpoint, so a
//! conversation that hops between endpoints pays full price to re-write its prefix on every
//! hop. A conversation — its session id, its `prompt_cache_key`, or else a hash of its model
//! and first user message — keeps going to the endpoint that served its last turn for as
//! long as that endpoint's cache lives: 5 minutes, or 1 hour when the request marks a
//! `cache_control` breakpoint with `"ttl": "1h"`, refreshed by every use (as the providers
//! refresh theirs). It moves only when that endpoint fails or is unavailable, and the
//! reason is recorded on the usage record.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::plan::Attempt;
use crate::chat_request::ChatRequest;

/// Anthropic's default ephemeral cache TTL (OpenAI's in-memory retention is similar).
pub const CACHE_TTL_5M: Duration = Duration::from_secs(300);
pub const CACHE_TTL_1H: Duration = Duration::from_secs(3600);
/// Conversations a node pins at once; beyond it, expired pins are swept and new ones skipped.
const MAX_PINS: usize = 200_000;

/// The conversation a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// What the usage record and the statistics call it: the session id or prompt cache key
    /// the client gave, or `auto-<hash>` of its model and first user message.
    pub id: String,
    /// How long the provider will keep this conversation's prefix cached after a use.
    pub cache_ttl: Duration,
    /// The pin table's key: the org and the id (ids are client text, so orgs may share
    /// them). Built once, not per lookup.
    pin: String,
}

impl Conversation {
    pub fn of(
        org_id: &str,
        request: &ChatRequest,
        session_header: Option<&str>,
    ) -> Option<Conversation> {
        let text = |field: &str| {
            request
                .extra
                .get(field)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let messages = request.conversation();
        let id = match text("session_id")
            .or_else(|| {
                session_header
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            })
            .or_else(|| text("prompt_cache_key"))
        {
            Some(id) => id.chars().take(256).collect(),
            None => {
                let first_user = messages.iter().find(|m| m.role == "user")?;
                let mut hasher = Sha256::new();
                hasher.update(request.model().as_bytes());
                hasher.update([0]);
                // A plain string is hashed where it lies (the first user turn can be most
                // of a long prompt); parts are joined first, as `text` does.
                match &first_user.content {
                    Value::String(text) => hasher.update(text.as_bytes()),
                    _ => hasher.update(first_user.text().as_bytes()),
                }
                let mut id = String::with_capacity(21);
                id.push_str("auto-");
                switchyard_proto::hex::push_hex(&mut id, &hasher.finalize()[..8]);
                id
            }
        };
        let one_hour = messages.iter().any(|m| marks_one_hour(&m.content))
            || request.extra.get("tools").is_some_and(marks_one_hour);
        Some(Conversation::new(
            org_id,
            id,
            if one_hour { CACHE_TTL_1H } else { CACHE_TTL_5M },
        ))
    }

    pub fn new(org_id: &str, id: String, cache_ttl: Duration) -> Self {
        Self {
            pin: format!("{org_id}\n{id}"),
            id,
            cache_ttl,
        }
    }
}

fn marks_one_hour(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(marks_one_hour),
        Value::Object(o) => {
            o.get("cache_control")
                .and_then(|c| c.get("ttl"))
                .and_then(Value::as_str)
                == Some("1h")
        }
        _ => false,
    }
}

#[derive(Debug, Clone)]
struct Pin {
    endpoint_id: String,
    expires: Instant,
}

/// Where each live conversation's provider cache is: on this node, and — with Redis
/// configured — shared by every gateway, so a conversation whose turns land on different
/// gateways still reaches the one endpoint holding its cache.
#[derive(Default)]
pub struct StickyTable {
    pins: Mutex<HashMap<String, Pin>>,
    shared: Option<std::sync::Arc<crate::cache::redis_store::RedisStore>>,
}

/// What sticky routing did to one request's plan.
#[derive(Debug, Clone, Default)]
pub struct StickyPlan {
    /// The endpoint holding the conversation's cache, if one is pinned and alive.
    pub pinned: Option<String>,
    /// Why the pinned endpoint could not go first, decided before any attempt.
    pub skipped: Option<String>,
}

impl StickyPlan {
    /// Why the request did not land on the pinned endpoint (empty when it did, or when
    /// nothing was pinned), given the attempts that failed before.
    pub fn fallback_reason(
        &self,
        served_endpoint: &str,
        failures: &[switchyard_proto::pb::ProviderAttempt],
    ) -> String {
        let Some(pinned) = &self.pinned else {
            return String::new();
        };
        if pinned == served_endpoint {
            return String::new();
        }
        if let Some(reason) = &self.skipped {
            return reason.clone();
        }
        match failures.iter().find(|a| &a.endpoint_id == pinned) {
            Some(a) => format!(
                "cache endpoint {pinned} failed ({} {}); fell back",
                a.status, a.error_type
            ),
            None => format!("cache endpoint {pinned} was not tried"),
        }
    }
}

/// The Redis key of a conversation's pin (hashed: conversation ids are client text).
fn shared_key(conversation: &Conversation) -> String {
    let mut hasher = Sha256::new();
    hasher.update(conversation.pin.as_bytes());
    let mut key = String::from("switchyard:sticky:v1:");
    switchyard_proto::hex::push_hex(&mut key, &hasher.finalize());
    key
}

impl StickyTable {
    /// Pins shared through the Redis at `url` (and kept locally too).
    pub fn shared(url: &str) -> Result<Self, String> {
        Ok(Self {
            pins: Mutex::default(),
            shared: Some(std::sync::Arc::new(
                crate::cache::redis_store::RedisStore::new(url)?,
            )),
        })
    }

    /// With shared pins, adopts the cluster's pin for the conversation (another gateway may
    /// have served its last turn). Without Redis, or when it is unreachable, a no-op.
    pub async fn sync_from_shared(&self, conversation: &Conversation) {
        let Some(shared) = &self.shared else {
            return;
        };
        let Some((endpoint_id, ttl)) = shared.get_text(&shared_key(conversation)).await else {
            return;
        };
        if let Ok(mut pins) = self.pins.lock() {
            pins.insert(
                conversation.pin.clone(),
                Pin {
                    endpoint_id,
                    expires: Instant::now() + ttl,
                },
            );
        }
    }

    /// Moves the conversation's pinned endpoint to the front of `attempts` when it is
    /// healthy and still eligible; otherwise says why not.
    pub fn apply(
        &self,
        conversation: &Conversation,
        attempts: &mut [Attempt],
        now: Instant,
    ) -> StickyPlan {
        let pin = self.pins.lock().ok().and_then(|pins| {
            pins.get(&conversation.pin)
                .filter(|p| p.expires > now)
                .cloned()
        });
        let Some(pin) = pin else {
            return StickyPlan::default();
        };
        let skipped = match attempts
            .iter()
            .position(|a| a.endpoint.id == pin.endpoint_id)
        {
            None => Some(format!(
                "cache endpoint {} is no longer eligible for this request",
                pin.endpoint_id
            )),
            Some(i) if attempts[i].degraded => Some(format!(
                "cache endpoint {} is ejected as unhealthy",
                pin.endpoint_id
            )),
            Some(i) => {
                attempts[..=i].rotate_right(1);
                None
            }
        };
        StickyPlan {
            pinned: Some(pin.endpoint_id),
            skipped,
        }
    }

    /// The conversation's cache now lives on `endpoint_id` for another `cache_ttl`.
    pub fn record(&self, conversation: &Conversation, endpoint_id: &str, now: Instant) {
        let Ok(mut pins) = self.pins.lock() else {
            return;
        };
        let expires = now + conversation.cache_ttl;
        // A conversation's later turns find their pin: refreshed in place, no new key.
        if let Some(pin) = pins.get_mut(&conversation.pin) {
            if pin.endpoint_id != endpoint_id {
                endpoint_id.clone_into(&mut pin.endpoint_id);
            }
            pin.expires = expires;
            drop(pins);
            self.share(conversation, endpoint_id);
            return;
        }
        if pins.len() >= MAX_PINS {
            pins.retain(|_, p| p.expires > now);
            if pins.len() >= MAX_PINS {
                return;
            }
        }
        pins.insert(
            conversation.pin.clone(),
            Pin {
                endpoint_id: endpoint_id.to_owned(),
                expires,
            },
        );
        drop(pins);
        self.share(conversation, endpoint_id);
    }

    /// With shared pins, tells the other gateways.
    fn share(&self, conversation: &Conversation, endpoint_id: &str) {
        if let Some(shared) = &self.shared {
            let (shared, key, endpoint, ttl) = (
                shared.clone(),
                shared_key(conversation),
                endpoint_id.to_owned(),
                conversation.cache_ttl,
            );
            // Off the response path: a slow Redis must not delay the answer.
            tokio::spawn(async move { shared.set_text(&key, &endpoint, ttl).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> ChatRequest {
        ChatRequest::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn conversations_are_named_by_session_cache_key_or_first_user_message() {
        let c = Conversation::of(
            "o",
            &req(r#"{"model":"m","session_id":"s-1","messages":[{"role":"user","content":"a"}]}"#),
            None,
        )
        .unwrap();
        assert_eq!(c.id, "s-1");
        assert_eq!(c.cache_ttl, CACHE_TTL_5M);
        let c = Conversation::of(
            "o",
            &req(r#"{"model":"m","prompt_cache_key":"pk","messages":[{"role":"user","content":"a"}]}"#),
            None,
        )
        .unwrap();
        assert_eq!(c.id, "pk");
        let turn1 = Conversation::of(
            "o",
            &req(r#"{"model":"m","messages":[{"role":"system","content":"s1"},{"role":"user","content":"a"}]}"#),
            None,
        )
        .unwrap();
        let turn2 = Conversation::of(
            "o",
            &req(r#"{"model":"m","messages":[{"role":"system","content":"s2"},{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":[{"type":"text","text":"c","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}"#),
            None,
        )
        .unwrap();
        assert!(turn1.id.starts_with("auto-"));
        assert_eq!(
            turn1.id, turn2.id,
            "later turns belong to the same conversation"
        );
        assert_eq!(turn2.cache_ttl, CACHE_TTL_1H);
    }

    /// Gateways of different versions share pins through Redis: the automatic id is the
    /// first 8 bytes of SHA-256(model, 0, first user text), for a string or for parts.
    #[test]
    fn the_automatic_id_is_a_stable_hash_of_model_and_first_user_text() {
        let expected = |text: &str| {
            let digest = Sha256::digest([b"m".as_slice(), &[0], text.as_bytes()].concat());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("auto-{hex}")
        };
        let plain = Conversation::of(
            "o",
            &req(r#"{"model":"m","messages":[{"role":"user","content":"hello there"}]}"#),
            None,
        )
        .unwrap();
        assert_eq!(plain.id, expected("hello there"));
        let parts = Conversation::of(
            "o",
            &req(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hello"},{"type":"text","text":"there"}]}]}"#),
            None,
        )
        .unwrap();
        assert_eq!(parts.id, expected("hello there"));
    }

    #[test]
    fn pins_expire_after_the_cache_ttl_and_are_refreshed_by_use() {
        let table = StickyTable::default();
        let c = Conversation::new("o", "s".into(), CACHE_TTL_5M);
        let t0 = Instant::now();
        table.record(&c, "e2", t0);
        let pinned = |t| {
            table
                .pins
                .lock()
                .unwrap()
                .get("o\ns")
                .filter(|p| p.expires > t)
                .map(|p| p.endpoint_id.clone())
        };
        assert_eq!(pinned(t0 + Duration::from_secs(299)).as_deref(), Some("e2"));
        table.record(&c, "e2", t0 + Duration::from_secs(200));
        assert_eq!(pinned(t0 + Duration::from_secs(450)).as_deref(), Some("e2"));
        assert_eq!(pinned(t0 + Duration::from_secs(501)), None);
        assert!(
            table.pins.lock().unwrap().get("other-org\ns").is_none(),
            "pins are scoped by org"
        );
    }
}
