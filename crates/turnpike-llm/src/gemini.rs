//! Google Gemini `POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse` normalised to
//! [`LlmEvent`]s.
//!
//! Guarantees: those of [`crate::stream`]; Gemini has no end marker, so a stream is complete only if a
//! candidate carried a `finishReason` before EOF; an `error` object inside the 200 stream ends it as
//! [`LlmError::Provider`]; usage is the provider's own `usageMetadata` (cumulative, so the last one seen
//! is emitted once, after the finish; thinking tokens count as output, as they are billed);
//! thought-summary parts are never reply text; the key goes only into the `x-goog-api-key` header,
//! marked sensitive.

use futures::Stream;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::sse::SseEvent;
use crate::stream::{self, ChunkOutcome, ClientConfig, Decoder};
use crate::{ChatRequest, LlmError, LlmEvent, Role};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

/// Request body: system messages become `systemInstruction`, assistant turns have role `model`, tool
/// calls are `functionCall` parts and tool results `functionResponse` parts (matched to their call's
/// name, which Gemini needs and our tool turn carries only by id).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestBody {
    contents: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_config: Option<GenerationConfig>,
}

impl RequestBody {
    pub fn new(req: &ChatRequest) -> Self {
        let system: Vec<serde_json::Value> =
            req.messages.iter().filter(|m| m.role == Role::System).map(|m| json!({"text": m.content})).collect();
        let call_name =
            |id: &str| req.messages.iter().flat_map(|m| &m.tool_calls).find(|c| c.id == id).map(|c| c.name.clone());
        let mut contents: Vec<serde_json::Value> = req
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| match m.role {
                Role::Assistant => {
                    let mut parts = Vec::new();
                    if !m.content.is_empty() || m.tool_calls.is_empty() {
                        parts.push(json!({"text": m.content}));
                    }
                    for call in &m.tool_calls {
                        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
                        parts.push(json!({"functionCall": {"name": call.name, "args": args}}));
                    }
                    json!({"role": "model", "parts": parts})
                }
                Role::Tool => {
                    let name = m.tool_call_id.as_deref().and_then(call_name).unwrap_or_default();
                    json!({"role": "user", "parts": [{"functionResponse": {"name": name, "response": {"result": m.content}}}]})
                }
                _ => json!({"role": "user", "parts": [{"text": m.content}]}),
            })
            .collect();
        if let Some(shown) = &req.continuation {
            // A trailing `model` turn: Gemini writes on from it (see [`crate::continuation`]).
            contents.push(json!({"role": "model", "parts": [{"text": shown}]}));
        }
        let tools = if req.tools.is_empty() {
            Vec::new()
        } else {
            let declarations: Vec<serde_json::Value> = req
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
                .collect();
            vec![json!({ "functionDeclarations": declarations })]
        };
        let generation_config = (req.max_tokens.is_some() || req.temperature.is_some())
            .then_some(GenerationConfig { max_output_tokens: req.max_tokens, temperature: req.temperature });
        RequestBody {
            contents,
            system_instruction: (!system.is_empty()).then(|| json!({ "parts": system })),
            tools,
            generation_config,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk {
    #[serde(default)]
    candidates: Option<Vec<Candidate>>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    error: Option<stream::ErrorObject>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    content: Option<CandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<WirePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    function_call: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    args: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u32,
    #[serde(default)]
    candidates_token_count: u32,
    #[serde(default)]
    cached_content_token_count: u32,
    #[serde(default)]
    thoughts_token_count: u32,
}

impl UsageMetadata {
    fn event(self) -> LlmEvent {
        LlmEvent::Usage {
            input_tokens: self.prompt_token_count,
            output_tokens: self.candidates_token_count.saturating_add(self.thoughts_token_count),
            cached_input_tokens: self.cached_content_token_count,
        }
    }
}

/// Maps Gemini's finish reasons onto the OpenAI vocabulary.
fn finish_reason(reason: &str) -> String {
    match reason {
        "STOP" => "stop".to_owned(),
        "MAX_TOKENS" => "length".to_owned(),
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => "content_filter".to_owned(),
        other => other.to_ascii_lowercase(),
    }
}

/// Decodes a `streamGenerateContent` SSE stream.
#[derive(Debug, Default)]
pub struct GeminiDecoder {
    usage: Option<LlmEvent>,
    finished: bool,
    usage_sent: bool,
    /// Function calls seen so far: Gemini sends each whole, in one part, and says `STOP` after them.
    tool_calls: u32,
}

impl GeminiDecoder {
    fn flush_usage(&mut self, out: &mut Vec<LlmEvent>) {
        if self.finished && !self.usage_sent {
            if let Some(usage) = self.usage.clone() {
                out.push(usage);
                self.usage_sent = true;
            }
        }
    }
}

impl Decoder for GeminiDecoder {
    fn decode(&mut self, sse: &SseEvent) -> Result<ChunkOutcome, LlmError> {
        let data = sse.data.trim();
        if data.is_empty() {
            return Ok(ChunkOutcome::Events(Vec::new()));
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| LlmError::MalformedChunk(e.to_string()))?;
        if let Some(err) = chunk.error {
            return Err(LlmError::Provider {
                kind: err.code_str().unwrap_or_else(|| "unknown".to_owned()),
                message: err.message.unwrap_or_default(),
            });
        }
        if let Some(usage) = chunk.usage_metadata {
            self.usage = Some(usage.event());
        }
        let mut out = Vec::new();
        // Only candidate 0: Turnpike never asks for several, and mixing them would interleave two replies.
        for candidate in chunk.candidates.unwrap_or_default().into_iter().filter(|c| c.index == 0) {
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(call) = part.function_call {
                    let arguments = call.args.unwrap_or_else(|| json!({})).to_string();
                    let (index, name) = (self.tool_calls, Some(call.name));
                    self.tool_calls += 1;
                    out.push(LlmEvent::ToolCallDelta { index, id: call.id, name, arguments });
                } else if let Some(text) = part.text.filter(|t| !t.is_empty() && !part.thought) {
                    out.push(LlmEvent::TextDelta(text));
                }
            }
            if let Some(reason) = candidate.finish_reason.filter(|_| !self.finished) {
                let reason = match finish_reason(&reason) {
                    stop if stop == "stop" && self.tool_calls > 0 => "tool_calls".to_owned(),
                    other => other,
                };
                out.push(LlmEvent::Finish { reason });
                self.finished = true;
            }
        }
        if let Some(reason) = chunk.prompt_feedback.and_then(|f| f.block_reason).filter(|_| !self.finished) {
            // A blocked prompt has no candidates at all: say so explicitly rather than "cut".
            tracing::debug!(%reason, "Gemini blocked the prompt");
            out.push(LlmEvent::Finish { reason: "content_filter".to_owned() });
            self.finished = true;
        }
        self.flush_usage(&mut out);
        Ok(ChunkOutcome::Events(out))
    }
}

/// A Gemini API client. Cheap to clone; build it once.
#[derive(Clone, Debug)]
pub struct GeminiClient {
    http: reqwest::Client,
    base: String,
    cfg: ClientConfig,
}

impl GeminiClient {
    /// `cfg.base_url` is the host root, e.g. `https://generativelanguage.googleapis.com`.
    pub fn new(cfg: ClientConfig) -> Result<Self, LlmError> {
        let http = stream::http_client(cfg.connect_timeout)?;
        // Validate once; the model is only known per request.
        stream::endpoint(&cfg.base_url, "/v1beta/models")?;
        Ok(GeminiClient { http, base: cfg.base_url.trim_end_matches('/').to_owned(), cfg })
    }

    /// The streaming endpoint for `model` (a `models/` prefix is accepted and dropped).
    pub fn url(&self, model: &str) -> Result<reqwest::Url, LlmError> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        // The model is a path segment: refuse anything that would change the path or need escaping.
        if model.is_empty() || !model.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
            return Err(LlmError::Config(format!("invalid Gemini model name {model:?}")));
        }
        stream::endpoint(&self.base, &format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"))
    }

    /// Starts a streamed generation; see [`crate::stream`] for what `Err` before the stream means.
    pub async fn stream(
        &self,
        req: &ChatRequest,
    ) -> Result<impl Stream<Item = Result<LlmEvent, LlmError>> + Send + 'static, LlmError> {
        let mut builder = self.http.post(self.url(&req.model)?).json(&RequestBody::new(req));
        if let Some(key) = &self.cfg.api_key {
            let mut value =
                HeaderValue::from_str(key.expose()).map_err(|_| LlmError::Config("API key is not a header".into()))?;
            value.set_sensitive(true);
            builder = builder.header("x-goog-api-key", value);
        }
        stream::open(builder, GeminiDecoder::default(), self.cfg.ttft_timeout, self.cfg.idle_timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;
    use crate::ChatMessage;

    /// Shaped like the `alt=sse` example of Gemini's "Generate content" reference (text streaming):
    /// cumulative `usageMetadata` on every chunk, `finishReason` on the last.
    const DOCUMENTED: &str = concat!(
        r#"data: {"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.0-flash"}"#,
        "\r\n\r\n",
        r#"data: {"candidates": [{"content": {"parts": [{"text": " quick brown fox"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.0-flash"}"#,
        "\r\n\r\n",
        r#"data: {"candidates": [{"content": {"parts": [{"text": " jumps."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 5,"cachedContentTokenCount": 2,"totalTokenCount": 13,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 8}]},"modelVersion": "gemini-2.0-flash"}"#,
        "\r\n\r\n",
    );

    fn decode_all(input: &str) -> (Vec<LlmEvent>, Option<LlmError>) {
        let mut parser = SseParser::new();
        let mut sse = Vec::new();
        for piece in input.as_bytes().chunks(3) {
            parser.feed(piece, &mut sse).unwrap();
        }
        let mut decoder = GeminiDecoder::default();
        let mut events = Vec::new();
        for ev in sse {
            match decoder.decode(&ev) {
                Ok(ChunkOutcome::Events(evs)) => events.extend(evs),
                Ok(ChunkOutcome::Done) => unreachable!("Gemini has no end marker"),
                Err(e) => return (events, Some(e)),
            }
        }
        (events, None)
    }

    #[test]
    fn parses_the_documented_stream() {
        let (events, err) = decode_all(DOCUMENTED);
        assert!(err.is_none());
        assert_eq!(
            events,
            vec![
                LlmEvent::TextDelta("The".into()),
                LlmEvent::TextDelta(" quick brown fox".into()),
                LlmEvent::TextDelta(" jumps.".into()),
                LlmEvent::Finish { reason: "stop".into() },
                LlmEvent::Usage { input_tokens: 8, output_tokens: 5, cached_input_tokens: 2 },
            ]
        );
    }

    #[test]
    fn error_object_inside_the_stream_ends_it() {
        let input = concat!(
            r#"data: {"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"index": 0}]}"#,
            "\n\n",
            r#"data: {"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#,
            "\n\n",
        );
        let (events, err) = decode_all(input);
        assert_eq!(events, vec![LlmEvent::TextDelta("Hi".into())]);
        assert_eq!(
            err,
            Some(LlmError::Provider {
                kind: "UNAVAILABLE".into(),
                message: "The model is overloaded. Please try again later.".into()
            })
        );
    }

    #[test]
    fn thoughts_are_not_text_and_count_as_output_blocked_prompts_finish() {
        let input = concat!(
            r#"data: {"candidates": [{"content": {"parts": [{"text": "plan", "thought": true}, {"text": "Ok"}]},"finishReason": "MAX_TOKENS","index": 0}],"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 1,"thoughtsTokenCount": 6}}"#,
            "\n\n",
        );
        let (events, _) = decode_all(input);
        assert_eq!(
            events,
            vec![
                LlmEvent::TextDelta("Ok".into()),
                LlmEvent::Finish { reason: "length".into() },
                LlmEvent::Usage { input_tokens: 4, output_tokens: 7, cached_input_tokens: 0 },
            ]
        );
        let (events, _) = decode_all("data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\"}}\n\n");
        assert_eq!(events, vec![LlmEvent::Finish { reason: "content_filter".into() }]);
    }

    /// Gemini's function-calling response shape: a whole `functionCall` part, then `STOP`.
    #[test]
    fn parses_function_calls_and_sends_tool_turns() {
        let input = concat!(
            r#"data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 20,"candidatesTokenCount": 6}}"#,
            "\n\n",
        );
        let (events, err) = decode_all(input);
        assert!(err.is_none());
        assert_eq!(
            events,
            vec![
                LlmEvent::ToolCallDelta {
                    index: 0,
                    id: None,
                    name: Some("get_weather".into()),
                    arguments: r#"{"location":"Paris"}"#.into()
                },
                LlmEvent::Finish { reason: "tool_calls".into() },
                LlmEvent::Usage { input_tokens: 20, output_tokens: 6, cached_input_tokens: 0 },
            ]
        );
        let call = crate::ToolCall {
            id: "call_0".into(),
            name: "get_weather".into(),
            arguments: r#"{"location":"Paris"}"#.into(),
        };
        let mut req = ChatRequest::new(
            "gemini-2.0-flash",
            vec![
                ChatMessage::user("weather?"),
                ChatMessage::assistant_tool_calls("", vec![call]),
                ChatMessage::tool_result("call_0", "sunny"),
            ],
        );
        req.tools.push(crate::ToolSpec {
            name: "get_weather".into(),
            description: "Weather".into(),
            parameters: json!({"type": "object"}),
        });
        let body = serde_json::to_value(RequestBody::new(&req)).unwrap();
        assert_eq!(body["contents"][1]["parts"][0]["functionCall"]["args"]["location"], "Paris");
        assert_eq!(
            body["contents"][2]["parts"][0]["functionResponse"],
            json!({"name": "get_weather", "response": {"result": "sunny"}})
        );
        assert_eq!(body["tools"][0]["functionDeclarations"][0]["name"], "get_weather");
    }

    #[test]
    fn request_body_and_url() {
        let req = ChatRequest::new("gemini-2.0-flash", vec![ChatMessage::system("Be brief."), ChatMessage::user("hi")]);
        let body = serde_json::to_value(RequestBody::new(&req)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
            })
        );
        let client = GeminiClient::new(ClientConfig::new("http://127.0.0.1:9/")).unwrap();
        assert_eq!(
            client.url("models/gemini-2.0-flash").unwrap().as_str(),
            "http://127.0.0.1:9/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
        assert!(matches!(client.url("../x"), Err(LlmError::Config(_))));
    }

    #[test]
    fn a_continuation_is_a_trailing_model_turn() {
        let req = ChatRequest::new("gemini-2.0-flash", vec![ChatMessage::user("hi")]).continuing("Your parcel left ");
        let body = serde_json::to_value(RequestBody::new(&req)).unwrap();
        assert_eq!(
            body["contents"],
            json!([
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"text": "Your parcel left "}]},
            ])
        );
    }
}
