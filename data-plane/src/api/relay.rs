//! Turns a provider's canonical answer into the client's: Switchyard's id, model and
//! provider stamped on, finish reasons normalised, the cost settled, exactly one usage
//! record written. Streams are relayed chunk by chunk through the skin's encoder, with
//! keep-alives while the provider is quiet and cancellation when the client goes away.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_proto::UsageDims;

use super::skin::{Skin, StreamContext, StreamEncoder};
use super::usage_json::{ClientUsage, client_usage, normalize_finish_reason};
use super::usage_record::{Metering, Outcome};
use crate::error::{ApiError, UpstreamFailure, known_error_type};
use crate::providers::openai_answer::{OpenAiAnswer, Stamp};
use crate::providers::{ChunkStream, Completion, openai};

const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);

/// Normalises a choice's finish reason in place and returns the provider's own value.
/// Adapters for formats whose values differ from OpenAI's set `native_finish_reason`
/// themselves; for OpenAI-format providers the finish reason is the native one.
fn normalize_choice(choice: &mut Value) -> Option<String> {
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)?
        .to_owned();
    let native = choice
        .get("native_finish_reason")
        .and_then(Value::as_str)
        .map_or_else(|| finish.clone(), str::to_owned);
    choice["finish_reason"] = json!(normalize_finish_reason(&finish));
    choice["native_finish_reason"] = json!(native);
    Some(native)
}

/// Characters of generated output in a delta (text, reasoning, tool-call arguments), for
/// estimating usage when the provider never reports it.
fn produced_chars(delta: Option<&Value>) -> usize {
    let Some(delta) = delta else { return 0 };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map_or(0, str::len);
    let arguments: usize = delta
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| text(c.pointer("/function/arguments")))
        .sum();
    text(delta.get("content")) + text(delta.get("reasoning")) + arguments
}

/// An error a provider reported inside a 200 answer: a top-level `error`, or a choice that
/// finished with `error`.
fn error_inside(value: &Value, provider: &str) -> Option<ApiError> {
    let choice = value.pointer("/choices/0");
    let error = value.get("error").filter(|e| e.is_object()).or_else(|| {
        choice
            .and_then(|c| c.get("error"))
            .filter(|e| e.is_object())
    });
    let finished_with_error = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        == Some("error");
    if error.is_none() && !finished_with_error {
        return None;
    }
    let error = error.unwrap_or(&Value::Null);
    let status = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let error_type = error
        .pointer("/metadata/error_type")
        .and_then(Value::as_str)
        .and_then(known_error_type)
        .unwrap_or("provider_unavailable");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the answer ended with an error");
    Some(ApiError::Upstream(UpstreamFailure::new(
        status,
        error_type,
        provider,
        &format!("returned an error inside a 200 answer: {message}"),
    )))
}

/// What the client asked the gateway to do to a whole answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Finishing {
    /// `X-Switchyard-Strict: true`: an error the provider reported inside a 200 answer
    /// becomes the matching HTTP error, so SDK retry and fallback logic sees it; what was
    /// generated is billed either way.
    pub strict: bool,
    /// The `response-healing` plugin on a JSON-format request.
    pub heal_json: bool,
}

/// A whole answer, finished as the client asked.
pub fn complete<S: Skin>(
    completion: Completion,
    meter: Metering,
    skin: &S,
    finishing: Finishing,
) -> Response {
    if let Completion::OpenAi(answer) = &completion
        && S::RENDERS_CANONICAL
        && !finishing.heal_json
    {
        return complete_patched(answer, meter);
    }
    complete_value(completion.into_value(), meter, skin, finishing)
}

/// An OpenAI-format answer for an OpenAI-format client, patched (see `openai_answer`).
/// Answers with an error inside are never read this way, so `strict` has nothing to do.
fn complete_patched(answer: &OpenAiAnswer, meter: Metering) -> Response {
    let estimated = answer.usage.is_none();
    let dims = answer
        .usage
        .unwrap_or_else(|| meter.estimate(answer.content_chars()));
    let charge = meter.charge(&dims);
    let stamp = Stamp::new(
        &meter.generation.to_string(),
        &meter.model.id,
        &meter.endpoint.provider.name,
        normalize_finish_reason,
    );
    let body = answer.write(&stamp, Some(&ClientUsage::new(&dims, charge).to_json()));
    meter.record(Outcome {
        dims,
        estimated,
        cancelled: false,
        finish_reason: normalize_finish_reason(&answer.native_finish).into(),
        native_finish_reason: answer.native_finish.clone(),
        http_status: 200,
        error_type: String::new(),
        ttft: Some(meter.started.elapsed()),
        upstream_id: answer.upstream_id.clone(),
    });
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-generation-id", meter.generation_header());
    response
}

fn complete_value<S: Skin>(
    mut value: Value,
    meter: Metering,
    skin: &S,
    finishing: Finishing,
) -> Response {
    let inside = error_inside(&value, &meter.endpoint.provider.slug);
    let reported = value.get("usage").and_then(openai::parse_usage);
    let content_chars = value
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map_or(0, str::len);
    let estimated = reported.is_none();
    let dims = reported.unwrap_or_else(|| meter.estimate(content_chars));
    let charge = meter.charge(&dims);
    let upstream_id = value
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();

    value["id"] = json!(meter.generation.to_string());
    value["model"] = json!(meter.model.id);
    value["provider"] = json!(meter.endpoint.provider.name);
    value["usage"] = client_usage(&dims, charge);
    let mut native = String::new();
    if let Some(choices) = value.get_mut("choices").and_then(Value::as_array_mut) {
        for (i, choice) in choices.iter_mut().enumerate() {
            match normalize_choice(choice) {
                Some(n) if i == 0 => native = n,
                Some(_) => {}
                None => choice["native_finish_reason"] = Value::Null,
            }
        }
    }

    if finishing.heal_json {
        super::healing::heal_completion(&mut value);
    }
    let strict_error = inside.filter(|_| finishing.strict);
    meter.record(Outcome {
        dims,
        estimated,
        cancelled: false,
        finish_reason: normalize_finish_reason(&native).into(),
        native_finish_reason: native,
        http_status: strict_error.as_ref().map_or(200, |e| e.status().as_u16()),
        error_type: strict_error
            .as_ref()
            .map_or_else(String::new, |e| e.error_type().to_owned()),
        ttft: Some(meter.started.elapsed()),
        upstream_id,
    });
    let mut response = match strict_error {
        Some(err) => skin.error_response(err),
        None => axum::Json(skin.render(value)).into_response(),
    };
    response
        .headers_mut()
        .insert("x-generation-id", meter.generation_header());
    response
}

/// The client's streaming response. The body polls the provider's stream directly, with
/// no relay task in between: every task hand-off costs a wake-up per chunk, which was the
/// largest part of the per-chunk latency Switchyard added (`switchyard-bench`, streaming).
pub fn stream<S: Skin>(chunks: ChunkStream, meter: Metering, skin: &S) -> Response {
    let generation = meter.generation_header();
    let encoder = skin.encoder(StreamContext {
        id: meter.generation.to_string(),
        model: meter.model.id.clone(),
        provider: meter.endpoint.provider.name.clone(),
    });
    let relay = Relay::new(chunks, meter, encoder);
    let frames = futures_util::stream::unfold(relay, |mut relay| async move {
        let span = relay.span.clone();
        let bytes = tracing::Instrument::instrument(relay.next(), span).await?;
        Some((Ok::<_, Infallible>(bytes), relay))
    });
    let mut response = Response::new(Body::from_stream(frames));
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

/// One stream being relayed. The encoder ends the stream with exactly one usage report; an
/// upstream failure after the first byte becomes an error event. If the client goes away,
/// hyper drops the body and with it the relay: the upstream stream is dropped (which
/// cancels the provider request) and what was generated is still metered, by `Drop`.
struct Relay<E: StreamEncoder> {
    /// `None` once the upstream ended.
    chunks: Option<ChunkStream>,
    /// Taken when the usage record is written, exactly once.
    meter: Option<Metering>,
    encoder: E,
    /// The generation span: the stream ends (and is metered) inside it.
    span: tracing::Span,
    id: String,
    /// What every patched chunk is stamped with, encoded at the first.
    stamp: Option<Stamp>,
    started: bool,
    reported: Option<UsageDims>,
    native_finish: String,
    output_chars: usize,
    ttft: Option<Duration>,
    upstream_id: String,
    keepalive: tokio::time::Interval,
}

impl<E: StreamEncoder> Relay<E> {
    fn new(chunks: ChunkStream, meter: Metering, encoder: E) -> Self {
        Self {
            chunks: Some(chunks),
            id: meter.generation.to_string(),
            meter: Some(meter),
            encoder,
            span: tracing::Span::current(),
            stamp: None,
            started: false,
            reported: None,
            native_finish: String::new(),
            output_chars: 0,
            ttft: None,
            upstream_id: String::new(),
            keepalive: tokio::time::interval_at(
                tokio::time::Instant::now() + KEEPALIVE_EVERY,
                KEEPALIVE_EVERY,
            ),
        }
    }

    /// The next bytes for the client: the frames of one upstream chunk, a keep-alive, or the
    /// closing frames. `None` after the closing frames.
    async fn next(&mut self) -> Option<Bytes> {
        let mut frames = Vec::new();
        if !self.started {
            self.started = true;
            self.encoder.start(&mut frames);
            if !frames.is_empty() {
                return Some(concat(frames));
            }
        }
        loop {
            let chunks = self.chunks.as_mut()?;
            let next = tokio::select! {
                biased;
                next = chunks.next() => next,
                _ = self.keepalive.tick() => return Some(self.encoder.keepalive()),
            };
            let chunk = match next {
                None => return Some(self.finish(None)),
                Some(Ok(chunk)) => chunk,
                Some(Err(err)) => return Some(self.finish(Some(err))),
            };
            self.keepalive.reset();
            match chunk {
                Completion::OpenAi(answer) if E::PATCHES_OPENAI_CHUNKS => {
                    self.relay_patched(&answer, &mut frames);
                }
                chunk => self.relay_value(chunk.into_value(), &mut frames),
            }
            if !frames.is_empty() {
                return Some(concat(frames));
            }
        }
    }

    /// An OpenAI-format chunk for a client of the same format: metered from the located
    /// members and passed on as the provider's bytes with Switchyard's members written in.
    /// A usage-only chunk is held back (the encoder reports usage, with the cost, at the end).
    fn relay_patched(&mut self, chunk: &OpenAiAnswer, frames: &mut Vec<Bytes>) {
        if let Some(dims) = chunk.usage {
            self.reported = Some(dims);
        }
        if self.upstream_id.is_empty() {
            self.upstream_id.clone_from(&chunk.upstream_id);
        }
        if !chunk.has_choices() {
            return;
        }
        let produced = chunk.delta_chars();
        self.output_chars += produced;
        let Some(meter) = &self.meter else { return };
        if self.ttft.is_none() && produced > 0 {
            self.ttft = Some(meter.started.elapsed());
        }
        if let Some(native) = chunk.finishes().last() {
            native.clone_into(&mut self.native_finish);
        }
        let stamp = self.stamp.get_or_insert_with(|| {
            Stamp::new(
                &self.id,
                &meter.model.id,
                &meter.endpoint.provider.name,
                normalize_finish_reason,
            )
        });
        let json = chunk.write(stamp, None);
        self.encoder.openai_chunk(chunk, json, frames);
    }

    fn relay_value(&mut self, mut chunk: Value, frames: &mut Vec<Bytes>) {
        self.observe(&mut chunk);
        let has_choices = chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        if !has_choices {
            // A usage-only chunk: the encoder reports usage, with the cost, at the end.
            return;
        }
        if let Some(obj) = chunk.as_object_mut() {
            obj.remove("usage");
            obj.insert("id".into(), json!(self.id));
            if let Some(meter) = &self.meter {
                obj.insert("model".into(), json!(meter.model.id));
                obj.insert("provider".into(), json!(meter.endpoint.provider.name));
            }
        }
        self.encoder.chunk(&chunk, frames);
    }

    /// Takes usage, the upstream id, output size and time to first token from a chunk, and
    /// normalises its choices' finish reasons.
    fn observe(&mut self, chunk: &mut Value) {
        if let Some(dims) = chunk.get("usage").and_then(openai::parse_usage) {
            self.reported = Some(dims);
        }
        if self.upstream_id.is_empty()
            && let Some(uid) = chunk.get("id").and_then(Value::as_str)
        {
            self.upstream_id = uid.to_owned();
        }
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
            return;
        };
        for choice in choices.iter_mut() {
            let produced = produced_chars(choice.get("delta"));
            self.output_chars += produced;
            if self.ttft.is_none()
                && produced > 0
                && let Some(meter) = &self.meter
            {
                self.ttft = Some(meter.started.elapsed());
            }
            if let Some(native) = normalize_choice(choice) {
                self.native_finish = native;
            }
        }
    }

    /// The upstream ended or failed: writes the usage record and returns the closing frames
    /// (the error event if it failed, the usage report, the end marker).
    fn finish(&mut self, failure: Option<ApiError>) -> Bytes {
        // Dropping the upstream stream closes its connection.
        self.chunks = None;
        let mut frames = Vec::new();
        let Some(meter) = self.meter.take() else {
            return Bytes::new();
        };
        let (dims, charge) = self.settle(&meter);
        if let Some(err) = &failure {
            self.encoder.error(err, &self.native_finish, &mut frames);
        }
        self.encoder
            .usage(&client_usage(&dims, charge), &mut frames);
        self.encoder.end(&mut frames);
        let (finish_reason, error_type, status) = match &failure {
            Some(err) => (
                "error".to_owned(),
                err.error_type().to_owned(),
                err.status().as_u16(),
            ),
            None => (
                normalize_finish_reason(&self.native_finish).to_owned(),
                String::new(),
                200,
            ),
        };
        self.record(&meter, dims, false, finish_reason, error_type, status);
        concat(frames)
    }

    fn settle(&self, meter: &Metering) -> (UsageDims, super::usage_record::Charge) {
        let dims = self
            .reported
            .unwrap_or_else(|| meter.estimate(self.output_chars));
        let charge = meter.charge(&dims);
        (dims, charge)
    }

    fn record(
        &mut self,
        meter: &Metering,
        dims: UsageDims,
        cancelled: bool,
        finish_reason: String,
        error_type: String,
        http_status: u16,
    ) {
        meter.record(Outcome {
            dims,
            estimated: self.reported.is_none(),
            cancelled,
            finish_reason,
            native_finish_reason: std::mem::take(&mut self.native_finish),
            http_status,
            error_type,
            ttft: self.ttft,
            upstream_id: std::mem::take(&mut self.upstream_id),
        });
    }
}

impl<E: StreamEncoder> Drop for Relay<E> {
    /// The client went away (or the server dropped the connection) before the stream
    /// ended: the provider request is cancelled and what was generated is billed.
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(meter) = self.meter.take() {
            let span = self.span.clone();
            let _entered = span.enter();
            let (dims, _) = self.settle(&meter);
            self.record(&meter, dims, true, "cancelled".into(), String::new(), 499);
        }
    }
}

/// The frames of one step as one body chunk (one write instead of one per frame).
fn concat(mut frames: Vec<Bytes>) -> Bytes {
    if frames.len() == 1 {
        return frames.pop().unwrap_or_default();
    }
    let mut out = Vec::with_capacity(frames.iter().map(Bytes::len).sum());
    for frame in &frames {
        out.extend_from_slice(frame);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `relay_value` sends for a chunk, and what it meters from it.
    fn tree_path(chunk: &str) -> (Value, usize, Vec<String>) {
        let mut chunk: Value = serde_json::from_str(chunk).unwrap();
        let (mut chars, mut natives) = (0, Vec::new());
        for choice in chunk["choices"].as_array_mut().unwrap() {
            chars += produced_chars(choice.get("delta"));
            natives.extend(normalize_choice(choice));
            // The only intended difference: the patched path writes the native finish
            // reason of an unfinished choice as `null`, as OpenRouter's chunks carry it.
            if let Some(choice) = choice.as_object_mut() {
                choice.entry("native_finish_reason").or_insert(Value::Null);
            }
        }
        let object = chunk.as_object_mut().unwrap();
        object.remove("usage");
        object.insert("id".into(), json!("gen-1"));
        object.insert("model".into(), json!("acme/model"));
        object.insert("provider".into(), json!("Acme"));
        (chunk, chars, natives)
    }

    /// What `relay_patched` sends for the same chunk, and what it meters from it.
    fn patched_path(chunk: &str) -> (Value, usize, Vec<String>) {
        let answer = OpenAiAnswer::read(Bytes::copy_from_slice(chunk.as_bytes()))
            .expect("an OpenAI chunk takes the patched path");
        let stamp = Stamp::new("gen-1", "acme/model", "Acme", normalize_finish_reason);
        let json = answer.write(&stamp, None);
        let natives = answer.finishes().map(str::to_owned).collect();
        (
            serde_json::from_slice(&json).expect("valid JSON"),
            answer.delta_chars(),
            natives,
        )
    }

    #[test]
    fn streamed_chunks_patched_in_their_bytes_match_the_tree_path() {
        let chunks = [
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"gpt-x","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"gpt-x","choices":[{"index":0,"delta":{"content":"hé \"quoted\"\n\u00e9"},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"reasoning":"think","content":null}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":"}},{"index":1,"function":{"arguments":"1}"}},{"index":2},"odd"]}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"end_turn","native_finish_reason":"end_turn"},{"index":1,"delta":{"content":"x"},"finish_reason":"length"}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"last"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
        ];
        for chunk in chunks {
            assert_eq!(patched_path(chunk), tree_path(chunk), "{chunk}");
        }
    }

    #[test]
    fn a_usage_only_chunk_has_no_choices_and_its_usage_is_read() {
        let chunk = br#"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        let answer = OpenAiAnswer::read(Bytes::from_static(chunk)).unwrap();
        assert!(!answer.has_choices());
        let usage = answer.usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (3, 4));
        assert_eq!(answer.member("created"), None);
        let with_created = OpenAiAnswer::read(Bytes::from_static(br#"{"created":7,"choices":[]}"#));
        assert_eq!(with_created.unwrap().member("created"), Some(json!(7)));
    }
}
