//! Turnpike's LLM layer: one request type, one normalised stream of [`LlmEvent`]s, whatever the provider.
//!
//! Guarantees callers can rely on:
//! - every provider yields the same [`LlmEvent`] sequence shape: zero or more `TextDelta`, then `Finish`
//!   and `Usage` (in either order, `Usage` only when the provider reports it), then the stream ends;
//! - every failure is an [`LlmError`] that implements [`turnpike_core::Classify`], so the stage runner
//!   decides retry / dead-letter / exit without knowing which provider failed;
//! - API keys live in [`ApiKey`], which never prints its value.
//!
//! [`mock`] is a scriptable OpenAI-compatible server for tests and local runs (binary `turnpike-mock-llm`).

pub mod error;
pub mod mock;
pub mod openai;
pub mod provider;
pub mod secret;
pub mod sse;
pub mod types;

pub use error::LlmError;
pub use openai::{OpenAiClient, OpenAiConfig};
pub use provider::{EventStream, LlmProvider};
pub use secret::ApiKey;
pub use types::{collect, ChatMessage, ChatRequest, Completion, LlmEvent, Role, Usage};
