//! The `usage` object clients receive, OpenRouter-shaped, with `cost` in USD.

use serde_json::{Value, json};
use switchyard_proto::UsageDims;

use super::usage_record::Charge;

/// `cost` is what the ledger takes (provider cost plus the org's platform fee);
/// `cost_details` shows the two parts, as `/api/v1/generation` does.
pub fn client_usage(dims: &UsageDims, charge: Charge) -> Value {
    json!({
        "prompt_tokens": dims.input_tokens,
        "completion_tokens": dims.output_tokens,
        "total_tokens": dims.input_tokens + dims.output_tokens,
        "cost": charge.total().as_usd_f64(),
        "is_byok": false,
        "prompt_tokens_details": {
            "cached_tokens": dims.cache_read_tokens,
            "cache_write_tokens": dims.cache_write_5m_tokens + dims.cache_write_1h_tokens,
        },
        "completion_tokens_details": { "reasoning_tokens": dims.reasoning_tokens },
        "cost_details": {
            "upstream_inference_cost": null,
            "provider_cost": charge.provider.as_usd_f64(),
            "platform_fee": charge.fee.as_usd_f64(),
            "provider_cost_nanos": charge.provider.nanos(),
            "platform_fee_nanos": charge.fee.nanos(),
        },
    })
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
