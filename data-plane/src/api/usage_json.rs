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

impl ClientUsage {
    /// The same JSON as `Serialize` writes (a test holds the two together), without serde
    /// escaping every member name on the way: this runs for every answer.
    pub fn to_json(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, prefix: &str, value: impl Serialize) {
            out.extend_from_slice(prefix.as_bytes());
            // Numbers, booleans and null into a `Vec`: cannot fail.
            let _ = serde_json::to_writer(&mut *out, &value);
        }
        let (p, c, d) = (
            &self.prompt_tokens_details,
            &self.completion_tokens_details,
            &self.cost_details,
        );
        let mut out = Vec::with_capacity(384);
        field(&mut out, r#"{"prompt_tokens":"#, self.prompt_tokens);
        field(&mut out, r#","completion_tokens":"#, self.completion_tokens);
        field(&mut out, r#","total_tokens":"#, self.total_tokens);
        field(&mut out, r#","cost":"#, self.cost);
        field(&mut out, r#","is_byok":"#, self.is_byok);
        field(
            &mut out,
            r#","prompt_tokens_details":{"cached_tokens":"#,
            p.cached_tokens,
        );
        field(&mut out, r#","cache_write_tokens":"#, p.cache_write_tokens);
        field(
            &mut out,
            r#"},"completion_tokens_details":{"reasoning_tokens":"#,
            c.reasoning_tokens,
        );
        field(
            &mut out,
            r#"},"cost_details":{"upstream_inference_cost":"#,
            d.upstream_inference_cost,
        );
        field(&mut out, r#","provider_cost":"#, d.provider_cost);
        field(&mut out, r#","platform_fee":"#, d.platform_fee);
        field(
            &mut out,
            r#","provider_cost_nanos":"#,
            d.provider_cost_nanos,
        );
        field(&mut out, r#","platform_fee_nanos":"#, d.platform_fee_nanos);
        out.extend_from_slice(b"}}");
        out
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

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::Money;

    use crate::test_rng::Rng;

    #[test]
    fn written_usage_is_what_serde_writes() {
        let mut rng = Rng(0x5eed_0f05_a6e0);
        for _ in 0..2_000 {
            // Up to 2^40 and of every length: integers and costs of all magnitudes.
            let mut n = || (rng.next() >> 24) >> rng.below(40);
            let dims = UsageDims {
                input_tokens: n(),
                output_tokens: n(),
                cache_read_tokens: n(),
                cache_write_5m_tokens: n(),
                cache_write_1h_tokens: n(),
                reasoning_tokens: n(),
            };
            let charge = Charge {
                provider: Money::from_nanos(i64::try_from(n()).unwrap()),
                fee: Money::from_nanos(i64::try_from(n() >> 4).unwrap()),
            };
            let usage = ClientUsage::new(&dims, charge);
            let expected = serde_json::to_vec(&usage).unwrap();
            assert_eq!(
                String::from_utf8(usage.to_json()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
