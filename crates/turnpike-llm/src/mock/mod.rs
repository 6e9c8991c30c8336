//! A scriptable mock LLM server for tests and local runs, speaking three wire formats.
//!
//! Guarantees: speaks OpenAI Chat Completions (streaming and not), Anthropic Messages and Gemini
//! `streamGenerateContent?alt=sse` (streaming) closely enough for real clients; the same request gets
//! the same text in every format; replies are deterministic (seed + last user message); behaviour is scriptable per request
//! ([`script`]); every chat request is counted, so a test can assert that no LLM call was made
//! (`GET /mock/stats` or [`MockServer::stats`]); streams are tokio tasks, not threads, so thousands can
//! be open at once.
//!
//! Routes: `POST /v1/chat/completions` (and `/chat/completions`), `POST /v1/messages` (Anthropic),
//! `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` (Gemini), `GET /healthz`, `GET /mock/stats`,
//! and a mock HTTP tool `POST /mock/tool/{name}` (answers `{name}: {arguments}`).
//!
//! Scripting, in the last user message (or as the header in brackets):
//! - `[[mock:reply=some text]]` (`x-mock-reply`): reply exactly this, streamed word by word;
//! - `[[mock:fault=500]]` (`x-mock-fault`): any 4xx/5xx status with an error body in the request's
//!   format (429 adds `Retry-After: 1`, for Gemini `RetryInfo.retryDelay: "1s"`; `fault=529` is
//!   Anthropic's `overloaded_error`); `fault=cut` (3 chunks, then the connection drops), `fault=stall` (2 chunks, then
//!   silence), `fault=error_event` (the format's error event in the 200 stream), `fault=malformed`;
//! - `[[mock:tool=lookup_order {"order":"42"}]]` (`x-mock-tool`): stream a call of that tool (in the
//!   request's format) instead of answering; once the request carries a tool result, answer
//!   `Tool result: <the result>` (with `reply=...` too, that text is streamed before the call; scripted
//!   faults do not apply to the tool-call reply itself);
//! - `[[mock:recall=refund]]` (`x-mock-recall`): reply with the first sentence of the earlier messages
//!   (system, summary, history: everything but the last user message) that contains the word, a stand-in
//!   for a model that reads its context; `reply=...` wins over it;
//! - a request whose last user message starts with [`SUMMARY_REQUEST_PREFIX`] is answered with a digest of
//!   the other user messages (first sentence of each line, 12 words at most), a stand-in for a summariser;
//! - `[[mock:ttft=500]]` (`x-mock-ttft-ms`), `[[mock:tps=20]]` (`x-mock-tokens-per-sec`),
//!   `[[mock:tokens=100]]` (`x-mock-tokens`);
//! - server-wide, [`MockServer::set_fault`] makes every request fail until cleared (a provider outage),
//!   whatever the messages say: the way failover tests take one deployment down and bring it back; a
//!   separate process takes the same through `PUT /mock/fault` with a fault as the body (`503`, `429`,
//!   `cut`, `stall`, ...) and clears it with `none` (the chaos tool's provider faults);
//! - `fault=cut_once`: like `cut`, but a continuation request is answered whole.
//!
//! Continuation requests, in each format's way ([`crate::continuation`]): an OpenAI request whose last
//! message is the assistant's with `continue_final_message: true` (vLLM) or `prefix: true` (DeepSeek,
//! Mistral), an Anthropic request ending in an assistant message (a prefill; one ending in whitespace is
//! refused with a 400, as Anthropic does), a Gemini request ending in a `model` content. The reply the mock
//! would have written for the prompt is deterministic, so when the text to continue is a prefix of it the
//! mock streams exactly the rest; other text gets deterministic words of its own
//! ([`text::continue_after`]). Scripted faults apply to continuations too (except `cut_once`'s).

pub mod script;
pub mod text;
pub mod vary;

/// A request whose last user message starts with this is a summary request: the mock answers it with a
/// digest of the other user messages ([`text::digest`]) instead of generated filler.
pub const SUMMARY_REQUEST_PREFIX: &str = "Summarise the conversation";

mod formats;
mod respond;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use self::formats::Format;
use self::respond::{OpenStream, Reply};
use self::script::{Fault, Script};

/// Server-wide defaults; each request may override them with its [`Script`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockConfig {
    /// Delay before the first token.
    pub ttft: Duration,
    /// Pacing after the first token; 0 sends tokens as fast as the client reads.
    pub tokens_per_sec: u32,
    /// Mixed with the hash of the last user message to pick the reply's words.
    pub seed: u64,
    /// Length of a generated reply, in tokens (word chunks).
    pub reply_tokens: usize,
    /// How much each request's timing and length vary around the values above, and the share of requests
    /// rate-limited, failing or stalling ([`vary`]); off by default.
    pub variation: vary::Variation,
}

impl Default for MockConfig {
    /// Roughly a hosted model's feel: 200 ms to first token, 50 tokens/s.
    fn default() -> Self {
        MockConfig {
            ttft: Duration::from_millis(200),
            tokens_per_sec: 50,
            seed: 7,
            reply_tokens: 40,
            variation: vary::Variation::default(),
        }
    }
}

impl MockConfig {
    /// No delays at all: for functional and throughput tests.
    pub fn instant() -> Self {
        MockConfig { ttft: Duration::ZERO, tokens_per_sec: 0, ..Self::default() }
    }
}

/// What `GET /mock/stats` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStats {
    /// Chat completion requests received, whatever their outcome.
    pub requests: u64,
    /// Streaming responses whose body is still being sent.
    pub streams_open: u64,
    /// Calls of the mock HTTP tool (`POST /mock/tool/{name}`).
    #[serde(default)]
    pub tool_calls: u64,
    /// Of `requests`, the summary requests ([`SUMMARY_REQUEST_PREFIX`]): assemble's running summaries and
    /// handoff's notes for the agent, so a test can tell them from generate's replies.
    #[serde(default)]
    pub summaries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    streams_open: AtomicU64,
    tool_calls: AtomicU64,
    summaries: AtomicU64,
    /// A server-wide fault that overrides every request's script (see [`MockServer::set_fault`]).
    outage: Mutex<Option<Fault>>,
    /// The messages of the latest requests, oldest first, at most [`RECEIVED_KEPT`] (see
    /// [`MockServer::received`]).
    received: Mutex<std::collections::VecDeque<Vec<(String, String)>>>,
}

/// How many requests [`MockServer::received`] keeps: enough for one test's turns, bounded for load tests.
const RECEIVED_KEPT: usize = 256;

impl Counters {
    fn outage(&self) -> Option<Fault> {
        // A poisoned lock only means a panicking test thread; the value is still a plain Option.
        *self.outage.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Counters {
    fn snapshot(&self) -> MockStats {
        MockStats {
            requests: self.requests.load(Ordering::Relaxed),
            streams_open: self.streams_open.load(Ordering::Relaxed),
            tool_calls: self.tool_calls.load(Ordering::Relaxed),
            summaries: self.summaries.load(Ordering::Relaxed),
        }
    }
}

struct AppState {
    cfg: MockConfig,
    counters: Arc<Counters>,
}

/// Serves until the listener fails. Bind port 0 in tests and read `listener.local_addr()` first.
pub async fn serve(listener: TcpListener, cfg: MockConfig) -> io::Result<()> {
    serve_with(listener, cfg, Arc::new(Counters::default())).await
}

async fn serve_with(listener: TcpListener, cfg: MockConfig, counters: Arc<Counters>) -> io::Result<()> {
    let state = Arc::new(AppState { cfg, counters });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/messages", post(anthropic))
        .route("/v1beta/models/{target}", post(gemini))
        .route("/healthz", get(|| async { "ok" }))
        .route("/mock/stats", get(stats))
        .route("/mock/fault", axum::routing::put(set_outage))
        .route("/mock/tool/{name}", post(tool))
        .fallback(|| async { respond::error(StatusCode::NOT_FOUND, "mock: no such route") })
        .with_state(state);
    // Tokens are tiny writes: without TCP_NODELAY, Nagle + delayed ACK would add ~40 ms gaps.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

/// A mock running in the background of the current runtime; stops accepting when dropped.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<io::Result<()>>,
}

impl MockServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL an OpenAI client needs, e.g. `http://127.0.0.1:41234/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The base URL for Anthropic and Gemini clients (they add `/v1/...` and `/v1beta/...` themselves).
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> MockStats {
        self.counters.snapshot()
    }

    /// The `(role, text)` messages of the latest requests this mock received (at most 256, oldest first):
    /// what a provider would have seen, for tests that check what left the pipeline.
    pub fn received(&self) -> Vec<Vec<(String, String)>> {
        self.counters.received.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// Makes every request act out `fault` (e.g. `Fault::Status(503)`) until called with `None`.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.counters.outage.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
        in_process().retain(|addr| *addr != self.addr);
    }
}

/// The addresses of the mocks this process serves ([`spawn`]).
fn in_process() -> std::sync::MutexGuard<'static, Vec<SocketAddr>> {
    static ADDRS: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());
    ADDRS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `base_url` is the OpenAI base URL of a mock this process serves: the mock `turnpike run`
/// starts when no provider is configured, or a test's. Its client is then built to send continuation
/// requests, which the mock answers (see the module comment): a server elsewhere says so in its
/// configuration instead.
pub fn serves_in_process(base_url: &str) -> bool {
    in_process().iter().any(|addr| base_url.trim_end_matches('/') == format!("http://{addr}/v1"))
}

/// Binds `127.0.0.1:0` and serves in a background task.
pub async fn spawn(cfg: MockConfig) -> io::Result<MockServer> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let counters = Arc::new(Counters::default());
    let task = tokio::spawn(serve_with(listener, cfg, Arc::clone(&counters)));
    in_process().push(addr);
    Ok(MockServer { addr, counters, task })
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<MockStats> {
    Json(state.counters.snapshot())
}

/// `PUT /mock/fault`: the server-wide fault of [`MockServer::set_fault`] for a mock in another process.
async fn set_outage(State(state): State<Arc<AppState>>, body: String) -> Result<String, Response> {
    let fault = match body.trim() {
        "none" | "" => None,
        other => Some(
            Fault::parse(other)
                .ok_or_else(|| respond::error(StatusCode::BAD_REQUEST, &format!("mock: unknown fault {other:?}")))?,
        ),
    };
    *state.counters.outage.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    Ok(format!("{fault:?}\n"))
}

/// A mock HTTP tool for tool-loop tests and demos: answers `{name}: {arguments}` and counts the call.
async fn tool(State(state): State<Arc<AppState>>, Path(name): Path<String>, body: Bytes) -> String {
    state.counters.tool_calls.fetch_add(1, Ordering::Relaxed);
    let args =
        serde_json::from_slice::<serde_json::Value>(&body).map_or_else(|_| "invalid JSON".into(), |v| v.to_string());
    format!("{name}: {args}")
}

#[derive(Deserialize)]
struct ChatBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    /// vLLM's continuation flag.
    #[serde(default)]
    continue_final_message: bool,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: serde_json::Value,
    /// DeepSeek's and Mistral's continuation flag.
    #[serde(default)]
    prefix: bool,
}

/// Plain string content, or the `text` parts of the array-of-blocks form (OpenAI and Anthropic).
fn content_text(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    }
}

/// Anthropic `POST /v1/messages`.
#[derive(Deserialize)]
struct AnthropicBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    system: serde_json::Value,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    max_tokens: Option<usize>,
}

/// Gemini `streamGenerateContent`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiBody {
    #[serde(default)]
    contents: Vec<GeminiContent>,
    #[serde(default)]
    system_instruction: Option<GeminiContent>,
    #[serde(default)]
    generation_config: Option<GeminiGeneration>,
}

#[derive(Deserialize)]
struct GeminiContent {
    #[serde(default)]
    role: String,
    #[serde(default)]
    parts: Vec<serde_json::Value>,
}

impl GeminiContent {
    fn text(&self) -> String {
        content_text(&serde_json::Value::Array(self.parts.clone()))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiGeneration {
    #[serde(default)]
    max_output_tokens: Option<usize>,
}

/// A request in any format, reduced to what the mock's behaviour depends on.
struct Request {
    format: Format,
    /// The latest tool result in the conversation, if any.
    tool_result: Option<String>,
    model: String,
    /// `(role, text)` in order; roles use each format's own names (`user` is common to all three).
    messages: Vec<(String, String)>,
    stream: bool,
    include_usage: bool,
    max_tokens: Option<usize>,
    /// The assistant text to continue (a continuation request); not among `messages`.
    continuation: Option<String>,
}

/// Takes a trailing message of `role` off `messages` as the text to continue, when `continues` says the
/// request is a continuation.
fn take_continuation(messages: &mut Vec<(String, String)>, role: &str, continues: bool) -> Option<String> {
    let last = messages.last().filter(|(r, _)| continues && r == role)?;
    let text = last.1.clone();
    messages.pop();
    Some(text)
}

async fn chat(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: ChatBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return bad_json(&state, Format::OpenAi, &e),
    };
    let tool_result = body.messages.iter().rev().find(|m| m.role == "tool").map(|m| content_text(&m.content));
    // A plain trailing assistant message asks OpenAI for a new reply after it; only the flags continue it.
    let continues = body.continue_final_message || body.messages.last().is_some_and(|m| m.prefix);
    let mut messages: Vec<(String, String)> =
        body.messages.iter().map(|m| (m.role.clone(), content_text(&m.content))).collect();
    let continuation = take_continuation(&mut messages, "assistant", continues);
    let request = Request {
        format: Format::OpenAi,
        tool_result,
        model: body.model,
        messages,
        continuation,
        stream: body.stream,
        include_usage: body.stream_options.is_some_and(|o| o.include_usage),
        max_tokens: body.max_completion_tokens.or(body.max_tokens),
    };
    respond_to(&state, &headers, request).await
}

async fn anthropic(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: AnthropicBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return bad_json(&state, Format::Anthropic, &e),
    };
    let mut messages = Vec::new();
    let system = content_text(&body.system);
    if !system.is_empty() {
        messages.push(("system".to_owned(), system));
    }
    messages.extend(body.messages.iter().map(|m| (m.role.clone(), content_text(&m.content))));
    let tool_result = body.messages.iter().rev().find_map(|m| {
        let blocks = m.content.as_array()?;
        let result = blocks.iter().rev().find(|b| b["type"] == "tool_result")?;
        Some(match &result["content"] {
            serde_json::Value::String(text) => text.clone(),
            other => content_text(other),
        })
    });
    // A trailing assistant message is a prefill, which Anthropic refuses to end in whitespace.
    let continuation = take_continuation(&mut messages, "assistant", true);
    if continuation.as_deref().is_some_and(|c| c.ends_with(char::is_whitespace)) {
        state.counters.requests.fetch_add(1, Ordering::Relaxed);
        let message = "messages: final assistant content cannot end with trailing whitespace";
        return respond::error_in(Format::Anthropic, StatusCode::BAD_REQUEST, message);
    }
    let request = Request {
        format: Format::Anthropic,
        tool_result,
        model: body.model,
        messages,
        continuation,
        stream: body.stream,
        include_usage: true,
        max_tokens: body.max_tokens,
    };
    respond_to(&state, &headers, request).await
}

#[derive(Deserialize)]
struct GeminiQuery {
    #[serde(default)]
    alt: Option<String>,
}

async fn gemini(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
    Query(query): Query<GeminiQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(model) = target.strip_suffix(":streamGenerateContent") else {
        state.counters.requests.fetch_add(1, Ordering::Relaxed);
        return respond::error_in(Format::Gemini, StatusCode::NOT_FOUND, "mock: only :streamGenerateContent");
    };
    if query.alt.as_deref() != Some("sse") {
        state.counters.requests.fetch_add(1, Ordering::Relaxed);
        return respond::error_in(Format::Gemini, StatusCode::BAD_REQUEST, "mock: only alt=sse is supported");
    }
    let body: GeminiBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return bad_json(&state, Format::Gemini, &e),
    };
    let mut messages = Vec::new();
    if let Some(system) = &body.system_instruction {
        messages.push(("system".to_owned(), system.text()));
    }
    messages.extend(body.contents.iter().map(|c| (c.role.clone(), c.text())));
    let tool_result = body.contents.iter().rev().find_map(|c| {
        let response = c.parts.iter().rev().find_map(|p| p.get("functionResponse"))?;
        Some(match &response["response"]["result"] {
            serde_json::Value::String(text) => text.clone(),
            _ => response["response"].to_string(),
        })
    });
    let continuation = take_continuation(&mut messages, "model", true);
    let request = Request {
        format: Format::Gemini,
        tool_result,
        model: model.to_owned(),
        messages,
        continuation,
        stream: true,
        include_usage: true,
        max_tokens: body.generation_config.and_then(|g| g.max_output_tokens),
    };
    respond_to(&state, &headers, request).await
}

fn bad_json(state: &AppState, format: Format, e: &serde_json::Error) -> Response {
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    respond::error_in(format, StatusCode::BAD_REQUEST, &format!("mock: invalid JSON body: {e}"))
}

async fn respond_to(state: &AppState, headers: &HeaderMap, body: Request) -> Response {
    let number = state.counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
    {
        let mut received = state.counters.received.lock().unwrap_or_else(|e| e.into_inner());
        if received.len() == RECEIVED_KEPT {
            received.pop_front();
        }
        received.push_back(body.messages.clone());
    }
    let format = body.format;
    if body.messages.iter().all(|(role, _)| role == "system") {
        return respond::error_in(format, StatusCode::BAD_REQUEST, "mock: 'messages' must not be empty");
    }
    // The last user turn *with text*: in Anthropic and Gemini, tool results are user turns too.
    let last_user_at = body.messages.iter().rposition(|(role, text)| role == "user" && !text.is_empty());
    let last_user = last_user_at.map(|i| body.messages[i].1.clone()).unwrap_or_default();
    if last_user.starts_with(SUMMARY_REQUEST_PREFIX) {
        state.counters.summaries.fetch_add(1, Ordering::Relaxed);
    }
    let mut script = Script::from_message(&last_user).or(Script::from_headers(headers));
    let cfg = &state.cfg;
    // This request's own timing, length and luck (a scripted value wins).
    let drawn = cfg.variation.draw(cfg.seed, number, cfg.ttft, cfg.tokens_per_sec, cfg.reply_tokens);
    script.fault = script.fault.or(drawn.fault);
    if let Some(fault) = state.counters.outage() {
        script.fault = Some(fault);
    }
    if script.fault == Some(Fault::CutOnce) && body.continuation.is_some() {
        script.fault = None;
    }
    if let Some(Fault::Status(status)) = script.fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return respond::error_in(format, status, &format!("mock: scripted HTTP {}", status.as_u16()));
    }
    if !body.stream && format != Format::OpenAi {
        return respond::error_in(format, StatusCode::BAD_REQUEST, "mock: only streaming is supported here");
    }

    let (mut tool_call, mut reply_text) = (None, script.reply);
    // Everything but the last user message: what a model would read as context.
    let earlier: Vec<&str> = body
        .messages
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != last_user_at)
        .map(|(_, (_, t))| t.as_str())
        .collect();
    if reply_text.is_none() {
        if let Some(word) = &script.recall {
            reply_text = Some(text::recall(&earlier, word));
        } else if last_user.starts_with(SUMMARY_REQUEST_PREFIX) {
            let data: Vec<&str> = body
                .messages
                .iter()
                .enumerate()
                .filter(|(i, (role, _))| role == "user" && Some(*i) != last_user_at)
                .map(|(_, (_, t))| t.as_str())
                .collect();
            reply_text = Some(text::digest(&data)).filter(|d| !d.is_empty());
        }
    }
    match (script.tool, &body.tool_result) {
        (Some(_), Some(result)) => reply_text = Some(format!("Tool result: {result}")),
        (Some(call), None) => tool_call = Some(call),
        (None, _) => {}
    }
    let tokens = script.tokens.unwrap_or(drawn.reply_tokens);
    let mut pieces = match reply_text {
        Some(text) => text::split_words(&text),
        None if tool_call.is_some() => Vec::new(),
        None => text::generate(cfg.seed, &last_user, tokens),
    };
    if let Some(shown) = &body.continuation {
        pieces = text::continue_after(&pieces, shown, cfg.seed, &last_user, tokens);
    }
    let mut finish_reason = "stop";
    if let Some(max) = body.max_tokens {
        if pieces.len() > max {
            pieces.truncate(max);
            finish_reason = "length";
        }
    }
    let tokens_per_sec = script.tokens_per_sec.unwrap_or(drawn.tokens_per_sec);
    let reply = Reply {
        id: match format {
            Format::OpenAi => format!("chatcmpl-mock-{number}"),
            Format::Anthropic => format!("msg_mock_{number}"),
            Format::Gemini => format!("gemini-mock-{number}"),
        },
        created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        model: body.model,
        pieces,
        finish_reason,
        input_tokens: body.messages.iter().map(|(_, t)| text::count_words(t)).sum::<usize>()
            + body.continuation.as_deref().map_or(0, text::count_words),
        ttft: script.ttft.unwrap_or(drawn.ttft),
        interval: match tokens_per_sec {
            0 => Duration::ZERO,
            tps => Duration::from_secs(1) / tps,
        },
        fault: script.fault,
        format,
        tool_call,
        include_usage: body.include_usage,
    };
    if body.stream {
        respond::stream(reply, OpenStream::new(Arc::clone(&state.counters)))
    } else {
        respond::complete(reply).await
    }
}
