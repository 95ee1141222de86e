pub mod bench;
pub mod browser;
pub mod fake_stripe;
pub mod harness;
pub mod mock_anthropic;
pub mod mock_gemini;
pub mod mock_openai;
