//! [`OpenAiClient`]: streams a Chat Completion and turns it into [`LlmEvent`]s.
//!
//! Guarantees:
//! - the stream ends with `Ok` events only if the server said `[DONE]` or gave a finish reason; an EOF
//!   or broken body before that is [`LlmError::StreamCut`], so a truncated reply is never mistaken for a
//!   whole one;
//! - time to first token (from sending the request to the first text/finish/usage event) and idle time
//!   (between events afterwards) are bounded, and surface as [`LlmError::TtftTimeout`] /
//!   [`LlmError::IdleTimeout`];
//! - after the first `Err` the stream ends: callers never see events past a failure;
//! - the API key is only ever written into a sensitive `Authorization` header.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use tokio::time::{timeout_at, Instant};

use super::wire::{self, ChunkOutcome, RequestBody};
use crate::sse::{SseEvent, SseParser};
use crate::{ApiKey, ChatRequest, LlmError, LlmEvent};

/// Longest error body we read: enough for any JSON error, bounded against a misbehaving proxy.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How much of a non-JSON error body goes into the error message.
const MAX_ERROR_TEXT: usize = 300;

/// Everything needed to build an [`OpenAiClient`].
#[derive(Clone, Debug)]
pub struct OpenAiConfig {
    /// Up to and including the version path, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8090/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; `None` for local servers that need none.
    pub api_key: Option<ApiKey>,
    /// TCP + TLS connection establishment.
    pub connect_timeout: Duration,
    /// From sending the request to the first text, finish or usage event.
    pub ttft_timeout: Duration,
    /// Longest silence between two events once the stream has started.
    pub idle_timeout: Duration,
}

impl OpenAiConfig {
    /// Defaults that suit a hosted model: generous first token (long prompts queue), tighter idle.
    pub fn new(base_url: impl Into<String>) -> Self {
        OpenAiConfig {
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

/// A Chat Completions client. Cheap to clone (the connection pool is shared); build it once.
#[derive(Clone, Debug)]
pub struct OpenAiClient {
    http: reqwest::Client,
    url: reqwest::Url,
    api_key: Option<ApiKey>,
    ttft_timeout: Duration,
    idle_timeout: Duration,
}

impl OpenAiClient {
    /// Builds the client and its own connection pool.
    pub fn new(cfg: OpenAiConfig) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            // Tokens are tiny writes; Nagle would only add latency to the request.
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LlmError::Config(LlmError::describe(&e)))?;
        Self::with_http_client(http, cfg)
    }

    /// Builds the client on a shared `reqwest::Client` (its connect timeout then applies, not `cfg`'s).
    pub fn with_http_client(http: reqwest::Client, cfg: OpenAiConfig) -> Result<Self, LlmError> {
        let base = cfg.base_url.trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}/chat/completions"))
            .map_err(|e| LlmError::Config(format!("base URL {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(LlmError::Config(format!("base URL {base:?}: scheme must be http or https")));
        }
        Ok(OpenAiClient {
            http,
            url,
            api_key: cfg.api_key,
            ttft_timeout: cfg.ttft_timeout,
            idle_timeout: cfg.idle_timeout,
        })
    }

    /// The endpoint requests go to (`{base_url}/chat/completions`).
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Starts a streamed completion. `Err` here means no stream was opened (status, connect, TTFT);
    /// failures after that arrive as the stream's last item.
    pub async fn stream(
        &self,
        req: &ChatRequest,
    ) -> Result<impl Stream<Item = Result<LlmEvent, LlmError>> + Send + 'static, LlmError> {
        let ttft_deadline = Instant::now() + self.ttft_timeout;
        let mut builder = self.http.post(self.url.clone()).json(&RequestBody::streaming(req));
        if let Some(key) = &self.api_key {
            // reqwest marks bearer headers sensitive, so they are redacted from its own Debug output too.
            builder = builder.bearer_auth(key.expose());
        }
        let response = match timeout_at(ttft_deadline, builder.send()).await {
            Err(_) => return Err(LlmError::TtftTimeout(self.ttft_timeout)),
            Ok(Err(e)) => return Err(LlmError::from_send(&e)),
            Ok(Ok(response)) => response,
        };
        if !response.status().is_success() {
            return Err(error_from_response(response, ttft_deadline).await);
        }
        tracing::debug!(model = %req.model, url = %self.url, "LLM stream opened");
        let reader = EventReader {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::new(),
            sse: Vec::new(),
            pending: VecDeque::new(),
            ttft_deadline,
            ttft_timeout: self.ttft_timeout,
            idle_timeout: self.idle_timeout,
            last_event: None,
            finished: false,
            closed: false,
        };
        Ok(futures::stream::unfold(reader, |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        }))
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// Turns the body's bytes into events, enforcing the timeouts and the completeness rule.
struct EventReader {
    body: ByteStream,
    parser: SseParser,
    /// Scratch buffer for the SSE events of one network read.
    sse: Vec<SseEvent>,
    /// Parsed but not yet yielded; an `Err` here is always last.
    pending: VecDeque<Result<LlmEvent, LlmError>>,
    ttft_deadline: Instant,
    ttft_timeout: Duration,
    idle_timeout: Duration,
    /// When the last event was parsed; `None` until the first one (TTFT still running).
    last_event: Option<Instant>,
    /// A finish reason was seen: a plain EOF after it is a complete (if `[DONE]`-less) stream.
    finished: bool,
    /// No more reads: `[DONE]`, EOF or an error.
    closed: bool,
}

impl EventReader {
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
                Ok(None) => return self.fail(LlmError::StreamCut("end of body before [DONE]".to_owned())),
                Ok(Some(Err(e))) => return self.fail(LlmError::StreamCut(LlmError::describe(&e))),
                Ok(Some(Ok(bytes))) => self.absorb(&bytes),
            }
        }
    }

    fn fail(&mut self, err: LlmError) -> Option<Result<LlmEvent, LlmError>> {
        self.closed = true;
        Some(Err(err))
    }

    /// Parses one network read into `pending`, stopping at `[DONE]` or the first error.
    fn absorb(&mut self, bytes: &[u8]) {
        self.sse.clear();
        if let Err(e) = self.parser.feed(bytes, &mut self.sse) {
            // Events completed before the bad line are still delivered, then the error.
            self.queue_events();
            self.closed = true;
            self.pending.push_back(Err(LlmError::MalformedChunk(e.to_string())));
            return;
        }
        self.queue_events();
    }

    fn queue_events(&mut self) {
        for event in std::mem::take(&mut self.sse) {
            if self.closed {
                break;
            }
            match wire::parse_chunk(&event.data) {
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
    }
}

/// Builds the error for a non-2xx response, reading a bounded part of its body for the message.
async fn error_from_response(mut response: reqwest::Response, deadline: Instant) -> LlmError {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let mut body = Vec::new();
    // The body is best effort: the status alone already decides the class.
    while body.len() < MAX_ERROR_BODY {
        match timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(bytes))) => body.extend_from_slice(&bytes),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let parsed = wire::parse_error_body(&text);
    let message = match parsed.as_ref().and_then(|e| e.message.clone()) {
        Some(message) => message,
        None => text.chars().take(MAX_ERROR_TEXT).collect(),
    };
    if status == 429 {
        return LlmError::RateLimited { retry_after, message };
    }
    LlmError::Http { status, provider_code: parsed.and_then(|e| e.code_str()), message }
}

/// `retry-after-ms` (sent by some OpenAI-compatible gateways) or `Retry-After` in seconds. The HTTP-date
/// form is not parsed: LLM providers send seconds, and a wrong guess is worse than none.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let valid = |secs: f64| (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    number("retry-after-ms").and_then(|ms| valid(ms / 1000.0)).or_else(|| number("retry-after").and_then(valid))
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
    fn base_url_must_be_http() {
        let err = OpenAiClient::new(OpenAiConfig::new("ftp://example.invalid/v1")).unwrap_err();
        assert!(matches!(err, LlmError::Config(_)), "{err:?}");
        let client = OpenAiClient::new(OpenAiConfig::new("http://127.0.0.1:8090/v1/")).unwrap();
        assert_eq!(client.url().as_str(), "http://127.0.0.1:8090/v1/chat/completions");
    }
}
