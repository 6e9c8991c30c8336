//! The mock's responses: OpenAI's exact wire format (SSE chunks, the non-streaming object, error bodies)
//! here, Anthropic's and Gemini's frames in [`super::formats`], one pacing and fault engine for all three.
//!
//! Guarantees: a streamed reply's text deltas concatenate to the non-streamed `message.content` for the
//! same request; pacing is deadline-based (token `i` is due at `ttft + i / tps`), so a slow consumer or a
//! busy runtime does not stretch the configured rate; frames due at the same instant are written together
//! (an instant reply is one write); each stream is one tokio task feeding a small bounded channel, so a slow
//! reader applies back-pressure and a departed one ends the task.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};

use super::formats::{self, Format};
use super::script::Fault;
use super::text::Pieces;
use super::wire::{
    CachedTokens, ChunkChoice, ChunkOut, CompletionChoice, CompletionOut, DeltaOut, ErrorDetail, ErrorOut, MessageOut,
    ReasoningTokens, UsageOut, FINGERPRINT,
};
use super::Counters;

/// A stalled stream gives up after this long, so a forgotten client cannot pin a task forever.
const MAX_STALL: Duration = Duration::from_secs(600);

/// Everything decided about one reply before the first byte is sent.
pub(super) struct Reply {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub pieces: Pieces,
    pub finish_reason: &'static str,
    pub input_tokens: usize,
    pub ttft: Duration,
    /// Between two tokens; zero sends them as fast as the client reads.
    pub interval: Duration,
    pub fault: Option<Fault>,
    pub format: Format,
    /// Call this tool (`name`, JSON arguments) instead of answering.
    pub tool_call: Option<(String, String)>,
    /// OpenAI only: the client asked for the final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

impl Reply {
    /// Frames sent once, just before the first token (or the finish, for an empty reply).
    fn prelude(&self) -> Vec<String> {
        match self.format {
            Format::Anthropic => formats::anthropic_prelude(&self.id, &self.model, self.input_tokens),
            Format::OpenAi | Format::Gemini => Vec::new(),
        }
    }

    fn content_frame(&self, index: usize) -> String {
        let text = self.pieces.get(index).map(String::as_str).unwrap_or_default();
        match self.format {
            Format::OpenAi => self.content_chunk(index, self.include_usage),
            Format::Anthropic => formats::anthropic_delta(text),
            Format::Gemini => formats::gemini_chunk(&self.model, text, self.input_tokens, None),
        }
    }

    /// Everything after the last token: finish reason, usage and the end marker, per format.
    fn finish_frames(&self) -> Vec<String> {
        let output = self.pieces.len();
        match self.format {
            Format::OpenAi => {
                let mut frames = vec![self.finish_chunk(self.include_usage)];
                if self.include_usage {
                    frames.push(self.usage_chunk());
                }
                frames.push("data: [DONE]\n\n".to_owned());
                frames
            }
            Format::Anthropic => formats::anthropic_finish(self.finish_reason, output),
            Format::Gemini => {
                let finish = Some((self.finish_reason, output));
                vec![formats::gemini_chunk(&self.model, "", self.input_tokens, finish)]
            }
        }
    }

    fn usage(&self) -> UsageOut {
        let (input, output) = (self.input_tokens, self.pieces.len());
        UsageOut {
            prompt_tokens: input,
            completion_tokens: output,
            total_tokens: input + output,
            prompt_tokens_details: CachedTokens { cached_tokens: 0 },
            completion_tokens_details: ReasoningTokens { reasoning_tokens: 0 },
        }
    }

    /// One SSE frame. `usage`: `None` omits the field (no `include_usage`), `Some(None)` sends `null`.
    fn chunk(&self, choices: Vec<ChunkChoice<'_>>, usage: Option<Option<UsageOut>>) -> String {
        let chunk = ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: FINGERPRINT,
            choices,
            usage,
        };
        // Serialising plain structs of strings and numbers cannot fail.
        format!("data: {}\n\n", serde_json::to_string(&chunk).unwrap_or_default())
    }

    /// A content chunk; the first one also carries the role, as OpenAI's does.
    fn content_chunk(&self, index: usize, include_usage: bool) -> String {
        let delta = DeltaOut {
            role: (index == 0).then_some("assistant"),
            content: Some(self.pieces.get(index).map(String::as_str).unwrap_or_default()),
        };
        let choice = ChunkChoice { index: 0, delta, logprobs: None, finish_reason: None };
        self.chunk(vec![choice], include_usage.then_some(None))
    }

    fn finish_chunk(&self, include_usage: bool) -> String {
        let delta = DeltaOut { role: None, content: None };
        let choice = ChunkChoice { index: 0, delta, logprobs: None, finish_reason: Some(self.finish_reason) };
        self.chunk(vec![choice], include_usage.then_some(None))
    }

    fn usage_chunk(&self) -> String {
        self.chunk(Vec::new(), Some(Some(self.usage())))
    }

    /// The non-streaming `chat.completion` object.
    fn completion(&self) -> CompletionOut<'_> {
        CompletionOut {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            system_fingerprint: FINGERPRINT,
            choices: [CompletionChoice {
                index: 0,
                message: MessageOut { role: "assistant", content: self.pieces.concat(), refusal: None },
                logprobs: None,
                finish_reason: self.finish_reason,
            }],
            usage: self.usage(),
        }
    }

    /// Time until the whole reply would have been generated, for the non-streaming answer.
    fn generation_time(&self) -> Duration {
        let gaps = u32::try_from(self.pieces.len().saturating_sub(1)).unwrap_or(u32::MAX);
        self.ttft.saturating_add(self.interval.saturating_mul(gaps))
    }
}

/// Decrements `streams_open` when the response body is dropped: sent completely, cut, or abandoned.
pub(super) struct OpenStream(Arc<Counters>);

impl OpenStream {
    pub(super) fn new(counters: Arc<Counters>) -> Self {
        counters.streams_open.fetch_add(1, Ordering::Relaxed);
        OpenStream(counters)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.streams_open.fetch_sub(1, Ordering::Relaxed);
    }
}

type Frame = Result<String, io::Error>;

/// A `text/event-stream` response acting out `reply`.
pub(super) fn stream(reply: Reply, open: OpenStream) -> Response {
    let (tx, rx) = mpsc::channel::<Frame>(8);
    tokio::spawn(async move {
        // `Err` only means the client went away; there is nobody left to tell.
        let _ = produce(&tx, &reply).await;
    });
    let body = futures::stream::unfold((rx, open), |(mut rx, open)| async move {
        let frame = rx.recv().await?;
        Some((frame, (rx, open)))
    });
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (StatusCode::OK, headers, Body::from_stream(body)).into_response()
}

struct Gone;

async fn send(tx: &mpsc::Sender<Frame>, frame: Frame) -> Result<(), Gone> {
    tx.send(frame).await.map_err(|_| Gone)
}

async fn produce(tx: &mpsc::Sender<Frame>, reply: &Reply) -> Result<(), Gone> {
    let start = Instant::now() + reply.ttft;
    if let Some((name, args)) = &reply.tool_call {
        sleep_until(start).await;
        // Scripted text comes first, as when a model says "let me check" before calling a tool.
        let after_text = !reply.pieces.is_empty();
        if after_text {
            for frame in reply.prelude() {
                send(tx, Ok(frame)).await?;
            }
            for index in 0..reply.pieces.len() {
                send(tx, Ok(reply.content_frame(index))).await?;
            }
        }
        let frames = formats::tool_call_frames(
            after_text,
            reply.format,
            &reply.id,
            &reply.model,
            name,
            args,
            reply.input_tokens,
            reply.include_usage,
        );
        for frame in frames {
            send(tx, Ok(frame)).await?;
        }
        return Ok(());
    }
    let fault_at = match reply.fault {
        Some(Fault::Cut | Fault::CutOnce) => Some(3),
        Some(Fault::Stall | Fault::ErrorEvent | Fault::Malformed) => Some(2),
        _ => None,
    }
    .map(|at: usize| at.min(reply.pieces.len()));
    // Frames due at the same instant leave in one write, as a model's burst arrives in one TCP segment: an
    // instant reply is one write, not one per token (which cost the mock and its client a syscall each).
    let mut out = Batch { tx, pending: String::new() };
    let mut started = false;
    for index in 0..=reply.pieces.len() {
        if fault_at == Some(index) {
            match reply.fault {
                Some(Fault::Cut | Fault::CutOnce) => {
                    out.flush().await?;
                    // Let hyper flush what was sent, so the client sees a cut *stream*, not a failed request.
                    sleep(Duration::from_millis(20)).await;
                    return send(tx, Err(io::Error::other("mock: connection cut"))).await;
                }
                Some(Fault::Stall) => {
                    out.flush().await?;
                    tokio::select! {
                        _ = tx.closed() => {}
                        _ = sleep(MAX_STALL) => {}
                    }
                    return Ok(());
                }
                Some(Fault::ErrorEvent) => {
                    out.push(formats::error_event(reply.format));
                    return out.flush().await;
                }
                Some(Fault::Malformed) => out.push(formats::malformed(reply.format, &reply.id)),
                Some(Fault::Status(_)) | None => {}
            }
        }
        if index == reply.pieces.len() {
            break;
        }
        let gaps = u32::try_from(index).unwrap_or(u32::MAX);
        let due = start + reply.interval.saturating_mul(gaps);
        // Checked first because even an elapsed sleep goes through the timer wheel: instant mode stays instant.
        if Instant::now() < due {
            out.flush().await?;
            sleep_until(due).await;
        }
        if !started {
            started = true;
            for frame in reply.prelude() {
                out.push(frame);
            }
        }
        out.push(reply.content_frame(index));
    }
    if !started {
        for frame in reply.prelude() {
            out.push(frame);
        }
    }
    for frame in reply.finish_frames() {
        out.push(frame);
    }
    out.flush().await
}

/// Frames gathered until the stream has to wait (or ends), then sent as one.
struct Batch<'a> {
    tx: &'a mpsc::Sender<Frame>,
    pending: String,
}

impl Batch<'_> {
    fn push(&mut self, frame: String) {
        self.pending.push_str(&frame);
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        if self.pending.is_empty() {
            return Ok(());
        }
        send(self.tx, Ok(std::mem::take(&mut self.pending))).await
    }
}

/// The non-streaming `chat.completion` object, after the time generation would have taken.
pub(super) async fn complete(reply: Reply) -> Response {
    sleep(reply.generation_time()).await;
    match reply.fault {
        Some(Fault::Stall) => {
            sleep(MAX_STALL).await;
            error(StatusCode::GATEWAY_TIMEOUT, "mock: stalled")
        }
        Some(Fault::Cut | Fault::CutOnce) => {
            let partial = futures::stream::iter([
                Ok(format!("{{\"id\":\"{}\",\"object\":\"chat.completion\",", reply.id)),
                Err(io::Error::other("mock: connection cut")),
            ]);
            let headers = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
            (StatusCode::OK, headers, Body::from_stream(partial)).into_response()
        }
        Some(Fault::ErrorEvent) => error(StatusCode::INTERNAL_SERVER_ERROR, "overloaded"),
        Some(Fault::Malformed) => {
            let headers = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
            (StatusCode::OK, headers, format!("{{\"id\":\"{}\",\"choices\":[", reply.id)).into_response()
        }
        Some(Fault::Status(_)) | None => Json(reply.completion()).into_response(),
    }
}

/// An error body in `format`'s dialect.
pub(super) fn error_in(format: Format, status: StatusCode, message: &str) -> Response {
    match format {
        Format::OpenAi => error(status, message),
        Format::Anthropic => formats::anthropic_error(status, message),
        Format::Gemini => formats::gemini_error(status, message),
    }
}

/// An OpenAI-style error body with the `type`/`code` OpenAI uses for that status.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let (kind, code) = match status.as_u16() {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    let body = Json(ErrorOut { error: ErrorDetail { message, kind, param: None, code } });
    if status == StatusCode::TOO_MANY_REQUESTS {
        return (status, [(header::RETRY_AFTER, HeaderValue::from_static("1"))], body).into_response();
    }
    (status, body).into_response()
}
