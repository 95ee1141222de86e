mod common;
mod store_conformance;
