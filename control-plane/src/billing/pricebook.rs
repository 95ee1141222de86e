//! The effective-dated price book: which prices were in effect when a generation started,
//! and what a generation costs under them. All money is integer nano-USD; the arithmetic is
//! `PriceSheet::cost`'s (i128 sums, one rounding).

use serde::Serialize;
use sqlx::FromRow;
use switchyard_proto::{Money, PriceSheet, UsageDims};

use crate::store::UsageRow;

/// One version of the prices of a model at one provider, in effect from `effective_from`
/// (unix ms) until the next version of the same model and provider.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct PriceVersion {
    pub id: String,
    pub org_id: String,
    pub model_id: String,
    pub provider_id: String,
    pub effective_from: i64,
    pub price_input: i64,
    pub price_output: i64,
    pub price_cache_read: i64,
    pub price_cache_write_5m: i64,
    pub price_cache_write_1h: i64,
    pub price_reasoning: Option<i64>,
    pub price_per_request: i64,
    pub long_context_threshold: i64,
    pub lc_price_input: i64,
    pub lc_price_output: i64,
    pub lc_price_cache_read: i64,
    pub lc_price_cache_write_5m: i64,
    pub lc_price_cache_write_1h: i64,
    pub lc_price_reasoning: Option<i64>,
    pub lc_price_per_request: i64,
    pub note: String,
    pub created_by: String,
    pub created_at: i64,
}

pub const PRICE_VERSION_COLUMNS: &str = "id, org_id, model_id, provider_id, effective_from, price_input, price_output, price_cache_read, price_cache_write_5m, price_cache_write_1h, price_reasoning, price_per_request, long_context_threshold, lc_price_input, lc_price_output, lc_price_cache_read, lc_price_cache_write_5m, lc_price_cache_write_1h, lc_price_reasoning, lc_price_per_request, note, created_by, created_at";

/// A long-context tier: prompts of more than `threshold` input tokens use `prices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongContext {
    pub threshold: i64,
    pub prices: PriceSheet,
}

impl PriceVersion {
    pub fn new(
        identity: VersionIdentity,
        base: &PriceSheet,
        long_context: Option<&LongContext>,
    ) -> Self {
        let lc = long_context.map(|l| l.prices).unwrap_or_default();
        Self {
            id: identity.id,
            org_id: identity.org_id,
            model_id: identity.model_id,
            provider_id: identity.provider_id,
            effective_from: identity.effective_from,
            price_input: base.input,
            price_output: base.output,
            price_cache_read: base.cache_read,
            price_cache_write_5m: base.cache_write_5m,
            price_cache_write_1h: base.cache_write_1h,
            price_reasoning: base.reasoning,
            price_per_request: base.per_request_nanos,
            long_context_threshold: long_context.map_or(0, |l| l.threshold),
            lc_price_input: lc.input,
            lc_price_output: lc.output,
            lc_price_cache_read: lc.cache_read,
            lc_price_cache_write_5m: lc.cache_write_5m,
            lc_price_cache_write_1h: lc.cache_write_1h,
            lc_price_reasoning: lc.reasoning,
            lc_price_per_request: lc.per_request_nanos,
            note: identity.note,
            created_by: identity.created_by,
            created_at: identity.created_at,
        }
    }

    pub fn base(&self) -> PriceSheet {
        PriceSheet {
            input: self.price_input,
            output: self.price_output,
            cache_read: self.price_cache_read,
            cache_write_5m: self.price_cache_write_5m,
            cache_write_1h: self.price_cache_write_1h,
            reasoning: self.price_reasoning,
            per_request_nanos: self.price_per_request,
        }
    }

    pub fn long_context(&self) -> Option<LongContext> {
        (self.long_context_threshold > 0).then_some(LongContext {
            threshold: self.long_context_threshold,
            prices: PriceSheet {
                input: self.lc_price_input,
                output: self.lc_price_output,
                cache_read: self.lc_price_cache_read,
                cache_write_5m: self.lc_price_cache_write_5m,
                cache_write_1h: self.lc_price_cache_write_1h,
                reasoning: self.lc_price_reasoning,
                per_request_nanos: self.lc_price_per_request,
            },
        })
    }

    /// The sheet a request is priced with: the whole request moves to the long-context
    /// prices once its prompt exceeds the threshold, as Anthropic and Google bill it.
    pub fn sheet_for(&self, usage: &UsageDims) -> PriceSheet {
        match self.long_context() {
            Some(lc) if usage.input_tokens > u64::try_from(lc.threshold).unwrap_or(u64::MAX) => {
                lc.prices
            }
            _ => self.base(),
        }
    }

    pub fn charge(&self, usage: &UsageDims, failed: bool) -> Money {
        self.sheet_for(usage).charge(usage, failed)
    }

    /// The same version restarted at another instant (for closing a corrected window).
    pub fn restarted(&self, identity: VersionIdentity) -> Self {
        Self::new(identity, &self.base(), self.long_context().as_ref())
    }
}

/// Who and what a new version is, apart from its prices.
#[derive(Debug, Clone)]
pub struct VersionIdentity {
    pub id: String,
    pub org_id: String,
    pub model_id: String,
    pub provider_id: String,
    pub effective_from: i64,
    pub note: String,
    pub created_by: String,
    pub created_at: i64,
}

/// The version in effect at `at`, from versions of one model and provider in any order.
pub fn in_effect(versions: &[PriceVersion], at: i64) -> Option<&PriceVersion> {
    versions
        .iter()
        .filter(|v| v.effective_from <= at)
        .max_by_key(|v| v.effective_from)
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub fn usage_dims(row: &UsageRow) -> UsageDims {
    UsageDims {
        input_tokens: as_u64(row.input_tokens),
        output_tokens: as_u64(row.output_tokens),
        cache_read_tokens: as_u64(row.cache_read_tokens),
        cache_write_5m_tokens: as_u64(row.cache_write_5m_tokens),
        cache_write_1h_tokens: as_u64(row.cache_write_1h_tokens),
        reasoning_tokens: as_u64(row.reasoning_tokens),
    }
}

/// What a stored generation costs under the versions given (`None`: no version covers it).
pub fn rate_row(row: &UsageRow, versions: &[PriceVersion]) -> Option<(Money, String)> {
    in_effect(versions, row.started_at).map(|v| {
        (
            v.charge(&usage_dims(row), row.finish_reason == "error"),
            v.id.clone(),
        )
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn identity(from: i64) -> VersionIdentity {
        VersionIdentity {
            id: format!("v{from}"),
            org_id: "o".into(),
            model_id: "m/x".into(),
            provider_id: "p".into(),
            effective_from: from,
            note: String::new(),
            created_by: String::new(),
            created_at: 0,
        }
    }

    fn sheet(input: i64, output: i64) -> PriceSheet {
        PriceSheet {
            input,
            output,
            ..PriceSheet::default()
        }
    }

    #[test]
    fn picks_the_latest_version_not_after_the_instant() {
        let versions = vec![
            PriceVersion::new(identity(100), &sheet(1, 1), None),
            PriceVersion::new(identity(0), &sheet(2, 2), None),
            PriceVersion::new(identity(200), &sheet(3, 3), None),
        ];
        assert!(in_effect(&versions, -1).is_none());
        assert_eq!(in_effect(&versions, 0).map(|v| v.price_input), Some(2));
        assert_eq!(in_effect(&versions, 199).map(|v| v.price_input), Some(1));
        assert_eq!(in_effect(&versions, 200).map(|v| v.price_input), Some(3));
    }

    #[test]
    fn long_context_tier_applies_strictly_above_the_threshold() {
        // $3 / $15 per M; above 200k prompt tokens $6 / $22.50 per M (Claude Sonnet's tiers).
        let v = PriceVersion::new(
            identity(0),
            &sheet(3_000_000_000, 15_000_000_000),
            Some(&LongContext {
                threshold: 200_000,
                prices: sheet(6_000_000_000, 22_500_000_000),
            }),
        );
        let at = |input| UsageDims {
            input_tokens: input,
            output_tokens: 1_000,
            ..UsageDims::default()
        };
        // 200_000 * 3 + 1_000 * 15 USD/M = 0.615 USD
        assert_eq!(
            v.charge(&at(200_000), false),
            Money::from_nanos(615_000_000)
        );
        // 200_001 * 6 + 1_000 * 22.5 USD/M = 1.2225060 USD
        assert_eq!(
            v.charge(&at(200_001), false),
            Money::from_nanos(1_222_506_000)
        );
    }

    #[test]
    fn cache_dimensions_are_priced_separately_in_each_tier() {
        let base = PriceSheet {
            input: 3_000_000_000,
            output: 15_000_000_000,
            cache_read: 300_000_000,
            cache_write_5m: 3_750_000_000,
            cache_write_1h: 6_000_000_000,
            reasoning: None,
            per_request_nanos: 0,
        };
        let v = PriceVersion::new(identity(0), &base, None);
        let usage = UsageDims {
            input_tokens: 10_000,
            cache_read_tokens: 4_000,
            cache_write_5m_tokens: 2_000,
            cache_write_1h_tokens: 1_000,
            output_tokens: 500,
            reasoning_tokens: 0,
        };
        // 3000*3 + 4000*0.3 + 2000*3.75 + 1000*6 + 500*15 = 31_200 USD/M → 0.0312 USD
        assert_eq!(v.charge(&usage, false), Money::from_nanos(31_200_000));
    }

    fn arb_sheet() -> impl Strategy<Value = PriceSheet> {
        let p = 0i64..200_000_000_000;
        (
            p.clone(),
            p.clone(),
            p.clone(),
            p.clone(),
            p.clone(),
            proptest::option::of(p),
            0i64..10_000_000,
        )
            .prop_map(|(i, o, cr, c5, c1, r, req)| PriceSheet {
                input: i,
                output: o,
                cache_read: cr,
                cache_write_5m: c5,
                cache_write_1h: c1,
                reasoning: r,
                per_request_nanos: req,
            })
    }

    fn arb_usage() -> impl Strategy<Value = UsageDims> {
        (
            0u64..2_000_000,
            0u64..200_000,
            0u64..1_000_000,
            0u64..1_000_000,
            0u64..1_000_000,
            0u64..200_000,
        )
            .prop_map(|(i, o, cr, c5, c1, r)| {
                // Cache reads and writes are subsets of the prompt, reasoning of the output.
                let cr = cr.min(i);
                let c5 = c5.min(i - cr);
                let c1 = c1.min(i - cr - c5);
                UsageDims {
                    input_tokens: i,
                    output_tokens: o,
                    cache_read_tokens: cr,
                    cache_write_5m_tokens: c5,
                    cache_write_1h_tokens: c1,
                    reasoning_tokens: r.min(o),
                }
            })
    }

    /// The cost computed independently, in i128 nano-USD × tokens, rounded once.
    fn reference_cost(p: &PriceSheet, u: &UsageDims) -> i128 {
        let t = |x: u64| i128::from(x);
        let plain_in = t(u.input_tokens)
            - t(u.cache_read_tokens)
            - t(u.cache_write_5m_tokens)
            - t(u.cache_write_1h_tokens);
        let plain_out = t(u.output_tokens) - t(u.reasoning_tokens);
        let micro = plain_in * i128::from(p.input)
            + t(u.cache_read_tokens) * i128::from(p.cache_read)
            + t(u.cache_write_5m_tokens) * i128::from(p.cache_write_5m)
            + t(u.cache_write_1h_tokens) * i128::from(p.cache_write_1h)
            + plain_out * i128::from(p.output)
            + t(u.reasoning_tokens) * i128::from(p.reasoning.unwrap_or(p.output));
        (micro + 500_000) / 1_000_000 + i128::from(p.per_request_nanos)
    }

    proptest! {
        #[test]
        fn cost_matches_an_independent_exact_computation(p in arb_sheet(), u in arb_usage()) {
            let v = PriceVersion::new(identity(0), &p, None);
            prop_assert_eq!(i128::from(v.charge(&u, false).nanos()), reference_cost(&p, &u));
        }

        #[test]
        fn cost_is_monotonic_in_every_dimension(p in arb_sheet(), u in arb_usage(), extra in 1u64..10_000) {
            let base = p.cost(&u);
            let more_output = UsageDims { output_tokens: u.output_tokens + extra, ..u };
            let more_input = UsageDims { input_tokens: u.input_tokens + extra, ..u };
            prop_assert!(p.cost(&more_output) >= base);
            prop_assert!(p.cost(&more_input) >= base);
        }

        #[test]
        fn rounding_error_is_below_one_nano_per_request(p in arb_sheet(), u in arb_usage()) {
            // The exact cost in 10^-15 USD (nano-USD × 10^-6): the charge is within half a nano.
            let exact_micro = (reference_cost(&p, &u) - i128::from(p.per_request_nanos)) * 1_000_000;
            let charged_micro = (i128::from(p.cost(&u).nanos()) - i128::from(p.per_request_nanos)) * 1_000_000;
            prop_assert!((charged_micro - exact_micro).abs() <= 500_000);
        }

        #[test]
        fn failed_requests_without_output_cost_nothing(p in arb_sheet(), u in arb_usage()) {
            let none = UsageDims { output_tokens: 0, reasoning_tokens: 0, ..u };
            let v = PriceVersion::new(identity(0), &p, None);
            prop_assert_eq!(v.charge(&none, true), Money::ZERO);
            prop_assert_eq!(v.charge(&u, false), p.cost(&u));
        }

        #[test]
        fn long_context_tier_is_all_or_nothing(
            p in arb_sheet(), lc in arb_sheet(), u in arb_usage(), threshold in 1i64..3_000_000,
        ) {
            let v = PriceVersion::new(identity(0), &p, Some(&LongContext { threshold, prices: lc }));
            let expected = if i128::from(u.input_tokens) > i128::from(threshold) { lc.cost(&u) } else { p.cost(&u) };
            prop_assert_eq!(v.charge(&u, false), expected);
        }

        #[test]
        fn the_version_in_effect_is_the_latest_started(
            froms in proptest::collection::btree_set(0i64..1_000, 1..8), at in 0i64..1_200,
        ) {
            let versions: Vec<PriceVersion> = froms.iter().map(|&f| PriceVersion::new(identity(f), &sheet(f, f), None)).collect();
            let expected = froms.iter().copied().filter(|&f| f <= at).max();
            prop_assert_eq!(in_effect(&versions, at).map(|v| v.effective_from), expected);
        }
    }
}
