//! The cost a request is admitted with: its prompt as estimated from its characters, plus
//! its output bound (`max_tokens` / `max_completion_tokens`) or, without one, the org's
//! per-model default output estimate — never the model's whole maximum output, which would
//! refuse requests that fit the budget. Priced with the dearest endpoint the request may use.

use switchyard_proto::{PriceSheet, UsageDims};

/// Output tokens reserved when neither the request nor the org says otherwise.
pub const DEFAULT_OUTPUT_TOKENS: u32 = 1024;

pub fn estimate_cost<'a>(
    prices: impl IntoIterator<Item = &'a PriceSheet>,
    prompt_tokens: u64,
    output_tokens: u64,
) -> i64 {
    let usage = UsageDims {
        input_tokens: prompt_tokens,
        output_tokens,
        ..UsageDims::default()
    };
    prices
        .into_iter()
        .map(|p| p.cost(&usage).nanos())
        .max()
        .unwrap_or(0)
        .max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dearest_endpoint_prices_the_estimate() {
        let cheap = PriceSheet {
            input: 1_000_000_000,
            output: 2_000_000_000,
            ..PriceSheet::default()
        };
        let dear = PriceSheet {
            input: 3_000_000_000,
            output: 15_000_000_000,
            per_request_nanos: 7,
            ..PriceSheet::default()
        };
        // 1000 prompt tokens at $3/M + 100 output tokens at $15/M + 7 nano per request.
        assert_eq!(
            estimate_cost([&cheap, &dear], 1_000, 100),
            3_000_000 + 1_500_000 + 7
        );
        assert_eq!(estimate_cost([], 1_000, 100), 0);
    }
}
