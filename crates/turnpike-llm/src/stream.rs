//! The streaming engine every provider client shares: send, classify a non-2xx answer, then turn the SSE
//! body into [`LlmEvent`]s through a provider-specific [`Decoder`].
//!
//! Guarantees (identical for every wire format, which is why they live here once):
//! - the stream ends with `Ok` events only if the decoder saw the format's end marker ([`ChunkOutcome::Done`])
//!   or a finish reason; an EOF or broken body before that is [`LlmError::StreamCut`], so a truncated reply
//!   is never mistaken for a whole one;
//! - time to first token (from sending the request to the first normalised event) and idle time (between
//!   events afterwards) are bounded, and surface as [`LlmError::TtftTimeout`] / [`LlmError::IdleTimeout`];
//! - after the first `Err` the stream ends: callers never see events past a failure.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use tokio::time::{timeout_at, Instant};

use crate::sse::{SseEvent, SseParser};
use crate::{ApiKey, LlmError, LlmEvent};

/// Longest error body we read: enough for any JSON error, bounded against a misbehaving proxy.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How much of a non-JSON error body goes into the error message.
const MAX_ERROR_TEXT: usize = 300;

/// Settings every provider client takes.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The provider's base URL; each client documents how much of the path it includes.
    pub base_url: String,
    /// Sent in the provider's auth header; `None` for local servers that need none.
    pub api_key: Option<ApiKey>,
    /// TCP + TLS connection establishment.
    pub connect_timeout: Duration,
    /// From sending the request to the first text, finish or usage event.
    pub ttft_timeout: Duration,
    /// Longest silence between two events once the stream has started.
    pub idle_timeout: Duration,
}

impl ClientConfig {
    /// Defaults that suit a hosted model: generous first token (long prompts queue), tighter idle.
    pub fn new(base_url: impl Into<String>) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            ttft_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(20),
        }
    }

    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }
}

/// What one SSE event of a provider stream means.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The format's explicit end marker (`[DONE]`, `message_stop`): the stream is complete.
    Done,
    /// Zero or more events, in stream order.
    Events(Vec<LlmEvent>),
}

/// Translates one provider's SSE events. Stateful because some formats split one fact over several
/// events (Anthropic reports input tokens at the start and output tokens at the end).
pub trait Decoder: Send + 'static {
    fn decode(&mut self, event: &SseEvent) -> Result<ChunkOutcome, LlmError>;
}

/// Sends `request` and returns its event stream. `Err` means no stream was opened (status, connect,
/// TTFT); failures after that arrive as the stream's last item.
pub(crate) async fn open<D: Decoder>(
    request: reqwest::RequestBuilder,
    decoder: D,
    ttft_timeout: Duration,
    idle_timeout: Duration,
) -> Result<impl Stream<Item = Result<LlmEvent, LlmError>> + Send + 'static, LlmError> {
    let ttft_deadline = Instant::now() + ttft_timeout;
    let response = match timeout_at(ttft_deadline, request.send()).await {
        Err(_) => return Err(LlmError::TtftTimeout(ttft_timeout)),
        Ok(Err(e)) => return Err(LlmError::from_send(&e)),
        Ok(Ok(response)) => response,
    };
    if !response.status().is_success() {
        return Err(error_from_response(response, ttft_deadline).await);
    }
    let reader = EventReader {
        body: Box::pin(response.bytes_stream()),
        parser: SseParser::new(),
        decoder,
        sse: Vec::new(),
        pending: VecDeque::new(),
        ttft_deadline,
        ttft_timeout,
        idle_timeout,
        last_event: None,
        finished: false,
        closed: false,
    };
    Ok(futures::stream::unfold(reader, |mut reader| async move {
        let item = reader.next().await?;
        Some((item, reader))
    }))
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// Turns the body's bytes into events, enforcing the timeouts and the completeness rule.
struct EventReader<D> {
    body: ByteStream,
    parser: SseParser,
    decoder: D,
    /// Scratch buffer for the SSE events of one network read.
    sse: Vec<SseEvent>,
    /// Parsed but not yet yielded; an `Err` here is always last.
    pending: VecDeque<Result<LlmEvent, LlmError>>,
    ttft_deadline: Instant,
    ttft_timeout: Duration,
    idle_timeout: Duration,
    /// When the last event was parsed; `None` until the first one (TTFT still running).
    last_event: Option<Instant>,
    /// A finish reason was seen: a plain EOF after it is a complete (if marker-less) stream.
    finished: bool,
    /// No more reads: end marker, EOF or an error.
    closed: bool,
}

impl<D: Decoder> EventReader<D> {
    async fn next(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.closed {
                return None;
            }
            let (deadline, timeout_error) = match self.last_event {
                None => (self.ttft_deadline, LlmError::TtftTimeout(self.ttft_timeout)),
                Some(at) => (at + self.idle_timeout, LlmError::IdleTimeout(self.idle_timeout)),
            };
            match timeout_at(deadline, self.body.next()).await {
                Err(_) => return self.fail(timeout_error),
                Ok(None) if self.finished => self.closed = true,
                Ok(None) => return self.fail(LlmError::StreamCut("end of body before the end of the reply".into())),
                Ok(Some(Err(e))) => return self.fail(LlmError::StreamCut(LlmError::describe(&e))),
                Ok(Some(Ok(bytes))) => self.absorb(&bytes),
            }
        }
    }

    fn fail(&mut self, err: LlmError) -> Option<Result<LlmEvent, LlmError>> {
        self.closed = true;
        Some(Err(err))
    }

    /// Parses one network read into `pending`, stopping at the end marker or the first error.
    fn absorb(&mut self, bytes: &[u8]) {
        self.sse.clear();
        let fed = self.parser.feed(bytes, &mut self.sse);
        // Events completed before a bad line are still delivered, then the error.
        for event in std::mem::take(&mut self.sse) {
            if self.closed {
                break;
            }
            match self.decoder.decode(&event) {
                Ok(ChunkOutcome::Done) => self.closed = true,
                Ok(ChunkOutcome::Events(events)) => {
                    if !events.is_empty() {
                        self.last_event = Some(Instant::now());
                    }
                    for event in events {
                        self.finished |= matches!(event, LlmEvent::Finish { .. });
                        self.pending.push_back(Ok(event));
                    }
                }
                Err(e) => {
                    self.closed = true;
                    self.pending.push_back(Err(e));
                }
            }
        }
        if let Err(e) = fed {
            if !self.closed {
                self.closed = true;
                self.pending.push_back(Err(LlmError::MalformedChunk(e.to_string())));
            }
        }
    }
}

/// The `error` object of all three providers' error bodies (HTTP errors and in-stream errors):
/// OpenAI `{message, type, code}`, Anthropic `{type, message}`, Gemini `{code, message, status, details}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ErrorObject {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// A string for OpenAI (`rate_limit_exceeded`), the HTTP status number for Gemini.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    /// Gemini's canonical status (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`).
    #[serde(default)]
    pub status: Option<String>,
    /// Gemini's typed details; `RetryInfo.retryDelay` is its rate-limit hint.
    #[serde(default)]
    pub details: Option<Vec<serde_json::Value>>,
}

impl ErrorObject {
    /// The most specific provider code: OpenAI's string code, else Gemini's status, else the type.
    pub fn code_str(&self) -> Option<String> {
        match &self.code {
            Some(serde_json::Value::String(code)) => Some(code.clone()),
            _ => self.status.clone().or_else(|| self.kind.clone()),
        }
    }

    /// Gemini's `RetryInfo.retryDelay` (`"37s"`, `"1.5s"`), when present.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.details.iter().flatten().find_map(|d| {
            let delay = d.get("retryDelay")?.as_str()?.strip_suffix('s')?.parse::<f64>().ok()?;
            (delay.is_finite() && delay >= 0.0).then(|| Duration::from_secs_f64(delay))
        })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

/// Extracts the `error` object of an error body or error event, whichever provider sent it.
pub fn parse_error_body(body: &str) -> Option<ErrorObject> {
    serde_json::from_str::<ErrorBody>(body).ok().map(|b| b.error)
}

/// Builds the error for a non-2xx response, reading a bounded part of its body for the message.
async fn error_from_response(mut response: reqwest::Response, deadline: Instant) -> LlmError {
    let status = response.status().as_u16();
    let header_hint = retry_after(response.headers());
    let mut body = Vec::new();
    // The body is best effort: the status alone already decides the class.
    while body.len() < MAX_ERROR_BODY {
        match timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(bytes))) => body.extend_from_slice(&bytes),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let parsed = parse_error_body(&text);
    let message = match parsed.as_ref().and_then(|e| e.message.clone()) {
        Some(message) => message,
        None => text.chars().take(MAX_ERROR_TEXT).collect(),
    };
    if status == 429 {
        let retry_after = header_hint.or_else(|| parsed.as_ref().and_then(ErrorObject::retry_delay));
        return LlmError::RateLimited { retry_after, message };
    }
    LlmError::Http { status, provider_code: parsed.and_then(|e| e.code_str()), message }
}

/// `retry-after-ms` (sent by some OpenAI-compatible gateways) or `Retry-After` in seconds. The HTTP-date
/// form is not parsed: LLM providers send seconds, and a wrong guess is worse than none.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let valid = |secs: f64| (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    number("retry-after-ms").and_then(|ms| valid(ms / 1000.0)).or_else(|| number("retry-after").and_then(valid))
}

/// Builds a pooled HTTP client with the settings every provider wants.
pub(crate) fn http_client(connect_timeout: Duration) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        // Tokens are tiny writes; Nagle would only add latency to the request.
        .tcp_nodelay(true)
        .build()
        .map_err(|e| LlmError::Config(LlmError::describe(&e)))
}

/// Parses `{base}{path}` and insists on http(s).
pub(crate) fn endpoint(base: &str, path: &str) -> Result<reqwest::Url, LlmError> {
    let base = base.trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{base}{path}"))
        .map_err(|e| LlmError::Config(format!("base URL {base:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LlmError::Config(format!("base URL {base:?}: scheme must be http or https")));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        headers.clear();
        headers.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn error_bodies_of_all_three_providers() {
        let openai = parse_error_body(
            r#"{"error":{"message":"Too long","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}}"#,
        )
        .unwrap();
        assert_eq!(openai.code_str().as_deref(), Some("context_length_exceeded"));
        let anthropic =
            parse_error_body(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#).unwrap();
        assert_eq!(anthropic.code_str().as_deref(), Some("overloaded_error"));
        assert_eq!(anthropic.message.as_deref(), Some("Overloaded"));
        let gemini = parse_error_body(
            r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#,
        )
        .unwrap();
        assert_eq!(gemini.code_str().as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(gemini.retry_delay(), Some(Duration::from_secs(37)));
    }
}
