//! The one usage record of a generation: who asked, which endpoint served it, and what it
//! produced. Every request that reached a provider records exactly one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use switchyard_proto::{GenerationId, Money, UsageDims, pb};

use super::usage_json::estimate_tokens;
use crate::error::ApiError;
use crate::snapshot::{EndpointEntry, KeyEntry, ModelEntry};
use crate::state::AppState;

/// Everything needed to write the one usage record of a generation.
pub struct Metering {
    pub state: AppState,
    pub generation: GenerationId,
    pub key: Arc<KeyEntry>,
    pub model: Arc<ModelEntry>,
    pub endpoint: Arc<EndpointEntry>,
    pub config_version: u64,
    pub started: Instant,
    pub started_at_ms: i64,
    pub streamed: bool,
    pub prompt_chars: usize,
    /// The ingress skin, for the usage record's `api` label.
    pub api: &'static str,
    /// The rate-limit admission; its concurrency slots free when the last holder drops,
    /// and the tokens actually used are debited when the record is written.
    pub permit: Option<std::sync::Arc<crate::limits::Permit>>,
    /// Attempts that failed before this one, for the record's `provider_responses`.
    pub earlier_attempts: Vec<pb::ProviderAttempt>,
    /// The endpoint's share of its credential's capacity, held until the response ends.
    #[expect(dead_code, reason = "held only for its Drop, which frees the slot")]
    pub capacity_slot: Option<crate::fair::Slot>,
    /// Chargeback tags, end user and session of the request.
    pub tags: Arc<super::usage_tags::RequestTags>,
    /// Response-cache hit, conversation and sticky-routing facts for the record.
    pub cache: crate::cache::UsageMarks,
}

pub struct Outcome {
    pub dims: UsageDims,
    pub estimated: bool,
    pub cancelled: bool,
    pub finish_reason: String,
    pub native_finish_reason: String,
    pub http_status: u16,
    pub error_type: String,
    pub ttft: Option<Duration>,
    pub upstream_id: String,
}

/// What a generation costs the org: the provider cost (the usage record's `cost_nanos`) and
/// the org's platform fee on it, which the control plane posts as its own ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub provider: Money,
    pub fee: Money,
}

impl Charge {
    /// The control plane's rule (`billing::fees::fee_nanos`): `cost × bps / 10 000`,
    /// rounded down, capped at 100 %, so client, `/generation` and ledger agree to the nano.
    pub fn new(provider: Money, fee_bps: u32) -> Self {
        let (cost, bps) = (provider.nanos(), fee_bps.min(crate::snapshot::MAX_FEE_BPS));
        let fee = if cost <= 0 || bps == 0 {
            0
        } else {
            i64::try_from(i128::from(cost) * i128::from(bps) / 10_000).unwrap_or(i64::MAX)
        };
        Self {
            provider,
            fee: Money::from_nanos(fee),
        }
    }

    /// What the ledger takes in all: provider cost plus fee.
    pub fn total(self) -> Money {
        self.provider.saturating_add(self.fee)
    }
}

impl Metering {
    /// The provider cost and the org's platform fee of `dims`, as the client is shown them.
    pub fn charge(&self, dims: &UsageDims) -> Charge {
        // The snapshot current now: the control plane rates the fee with its setting at
        // ingest, so only a fee change racing this very request could make them differ.
        let bps = self
            .state
            .snapshot()
            .ok()
            .and_then(|s| s.org(&self.key.org_id).map(|o| o.platform_fee_bps))
            .unwrap_or(0);
        Charge::new(self.cost(dims), bps)
    }

    /// The provider cost alone: what the usage record, budgets and key limits count.
    pub fn cost(&self, dims: &UsageDims) -> Money {
        // A response-cache hit called no provider: it is free.
        if self.cache.response_cache_hit {
            return Money::ZERO;
        }
        self.endpoint.prices.cost(dims)
    }

    /// Write-ahead for streams: spools a provisional record of this generation (marked
    /// `provisional`, estimated usage) before its upstream request is sent, so a gateway
    /// killed while the provider works (before its first byte or mid-stream) still leaves
    /// a billable trace. The final record (`record`) supersedes it at the control plane,
    /// which settles a provisional record that never gets one as estimated after a grace
    /// period. The returned guard writes a zero-cost final record if routing ends without
    /// one (no attempt succeeded, or the client went away while waiting), so that a request
    /// that produced nothing is never billed by the sweeper.
    ///
    /// Only streams call this: a JSON answer is produced in one piece and recorded right
    /// after the provider returns it, so its window of loss is the same as a spool append
    /// and a write-ahead record would only double its metering cost.
    pub fn begin(&self, max_output_tokens: Option<u32>) -> WriteAhead {
        let dims = self.provisional_estimate(max_output_tokens);
        let mut record = self.usage_record(Outcome {
            dims,
            estimated: true,
            cancelled: false,
            // Shown only if the gateway died before the stream ended.
            finish_reason: "interrupted".into(),
            native_finish_reason: String::new(),
            http_status: 200,
            error_type: String::new(),
            ttft: None,
            upstream_id: String::new(),
        });
        record.provisional = true;
        // The guard's own copy: a clone per stream is cheaper than rebuilding the record's
        // identity (org, key, endpoint, tags) when it has to be cleared.
        let pending = record.clone();
        // No metrics, trace attributes, rate-limit or budget settlement: those follow the
        // final record, and doing them twice would double-count the generation.
        self.state.meter.record_provisional(record);
        WriteAhead {
            pending: Some(pending),
            meter: self.state.meter.clone(),
        }
    }

    /// What a stream that never finished is assumed to have used: the prompt estimate and
    /// the output tokens the budget reservation assumes (the request's `max_tokens`, else
    /// the org's per-model estimate), i.e. an upper estimate rather than zero.
    fn provisional_estimate(&self, max_output_tokens: Option<u32>) -> UsageDims {
        let output = self
            .state
            .snapshot()
            .ok()
            .and_then(|s| {
                s.org(&self.key.org_id)
                    .map(|o| o.budgets.output_tokens(&self.model.id, max_output_tokens))
            })
            .unwrap_or_else(|| max_output_tokens.unwrap_or(crate::budget::DEFAULT_OUTPUT_TOKENS));
        UsageDims {
            input_tokens: estimate_tokens(self.prompt_chars),
            output_tokens: u64::from(output),
            ..UsageDims::default()
        }
    }

    pub fn record(&self, outcome: Outcome) {
        let record = self.usage_record(outcome);
        if let Some(permit) = &self.permit {
            let tokens = outcome_tokens(&record);
            self.state
                .limiter
                .settle(permit, tokens, std::time::Instant::now());
        }
        // Settles the generation's budget reservation at its real provider cost: the control
        // plane measures budget spend as the sum of usage records' `cost_nanos`, which does
        // not include the platform fee, and lease accounting must match it.
        self.state
            .budgets
            .settle(self.generation, record.cost_nanos);
        self.state.meter.record(record);
    }

    fn usage_record(&self, outcome: Outcome) -> pb::UsageRecord {
        let cost = self.cost(&outcome.dims);
        pb::UsageRecord {
            seq: 0,
            request_id: self
                .generation
                .uuid()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .to_owned(),
            // `str::to_owned`, not `to_string`: through `Arc<str>`'s `Display` that formats.
            org_id: self.key.org_id.as_ref().to_owned(),
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
            error_type: outcome.error_type.clone(),
            // A response-cache hit consumed nothing from any provider; the client still sees
            // the original answer's token counts.
            usage: Some(if self.cache.response_cache_hit {
                pb::UsageDimensions::default()
            } else {
                (&outcome.dims).into()
            }),
            cost_nanos: cost.nanos(),
            upstream_id: outcome.upstream_id,
            api: self.api.into(),
            node_id: self.state.node_id.as_ref().to_owned(),
            provider_responses: {
                let mut attempts = self.earlier_attempts.clone();
                attempts.push(pb::ProviderAttempt {
                    model: self.model.id.clone(),
                    endpoint_id: self.endpoint.id.clone(),
                    provider_slug: self.endpoint.provider.slug.clone(),
                    status: u32::from(outcome.http_status),
                    error_type: outcome.error_type.clone(),
                    latency_ms: u32::try_from(self.started.elapsed().as_millis())
                        .unwrap_or(u32::MAX),
                });
                attempts
            },
            tags: self
                .tags
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            user: self.tags.user.clone(),
            session_id: self.tags.session_id.clone(),
            response_cache_hit: self.cache.response_cache_hit,
            conversation_id: self.cache.conversation_id.clone(),
            sticky_fallback_reason: self.cache.sticky_fallback_reason.clone(),
            provisional: false,
        }
    }

    /// A request that reached a provider and failed before any output: recorded at zero
    /// cost so it shows in the request log, and billed nothing.
    pub fn record_failure(&self, err: &ApiError) {
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

    pub fn estimate(&self, output_chars: usize) -> UsageDims {
        UsageDims {
            input_tokens: estimate_tokens(self.prompt_chars),
            output_tokens: estimate_tokens(output_chars),
            ..UsageDims::default()
        }
    }

    pub fn generation_header(&self) -> HeaderValue {
        HeaderValue::from_str(&self.generation.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("gen-invalid"))
    }
}

/// A stream's provisional record still waiting for its final one. Routing hands the final
/// over to the `Metering` of the attempt that answered (`superseded`), or clears the
/// provisional with a zero-cost final record (`failed`, or on drop when the client went
/// away): a generation no provider answered is billed nothing, exactly as before write-ahead.
#[must_use = "dropping it records the generation as cancelled"]
pub struct WriteAhead {
    pending: Option<pb::UsageRecord>,
    meter: crate::metering::meter::Meter,
}

impl WriteAhead {
    /// A `Metering` now owns the generation's final record (the answer's, or its failure).
    pub fn superseded(mut self) {
        self.pending = None;
    }

    /// Routing gave up with `err` without a `Metering` recording it.
    pub fn failed(mut self, err: &ApiError) {
        self.clear(err.status().as_u16(), err.error_type(), false);
    }

    fn clear(&mut self, http_status: u16, error_type: &str, cancelled: bool) {
        let Some(mut record) = self.pending.take() else {
            return;
        };
        record.provisional = false;
        record.estimated = false;
        record.cancelled = cancelled;
        record.finish_reason = if cancelled { "cancelled" } else { "error" }.into();
        record.http_status = u32::from(http_status);
        record.error_type = error_type.into();
        record.usage = Some(pb::UsageDimensions::default());
        record.cost_nanos = 0;
        record.finished_at_ms = crate::unix_now_ms();
        if let Some(last) = record.provider_responses.last_mut() {
            last.status = u32::from(http_status);
            last.error_type = error_type.into();
        }
        self.meter.record(record);
    }
}

impl Drop for WriteAhead {
    /// The route future was dropped while an upstream request was in flight: the client
    /// disconnected before any answer, which was never billed.
    fn drop(&mut self) {
        self.clear(499, "cancelled", true);
    }
}

fn outcome_tokens(record: &pb::UsageRecord) -> u64 {
    record
        .usage
        .as_ref()
        .map_or(0, |u| u.input_tokens + u.output_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_rounds_the_fee_down_like_the_ledger() {
        let c = Charge::new(Money::from_nanos(721_500), 550);
        assert_eq!(c.fee.nanos(), 39_682, "39 682.5 rounds down");
        assert_eq!(c.total().nanos(), 761_182);
        assert_eq!(
            Charge::new(Money::from_nanos(1_000_000), 0).fee,
            Money::ZERO
        );
        assert_eq!(Charge::new(Money::ZERO, 550).fee, Money::ZERO);
        assert_eq!(
            Charge::new(Money::from_nanos(100), 20_000).fee.nanos(),
            100,
            "capped at 100 %"
        );
        assert_eq!(
            Charge::new(Money::from_nanos(i64::MAX), 10_000)
                .total()
                .nanos(),
            i64::MAX
        );
    }
}
