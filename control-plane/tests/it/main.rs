mod cli;
mod common;
mod store_conformance;
