pub mod bench;
pub mod harness;
pub mod mock_anthropic;
pub mod mock_gemini;
pub mod mock_openai;
