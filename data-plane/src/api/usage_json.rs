//! The `usage` object clients receive, OpenRouter-shaped, with `cost` in USD.

use serde::Serialize;
use serde_json::Value;
use switchyard_proto::UsageDims;

use super::usage_record::Charge;

/// `cost` is what the ledger takes (provider cost plus the org's platform fee);
/// `cost_details` shows the two parts, as `/api/v1/generation` does.
pub fn client_usage(dims: &UsageDims, charge: Charge) -> Value {
    serde_json::to_value(ClientUsage::new(dims, charge)).unwrap_or(Value::Null)
}

/// The client `usage` object as a type, serialised straight into an answer's bytes.
#[derive(Debug, Serialize)]
pub struct ClientUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    cost: f64,
    is_byok: bool,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
    cost_details: CostDetails,
}

#[derive(Debug, Serialize)]
struct PromptDetails {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

#[derive(Debug, Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
}

#[derive(Debug, Serialize)]
struct CostDetails {
    upstream_inference_cost: Option<f64>,
    provider_cost: f64,
    platform_fee: f64,
    provider_cost_nanos: i64,
    platform_fee_nanos: i64,
}

impl ClientUsage {
    pub fn new(dims: &UsageDims, charge: Charge) -> Self {
        Self {
            prompt_tokens: dims.input_tokens,
            completion_tokens: dims.output_tokens,
            total_tokens: dims.input_tokens + dims.output_tokens,
            cost: charge.total().as_usd_f64(),
            is_byok: false,
            prompt_tokens_details: PromptDetails {
                cached_tokens: dims.cache_read_tokens,
                cache_write_tokens: dims.cache_write_5m_tokens + dims.cache_write_1h_tokens,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: dims.reasoning_tokens,
            },
            cost_details: CostDetails {
                upstream_inference_cost: None,
                provider_cost: charge.provider.as_usd_f64(),
                platform_fee: charge.fee.as_usd_f64(),
                provider_cost_nanos: charge.provider.nanos(),
                platform_fee_nanos: charge.fee.nanos(),
            },
        }
    }
}

/// OpenRouter's normalised finish reasons; the provider's own value goes to
/// `native_finish_reason`.
pub fn normalize_finish_reason(native: &str) -> &'static str {
    match native {
        "length" | "max_tokens" | "model_length" => "length",
        "tool_calls" | "function_call" | "tool_use" => "tool_calls",
        "content_filter" | "safety" | "refusal" => "content_filter",
        "error" => "error",
        _ => "stop",
    }
}

/// Rough token estimate (4 characters a token) for when a provider reports no usage.
pub fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}
