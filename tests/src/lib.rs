pub mod bench;
pub mod browser;
pub mod fake_stripe;
pub mod harness;
pub mod mock_anthropic;
pub mod mock_gemini;
pub mod mock_openai;

/// This crate's directory, as cargo names it when it runs the tests. The compile-time
/// `env!("CARGO_MANIFEST_DIR")` can name another checkout: with a target directory shared
/// between clones at different paths, cargo reuses a crate built from unchanged sources
/// elsewhere, path and all.
pub fn crate_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
