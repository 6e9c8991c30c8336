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
    /// Assistant turns only: the tools the model called (in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Tool turns only: which call this is the result of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }

    /// The assistant turn that asked for `calls` (with any text it said first).
    pub fn assistant_tool_calls(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        ChatMessage { tool_calls: calls, ..Self::new(Role::Assistant, content) }
    }

    /// The result of the tool call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { tool_call_id: Some(call_id.into()), ..Self::new(Role::Tool, content) }
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

/// A tool the model may call: its name, what it does, and a JSON schema of its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// A complete tool call: `arguments` is the JSON text the model produced (parsed by the tool runner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A chat completion request, before any provider-specific translation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// Tools offered to the model; empty: none.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Continue this assistant text instead of starting a reply: the text the customer has already
    /// seen. Each wire format sends it as a trailing assistant turn the model writes on from (see
    /// [`crate::continuation`]); the stream then carries only what follows it, so `continuation` + the
    /// streamed text is the reply as the customer reads it. Deployments that cannot continue are skipped
    /// ([`crate::LlmProvider::can_continue`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
    /// The deployment whose stream of this reply was just cut or stalled: a continuation tries it after
    /// the chain's others, which may continue at once instead of failing the same way again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_on: Option<String>,
}

impl ChatRequest {
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            max_tokens: None,
            temperature: None,
            tools: Vec::new(),
            continuation: None,
            cut_on: None,
        }
    }

    /// This request, asking the model to continue `shown` (see [`ChatRequest::continuation`]).
    pub fn continuing(mut self, shown: impl Into<String>) -> Self {
        self.continuation = Some(shown.into());
        self
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
    /// Why generation stopped, in OpenAI's vocabulary whatever the provider (`stop`, `length`,
    /// `content_filter`, `tool_calls`, ...).
    Finish { reason: String },
    /// A piece of tool call `index` (0, 1, ... within this reply): `id` and `name` arrive with its first
    /// piece, `arguments` is the next fragment of its JSON text (concatenate them in order).
    ToolCallDelta { index: u32, id: Option<String>, name: Option<String>, arguments: String },
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
    /// Assembled from the tool-call deltas, by index.
    pub tool_calls: Vec<ToolCall>,
}

/// Most tool calls one reply may make. A call's index comes from the provider's bytes: without a bound, an
/// OpenAI delta with `"index": 4000000000` made the assembler allocate four billion calls (fuzz target
/// `openai_tool_call_index`). The OpenAI decoder refuses such a chunk; the assembler drops the rest.
pub const MAX_TOOL_CALLS: u32 = 128;

/// Assembles [`LlmEvent::ToolCallDelta`]s into [`ToolCall`]s, at most [`MAX_TOOL_CALLS`] of them.
#[derive(Clone, Debug, Default)]
pub struct ToolCallAssembler {
    calls: Vec<ToolCall>,
}

impl ToolCallAssembler {
    pub fn push(&mut self, index: u32, id: Option<String>, name: Option<String>, arguments: &str) {
        if index >= MAX_TOOL_CALLS {
            tracing::warn!(index, "Tool call past the limit dropped.");
            return;
        }
        let index = index as usize;
        while self.calls.len() <= index {
            // Providers without call ids (Gemini) get stable ones from the position.
            let id = format!("call_{}", self.calls.len());
            self.calls.push(ToolCall { id, name: String::new(), arguments: String::new() });
        }
        let call = &mut self.calls[index];
        if let Some(id) = id {
            call.id = id;
        }
        if let Some(name) = name {
            call.name = name;
        }
        call.arguments.push_str(arguments);
    }

    /// The calls, in index order; arguments left empty by the model become `{}`.
    pub fn finish(self) -> Vec<ToolCall> {
        self.calls
            .into_iter()
            .map(|mut c| {
                if c.arguments.trim().is_empty() {
                    c.arguments = "{}".into();
                }
                c
            })
            .collect()
    }
}

/// Drains an event stream, stopping at the first error (a partial reply is not a reply).
pub async fn collect<S>(stream: S) -> Result<Completion, LlmError>
where
    S: Stream<Item = Result<LlmEvent, LlmError>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut out = Completion::default();
    let mut tools = ToolCallAssembler::default();
    while let Some(event) = stream.next().await {
        match event? {
            LlmEvent::TextDelta(text) => out.text.push_str(&text),
            LlmEvent::Finish { reason } => out.finish_reason = Some(reason),
            LlmEvent::Usage { input_tokens, output_tokens, cached_input_tokens } => {
                out.usage = Some(Usage { input_tokens, output_tokens, cached_input_tokens })
            }
            LlmEvent::ToolCallDelta { index, id, name, arguments } => tools.push(index, id, name, &arguments),
        }
    }
    out.tool_calls = tools.finish();
    Ok(out)
}
