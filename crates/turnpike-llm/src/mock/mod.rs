//! A scriptable OpenAI-compatible server for tests and local runs.
//!
//! Guarantees: speaks the Chat Completions wire format (streaming and not) closely enough for real OpenAI
//! clients; replies are deterministic (seed + last user message); behaviour is scriptable per request
//! ([`script`]); every chat request is counted, so a test can assert that no LLM call was made
//! (`GET /mock/stats` or [`MockServer::stats`]); streams are tokio tasks, not threads, so thousands can
//! be open at once.
//!
//! Routes: `POST /v1/chat/completions` (and `/chat/completions`), `GET /healthz`, `GET /mock/stats`.
//!
//! Scripting, in the last user message (or as the header in brackets):
//! - `[[mock:reply=some text]]` (`x-mock-reply`): reply exactly this, streamed word by word;
//! - `[[mock:fault=500]]` (`x-mock-fault`): any 4xx/5xx status with an OpenAI error body (429 adds
//!   `Retry-After: 1`); `fault=cut` (3 chunks, then the connection drops), `fault=stall` (2 chunks, then
//!   silence), `fault=error_event` (an `{"error":...}` event in the 200 stream), `fault=malformed`;
//! - `[[mock:ttft=500]]` (`x-mock-ttft-ms`), `[[mock:tps=20]]` (`x-mock-tokens-per-sec`),
//!   `[[mock:tokens=100]]` (`x-mock-tokens`).

pub mod script;
pub mod text;

mod respond;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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
}

impl Default for MockConfig {
    /// Roughly a hosted model's feel: 200 ms to first token, 50 tokens/s.
    fn default() -> Self {
        MockConfig { ttft: Duration::from_millis(200), tokens_per_sec: 50, seed: 7, reply_tokens: 40 }
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
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    streams_open: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> MockStats {
        MockStats {
            requests: self.requests.load(Ordering::Relaxed),
            streams_open: self.streams_open.load(Ordering::Relaxed),
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
        .route("/healthz", get(|| async { "ok" }))
        .route("/mock/stats", get(stats))
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

    pub fn stats(&self) -> MockStats {
        self.counters.snapshot()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `127.0.0.1:0` and serves in a background task.
pub async fn spawn(cfg: MockConfig) -> io::Result<MockServer> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let counters = Arc::new(Counters::default());
    let task = tokio::spawn(serve_with(listener, cfg, Arc::clone(&counters)));
    Ok(MockServer { addr, counters, task })
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<MockStats> {
    Json(state.counters.snapshot())
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
}

impl Message {
    /// Plain string content, or the `text` parts of OpenAI's array-of-parts form.
    fn text(&self) -> String {
        match &self.content {
            serde_json::Value::String(text) => text.clone(),
            serde_json::Value::Array(parts) => {
                parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).collect::<Vec<_>>().join(" ")
            }
            _ => String::new(),
        }
    }
}

async fn chat(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let number = state.counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let body: ChatBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return respond::error(StatusCode::BAD_REQUEST, &format!("mock: invalid JSON body: {e}")),
    };
    if body.messages.is_empty() {
        return respond::error(StatusCode::BAD_REQUEST, "mock: 'messages' must not be empty");
    }
    let last_user = body.messages.iter().rev().find(|m| m.role == "user").map(Message::text).unwrap_or_default();
    let script = Script::from_message(&last_user).or(Script::from_headers(&headers));
    if let Some(Fault::Status(status)) = script.fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return respond::error(status, &format!("mock: scripted HTTP {}", status.as_u16()));
    }

    let cfg = &state.cfg;
    let mut pieces = match script.reply {
        Some(text) => text::split_words(&text),
        None => text::generate(cfg.seed, &last_user, script.tokens.unwrap_or(cfg.reply_tokens)),
    };
    let mut finish_reason = "stop";
    if let Some(max) = body.max_completion_tokens.or(body.max_tokens) {
        if pieces.len() > max {
            pieces.truncate(max);
            finish_reason = "length";
        }
    }
    let tokens_per_sec = script.tokens_per_sec.unwrap_or(cfg.tokens_per_sec);
    let reply = Reply {
        id: format!("chatcmpl-mock-{number}"),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        model: body.model,
        pieces,
        finish_reason,
        input_tokens: body.messages.iter().map(|m| text::count_words(&m.text())).sum(),
        ttft: script.ttft.unwrap_or(cfg.ttft),
        interval: match tokens_per_sec {
            0 => Duration::ZERO,
            tps => Duration::from_secs(1) / tps,
        },
        fault: script.fault,
    };
    if body.stream {
        let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
        respond::stream(reply, include_usage, OpenStream::new(Arc::clone(&state.counters)))
    } else {
        respond::complete(reply).await
    }
}
