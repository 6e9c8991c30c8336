//! [`LlmProvider`]: the one type the pipeline holds, whichever provider is configured.
//!
//! An enum rather than a trait object: the set of providers is closed and known at compile time, calls
//! stay statically dispatched, and adding a provider is one variant plus one match arm. The
//! stream is boxed here (and only here) so every variant returns the same type.

use std::pin::Pin;

use futures::{Stream, StreamExt};

use crate::{AnthropicClient, ChatRequest, GeminiClient, LlmError, LlmEvent, OpenAiClient};

/// A provider-neutral event stream.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<LlmEvent, LlmError>> + Send + 'static>>;

#[derive(Clone, Debug)]
pub enum LlmProvider {
    /// OpenAI or any OpenAI-compatible server.
    OpenAi(OpenAiClient),
    /// Anthropic Messages API.
    Anthropic(AnthropicClient),
    /// Google Gemini `streamGenerateContent`.
    Gemini(GeminiClient),
}

impl LlmProvider {
    /// Stable name for metrics labels and logs.
    pub fn name(&self) -> &'static str {
        match self {
            LlmProvider::OpenAi(_) => "openai",
            LlmProvider::Anthropic(_) => "anthropic",
            LlmProvider::Gemini(_) => "gemini",
        }
    }

    /// Whether it can continue an assistant text ([`crate::ChatRequest::continuation`]): Anthropic and
    /// Gemini natively, an OpenAI-compatible server when configured with its way of doing it.
    pub fn can_continue(&self) -> bool {
        match self {
            LlmProvider::OpenAi(client) => client.can_continue(),
            LlmProvider::Anthropic(_) | LlmProvider::Gemini(_) => true,
        }
    }

    /// Starts a streamed completion; see [`crate::stream`] for what `Err` before the stream means.
    pub async fn stream(&self, req: &ChatRequest) -> Result<EventStream, LlmError> {
        match self {
            LlmProvider::OpenAi(client) => Ok(client.stream(req).await?.boxed()),
            LlmProvider::Anthropic(client) => Ok(client.stream(req).await?.boxed()),
            LlmProvider::Gemini(client) => Ok(client.stream(req).await?.boxed()),
        }
    }
}

impl From<OpenAiClient> for LlmProvider {
    fn from(client: OpenAiClient) -> Self {
        LlmProvider::OpenAi(client)
    }
}
