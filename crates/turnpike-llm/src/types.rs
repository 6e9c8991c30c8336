//! Provider-neutral request and event types.
//!
//! These are the only shapes the rest of Turnpike sees: provider modules translate to and from their wire
//! formats, so adding a provider never changes a caller.

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::LlmError;

/// Who said a message. Serialised lower-case, which is also the OpenAI wire spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One turn of the conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage { role, content: content.into() }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// A chat completion request, before any provider-specific translation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

impl ChatRequest {
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        ChatRequest { model: model.into(), messages, max_tokens: None, temperature: None }
    }
}

/// One normalised event of a streamed completion.
///
/// Kept deliberately small; later providers add variants (tool calls, ...) rather than new stream types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LlmEvent {
    /// The next piece of the reply text, never empty.
    TextDelta(String),
    /// Token accounting as reported by the provider (not estimated).
    Usage { input_tokens: u32, output_tokens: u32, cached_input_tokens: u32 },
    /// Why generation stopped, in the provider's words (`stop`, `length`, `content_filter`, ...).
    Finish { reason: String },
}

/// Token accounting of a whole completion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cached_input_tokens: u32,
}

/// A stream drained into one value: what a non-interactive caller usually wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

/// Drains an event stream, stopping at the first error (a partial reply is not a reply).
pub async fn collect<S>(stream: S) -> Result<Completion, LlmError>
where
    S: Stream<Item = Result<LlmEvent, LlmError>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut out = Completion::default();
    while let Some(event) = stream.next().await {
        match event? {
            LlmEvent::TextDelta(text) => out.text.push_str(&text),
            LlmEvent::Finish { reason } => out.finish_reason = Some(reason),
            LlmEvent::Usage { input_tokens, output_tokens, cached_input_tokens } => {
                out.usage = Some(Usage { input_tokens, output_tokens, cached_input_tokens })
            }
        }
    }
    Ok(out)
}
