//! Switchyard's wire contract (`switchyard.v1`) and the few value types the control plane
//! and the gateways must agree on: API-key format and hashing, money, generation ids.

pub mod hex;
pub mod ids;
pub mod keys;
pub mod money;
pub mod spooled;

/// Generated protobuf and gRPC code for package `switchyard.v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
    tonic::include_proto!("switchyard.v1");
}

pub use ids::GenerationId;
pub use keys::{ApiKeySecret, KeyFormatError, KeyHash};
pub use money::{Money, PriceSheet, UsageDims};
