//! The OpenAI Chat Completions wire format: request body out, streamed chunks in.
//!
//! Guarantees: parsing is tolerant of fields we do not use (new OpenAI fields, vendor extensions) and of
//! `null` where a value is optional, but strict about JSON itself: a chunk that is not a JSON object of
//! the chunk shape is a [`LlmError::MalformedChunk`], never silently skipped, because skipping could drop
//! reply text.

use serde::{Deserialize, Serialize};

use crate::{ChatMessage, ChatRequest, LlmError, LlmEvent};

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
pub struct RequestBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

impl<'a> RequestBody<'a> {
    /// A streaming request that asks for the final usage chunk.
    pub fn streaming(req: &'a ChatRequest) -> Self {
        RequestBody {
            model: &req.model,
            messages: &req.messages,
            stream: true,
            stream_options: Some(StreamOptions { include_usage: true }),
            max_tokens: req.max_tokens,
            temperature: req.temperature,
        }
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

/// The `error` object of OpenAI error bodies, both HTTP errors and in-stream errors.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ErrorObject {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// A string for OpenAI (`rate_limit_exceeded`), a number for some compatible servers.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

impl ErrorObject {
    pub fn code_str(&self) -> Option<String> {
        match &self.code {
            Some(serde_json::Value::String(code)) => Some(code.clone()),
            Some(serde_json::Value::Number(code)) => Some(code.to_string()),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

/// Extracts the `error` object of a non-2xx response body, if it has the OpenAI shape.
pub fn parse_error_body(body: &str) -> Option<ErrorObject> {
    serde_json::from_str::<ErrorBody>(body).ok().map(|b| b.error)
}

/// What one `data:` payload means.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// `[DONE]`: the stream is complete.
    Done,
    /// Zero or more events, in the order text, finish, usage.
    Events(Vec<LlmEvent>),
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
        if let Some(text) = choice.delta.and_then(|d| d.content).filter(|t| !t.is_empty()) {
            events.push(LlmEvent::TextDelta(text));
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
        let body = serde_json::to_value(RequestBody::streaming(&req)).unwrap();
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
}
