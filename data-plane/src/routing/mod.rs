//! Routing: which endpoints a request may use, in which order, given the client's
//! preferences and what the gateway has learned about each endpoint's health.

pub mod health;
pub mod plan;
pub mod prefs;
pub mod sticky;

pub use health::HealthTable;
pub use plan::{Attempt, Needs, NoRoute, plan};
pub use prefs::{ModelRef, ProviderPrefs, requested_models};
