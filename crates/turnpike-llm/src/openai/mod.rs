//! OpenAI Chat Completions, and every server that speaks its wire format (vLLM, llama.cpp, Ollama,
//! the Turnpike mock, ...) reached by base URL.

mod client;
pub mod wire;

pub use client::{OpenAiClient, OpenAiConfig};
