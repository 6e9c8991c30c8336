//! Anthropic Messages API (`POST {base}/v1/messages`, `stream: true`) normalised to [`LlmEvent`]s.
//!
//! Guarantees: those of [`crate::stream`]; a stream is complete only at `message_stop` (or EOF after a
//! `stop_reason`); `error` events (e.g. `overloaded_error` mid-stream) end the stream as
//! [`LlmError::Provider`]; HTTP 529 is a retryable `overloaded` [`LlmError::Http`]; usage is the
//! provider's own: input (incl. cache reads and writes) from `message_start`, output from the final
//! `message_delta`, emitted once; unknown event types and non-text blocks (thinking) are skipped, as
//! Anthropic's versioning policy asks; the key goes only into the `x-api-key` header, marked sensitive.

use futures::{Stream, StreamExt};
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::continuation::{split_trailing_whitespace, Rejoin};
use crate::sse::SseEvent;
use crate::stream::{self, ChunkOutcome, ClientConfig, Decoder};
use crate::{ChatRequest, LlmError, LlmEvent, Role};

/// The API version this module speaks.
pub const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; used when the request leaves it unset.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

#[derive(Serialize)]
struct WireMessage {
    role: &'static str,
    /// A plain string, or content blocks when the turn carries tool use or results.
    content: serde_json::Value,
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a serde_json::Value,
}

/// Request body: system messages go to the top-level `system`; assistant tool calls become `tool_use`
/// blocks and tool results `tool_result` blocks of one user turn (Anthropic has no `tool` role).
#[derive(Serialize)]
pub struct RequestBody<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

fn wire_messages(messages: &[crate::ChatMessage]) -> Vec<WireMessage> {
    let mut out: Vec<WireMessage> = Vec::new();
    for m in messages.iter().filter(|m| m.role != Role::System) {
        match m.role {
            Role::Assistant if !m.tool_calls.is_empty() => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for call in &m.tool_calls {
                    // The model's own JSON text; an unparsable one is sent as an empty object.
                    let input: serde_json::Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
                }
                out.push(WireMessage { role: "assistant", content: serde_json::Value::Array(blocks) });
            }
            Role::Tool => {
                let block = json!({"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content});
                // All results of one assistant turn belong in one user turn.
                match out.last_mut() {
                    Some(WireMessage { role: "user", content: serde_json::Value::Array(blocks) })
                        if blocks.iter().all(|b| b["type"] == "tool_result") =>
                    {
                        blocks.push(block)
                    }
                    _ => out.push(WireMessage { role: "user", content: serde_json::Value::Array(vec![block]) }),
                }
            }
            role => out.push(WireMessage {
                role: if role == Role::Assistant { "assistant" } else { "user" },
                content: serde_json::Value::String(m.content.clone()),
            }),
        }
    }
    out
}

impl<'a> RequestBody<'a> {
    pub fn streaming(req: &'a ChatRequest) -> Self {
        let system: Vec<&str> =
            req.messages.iter().filter(|m| m.role == Role::System).map(|m| m.content.as_str()).collect();
        let mut messages = wire_messages(&req.messages);
        // A continuation is a prefill: the trailing assistant turn the model writes on from, without the
        // trailing whitespace Anthropic refuses there (see [`crate::continuation`]).
        let prefill = req.continuation.as_deref().map(|shown| split_trailing_whitespace(shown).0);
        if let Some(prefill) = prefill.filter(|p| !p.is_empty()) {
            messages.push(WireMessage { role: "assistant", content: serde_json::Value::String(prefill.to_owned()) });
        }
        RequestBody {
            model: &req.model,
            max_tokens: req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages,
            tools: req
                .tools
                .iter()
                .map(|t| WireTool { name: &t.name, description: &t.description, input_schema: &t.parameters })
                .collect(),
            stream: true,
            temperature: req.temperature,
        }
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    message: Option<MessageStart>,
    #[serde(default)]
    content_block: Option<Block>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<stream::ErrorObject>,
}

#[derive(Deserialize)]
struct MessageStart {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
    #[serde(default)]
    cache_read_input_tokens: Option<u32>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u32>,
}

impl WireUsage {
    /// `(all input tokens, of which cache reads)`, when the event reported input at all. Anthropic's
    /// `input_tokens` excludes cached tokens; ours includes them, as OpenAI's `prompt_tokens` does.
    fn input(&self) -> Option<(u32, u32)> {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let written = self.cache_creation_input_tokens.unwrap_or(0);
        self.input_tokens.map(|i| (i.saturating_add(cached).saturating_add(written), cached))
    }
}

/// Maps Anthropic's stop reasons onto the OpenAI vocabulary, so a FINAL looks the same whichever provider
/// answered.
fn finish_reason(stop: &str) -> String {
    match stop {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_owned()
}

/// Decodes a Messages stream, carrying input usage from `message_start` to the final `message_delta`.
#[derive(Debug, Default)]
pub struct AnthropicDecoder {
    input: Option<(u32, u32)>,
    /// Content-block indices of `tool_use` blocks; a block's position here is its tool-call index.
    tool_blocks: Vec<u32>,
}

impl Decoder for AnthropicDecoder {
    fn decode(&mut self, sse: &SseEvent) -> Result<ChunkOutcome, LlmError> {
        let event: Event =
            serde_json::from_str(sse.data.trim()).map_err(|e| LlmError::MalformedChunk(e.to_string()))?;
        let kind = if event.kind.is_empty() { sse.event.as_deref().unwrap_or_default() } else { &event.kind };
        let mut out = Vec::new();
        match kind {
            "message_start" => self.input = event.message.and_then(|m| m.usage).and_then(|u| u.input()),
            "content_block_start" => match event.content_block {
                Some(Block { kind, text: Some(text), .. }) if kind == "text" && !text.is_empty() => {
                    out.push(LlmEvent::TextDelta(text))
                }
                Some(Block { kind, id, name, .. }) if kind == "tool_use" => {
                    self.tool_blocks.push(event.index.unwrap_or(0));
                    let index = self.tool_blocks.len() as u32 - 1;
                    // `input` here is always `{}`: the arguments stream as `input_json_delta`s.
                    out.push(LlmEvent::ToolCallDelta { index, id, name, arguments: String::new() });
                }
                _ => {}
            },
            "content_block_delta" => match event.delta {
                Some(Delta { kind: Some(kind), text: Some(text), .. }) if kind == "text_delta" && !text.is_empty() => {
                    out.push(LlmEvent::TextDelta(text))
                }
                Some(Delta { kind: Some(kind), partial_json: Some(json), .. }) if kind == "input_json_delta" => {
                    let block = event.index.unwrap_or(0);
                    if let Some(index) = self.tool_blocks.iter().position(|b| *b == block) {
                        out.push(LlmEvent::ToolCallDelta {
                            index: index as u32,
                            id: None,
                            name: None,
                            arguments: json,
                        });
                    }
                }
                _ => {}
            },
            "message_delta" => {
                if let Some(stop) = event.delta.and_then(|d| d.stop_reason) {
                    out.push(LlmEvent::Finish { reason: finish_reason(&stop) });
                }
                if let Some(usage) = event.usage {
                    // Newer API versions repeat the input figures here; they are final, so they win.
                    let (input_tokens, cached_input_tokens) = usage.input().or(self.input).unwrap_or((0, 0));
                    out.push(LlmEvent::Usage {
                        input_tokens,
                        output_tokens: usage.output_tokens.unwrap_or(0),
                        cached_input_tokens,
                    });
                }
            }
            "message_stop" => return Ok(ChunkOutcome::Done),
            "error" => {
                let err = event.error.unwrap_or_default();
                return Err(LlmError::Provider {
                    kind: err.kind.unwrap_or_else(|| "unknown".to_owned()),
                    message: err.message.unwrap_or_default(),
                });
            }
            // ping, content_block_stop, and event types added after this was written.
            _ => {}
        }
        Ok(ChunkOutcome::Events(out))
    }
}

/// A Messages API client. Cheap to clone; build it once.
#[derive(Clone, Debug)]
pub struct AnthropicClient {
    http: reqwest::Client,
    url: reqwest::Url,
    cfg: ClientConfig,
}

impl AnthropicClient {
    /// `cfg.base_url` is the host root, e.g. `https://api.anthropic.com` (the client adds `/v1/messages`).
    pub fn new(cfg: ClientConfig) -> Result<Self, LlmError> {
        let http = stream::http_client(cfg.connect_timeout)?;
        let url = stream::endpoint(&cfg.base_url, "/v1/messages")?;
        Ok(AnthropicClient { http, url, cfg })
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Starts a streamed message; see [`crate::stream`] for what `Err` before the stream means.
    pub async fn stream(
        &self,
        req: &ChatRequest,
    ) -> Result<impl Stream<Item = Result<LlmEvent, LlmError>> + Send + 'static, LlmError> {
        let mut builder = self
            .http
            .post(self.url.clone())
            .header("anthropic-version", API_VERSION)
            .json(&RequestBody::streaming(req));
        if let Some(key) = &self.cfg.api_key {
            let mut value =
                HeaderValue::from_str(key.expose()).map_err(|_| LlmError::Config("API key is not a header".into()))?;
            value.set_sensitive(true);
            builder = builder.header("x-api-key", value);
        }
        let events =
            stream::open(builder, AnthropicDecoder::default(), self.cfg.ttft_timeout, self.cfg.idle_timeout).await?;
        // The whitespace cut off the prefill comes back at the start of the continuation: dropped there.
        let removed = req.continuation.as_deref().map_or("", |shown| split_trailing_whitespace(shown).1);
        Ok(Rejoin::new(removed).stream(events.boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;
    use crate::ChatMessage;

    /// The streaming example of Anthropic's "Streaming Messages" documentation (basic request), with a
    /// cache read added to `message_start`'s usage.
    const DOCUMENTED: &str = "event: message_start
data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-sonnet-4-5\", \"stop_reason\": null, \"stop_sequence\": null, \"usage\": {\"input_tokens\": 25, \"cache_read_input_tokens\": 5, \"output_tokens\": 1}}}

event: content_block_start
data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}

event: ping
data: {\"type\": \"ping\"}

event: content_block_delta
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"Hello\"}}

event: content_block_delta
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"!\"}}

event: content_block_stop
data: {\"type\": \"content_block_stop\", \"index\": 0}

event: message_delta
data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\":null}, \"usage\": {\"output_tokens\": 15}}

event: message_stop
data: {\"type\": \"message_stop\"}

";

    fn decode_all(input: &str) -> (Vec<LlmEvent>, Option<LlmError>, bool) {
        let mut parser = SseParser::new();
        let mut sse = Vec::new();
        for piece in input.as_bytes().chunks(5) {
            parser.feed(piece, &mut sse).unwrap();
        }
        let mut decoder = AnthropicDecoder::default();
        let (mut events, mut done) = (Vec::new(), false);
        for ev in sse {
            match decoder.decode(&ev) {
                Ok(ChunkOutcome::Done) => done = true,
                Ok(ChunkOutcome::Events(evs)) => events.extend(evs),
                Err(e) => return (events, Some(e), done),
            }
        }
        (events, None, done)
    }

    #[test]
    fn parses_the_documented_stream() {
        let (events, err, done) = decode_all(DOCUMENTED);
        assert!(err.is_none() && done);
        assert_eq!(
            events,
            vec![
                LlmEvent::TextDelta("Hello".into()),
                LlmEvent::TextDelta("!".into()),
                LlmEvent::Finish { reason: "stop".into() },
                LlmEvent::Usage { input_tokens: 30, output_tokens: 15, cached_input_tokens: 5 },
            ]
        );
    }

    #[test]
    fn documented_error_event_is_a_retryable_provider_error() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\nevent: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n";
        let (events, err, done) = decode_all(stream);
        assert_eq!(events, vec![LlmEvent::TextDelta("Hi".into())]);
        assert!(!done);
        let err = err.unwrap();
        assert_eq!(err, LlmError::Provider { kind: "overloaded_error".into(), message: "Overloaded".into() });
        use turnpike_core::Classify;
        assert_eq!(err.class(), turnpike_core::ErrorClass::Retryable);
    }

    /// The tool-use streaming example of Anthropic's documentation (trimmed): a text block, then a
    /// `tool_use` block whose input arrives as `input_json_delta` fragments, `stop_reason: tool_use`.
    #[test]
    fn parses_the_documented_tool_use_stream() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"output_tokens\":2},\"content\":[],\"stop_reason\":null}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay, let's check the weather.\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"San Francisco, CA\\\"}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let (events, err, done) = decode_all(stream);
        assert!(err.is_none() && done);
        let mut tools = crate::ToolCallAssembler::default();
        let mut text = String::new();
        for event in &events {
            match event {
                LlmEvent::TextDelta(t) => text.push_str(t),
                LlmEvent::ToolCallDelta { index, id, name, arguments } => {
                    tools.push(*index, id.clone(), name.clone(), arguments)
                }
                _ => {}
            }
        }
        assert_eq!(text, "Okay, let's check the weather.");
        assert_eq!(
            tools.finish(),
            vec![crate::ToolCall {
                id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                name: "get_weather".into(),
                arguments: r#"{"location": "San Francisco, CA"}"#.into()
            }]
        );
        assert!(events.contains(&LlmEvent::Finish { reason: "tool_calls".into() }));
    }

    #[test]
    fn tool_turns_become_blocks() {
        let call = crate::ToolCall { id: "toolu_1".into(), name: "lookup".into(), arguments: r#"{"id":"42"}"#.into() };
        let req = ChatRequest::new(
            "claude-sonnet-4",
            vec![
                ChatMessage::user("where?"),
                ChatMessage::assistant_tool_calls(
                    "Checking.",
                    vec![call.clone(), crate::ToolCall { id: "toolu_2".into(), ..call }],
                ),
                ChatMessage::tool_result("toolu_1", "in transit"),
                ChatMessage::tool_result("toolu_2", "delayed"),
            ],
        );
        let body = serde_json::to_value(RequestBody::streaming(&req)).unwrap();
        assert_eq!(
            body["messages"][1]["content"][1],
            json!({"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"id": "42"}})
        );
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(3), "both results in one user turn");
        assert_eq!(body["messages"][2]["content"][1]["tool_use_id"], "toolu_2");
    }

    #[test]
    fn thinking_is_not_reply_text_and_unknown_events_are_skipped() {
        let stream = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\nevent: brand_new\ndata: {\"type\":\"brand_new\"}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"input_tokens\":9,\"output_tokens\":4}}\n\n";
        let (events, err, _) = decode_all(stream);
        assert!(err.is_none());
        assert_eq!(
            events,
            vec![
                LlmEvent::Finish { reason: "length".into() },
                LlmEvent::Usage { input_tokens: 9, output_tokens: 4, cached_input_tokens: 0 },
            ]
        );
    }

    #[test]
    fn request_moves_system_prompts_to_the_top_level() {
        let req = ChatRequest::new(
            "claude-sonnet-4",
            vec![ChatMessage::system("Be brief."), ChatMessage::user("hi"), ChatMessage::assistant("Hello")],
        );
        let body = serde_json::to_value(RequestBody::streaming(&req)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "model": "claude-sonnet-4",
                "max_tokens": DEFAULT_MAX_TOKENS,
                "system": "Be brief.",
                "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}],
                "stream": true,
            })
        );
    }

    #[test]
    fn a_continuation_is_a_prefill_without_trailing_whitespace() {
        let req = ChatRequest::new("claude-sonnet-4", vec![ChatMessage::user("hi")]).continuing("Your parcel left. \n");
        let body = serde_json::to_value(RequestBody::streaming(&req)).unwrap();
        assert_eq!(
            body["messages"],
            serde_json::json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Your parcel left."}])
        );
        // Nothing but whitespace shown: no prefill at all (an empty one is refused too).
        let blank = ChatRequest::new("m", vec![ChatMessage::user("hi")]).continuing(" ");
        let body = serde_json::to_value(RequestBody::streaming(&blank)).unwrap();
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    }
}
