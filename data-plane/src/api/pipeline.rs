//! The one inference pipeline every skin runs: authenticate, parse, resolve the model, try
//! its endpoints, then relay the answer (JSON or SSE) with Switchyard's id, the served
//! model, the cost, and exactly one usage record handed to the meter.

use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName};
use axum::response::Response;

use super::auth;
use super::relay;
use super::response_cache;
use super::route;
use super::skin::Skin;
use crate::error::ApiError;
use crate::providers::Reply;
use crate::state::AppState;

pub async fn run<S: Skin>(state: AppState, headers: HeaderMap, body: Bytes, skin: S) -> Response {
    // One OTel span per generation (GenAI conventions); it ends when the answer is metered.
    let span = crate::telemetry::otel::generation_span(crate::telemetry::otel::operation_for_api(
        skin.api(),
    ));
    match tracing::Instrument::instrument(serve(&state, &headers, &body, &skin), span).await {
        Ok(response) => response,
        Err(err) => skin.error_response(err),
    }
}

async fn serve<S: Skin>(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    skin: &S,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let snapshot = state.snapshot()?;
    let key = auth::inference_key(&snapshot, headers, crate::unix_now_ms())?;
    // Nothing is served that could not be billed: refused while the spool is at its cap.
    state.meter.admit()?;
    let mut request = skin.parse(body)?;
    crate::telemetry::otel::record_request(
        crate::telemetry::otel::operation_for_api(skin.api()),
        request.model(),
        request.stream,
    );
    let tags = std::sync::Arc::new(super::usage_tags::collect(headers, &request.extra)?);
    // Guardrails see the canonical request, so every skin is covered by the same rules.
    let screened =
        crate::guardrails::apply(&key.guardrails, &mut request).map_err(ApiError::Guardrail)?;
    if !screened.is_clean() {
        tracing::info!(key = %key.hash, redactions = ?screened.redactions, flags = ?screened.flags, "guardrails applied");
    }
    let catalog = snapshot
        .org(&key.org_id)
        .ok_or_else(|| ApiError::Internal("key without org".into()))?;
    const STRICT: HeaderName = HeaderName::from_static("x-switchyard-strict");
    let strict = headers
        .get(&STRICT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let finishing = relay::Finishing {
        strict,
        heal_json: super::healing::requested(&request.extra, request.stream),
    };

    // Caching: the org's policy, the conversation (sticky routing, statistics, the
    // dynamic-prompt warning), then the response cache right before routing.
    let cache_policy = catalog
        .routing_policy
        .as_ref()
        .and_then(|p| p.cache.as_ref());
    request.auto_cache_breakpoints = cache_policy.is_some_and(|p| p.auto_breakpoints);
    let cache_mode = crate::cache::CacheMode::from_request(headers, cache_policy)?;
    let conversation = crate::routing::sticky::Conversation::of(
        &key.org_id,
        &request,
        headers
            .get(&super::usage_tags::SESSION_HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let warning = match &conversation {
        Some(c) => {
            state
                .prompt_watch
                .observe(
                    // Per key: unrelated callers may share an auto-named conversation.
                    &format!("{}\n{}", key.hash, c.id),
                    &response_cache::system_prompt(&request),
                )
                .await
        }
        None => None,
    };
    let before = response_cache::before(
        cache_mode,
        response_cache::HitContext {
            state,
            key: &key,
            catalog,
            request: &request,
            config_version: snapshot.version,
            started,
            api: skin.api(),
            tags: tags.clone(),
            conversation: conversation.as_ref(),
        },
        skin,
        finishing,
    )
    .await;
    let (filling, status) = match before {
        response_cache::Before::Hit(mut response) => {
            response_cache::annotate(response.headers_mut(), None, warning.as_deref());
            return Ok(response);
        }
        response_cache::Before::Miss(filling) => (Some(filling), Some("MISS")),
        response_cache::Before::Skip(status) => (None, status),
    };

    let (reply, meter) = route::route(route::Generation {
        state,
        request: &request,
        key,
        catalog,
        config_version: snapshot.version,
        started,
        api: skin.api(),
        located: S::RENDERS_CANONICAL,
        tags,
        conversation: conversation.as_ref(),
    })
    .await?;
    let reply = match filling {
        Some(filling) => filling.fill(state, reply, &meter.model.id, &meter.endpoint.id),
        None => reply,
    };
    let mut response = match reply {
        Reply::Complete(completion) => relay::complete(completion, meter, skin, finishing),
        Reply::Stream(chunks) => relay::stream(chunks, meter, skin),
    };
    response_cache::annotate(response.headers_mut(), status, warning.as_deref());
    Ok(response)
}
