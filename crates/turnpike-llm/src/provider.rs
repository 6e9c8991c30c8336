//! [`LlmProvider`]: the one type the pipeline holds, whichever provider is configured.
//!
//! An enum rather than a trait object: the set of providers is closed and known at compile time, calls
//! stay statically dispatched, and adding Anthropic or Gemini is one variant plus one match arm. The
//! stream is boxed here (and only here) so every variant returns the same type.

use std::pin::Pin;

use futures::{Stream, StreamExt};

use crate::{ChatRequest, LlmError, LlmEvent, OpenAiClient};

/// A provider-neutral event stream.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<LlmEvent, LlmError>> + Send + 'static>>;

#[derive(Clone, Debug)]
pub enum LlmProvider {
    /// OpenAI or any OpenAI-compatible server.
    OpenAi(OpenAiClient),
}

impl LlmProvider {
    /// Stable name for metrics labels and logs.
    pub fn name(&self) -> &'static str {
        match self {
            LlmProvider::OpenAi(_) => "openai",
        }
    }

    /// Starts a streamed completion; see [`OpenAiClient::stream`] for what `Err` before the stream means.
    pub async fn stream(&self, req: &ChatRequest) -> Result<EventStream, LlmError> {
        match self {
            LlmProvider::OpenAi(client) => Ok(client.stream(req).await?.boxed()),
        }
    }
}

impl From<OpenAiClient> for LlmProvider {
    fn from(client: OpenAiClient) -> Self {
        LlmProvider::OpenAi(client)
    }
}
