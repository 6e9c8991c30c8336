//! The OpenAI Chat Completions wire format: request body out, streamed chunks in.
//!
//! Guarantees: parsing is tolerant of fields we do not use (new OpenAI fields, vendor extensions) and of
//! `null` where a value is optional, but strict about JSON itself: a chunk that is not a JSON object of
//! the chunk shape is a [`LlmError::MalformedChunk`], never silently skipped, because skipping could drop
//! reply text.

use serde::{Deserialize, Serialize};

use crate::sse::SseEvent;
use crate::stream::Decoder;
pub use crate::stream::{parse_error_body, ChunkOutcome, ErrorObject};
use crate::{ChatMessage, ChatRequest, ContinuationStyle, LlmError, LlmEvent};

/// The `data:` payload that ends an OpenAI stream.
pub const DONE: &str = "[DONE]";

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// Request body for `POST /chat/completions`.
///
/// `max_tokens` (not `max_completion_tokens`) because it is the field every OpenAI-compatible server
/// understands; OpenAI's reasoning models need the other one, which a later provider option can select.
#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: crate::Role,
    content: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    /// DeepSeek's and Mistral's continuation flag on the trailing assistant message.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    prefix: bool,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a serde_json::Value,
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
pub struct RequestBody<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    /// vLLM's continuation fields: write on from the trailing assistant message, no new turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    continue_final_message: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    add_generation_prompt: Option<bool>,
}

impl<'a> RequestBody<'a> {
    /// A streaming request that asks for the final usage chunk. A continuation is sent as a trailing
    /// assistant message marked in `style`'s way (see [`crate::continuation`]); with
    /// [`ContinuationStyle::None`] it is not sent (the client refuses such a request before this).
    pub fn streaming(req: &'a ChatRequest, style: ContinuationStyle) -> Self {
        let mut messages: Vec<WireMessage<'a>> = req.messages.iter().map(wire_message).collect();
        let continuing = req.continuation.as_deref().filter(|_| style != ContinuationStyle::None);
        if let Some(shown) = continuing {
            messages.push(WireMessage {
                role: crate::Role::Assistant,
                content: shown,
                tool_calls: Vec::new(),
                tool_call_id: None,
                prefix: style == ContinuationStyle::Prefix,
            });
        }
        let vllm = continuing.is_some() && style == ContinuationStyle::Vllm;
        RequestBody {
            model: &req.model,
            messages,
            tools: req
                .tools
                .iter()
                .map(|t| WireTool {
                    kind: "function",
                    function: WireFunction { name: &t.name, description: &t.description, parameters: &t.parameters },
                })
                .collect(),
            stream: true,
            stream_options: Some(StreamOptions { include_usage: true }),
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            continue_final_message: vllm.then_some(true),
            add_generation_prompt: vllm.then_some(false),
        }
    }
}

fn wire_message(m: &ChatMessage) -> WireMessage<'_> {
    WireMessage {
        role: m.role,
        content: &m.content,
        tool_calls: m
            .tool_calls
            .iter()
            .map(|c| WireToolCall {
                id: &c.id,
                kind: "function",
                function: WireFunctionCall { name: &c.name, arguments: &c.arguments },
            })
            .collect(),
        tool_call_id: m.tool_call_id.as_deref(),
        prefix: false,
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallChunk>>,
}

#[derive(Deserialize)]
struct ToolCallChunk {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionChunk>,
}

#[derive(Deserialize)]
struct FunctionChunk {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u32>,
}

/// Decodes a Chat Completions stream for [`crate::stream::open`].
#[derive(Debug, Default)]
pub struct OpenAiDecoder;

impl Decoder for OpenAiDecoder {
    fn decode(&mut self, event: &SseEvent) -> Result<ChunkOutcome, LlmError> {
        parse_chunk(&event.data)
    }
}

/// Parses one SSE `data:` payload of a Chat Completions stream.
pub fn parse_chunk(data: &str) -> Result<ChunkOutcome, LlmError> {
    let data = data.trim();
    if data == DONE {
        return Ok(ChunkOutcome::Done);
    }
    if data.is_empty() {
        return Ok(ChunkOutcome::Events(Vec::new()));
    }
    let chunk: Chunk = serde_json::from_str(data).map_err(|e| LlmError::MalformedChunk(e.to_string()))?;
    if let Some(err) = chunk.error {
        return Err(LlmError::Provider {
            kind: err.kind.unwrap_or_else(|| "unknown".to_owned()),
            message: err.message.unwrap_or_default(),
        });
    }
    let mut events = Vec::new();
    // Only choice 0: Turnpike never asks for `n > 1`, and mixing choices would interleave two replies.
    for choice in chunk.choices.unwrap_or_default().into_iter().filter(|c| c.index == 0) {
        let (content, tool_calls) = choice.delta.map(|d| (d.content, d.tool_calls)).unwrap_or_default();
        if let Some(text) = content.filter(|t| !t.is_empty()) {
            events.push(LlmEvent::TextDelta(text));
        }
        for call in tool_calls.unwrap_or_default() {
            if call.index >= crate::types::MAX_TOOL_CALLS {
                return Err(LlmError::MalformedChunk(format!("tool call index {} is past the limit", call.index)));
            }
            let (name, arguments) = call.function.map(|f| (f.name, f.arguments)).unwrap_or_default();
            events.push(LlmEvent::ToolCallDelta {
                index: call.index,
                id: call.id,
                name,
                arguments: arguments.unwrap_or_default(),
            });
        }
        if let Some(reason) = choice.finish_reason {
            events.push(LlmEvent::Finish { reason });
        }
    }
    if let Some(usage) = chunk.usage {
        events.push(LlmEvent::Usage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            cached_input_tokens: usage.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
        });
    }
    Ok(ChunkOutcome::Events(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;
    use crate::ChatRequest;

    /// The streaming example of OpenAI's API reference, with `stream_options.include_usage` set: every
    /// chunk carries `"usage": null` and a last chunk has `choices: []` and the usage.
    const OPENAI_EXAMPLE: &str = concat!(
        r#"data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb", "choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb", "choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb", "choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb", "choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
        "\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn parses_openai_documented_stream() {
        let mut parser = SseParser::new();
        let mut sse = Vec::new();
        // Feed in awkward 7-byte pieces: the network never respects event boundaries.
        for piece in OPENAI_EXAMPLE.as_bytes().chunks(7) {
            parser.feed(piece, &mut sse).unwrap();
        }
        let mut events = Vec::new();
        let mut done = false;
        for ev in sse {
            match parse_chunk(&ev.data).unwrap() {
                ChunkOutcome::Done => done = true,
                ChunkOutcome::Events(evs) => events.extend(evs),
            }
        }
        assert!(done);
        assert_eq!(
            events,
            vec![
                LlmEvent::TextDelta("Hello".into()),
                LlmEvent::TextDelta("!".into()),
                LlmEvent::Finish { reason: "stop".into() },
                LlmEvent::Usage { input_tokens: 9, output_tokens: 2, cached_input_tokens: 3 },
            ]
        );
    }

    /// OpenAI's function-calling streaming shape: the first delta of a call has its id and name, later
    /// ones only argument fragments; the finish reason is `tool_calls`.
    #[test]
    fn parses_streamed_tool_calls() {
        let chunks = [
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"loc"}}]},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ation\":\"Paris\"}"}}]},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ];
        let mut assembler = crate::ToolCallAssembler::default();
        let mut finish = None;
        for chunk in chunks {
            let ChunkOutcome::Events(events) = parse_chunk(chunk).unwrap() else { panic!("not done yet") };
            for event in events {
                match event {
                    LlmEvent::ToolCallDelta { index, id, name, arguments } => {
                        assembler.push(index, id, name, &arguments)
                    }
                    LlmEvent::Finish { reason } => finish = Some(reason),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(finish.as_deref(), Some("tool_calls"));
        assert_eq!(
            assembler.finish(),
            vec![crate::ToolCall {
                id: "call_abc".into(),
                name: "get_weather".into(),
                arguments: r#"{"location":"Paris"}"#.into()
            }]
        );
    }

    #[test]
    fn tools_and_tool_turns_are_sent_in_openai_shape() {
        let call = crate::ToolCall { id: "call_1".into(), name: "lookup".into(), arguments: "{}".into() };
        let mut req = ChatRequest::new(
            "m",
            vec![
                ChatMessage::user("where?"),
                ChatMessage::assistant_tool_calls("", vec![call]),
                ChatMessage::tool_result("call_1", "in transit"),
            ],
        );
        req.tools.push(crate::ToolSpec {
            name: "lookup".into(),
            description: "Order lookup".into(),
            parameters: serde_json::json!({"type": "object"}),
        });
        let body = serde_json::to_value(RequestBody::streaming(&req, ContinuationStyle::None)).unwrap();
        assert_eq!(body["tools"][0]["function"]["name"], "lookup");
        assert_eq!(body["messages"][1]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(
            body["messages"][2],
            serde_json::json!({"role": "tool", "content": "in transit", "tool_call_id": "call_1"})
        );
    }

    #[test]
    fn error_object_in_stream_is_a_provider_error() {
        let err = parse_chunk(r#"{"error":{"message":"overloaded","type":"server_error"}}"#).unwrap_err();
        assert_eq!(err, LlmError::Provider { kind: "server_error".into(), message: "overloaded".into() });
    }

    #[test]
    fn broken_json_is_malformed() {
        let err = parse_chunk(r#"{"id":"x","choices":[{"delta":{"content":"#).unwrap_err();
        assert!(matches!(err, LlmError::MalformedChunk(_)), "{err:?}");
        assert!(matches!(parse_chunk("[1,2]"), Err(LlmError::MalformedChunk(_))));
    }

    #[test]
    fn streaming_body_asks_for_usage_and_omits_unset_options() {
        let req = ChatRequest::new("m", vec![ChatMessage::user("hi")]);
        let body = serde_json::to_value(RequestBody::streaming(&req, ContinuationStyle::None)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "model": "m",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        );
    }

    #[test]
    fn a_continuation_is_a_trailing_assistant_message_marked_per_server() {
        let req = ChatRequest::new("m", vec![ChatMessage::user("hi")]).continuing("Your parcel left ");
        let body = |style| serde_json::to_value(RequestBody::streaming(&req, style)).unwrap();
        let vllm = body(ContinuationStyle::Vllm);
        assert_eq!(
            vllm["messages"],
            serde_json::json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Your parcel left "}])
        );
        assert_eq!((&vllm["continue_final_message"], &vllm["add_generation_prompt"]), (&true.into(), &false.into()));
        let prefix = body(ContinuationStyle::Prefix);
        assert_eq!(
            prefix["messages"][1],
            serde_json::json!({"role": "assistant", "content": "Your parcel left ", "prefix": true})
        );
        assert!(prefix.get("continue_final_message").is_none() && prefix.get("add_generation_prompt").is_none());
        // A server that cannot continue is never sent half a request.
        let none = body(ContinuationStyle::None);
        assert_eq!(none["messages"].as_array().unwrap().len(), 1);
        assert!(none.get("continue_final_message").is_none());
    }
}
