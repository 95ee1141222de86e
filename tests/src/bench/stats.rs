//! Latency histograms and the across-rounds statistics the report is built from.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles the report shows, as quantiles.
pub const QUANTILES: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

/// Nanosecond histogram, 3 significant digits, up to 100 s.
#[derive(Clone, Debug)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        // Constant bounds that satisfy `new_with_bounds`' preconditions (low ≥ 1, high ≥ 2·low,
        // sigfig ≤ 5), so this cannot fail.
        Self(Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid constant bounds"))
    }

    pub fn record_ns(&mut self, ns: u64) {
        // Saturating: a value past the bound is clamped, never dropped.
        self.0.saturating_record(ns.max(1));
    }

    pub fn merge(&mut self, other: &Hist) {
        // Same bounds everywhere, so `add` cannot fail; clamped values were clamped already.
        let _ = self.0.add(&other.0);
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Value at quantile `q`, in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1_000.0
    }

    pub fn max_us(&self) -> f64 {
        self.0.max() as f64 / 1_000.0
    }

    pub fn mean_us(&self) -> f64 {
        self.0.mean() / 1_000.0
    }

    /// p50/p90/p99/p99.9 in microseconds.
    pub fn summary(&self) -> Percentiles {
        Percentiles {
            p50: self.quantile_us(0.50),
            p90: self.quantile_us(0.90),
            p99: self.quantile_us(0.99),
            p999: self.quantile_us(0.999),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p999: f64,
}

impl Percentiles {
    pub fn get(&self, name: &str) -> f64 {
        match name {
            "p50" => self.p50,
            "p90" => self.p90,
            "p99" => self.p99,
            _ => self.p999,
        }
    }

    pub fn minus(&self, base: &Percentiles) -> Percentiles {
        Percentiles {
            p50: self.p50 - base.p50,
            p90: self.p90 - base.p90,
            p99: self.p99 - base.p99,
            p999: self.p999 - base.p999,
        }
    }

    /// Element-wise median and IQR over rounds.
    pub fn across(rounds: &[Percentiles]) -> Spread<Percentiles> {
        let pick = |f: fn(&Percentiles) -> f64| {
            let values: Vec<f64> = rounds.iter().map(f).collect();
            (median(&values), iqr(&values))
        };
        let (p50, p50_iqr) = pick(|p| p.p50);
        let (p90, p90_iqr) = pick(|p| p.p90);
        let (p99, p99_iqr) = pick(|p| p.p99);
        let (p999, p999_iqr) = pick(|p| p.p999);
        Spread {
            median: Percentiles {
                p50,
                p90,
                p99,
                p999,
            },
            iqr: Percentiles {
                p50: p50_iqr,
                p90: p90_iqr,
                p99: p99_iqr,
                p999: p999_iqr,
            },
            rounds: rounds.len(),
        }
    }
}

/// A statistic's median across rounds and its interquartile range.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Spread<T> {
    pub median: T,
    pub iqr: T,
    pub rounds: usize,
}

/// Median with linear interpolation; NaN for no values.
pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// Q3 − Q1 with linear interpolation.
pub fn iqr(values: &[f64]) -> f64 {
    quantile(values, 0.75) - quantile(values, 0.25)
}

pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// The order arms run in during round `round`: rotated, so no arm always runs first (cold)
/// or right after the heaviest one.
pub fn interleave_order(arms: usize, round: usize) -> Vec<usize> {
    (0..arms).map(|i| (i + round) % arms.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_iqr() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(iqr(&[1.0, 2.0, 3.0, 4.0, 5.0]), 2.0);
    }

    #[test]
    fn histogram_percentiles_in_microseconds() {
        let mut h = Hist::new();
        for us in 1..=1000u64 {
            h.record_ns(us * 1_000);
        }
        let s = h.summary();
        assert!((s.p50 - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99 - 990.0).abs() < 1.0, "{s:?}");
        let mut other = Hist::new();
        other.record_ns(u64::MAX);
        h.merge(&other);
        assert_eq!(h.len(), 1001);
        assert!(h.max_us() >= 99_000_000.0);
    }

    #[test]
    fn added_latency_is_taken_per_round_then_medianed() {
        let direct = [10.0, 12.0, 11.0];
        let arm = [60.0, 90.0, 62.0];
        let rounds: Vec<Percentiles> = direct
            .iter()
            .zip(arm)
            .map(|(d, a)| {
                let p = |v: f64| Percentiles {
                    p50: v,
                    p90: v,
                    p99: v,
                    p999: v,
                };
                p(a).minus(&p(*d))
            })
            .collect();
        let spread = Percentiles::across(&rounds);
        assert_eq!(spread.median.p50, 51.0);
        assert_eq!(spread.rounds, 3);
    }

    #[test]
    fn interleaving_rotates_every_arm_through_every_slot() {
        assert_eq!(interleave_order(3, 0), vec![0, 1, 2]);
        assert_eq!(interleave_order(3, 1), vec![1, 2, 0]);
        assert_eq!(interleave_order(3, 2), vec![2, 0, 1]);
        for slot in 0..3 {
            let mut seen: Vec<usize> = (0..3).map(|r| interleave_order(3, r)[slot]).collect();
            seen.sort_unstable();
            assert_eq!(seen, vec![0, 1, 2]);
        }
    }
}
