//! `POST /api/v1/chat/completions`: authenticate, resolve the model, try its endpoints in
//! order until one answers, then relay the answer (JSON or SSE) with Switchyard's id, the
//! served model, the cost, and exactly one usage record handed to the meter.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_proto::{GenerationId, Money, UsageDims, pb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::auth;
use super::usage_json::{client_usage, estimate_tokens, normalize_finish_reason};
use crate::chat_request::ChatRequest;
use crate::error::ApiError;
use crate::providers::{ChunkStream, Reply, openai};
use crate::snapshot::{EndpointEntry, KeyEntry, ModelEntry};
use crate::state::AppState;

const KEEPALIVE: &[u8] = b": SWITCHYARD PROCESSING\n\n";
const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);

pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let snapshot = state.snapshot()?;
    let key = auth::inference_key(&snapshot, &headers, crate::unix_now_ms())?;
    let request = ChatRequest::parse(&body)?;
    let catalog = snapshot
        .org(&key.org_id)
        .ok_or_else(|| ApiError::Internal("key without org".into()))?;
    let model = catalog
        .model(request.model())
        .cloned()
        .ok_or_else(|| ApiError::ModelNotFound {
            model: request.model().to_owned(),
        })?;
    if model.endpoints.is_empty() {
        return Err(ApiError::NoEndpoints {
            model: model.id.clone(),
            reason: "the model has no endpoints configured".into(),
        });
    }

    let generation = GenerationId::new();
    let mut last_error = None;
    for (attempt, endpoint) in model.endpoints.iter().enumerate() {
        let meter = Metering {
            state: state.clone(),
            generation,
            key: key.clone(),
            model: model.clone(),
            endpoint: endpoint.clone(),
            config_version: snapshot.version,
            started,
            started_at_ms: crate::unix_now_ms(),
            streamed: request.stream,
            prompt_chars: request.conversation().iter().map(|m| m.text().len()).sum(),
        };
        match state.upstream.send(&request, endpoint, &model.id).await {
            Ok(Reply::Complete(value)) => return Ok(complete(value, meter)),
            Ok(Reply::Stream(chunks)) => return Ok(stream(chunks, meter)),
            Err(err) => {
                let retry = matches!(&err, ApiError::Upstream(f) if openai::is_retryable(f))
                    && attempt + 1 < model.endpoints.len();
                tracing::warn!(generation = %generation, provider = %endpoint.provider.slug, error = %err, retry, "upstream attempt failed");
                if !retry {
                    meter.record_failure(&err);
                    return Err(err);
                }
                last_error = Some(err);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| ApiError::Internal("no attempt was made".into())))
}

/// Everything needed to write the one usage record of a generation.
struct Metering {
    state: AppState,
    generation: GenerationId,
    key: Arc<KeyEntry>,
    model: Arc<ModelEntry>,
    endpoint: Arc<EndpointEntry>,
    config_version: u64,
    started: Instant,
    started_at_ms: i64,
    streamed: bool,
    prompt_chars: usize,
}

struct Outcome {
    dims: UsageDims,
    estimated: bool,
    cancelled: bool,
    finish_reason: String,
    native_finish_reason: String,
    http_status: u16,
    error_type: String,
    ttft: Option<Duration>,
    upstream_id: String,
}

impl Metering {
    fn cost(&self, dims: &UsageDims) -> Money {
        self.endpoint.prices.cost(dims)
    }

    fn record(&self, outcome: Outcome) {
        let cost = self.cost(&outcome.dims);
        let record = pb::UsageRecord {
            seq: 0,
            request_id: self.generation.uuid().to_string(),
            org_id: self.key.org_id.to_string(),
            key_hash: self.key.hash.clone(),
            model: self.model.id.clone(),
            endpoint_id: self.endpoint.id.clone(),
            provider_id: self.endpoint.provider.id.clone(),
            provider_slug: self.endpoint.provider.slug.clone(),
            upstream_model: self.endpoint.upstream_model.clone(),
            config_version: self.config_version,
            started_at_ms: self.started_at_ms,
            finished_at_ms: crate::unix_now_ms(),
            ttft_ms: outcome
                .ttft
                .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
            streamed: self.streamed,
            cancelled: outcome.cancelled,
            estimated: outcome.estimated,
            finish_reason: outcome.finish_reason,
            native_finish_reason: outcome.native_finish_reason,
            http_status: u32::from(outcome.http_status),
            error_type: outcome.error_type,
            usage: Some((&outcome.dims).into()),
            cost_nanos: cost.nanos(),
            upstream_id: outcome.upstream_id,
            api: "chat".into(),
            node_id: self.state.node_id.to_string(),
        };
        self.state.meter.record(record);
    }

    /// A request that reached a provider and failed before any output: recorded at zero
    /// cost so it shows in the request log, and billed nothing.
    fn record_failure(&self, err: &ApiError) {
        self.record(Outcome {
            dims: UsageDims::default(),
            estimated: false,
            cancelled: false,
            finish_reason: "error".into(),
            native_finish_reason: String::new(),
            http_status: err.status().as_u16(),
            error_type: err.error_type().into(),
            ttft: None,
            upstream_id: String::new(),
        });
    }

    fn estimate(&self, output_chars: usize) -> UsageDims {
        UsageDims {
            input_tokens: estimate_tokens(self.prompt_chars),
            output_tokens: estimate_tokens(output_chars),
            ..UsageDims::default()
        }
    }

    fn generation_header(&self) -> HeaderValue {
        HeaderValue::from_str(&self.generation.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("gen-invalid"))
    }
}

fn complete(mut value: Value, meter: Metering) -> Response {
    let reported = value.get("usage").and_then(openai::parse_usage);
    let content_chars = value
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map_or(0, str::len);
    let estimated = reported.is_none();
    let dims = reported.unwrap_or_else(|| meter.estimate(content_chars));
    let cost = meter.cost(&dims);
    let upstream_id = value
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let native = value
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();

    value["id"] = json!(meter.generation.to_string());
    value["model"] = json!(meter.model.id);
    value["provider"] = json!(meter.endpoint.provider.name);
    value["usage"] = client_usage(&dims, cost);
    if let Some(choices) = value.get_mut("choices").and_then(Value::as_array_mut) {
        for choice in choices {
            let native = choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if !native.is_empty() {
                choice["finish_reason"] = json!(normalize_finish_reason(&native));
            }
            choice["native_finish_reason"] = if native.is_empty() {
                Value::Null
            } else {
                json!(native)
            };
        }
    }

    meter.record(Outcome {
        dims,
        estimated,
        cancelled: false,
        finish_reason: normalize_finish_reason(&native).into(),
        native_finish_reason: native,
        http_status: 200,
        error_type: String::new(),
        ttft: Some(meter.started.elapsed()),
        upstream_id,
    });
    let mut response = axum::Json(value).into_response();
    response
        .headers_mut()
        .insert("x-generation-id", meter.generation_header());
    response
}

fn stream(chunks: ChunkStream, meter: Metering) -> Response {
    let generation = meter.generation_header();
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let tracker = meter.state.tracker.clone();
    tracker.spawn(relay(chunks, meter, tx));
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert("x-generation-id", generation);
    response
}

fn sse(value: &Value) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serialising a Value cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Relays upstream chunks to the client as they arrive. Ends with exactly one usage chunk
/// and `[DONE]`; an upstream failure after the first byte becomes an error chunk with
/// `finish_reason: "error"`. If the client goes away, the upstream stream is dropped (which
/// cancels the provider request) and what was generated is still metered.
async fn relay(mut chunks: ChunkStream, meter: Metering, tx: mpsc::Sender<Bytes>) {
    let id = meter.generation.to_string();
    let mut reported: Option<UsageDims> = None;
    let mut native_finish = String::new();
    let mut output_chars = 0usize;
    let mut ttft = None;
    let mut upstream_id = String::new();
    let mut failure: Option<ApiError> = None;
    let mut created = Value::Null;
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + KEEPALIVE_EVERY,
        KEEPALIVE_EVERY,
    );

    let cancelled = loop {
        let next = tokio::select! {
            biased;
            next = chunks.next() => next,
            _ = keepalive.tick() => {
                if tx.send(Bytes::from_static(KEEPALIVE)).await.is_err() { break true; }
                continue;
            }
        };
        let mut chunk = match next {
            None => break false,
            Some(Ok(chunk)) => chunk,
            Some(Err(err)) => {
                failure = Some(err);
                break false;
            }
        };
        keepalive.reset();
        if let Some(dims) = chunk.get("usage").and_then(openai::parse_usage) {
            reported = Some(dims);
        }
        if upstream_id.is_empty()
            && let Some(uid) = chunk.get("id").and_then(Value::as_str)
        {
            upstream_id = uid.to_owned();
        }
        if created.is_null() {
            created = chunk.get("created").cloned().unwrap_or(Value::Null);
        }
        let choices = chunk.get_mut("choices").and_then(Value::as_array_mut);
        let Some(choices) = choices.filter(|c| !c.is_empty()) else {
            // A usage-only chunk: the gateway sends its own, with the cost, at the end.
            continue;
        };
        for choice in choices.iter_mut() {
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
                output_chars += text.len();
                if ttft.is_none() && !text.is_empty() {
                    ttft = Some(meter.started.elapsed());
                }
            }
            let native = choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(native) = native {
                choice["finish_reason"] = json!(normalize_finish_reason(&native));
                choice["native_finish_reason"] = json!(native);
                native_finish = native;
            }
        }
        if let Some(obj) = chunk.as_object_mut() {
            obj.remove("usage");
            obj.insert("id".into(), json!(id));
            obj.insert("model".into(), json!(meter.model.id));
            obj.insert("provider".into(), json!(meter.endpoint.provider.name));
        }
        if tx.send(sse(&chunk)).await.is_err() {
            break true;
        }
    };
    // Dropping the upstream stream closes its connection, which cancels generation.
    drop(chunks);

    let estimated = reported.is_none();
    let dims = reported.unwrap_or_else(|| meter.estimate(output_chars));
    let cost = meter.cost(&dims);
    if !cancelled {
        if let Some(err) = &failure {
            let error_chunk = json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": meter.model.id,
                "provider": meter.endpoint.provider.name, "error": err.error_object(),
                "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": native_finish}],
            });
            let _ = tx.send(sse(&error_chunk)).await;
        }
        let usage_chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": meter.model.id,
            "provider": meter.endpoint.provider.name, "choices": [], "usage": client_usage(&dims, cost),
        });
        let _ = tx.send(sse(&usage_chunk)).await;
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    }

    let (finish_reason, error_type, status) = match &failure {
        Some(err) => (
            "error".to_owned(),
            err.error_type().to_owned(),
            err.status().as_u16(),
        ),
        None if cancelled => ("cancelled".to_owned(), String::new(), 499),
        None => (
            normalize_finish_reason(&native_finish).to_owned(),
            String::new(),
            200,
        ),
    };
    meter.record(Outcome {
        dims,
        estimated,
        cancelled,
        finish_reason,
        native_finish_reason: native_finish,
        http_status: status,
        error_type,
        ttft,
        upstream_id,
    });
}
