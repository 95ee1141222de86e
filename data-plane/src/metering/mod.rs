//! Usage metering: the durable local spool and the shipper that drains it to the control plane.

pub mod meter;
pub mod shipper;
pub mod spool;
pub mod spool_cap;
mod spool_frame;
