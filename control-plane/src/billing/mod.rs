//! Money beyond rating one record: the effective-dated price book and Stripe top-ups. The
//! ledger itself lives in the store (`store::billing`); this module holds the pure logic.

pub mod auto_topup;
pub mod fees;
pub mod pricebook;
pub mod provisional;
pub mod stripe;
pub mod tags;
