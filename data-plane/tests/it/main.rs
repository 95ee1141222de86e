//! Black-box tests of the `switchyard-gateway` binary as operators run it.

// Helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
mod body_wake;
