
pub mod mock_openai;
pub mod harness;
