//! The response cache in the pipeline: looked up right before routing (a hit never reaches
//! a provider), filled from successful answers after it, and replayed through the same
//! relay as live answers — so a hit gets a new generation id, its skin's shape, a stream
//! when the client asked for one, and exactly one (free) usage record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use futures_util::Stream;
use switchyard_proto::GenerationId;

use super::relay;
use super::skin::Skin;
use super::usage_record::Metering;
use crate::cache::{
    CacheKey, CacheMode, CachedAnswer, CachedBody, Flight, Lookup, UsageMarks, cacheable_completion,
};
use crate::chat_request::{ChatRequest, Message};
use crate::providers::{ChunkStream, Completion, Reply};
use crate::routing::sticky::Conversation;
use crate::snapshot::{KeyEntry, OrgCatalog};
use crate::state::AppState;

pub const STATUS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-cache-status");
pub const WARNING_HEADER: HeaderName = HeaderName::from_static("x-switchyard-cache-warning");

/// What the cache decided before routing.
pub enum Before {
    /// Served from the cache.
    Hit(Response),
    /// Not cached: route, then hand the reply to `Filling::fill`.
    Miss(Filling),
    /// Caching off for this request; `Some("BYPASS")` when the client opted out.
    Skip(Option<&'static str>),
}

/// A miss that will store the answer (if this request leads its flight).
pub struct Filling {
    key: CacheKey,
    ttl: Duration,
    flight: Option<Flight>,
}

/// What a hit needs to replay an answer as a new generation.
pub struct HitContext<'a> {
    pub state: &'a AppState,
    pub key: &'a Arc<KeyEntry>,
    pub catalog: &'a OrgCatalog,
    pub request: &'a ChatRequest,
    pub config_version: u64,
    pub started: Instant,
    pub api: &'static str,
    pub tags: Arc<super::usage_tags::RequestTags>,
    pub conversation: Option<&'a Conversation>,
}

pub async fn before<S: Skin>(
    mode: CacheMode,
    ctx: HitContext<'_>,
    skin: &S,
    finishing: relay::Finishing,
) -> Before {
    let ttl = match mode {
        CacheMode::Off => return Before::Skip(None),
        CacheMode::Bypass => return Before::Skip(Some("BYPASS")),
        CacheMode::Use { ttl } => ttl,
    };
    let key = CacheKey::of(&ctx.key.hash, ctx.api, ctx.request);
    let flight = match ctx.state.response_cache.lookup(&key).await {
        Lookup::Miss(flight) => flight,
        Lookup::Hit(answer) => match replay(&answer, &ctx, skin, finishing) {
            Some(response) => return Before::Hit(response),
            // The model or endpoint left the catalog: answer afresh (and re-cache).
            None => None,
        },
    };
    Before::Miss(Filling { key, ttl, flight })
}

/// The cached answer as a new, free generation; `None` if its endpoint is gone.
fn replay<S: Skin>(
    answer: &CachedAnswer,
    ctx: &HitContext<'_>,
    skin: &S,
    finishing: relay::Finishing,
) -> Option<Response> {
    let model = ctx.catalog.model(&answer.model)?.clone();
    let endpoint = model
        .endpoints
        .iter()
        .find(|e| e.id == answer.endpoint_id)?
        .clone();
    let prompt_chars = ctx
        .request
        .conversation()
        .iter()
        .map(Message::text_len)
        .sum();
    let meter = Metering {
        state: ctx.state.clone(),
        generation: GenerationId::new(),
        key: ctx.key.clone(),
        model,
        endpoint,
        config_version: ctx.config_version,
        started: ctx.started,
        started_at_ms: crate::unix_now_ms(),
        streamed: ctx.request.stream,
        prompt_chars,
        api: ctx.api,
        permit: None,
        earlier_attempts: Vec::new(),
        capacity_slot: None,
        tags: ctx.tags.clone(),
        cache: UsageMarks {
            response_cache_hit: true,
            conversation_id: ctx.conversation.map(|c| c.id.clone()).unwrap_or_default(),
            sticky_fallback_reason: String::new(),
        },
    };
    let mut response = match &answer.body {
        CachedBody::Complete(value) => {
            relay::complete(value.clone().into(), meter, skin, finishing)
        }
        CachedBody::Stream(chunks) => {
            let chunks: ChunkStream = Box::pin(futures_util::stream::iter(
                chunks.clone().into_iter().map(|chunk| Ok(chunk.into())),
            ));
            relay::stream(chunks, meter, skin)
        }
    };
    let headers = response.headers_mut();
    headers.insert(STATUS_HEADER, HeaderValue::from_static("HIT"));
    headers.insert(
        axum::http::header::AGE,
        HeaderValue::from(answer.age_secs(crate::unix_now_ms())),
    );
    Some(response)
}

impl Filling {
    /// Passes the reply on, storing it when it completes successfully. A whole answer is
    /// stored at once; a stream is recorded as it is relayed and stored when it ends
    /// cleanly (a failed or cancelled stream is not cached). Waiting identical requests are
    /// released once the answer is stored, or as soon as it is clear there is none.
    pub fn fill(self, state: &AppState, reply: Reply, model: &str, endpoint_id: &str) -> Reply {
        let now = crate::unix_now_ms();
        let answer = |body| CachedAnswer {
            model: model.to_owned(),
            endpoint_id: endpoint_id.to_owned(),
            stored_at_ms: now,
            expires_at_ms: now + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX),
            body,
        };
        match reply {
            Reply::Complete(completion) => {
                let value = completion.into_value();
                if cacheable_completion(&value) {
                    let answer = answer(CachedBody::Complete(value.clone()));
                    let cache = state.response_cache.clone();
                    let (key, flight) = (self.key, self.flight);
                    state.tracker.spawn(async move {
                        cache.put(&key, answer).await;
                        drop(flight);
                    });
                }
                Reply::Complete(value.into())
            }
            Reply::Stream(inner) => Reply::Stream(Box::pin(Recorder {
                inner,
                chunks: Vec::new(),
                pending: Some((
                    self.key,
                    self.flight,
                    answer(CachedBody::Stream(Vec::new())),
                )),
                state: state.clone(),
            })),
        }
    }
}

/// Relays a stream unchanged while keeping a copy of every chunk for the cache.
struct Recorder {
    inner: ChunkStream,
    chunks: Vec<Completion>,
    pending: Option<(CacheKey, Option<Flight>, CachedAnswer)>,
    state: AppState,
}

impl Stream for Recorder {
    type Item = Result<Completion, crate::error::ApiError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(chunk))) => {
                let chunk = chunk.clone();
                self.chunks.push(chunk);
            }
            // A failed stream is not an answer to cache; dropping `pending` releases waiters.
            std::task::Poll::Ready(Some(Err(_))) => self.pending = None,
            std::task::Poll::Ready(None) => {
                if let Some((key, flight, mut answer)) = self.pending.take() {
                    let chunks = std::mem::take(&mut self.chunks);
                    answer.body = CachedBody::Stream(
                        chunks.into_iter().map(Completion::into_value).collect(),
                    );
                    let cache = self.state.response_cache.clone();
                    self.state.tracker.spawn(async move {
                        cache.put(&key, answer).await;
                        drop(flight);
                    });
                }
            }
            std::task::Poll::Pending => {}
        }
        polled
    }
}

/// Adds the cache status and the dynamic-prompt warning to a live answer.
pub fn annotate(headers: &mut HeaderMap, status: Option<&'static str>, warning: Option<&str>) {
    if let Some(status) = status {
        headers.insert(STATUS_HEADER, HeaderValue::from_static(status));
    }
    if let Some(value) = warning.and_then(|w| HeaderValue::from_str(w).ok()) {
        headers.insert(WARNING_HEADER, value);
    }
}

/// The text of the system and developer messages, which provider caches put first.
pub fn system_prompt(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .flatten()
        .filter(|m| matches!(m.role.as_str(), "system" | "developer"))
        .map(crate::chat_request::Message::text)
        .collect::<Vec<_>>()
        .join("\n")
}
