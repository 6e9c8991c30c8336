//! Turnpike's LLM layer: one request type, one normalised stream of [`LlmEvent`]s, whatever the provider.
//!
//! Guarantees callers can rely on:
//! - every provider (OpenAI-compatible, Anthropic, Gemini) yields the same [`LlmEvent`] sequence shape:
//!   zero or more `TextDelta`, then `Finish` and `Usage` (in either order, `Usage` only when the provider
//!   reports it), then the stream ends; finish reasons use one vocabulary (`stop`, `length`, ...);
//! - every failure is an [`LlmError`] that implements [`turnpike_core::Classify`], so the stage runner
//!   decides retry / dead-letter / exit without knowing which provider failed;
//! - API keys live in [`ApiKey`], which never prints its value;
//! - a request may ask the model to continue an assistant text already shown ([`continuation`]): the
//!   stream then carries only what follows it, in every wire format that can say so.
//!
//! [`mock`] is a scriptable server speaking all three wire formats, for tests and local runs (binary
//! `turnpike-mock-llm`).

pub mod anthropic;
pub mod breaker;
pub mod budget;
pub mod config;
pub mod continuation;
pub mod cost;
pub mod error;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod provider;
pub mod router;
pub mod secret;
pub mod sse;
pub mod stream;
pub mod tools;
pub mod types;

pub use anthropic::AnthropicClient;
pub use budget::{BudgetError, Budgets, Reservation};
pub use config::{LlmConfig, LlmRouter};
pub use continuation::ContinuationStyle;
pub use cost::{Price, Pricing};
pub use error::LlmError;
pub use gemini::GeminiClient;
pub use openai::{OpenAiClient, OpenAiConfig};
pub use provider::{EventStream, LlmProvider};
pub use router::{Answer, Chain, Deployment, RetryPolicy};
pub use secret::ApiKey;
pub use stream::ClientConfig;
pub use types::{
    collect, ChatMessage, ChatRequest, Completion, LlmEvent, Role, ToolCall, ToolCallAssembler, ToolSpec, Usage,
};
