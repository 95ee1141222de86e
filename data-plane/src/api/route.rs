//! Admission and routing for one generation: the key's and org's rate limits, then the
//! route plan (models[] fallbacks, provider preferences, health), then attempts in order
//! until one answers. Retries happen only before any byte reached the client, on failures
//! another endpoint might not have (connect errors, timeouts, 429, 5xx).

use std::sync::Arc;
use std::time::Instant;

use switchyard_proto::GenerationId;

use super::usage_json::estimate_tokens;
use super::usage_record::Metering;
use crate::chat_request::{ChatRequest, Message};
use crate::error::ApiError;
use crate::providers::{Reply, is_retryable};
use crate::routing::{self, Needs, ProviderPrefs, health::Availability};
use crate::snapshot::{KeyEntry, OrgCatalog};
use crate::state::AppState;

/// How long a request may queue for a slot of a saturated provider credential.
const CAPACITY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Parameters some endpoints do not honour; `require_parameters` checks these.
const OPTIONAL_PARAMETERS: &[&str] = &[
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning",
    "seed",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "top_k",
    "min_p",
    "top_a",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "temperature",
    "top_p",
    "structured_outputs",
];

fn parameters_sent(request: &ChatRequest) -> Vec<&'static str> {
    let mut sent: Vec<&'static str> = OPTIONAL_PARAMETERS
        .iter()
        .copied()
        .filter(|p| request.extra.get(*p).is_some_and(|v| !v.is_null()))
        .collect();
    if request
        .extra
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(|t| t.as_str())
        == Some("json_schema")
    {
        sent.push("structured_outputs");
    }
    let has_image = request.conversation().iter().any(|m| {
        m.content.as_array().is_some_and(|parts| {
            parts.iter().any(|p| {
                matches!(
                    p.get("type").and_then(|t| t.as_str()),
                    Some("image_url" | "input_image" | "image")
                )
            })
        })
    });
    if has_image {
        sent.push("vision");
    }
    if request.max_tokens.is_some() || request.max_completion_tokens.is_some() {
        sent.push("max_tokens");
    }
    sent
}

pub struct Generation<'a> {
    pub state: &'a AppState,
    pub request: &'a ChatRequest,
    pub key: Arc<KeyEntry>,
    pub catalog: &'a OrgCatalog,
    pub config_version: u64,
    pub started: Instant,
    pub api: &'static str,
    /// The skin takes an OpenAI-format provider's answers and chunks located, as bytes to
    /// patch (`Skin::RENDERS_CANONICAL`); other skins want them as trees.
    pub located: bool,
    pub tags: Arc<super::usage_tags::RequestTags>,
    /// The conversation, for prompt-cache-aware sticky routing and cache statistics.
    pub conversation: Option<&'a crate::routing::sticky::Conversation>,
}

pub async fn route(g: Generation<'_>) -> Result<(Reply, Metering), ApiError> {
    let state = g.state;
    let now = Instant::now();
    let prompt_chars: usize = g.request.conversation().iter().map(Message::text_len).sum();
    let estimated_prompt_tokens = estimate_tokens(prompt_chars);

    let permit = state
        .limiter
        .admit(
            &[
                ("key", &g.key.hash, g.key.rate_limits),
                ("org", &g.key.org_id, g.catalog.rate_limits),
            ],
            estimated_prompt_tokens,
            now,
        )
        .map_err(ApiError::RateLimited)?;
    let permit = Arc::new(permit);

    let mut prefs = ProviderPrefs::from_request(&g.request.extra)?;
    let mut requested = routing::requested_models(g.request.model(), &g.request.extra)?;
    if let Some(policy) = &g.catalog.routing_policy {
        prefs = prefs.with_org_policy(policy);
        for fallback in &policy.default_fallback_models {
            let r = routing::ModelRef::parse(fallback);
            if !requested.contains(&r) {
                requested.push(r);
            }
        }
    }
    let guardrails = g.key.guardrails.clone();
    let needs = Needs {
        provider_allowed: Some(Arc::new(move |p: &crate::snapshot::ProviderEntry| {
            guardrails.allows_provider(p)
        })),
        parameters: parameters_sent(g.request),
        estimated_prompt_tokens,
        max_output_tokens: g.request.max_completion_tokens.or(g.request.max_tokens),
    };
    let mut attempts = routing::plan(
        g.catalog,
        &requested,
        &prefs,
        &needs,
        &state.health,
        now,
        &mut rand::rng(),
    )
    .map_err(ApiError::NoRoute)?;
    // The endpoint holding this conversation's provider prompt cache goes first, unless the
    // client ordered the endpoints itself (`provider.order` or `provider.sort`).
    let client_ordered = g
        .request
        .extra
        .get("provider")
        .is_some_and(|p| p.get("order").is_some() || p.get("sort").is_some());
    if let Some(c) = g.conversation.filter(|_| !client_ordered) {
        state.sticky.sync_from_shared(c).await;
    }
    let sticky = g
        .conversation
        .filter(|_| !client_ordered)
        .map(|c| state.sticky.apply(c, &mut attempts, now))
        .unwrap_or_default();

    // Budget admission: the estimated cost is reserved against every budget that applies,
    // before any provider is called; the usage record settles the real cost.
    let reservation = crate::budget::admit(
        state,
        &g.key,
        &g.catalog.budgets,
        &g.tags.tags,
        g.request.max_completion_tokens.or(g.request.max_tokens),
        estimated_prompt_tokens,
        &attempts,
    )
    .await?;
    let generation = GenerationId::new();
    let budget_hold = crate::budget::HoldGuard::hold(&state.budgets, generation, reservation);
    let mut last_error = None;
    let mut earlier: Vec<switchyard_proto::pb::ProviderAttempt> = Vec::new();
    // A stream's provisional usage record, written before its first upstream request.
    let mut write_ahead: Option<super::usage_record::WriteAhead> = None;
    for (n, attempt) in attempts.iter().enumerate() {
        let endpoint = &attempt.endpoint;
        let last = n + 1 == attempts.len();
        // An ejected endpoint gets one half-open probe at a time; otherwise it is tried only
        // as the last resort.
        if attempt.degraded && !last {
            let probe = state.health.availability(&endpoint.id, Instant::now())
                == Availability::Probe
                && state.health.claim_probe(&endpoint.id);
            if !probe {
                continue;
            }
        }
        // A credential with limited capacity is shared fairly between orgs; waiting is
        // bounded, and a saturated pool moves on to the next endpoint.
        let capacity_slot = match &endpoint.provider.capacity_pool {
            None => None,
            Some((pool, capacity)) => {
                let granted = state
                    .fair
                    .acquire(
                        pool,
                        *capacity,
                        &g.key.org_id,
                        g.catalog.capacity_weight,
                        CAPACITY_WAIT,
                    )
                    .await;
                match granted {
                    Ok(slot) => Some(slot),
                    Err(saturated) => {
                        let err = ApiError::Upstream(crate::error::UpstreamFailure::new(
                            axum::http::StatusCode::TOO_MANY_REQUESTS,
                            "rate_limit_exceeded",
                            &endpoint.provider.slug,
                            &format!(
                                "is at its capacity of {} concurrent requests (waited {:?})",
                                saturated.capacity, saturated.waited
                            ),
                        ));
                        tracing::warn!(generation = %generation, provider = %endpoint.provider.slug, "provider capacity exhausted");
                        if last {
                            if let Some(w) = write_ahead.take() {
                                w.failed(&err);
                            }
                            return Err(err);
                        }
                        last_error = Some(err);
                        continue;
                    }
                }
            }
        };
        let meter = Metering {
            state: state.clone(),
            generation,
            key: g.key.clone(),
            model: attempt.model.clone(),
            endpoint: endpoint.clone(),
            config_version: g.config_version,
            started: g.started,
            started_at_ms: crate::unix_now_ms(),
            streamed: g.request.stream,
            prompt_chars,
            api: g.api,
            permit: Some(permit.clone()),
            earlier_attempts: earlier.clone(),
            capacity_slot,
            tags: g.tags.clone(),
            cache: crate::cache::UsageMarks {
                response_cache_hit: false,
                conversation_id: g.conversation.map(|c| c.id.clone()).unwrap_or_default(),
                sticky_fallback_reason: sticky.fallback_reason(&endpoint.id, &earlier),
            },
        };
        // Write-ahead before the provider sees the request, so a gateway killed while it
        // works still bills it; once per generation, whichever attempt goes first. Streams
        // only: a JSON answer is recorded as soon as it arrives (see `Metering::begin`).
        if g.request.stream && write_ahead.is_none() {
            write_ahead =
                Some(meter.begin(g.request.max_completion_tokens.or(g.request.max_tokens)));
        }
        let sent_at = Instant::now();
        match state
            .upstream
            .send(g.request, endpoint, &attempt.model.id, g.located)
            .await
        {
            Ok(reply) => {
                state
                    .health
                    .record_success(&endpoint.id, Instant::now(), Some(sent_at.elapsed()));
                if let Some(conversation) = g.conversation {
                    state
                        .sticky
                        .record(conversation, &endpoint.id, Instant::now());
                }
                budget_hold.disarm();
                if let Some(w) = write_ahead.take() {
                    w.superseded();
                }
                return Ok((reply, meter));
            }
            Err(err) => {
                let retryable = matches!(&err, ApiError::Upstream(f) if is_retryable(f));
                match &err {
                    // Rate limiting is the provider protecting itself, not an outage: honour
                    // its Retry-After by leaving the endpoint alone until then.
                    ApiError::Upstream(f) if f.error_type == "rate_limit_exceeded" => {
                        if let Some(secs) = f.retry_after_secs {
                            state.health.record_rate_limited(
                                &endpoint.id,
                                Instant::now(),
                                std::time::Duration::from_secs(secs),
                            );
                        }
                    }
                    _ if retryable => state.health.record_failure(&endpoint.id, Instant::now()),
                    _ => {}
                }
                tracing::warn!(generation = %generation, model = %attempt.model.id, provider = %endpoint.provider.slug, error = %err, retry = retryable && !last, "upstream attempt failed");
                if !retryable || last {
                    // Requests an adapter refused never reached a provider: nothing to meter,
                    // unless a stream's provisional record is waiting to be cleared.
                    if matches!(err, ApiError::Upstream(_)) {
                        meter.record_failure(&err);
                        if let Some(w) = write_ahead.take() {
                            w.superseded();
                        }
                    } else if let Some(w) = write_ahead.take() {
                        w.failed(&err);
                    }
                    return Err(err);
                }
                earlier.push(switchyard_proto::pb::ProviderAttempt {
                    model: attempt.model.id.clone(),
                    endpoint_id: endpoint.id.clone(),
                    provider_slug: endpoint.provider.slug.clone(),
                    status: u32::from(err.status().as_u16()),
                    error_type: err.error_type().to_owned(),
                    latency_ms: u32::try_from(sent_at.elapsed().as_millis()).unwrap_or(u32::MAX),
                });
                last_error = Some(err);
            }
        }
    }
    let err = last_error.unwrap_or_else(|| ApiError::Internal("no attempt was made".into()));
    if let Some(w) = write_ahead.take() {
        w.failed(&err);
    }
    Err(err)
}
