//! Whole-system tests: control plane, gateway and mock providers in one process, on loopback.
// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod errors;
mod openai_sdk;
mod resilience;
mod skeleton;
mod sse;
