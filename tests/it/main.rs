//! Whole-system tests: control plane, gateway and mock providers in one process, on loopback.
// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod billing;
mod budgets;
mod caching;
mod chargeback;
mod conformance;
mod console;
mod console_pages;
mod crash;
mod deploy;
mod errors;
mod faults;
mod guardrails;
mod identity;
mod input_limits;
mod openai_sdk;
mod ops;
mod otel;
mod resilience;
mod routing;
mod sdks;
mod skeleton;
mod spool_cap;
mod sse;
mod tls;
