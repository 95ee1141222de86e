//! The platform fee: an org's basis points on each generation's provider cost, posted as its
//! own `fee` posting (`fee:<request id>`) next to the usage posting, so chargeback can show
//! provider cost and fee apart. Default 0 bps: a self-hosted install adds no markup.

use crate::store::{PLATFORM_FEES, Posting, UsageRow, accounts, chargeback_kinds};

/// Highest fee an operator may set: 100 %.
pub const MAX_FEE_BPS: i64 = 10_000;

/// `cost × bps / 10 000`, rounded down to the nano-USD (never charges more than the rate).
pub fn fee_nanos(cost_nanos: i64, bps: i64) -> i64 {
    if cost_nanos <= 0 || bps <= 0 {
        return 0;
    }
    let fee = i128::from(cost_nanos) * i128::from(bps.min(MAX_FEE_BPS)) / 10_000;
    i64::try_from(fee).unwrap_or(i64::MAX)
}

pub fn fee_posting(row: &UsageRow, fee: i64) -> Posting {
    Posting {
        id: format!("fee:{}", row.request_id),
        org_id: row.org_id.clone(),
        kind: chargeback_kinds::FEE,
        memo: row.model.clone(),
        ref_id: Some(row.request_id.clone()),
        created_at: row.ingested_at,
        legs: vec![
            (accounts::ORG_CREDITS.to_owned(), -fee),
            (PLATFORM_FEES.to_owned(), fee),
        ],
    }
}

/// The fee postings of rated rows at the rates `bps_of` gives per org.
pub fn postings_at(rows: &[UsageRow], bps_of: impl Fn(&str) -> i64) -> Vec<Posting> {
    rows.iter()
        .filter_map(|row| {
            let fee = fee_nanos(row.cost_nanos, bps_of(&row.org_id));
            (fee > 0).then(|| fee_posting(row, fee))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_is_basis_points_rounded_down() {
        assert_eq!(fee_nanos(1_000_000, 0), 0);
        assert_eq!(fee_nanos(1_000_000, 550), 55_000);
        assert_eq!(fee_nanos(3, 5_000), 1);
        assert_eq!(fee_nanos(-5, 100), 0);
        assert_eq!(fee_nanos(i64::MAX, 10_000), i64::MAX);
        assert_eq!(fee_nanos(100, 20_000), 100, "capped at 100 %");
    }
}
