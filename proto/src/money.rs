//! Money is an integer count of nano-USD. Prices are nano-USD per million tokens.
//! Intermediate products use `i128`; nothing here ever touches a float except the
//! final conversion for display in JSON.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

use serde::{Deserialize, Serialize};

use crate::pb;

const NANOS_PER_USD: i64 = 1_000_000_000;
const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;

/// An amount of nano-USD (10⁻⁹ USD).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    pub const fn nanos(self) -> i64 {
        self.0
    }

    pub const fn from_usd(usd: i64) -> Self {
        Self(usd.saturating_mul(NANOS_PER_USD))
    }

    /// For JSON fields that OpenRouter defines as a USD number.
    #[allow(clippy::cast_precision_loss)]
    pub fn as_usd_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_USD as f64
    }

    /// Parses a decimal USD amount ("1", "0.25", "12.000000001") exactly.
    pub fn parse_usd(text: &str) -> Result<Self, MoneyParseError> {
        parse_decimal_scaled(text, 9)
            .and_then(|v| i64::try_from(v).map_err(|_| MoneyParseError::OutOfRange))
            .map(Self)
    }

    /// From a JSON number of USD as clients send them (`"limit": 5.5`), rounded to the nano.
    pub fn from_usd_f64(usd: f64) -> Result<Self, MoneyParseError> {
        if !usd.is_finite() {
            return Err(MoneyParseError::Syntax);
        }
        // Going through the shortest decimal text keeps 0.1 as exactly 100_000_000 nanos.
        Self::parse_usd(&format!("{usd}")).or_else(|_| Self::parse_usd(&format!("{usd:.9}")))
    }

    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        self.saturating_add(rhs)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = self.saturating_add(rhs);
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

/// Formats as an exact USD decimal with trailing zeros trimmed: `$0.000001`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / NANOS_PER_USD as u64;
        let frac = abs % NANOS_PER_USD as u64;
        if frac == 0 {
            write!(f, "{sign}${whole}")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{sign}${whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyParseError {
    #[error("not a decimal number")]
    Syntax,
    #[error("more decimal places than the smallest unit allows")]
    TooPrecise,
    #[error("amount out of range")]
    OutOfRange,
}

/// Parses a non-exponent decimal into an integer scaled by 10^scale, exactly.
fn parse_decimal_scaled(text: &str, scale: u32) -> Result<i128, MoneyParseError> {
    let text = text.trim();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(MoneyParseError::Syntax);
    }
    if !whole
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(MoneyParseError::Syntax);
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale as usize {
        return Err(MoneyParseError::TooPrecise);
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| MoneyParseError::OutOfRange)?
    };
    let frac_value: i128 = if frac.is_empty() {
        0
    } else {
        let padded = format!("{frac:0<width$}", width = scale as usize);
        padded.parse().map_err(|_| MoneyParseError::OutOfRange)?
    };
    let value = whole
        .checked_mul(10i128.pow(scale))
        .and_then(|w| w.checked_add(frac_value))
        .ok_or(MoneyParseError::OutOfRange)?;
    Ok(if negative { -value } else { value })
}

/// Parses OpenRouter's per-token USD price strings ("0.00000015") into nano-USD per
/// million tokens, exactly: 15 decimal places are representable.
pub fn per_token_usd_to_nanos_per_mtok(text: &str) -> Result<i64, MoneyParseError> {
    let v = parse_decimal_scaled(text, 15)?;
    if v < 0 {
        return Err(MoneyParseError::OutOfRange);
    }
    i64::try_from(v).map_err(|_| MoneyParseError::OutOfRange)
}

/// Formats nano-USD per million tokens as OpenRouter's per-token USD string.
pub fn nanos_per_mtok_to_per_token_usd(nanos_per_mtok: i64) -> String {
    let scale: i64 = 1_000_000_000_000_000;
    let sign = if nanos_per_mtok < 0 { "-" } else { "" };
    let abs = nanos_per_mtok.unsigned_abs();
    let whole = abs / scale as u64;
    let frac = abs % scale as u64;
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let digits = format!("{frac:015}");
        format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Raw usage dimensions of one request. `input_tokens` counts every prompt token, cached
/// ones included; cache reads and writes are subsets of it. `reasoning_tokens` is a subset
/// of `output_tokens`. Keeping subsets explicit is what prevents double charging.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDims {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_5m_tokens: u64,
    pub cache_write_1h_tokens: u64,
    pub reasoning_tokens: u64,
}

/// Prices of one endpoint: nano-USD per million tokens, and nano-USD per request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceSheet {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write_5m: i64,
    pub cache_write_1h: i64,
    /// `None`: reasoning tokens cost the output price.
    pub reasoning: Option<i64>,
    pub per_request_nanos: i64,
}

impl PriceSheet {
    /// Cost of one request. Products are summed in `i128` and divided once, rounding half
    /// away from zero, so splitting usage across dimensions never loses nanos.
    pub fn cost(&self, usage: &UsageDims) -> Money {
        let cached = usage
            .cache_read_tokens
            .saturating_add(usage.cache_write_5m_tokens)
            .saturating_add(usage.cache_write_1h_tokens);
        let plain_input = usage.input_tokens.saturating_sub(cached);
        let reasoning = usage.reasoning_tokens.min(usage.output_tokens);
        let plain_output = usage.output_tokens - reasoning;
        let reasoning_price = self.reasoning.unwrap_or(self.output);

        let terms: [(u64, i64); 6] = [
            (plain_input, self.input),
            (usage.cache_read_tokens, self.cache_read),
            (usage.cache_write_5m_tokens, self.cache_write_5m),
            (usage.cache_write_1h_tokens, self.cache_write_1h),
            (plain_output, self.output),
            (reasoning, reasoning_price),
        ];
        let micro_total: i128 = terms
            .iter()
            .map(|&(tokens, price)| i128::from(tokens) * i128::from(price))
            .sum();
        let half = TOKENS_PER_PRICE_UNIT / 2;
        let rounded = if micro_total >= 0 {
            (micro_total + half) / TOKENS_PER_PRICE_UNIT
        } else {
            (micro_total - half) / TOKENS_PER_PRICE_UNIT
        };
        let total = rounded + i128::from(self.per_request_nanos);
        Money(i64::try_from(total).unwrap_or(if total > 0 { i64::MAX } else { i64::MIN }))
    }
}

impl PriceSheet {
    /// What a request is charged: its cost, except that a request which failed without
    /// producing any output is not charged at all (zero-completion insurance).
    pub fn charge(&self, usage: &UsageDims, failed: bool) -> Money {
        if failed && usage.output_tokens == 0 {
            Money::ZERO
        } else {
            self.cost(usage)
        }
    }
}

impl From<&pb::Prices> for PriceSheet {
    fn from(p: &pb::Prices) -> Self {
        Self {
            input: p.input,
            output: p.output,
            cache_read: p.cache_read,
            cache_write_5m: p.cache_write_5m,
            cache_write_1h: p.cache_write_1h,
            reasoning: (p.reasoning != 0).then_some(p.reasoning),
            per_request_nanos: p.per_request_nanos,
        }
    }
}

impl From<&PriceSheet> for pb::Prices {
    fn from(p: &PriceSheet) -> Self {
        Self {
            input: p.input,
            output: p.output,
            cache_read: p.cache_read,
            cache_write_5m: p.cache_write_5m,
            cache_write_1h: p.cache_write_1h,
            reasoning: p.reasoning.unwrap_or(0),
            per_request_nanos: p.per_request_nanos,
        }
    }
}

impl From<&pb::UsageDimensions> for UsageDims {
    fn from(u: &pb::UsageDimensions) -> Self {
        Self {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_tokens,
            cache_write_5m_tokens: u.cache_write_5m_tokens,
            cache_write_1h_tokens: u.cache_write_1h_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}

impl From<&UsageDims> for pb::UsageDimensions {
    fn from(u: &UsageDims) -> Self {
        Self {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_tokens,
            cache_write_5m_tokens: u.cache_write_5m_tokens,
            cache_write_1h_tokens: u.cache_write_1h_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ONE_USD_PER_MTOK: i64 = NANOS_PER_USD;

    #[test]
    fn one_dollar_per_million_is_a_thousand_nanos_per_token() {
        let prices = PriceSheet {
            input: ONE_USD_PER_MTOK,
            output: ONE_USD_PER_MTOK,
            ..Default::default()
        };
        let usage = UsageDims {
            input_tokens: 3,
            output_tokens: 2,
            ..Default::default()
        };
        assert_eq!(prices.cost(&usage), Money::from_nanos(5_000));
    }

    #[test]
    fn cached_tokens_are_not_charged_twice() {
        let prices = PriceSheet {
            input: 3 * ONE_USD_PER_MTOK,
            output: 15 * ONE_USD_PER_MTOK,
            cache_read: 300_000_000,
            cache_write_5m: 3_750_000_000,
            ..Default::default()
        };
        let usage = UsageDims {
            input_tokens: 10_000,
            cache_read_tokens: 6_000,
            cache_write_5m_tokens: 2_000,
            output_tokens: 100,
            ..Default::default()
        };
        // 2000*3 + 6000*0.3 + 2000*3.75 + 100*15 (USD per M) = 16_800 / 1e6 USD
        assert_eq!(prices.cost(&usage), Money::from_nanos(16_800_000));
    }

    #[test]
    fn reasoning_priced_as_output_unless_set() {
        let mut prices = PriceSheet {
            output: 10 * ONE_USD_PER_MTOK,
            ..Default::default()
        };
        let usage = UsageDims {
            output_tokens: 1_000,
            reasoning_tokens: 400,
            ..Default::default()
        };
        assert_eq!(prices.cost(&usage), Money::from_nanos(10_000_000));
        prices.reasoning = Some(20 * ONE_USD_PER_MTOK);
        assert_eq!(prices.cost(&usage), Money::from_nanos(14_000_000));
    }

    #[test]
    fn failed_requests_without_output_are_free() {
        let prices = PriceSheet {
            input: ONE_USD_PER_MTOK,
            per_request_nanos: 7,
            ..Default::default()
        };
        let usage = UsageDims {
            input_tokens: 1_000,
            ..Default::default()
        };
        assert_eq!(prices.charge(&usage, true), Money::ZERO);
        assert_eq!(prices.charge(&usage, false), Money::from_nanos(1_000_007));
        let partial = UsageDims {
            output_tokens: 1,
            ..usage
        };
        assert!(prices.charge(&partial, true) > Money::ZERO);
    }

    #[test]
    fn parses_and_formats_usd() {
        assert_eq!(Money::parse_usd("1").unwrap(), Money::from_usd(1));
        assert_eq!(
            Money::parse_usd("0.000000001").unwrap(),
            Money::from_nanos(1)
        );
        assert_eq!(
            Money::parse_usd("0.0000000001"),
            Err(MoneyParseError::TooPrecise)
        );
        assert_eq!(Money::parse_usd("1e3"), Err(MoneyParseError::Syntax));
        assert_eq!(
            Money::from_usd_f64(0.1).unwrap(),
            Money::from_nanos(100_000_000)
        );
        assert_eq!(Money::from_nanos(1_500_000_000).to_string(), "$1.5");
        assert_eq!(Money::from_nanos(-5).to_string(), "-$0.000000005");
    }

    #[test]
    fn per_token_price_strings_round_trip() {
        assert_eq!(
            per_token_usd_to_nanos_per_mtok("0.00000015").unwrap(),
            150_000_000
        );
        assert_eq!(
            per_token_usd_to_nanos_per_mtok("0.0000000375").unwrap(),
            37_500_000
        );
        assert_eq!(nanos_per_mtok_to_per_token_usd(150_000_000), "0.00000015");
        assert_eq!(nanos_per_mtok_to_per_token_usd(0), "0");
        assert!(per_token_usd_to_nanos_per_mtok("-1").is_err());
    }

    proptest! {
        #[test]
        fn cost_is_additive_over_requests_within_rounding(
            a in 0u64..5_000_000, b in 0u64..5_000_000, price in 0i64..100_000_000_000,
        ) {
            let p = PriceSheet { input: price, ..Default::default() };
            let one = p.cost(&UsageDims { input_tokens: a + b, ..Default::default() }).nanos();
            let split = p.cost(&UsageDims { input_tokens: a, ..Default::default() }).nanos()
                + p.cost(&UsageDims { input_tokens: b, ..Default::default() }).nanos();
            prop_assert!((one - split).abs() <= 1);
        }

        #[test]
        fn cost_is_monotonic_in_tokens(t in 0u64..10_000_000, extra in 0u64..1_000, price in 0i64..100_000_000_000) {
            let p = PriceSheet { input: price, output: price, ..Default::default() };
            let lo = p.cost(&UsageDims { input_tokens: t, output_tokens: t, ..Default::default() });
            let hi = p.cost(&UsageDims { input_tokens: t + extra, output_tokens: t, ..Default::default() });
            prop_assert!(lo <= hi);
        }

        #[test]
        fn cache_subsets_never_cost_more_than_plain_input_when_cheaper(
            total in 0u64..1_000_000, cached_share in 0u64..=100,
        ) {
            let p = PriceSheet { input: 3_000_000_000, cache_read: 300_000_000, ..Default::default() };
            let cached = total * cached_share / 100;
            let with_cache = p.cost(&UsageDims { input_tokens: total, cache_read_tokens: cached, ..Default::default() });
            let without = p.cost(&UsageDims { input_tokens: total, ..Default::default() });
            prop_assert!(with_cache <= without);
        }

        #[test]
        fn usd_text_round_trips(nanos in -1_000_000_000_000_000i64..1_000_000_000_000_000) {
            let m = Money::from_nanos(nanos);
            let text = m.to_string().replace('$', "");
            prop_assert_eq!(Money::parse_usd(&text).unwrap(), m);
        }
    }
}
