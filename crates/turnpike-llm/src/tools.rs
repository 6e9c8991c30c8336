//! Tools: HTTP tools from configuration ([`ToolRunner`]) and the tool loop ([`stream_with_tools`]).
//!
//! Guarantees:
//! - a tool call never fails the turn: an unknown tool, arguments that are not a JSON object or miss a
//!   `required` field of the tool's schema, a timeout, a non-2xx answer are all returned to the model as
//!   `{"error": ...}` so it can answer the user; a result longer than the tool's `max_result_bytes` is
//!   cut and marked `[truncated]`;
//! - idempotent per turn: a call is identified by (turn id, tool, arguments); its result is recorded in
//!   Redis (when a ledger is attached) and a redelivered turn gets the recorded result without calling
//!   the tool again; the same identity goes out as the `Idempotency-Key` header, so a tool that honours
//!   it is safe even across a crash between its side effect and our record;
//! - the loop runs at most `max_rounds` model calls; rounds before any text are part of the invisible,
//!   retried pre-commit phase of [`Chain::stream`]; once text was shown, a later round's failure is
//!   [`LlmError::Interrupted`]; a model still calling tools in the last round ends with finish reason
//!   `tool_limit`, never with a silent cut;
//! - personal data (with a [`ToolPii`] for the turn): the tool's HTTP call carries the real values behind
//!   the PII tokens of its arguments (an order lookup needs the customer's real email), and its result is
//!   masked before the model, the ledger or a log sees it; the call's identity is taken from the masked
//!   arguments, so no real value reaches Redis either.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use serde::Deserialize;
use serde_json::json;

use crate::router::{Answer, Chain};
use crate::{ChatMessage, ChatRequest, LlmError, LlmEvent, ToolCall, ToolCallAssembler, ToolSpec};

/// One HTTP tool, as configured (`[[tools]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToolConfig {
    pub name: String,
    pub description: String,
    pub url: String,
    /// `POST` (arguments as the JSON body, the default) or `GET` (top-level arguments as query parameters).
    #[serde(default = "default_method")]
    pub method: String,
    /// JSON schema of the arguments, shown to the model.
    pub parameters: serde_json::Value,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub max_result_bytes: Option<usize>,
}

fn default_method() -> String {
    "POST".into()
}

/// The reveal path of one turn's tool calls: the session's vault, seen from the tool loop.
pub trait ToolPii: Send + Sync {
    /// `arguments` (the model's JSON text) with the real values behind their tokens.
    fn reveal<'a>(&'a self, arguments: &'a str) -> BoxFuture<'a, Result<String, LlmError>>;
    /// `result` with personal data replaced by the session's tokens (new ones kept in the vault first).
    fn mask<'a>(&'a self, result: &'a str) -> BoxFuture<'a, Result<String, LlmError>>;
}

/// Calls run per round; further ones are answered with an error, which bounds a round's cost and time.
pub const MAX_CALLS_PER_ROUND: usize = 4;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_RESULT: usize = 8 * 1024;
/// How long a recorded result answers a redelivered turn.
const LEDGER_TTL_SECS: u64 = 24 * 3600;

/// The configured tools, the loop's limits and (optionally) the Redis ledger.
pub struct ToolRunner {
    tools: Vec<HttpToolConfig>,
    http: reqwest::Client,
    pub max_rounds: u32,
    ledger: OnceLock<ConnectionManager>,
}

impl std::fmt::Debug for ToolRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRunner")
            .field("tools", &HttpToolsOnly(&self.tools))
            .field("max_rounds", &self.max_rounds)
            .finish()
    }
}

impl std::fmt::Debug for HttpToolsOnly<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|t| &t.name)).finish()
    }
}

/// Prints tool names only (URLs may carry credentials).
struct HttpToolsOnly<'a>(&'a [HttpToolConfig]);

impl ToolRunner {
    pub fn new(tools: Vec<HttpToolConfig>, max_rounds: u32) -> Result<Self, LlmError> {
        for tool in &tools {
            let url = reqwest::Url::parse(&tool.url)
                .map_err(|e| LlmError::Config(format!("tool {}: url: {e}", tool.name)))?;
            if !matches!(url.scheme(), "http" | "https") || !matches!(tool.method.as_str(), "GET" | "POST") {
                return Err(LlmError::Config(format!("tool {}: needs an http(s) url and GET or POST", tool.name)));
            }
        }
        let http = crate::stream::http_client(Duration::from_secs(5))?;
        Ok(ToolRunner { tools, http, max_rounds: max_rounds.max(1), ledger: OnceLock::new() })
    }

    /// Records results in Redis from now on (idempotency across redeliveries). Set once; later calls
    /// are ignored.
    pub fn attach_ledger(&self, redis: ConnectionManager) {
        let _ = self.ledger.set(redis);
    }

    /// The most a round can add to the next request, in tokens: the reply (`max_output_tokens`) plus
    /// [`MAX_CALLS_PER_ROUND`] results at their byte cap (a token covers at least one byte).
    pub fn round_growth_tokens(&self, max_output_tokens: u32) -> u64 {
        let largest = self.tools.iter().map(|t| t.max_result_bytes.unwrap_or(DEFAULT_MAX_RESULT)).max().unwrap_or(0);
        u64::from(max_output_tokens) + (MAX_CALLS_PER_ROUND * (largest + 64)) as u64
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools
            .iter()
            .map(|t| ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.parameters.clone(),
            })
            .collect()
    }

    /// The call's identity within its turn.
    fn identity(turn_id: &str, call: &ToolCall) -> String {
        // Canonical arguments: the same JSON with different spacing is the same call.
        let args = serde_json::from_str::<serde_json::Value>(&call.arguments)
            .map_or_else(|_| call.arguments.clone(), |v| v.to_string());
        format!("{turn_id}:{}:{:016x}", call.name, crate::mock::text::fnv1a(&args))
    }

    /// Runs `call` for turn `turn_id` (or returns its recorded result); the text goes to the model. With
    /// `pii`, the HTTP call gets the revealed arguments and the result is masked (see the module comment).
    pub async fn call(&self, turn_id: &str, call: &ToolCall, pii: Option<&dyn ToolPii>) -> String {
        let identity = Self::identity(turn_id, call);
        let ledger_key = format!("turnpike:tool:{identity}");
        if let Some(redis) = self.ledger.get() {
            let mut redis = redis.clone();
            match redis::cmd("GET").arg(&ledger_key).query_async::<Option<String>>(&mut redis).await {
                Ok(Some(recorded)) => {
                    metrics::counter!("turnpike_tool_calls_total", "tool" => self.label(&call.name), "outcome" => "replayed")
                        .increment(1);
                    return recorded;
                }
                Ok(None) => {}
                // Without the ledger we cannot know: calling is the lesser evil only because the tool
                // receives the Idempotency-Key and can dedupe itself.
                Err(e) => tracing::warn!(error = %e, "tool ledger unavailable"),
            }
        }
        let (result, outcome) = match pii {
            Some(pii) => self.execute_revealed(call, &identity, pii).await,
            None => self.execute(call, &identity).await,
        };
        metrics::counter!("turnpike_tool_calls_total", "tool" => self.label(&call.name), "outcome" => outcome)
            .increment(1);
        if let Some(redis) = self.ledger.get() {
            let mut redis = redis.clone();
            let stored: Result<(), _> = redis::cmd("SET")
                .arg(&ledger_key)
                .arg(&result)
                .arg("EX")
                .arg(LEDGER_TTL_SECS)
                .query_async(&mut redis)
                .await;
            if let Err(e) = stored {
                tracing::warn!(error = %e, "tool result not recorded");
            }
        }
        result
    }

    /// A bounded metrics label: configured tool names, everything else `unknown`.
    fn label(&self, name: &str) -> String {
        if self.tools.iter().any(|t| t.name == name) {
            name.to_owned()
        } else {
            "unknown".to_owned()
        }
    }

    /// [`ToolRunner::execute`] with the real values in the arguments and the result masked. When the vault
    /// cannot answer, the tool is not called: a tool must never receive tokens it takes for data, nor the
    /// model an unmasked result.
    async fn execute_revealed(&self, call: &ToolCall, identity: &str, pii: &dyn ToolPii) -> (String, &'static str) {
        let unavailable = |e: LlmError| {
            (json!({ "error": format!("personal data unavailable: {e}") }).to_string(), "pii_unavailable")
        };
        let arguments = match pii.reveal(&call.arguments).await {
            Ok(a) => a,
            Err(e) => return unavailable(e),
        };
        let (result, outcome) = self.execute(&ToolCall { arguments, ..call.clone() }, identity).await;
        match pii.mask(&result).await {
            Ok(masked) => (masked, outcome),
            Err(e) => unavailable(e),
        }
    }

    async fn execute(&self, call: &ToolCall, identity: &str) -> (String, &'static str) {
        let error = |message: String| json!({ "error": message }).to_string();
        let Some(tool) = self.tools.iter().find(|t| t.name == call.name) else {
            return (error(format!("no tool named {}", call.name)), "unknown_tool");
        };
        let args = match serde_json::from_str::<serde_json::Value>(&call.arguments) {
            Ok(serde_json::Value::Object(args)) => args,
            _ => return (error("arguments must be a JSON object".into()), "bad_arguments"),
        };
        let required = tool.parameters.get("required").and_then(|r| r.as_array()).cloned().unwrap_or_default();
        if let Some(missing) = required.iter().filter_map(|r| r.as_str()).find(|r| !args.contains_key(*r)) {
            return (error(format!("missing argument {missing}")), "bad_arguments");
        }
        let builder = if tool.method == "GET" {
            // Validated in `new`; re-parsed here rather than stored to keep the configuration plain.
            let Ok(mut url) = reqwest::Url::parse(&tool.url) else {
                return (error("tool url is invalid".into()), "bad_config");
            };
            for (k, v) in &args {
                url.query_pairs_mut().append_pair(k, &v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            }
            self.http.get(url)
        } else {
            self.http.post(&tool.url).json(&args)
        };
        let timeout = tool.timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let limit = tool.max_result_bytes.unwrap_or(DEFAULT_MAX_RESULT);
        let sent = builder.header("Idempotency-Key", identity).timeout(timeout).send().await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return (error(format!("tool timed out after {timeout:?}")), "timeout"),
            Err(e) => return (error(format!("tool unreachable: {}", LlmError::describe(&e))), "unreachable"),
        };
        let status = response.status();
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    body.extend_from_slice(&bytes);
                    if body.len() > limit {
                        truncated = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => return (error(format!("tool answer broken: {}", LlmError::describe(&e))), "unreachable"),
            }
        }
        let mut text = String::from_utf8_lossy(&body[..body.len().min(limit)]).into_owned();
        if truncated {
            text.push_str(" [truncated]");
        }
        if !status.is_success() {
            return (error(format!("tool answered HTTP {}: {text}", status.as_u16())), "http_error");
        }
        (text, "ok")
    }
}

/// Streams `req` through `chain`, running the model's tool calls with `runner` between rounds; see the
/// module comment. The events are those of every round: text, usage (one per round), and the finish.
pub async fn stream_with_tools(
    chain: Arc<Chain>,
    runner: Arc<ToolRunner>,
    mut req: ChatRequest,
    turn_id: String,
    pii: Option<Arc<dyn ToolPii>>,
) -> Result<Answer, LlmError> {
    req.tools = runner.specs();
    let mut carried = Vec::new();
    let mut round = 1;
    loop {
        let answer = chain.stream(&req).await?;
        if answer.ttft.is_some() {
            // Text: the commit point has passed; later rounds continue behind the shown text.
            let state = Continuation {
                chain,
                runner,
                req,
                turn_id,
                pii,
                round,
                tools: ToolCallAssembler::default(),
                text: String::new(),
                current: Some(answer.events),
            };
            let events = futures::stream::iter(carried.into_iter().map(Ok)).chain(state.into_stream()).boxed();
            return Ok(Answer { events, ..answer });
        }
        // No text: the round is complete and buffered; tool calls are still invisible to the user.
        let events: Vec<LlmEvent> = answer.events.filter_map(|e| async move { e.ok() }).collect().await;
        let mut tools = ToolCallAssembler::default();
        let mut rest = Vec::new();
        for event in events {
            match event {
                LlmEvent::ToolCallDelta { index, id, name, arguments } => tools.push(index, id, name, &arguments),
                LlmEvent::Finish { reason } if reason == "tool_calls" => {}
                LlmEvent::Usage { .. } => carried.push(event),
                other => rest.push(other),
            }
        }
        let calls = tools.finish();
        if calls.is_empty() || round >= runner.max_rounds {
            if !calls.is_empty() {
                rest.push(LlmEvent::Finish { reason: "tool_limit".into() });
            }
            carried.extend(rest);
            let events = futures::stream::iter(carried.into_iter().map(Ok)).boxed();
            return Ok(Answer { events, ..answer });
        }
        run_round(&runner, &turn_id, pii.as_deref(), &mut req, String::new(), calls).await;
        round += 1;
    }
}

/// Runs `calls`, then appends the assistant turn and one result turn per call to `req`.
async fn run_round(
    runner: &ToolRunner,
    turn_id: &str,
    pii: Option<&dyn ToolPii>,
    req: &mut ChatRequest,
    text: String,
    calls: Vec<ToolCall>,
) {
    let mut results = Vec::with_capacity(calls.len());
    for (i, call) in calls.iter().enumerate() {
        let result = if i < MAX_CALLS_PER_ROUND {
            runner.call(turn_id, call, pii).await
        } else {
            json!({ "error": format!("at most {MAX_CALLS_PER_ROUND} tool calls per reply") }).to_string()
        };
        results.push(ChatMessage::tool_result(call.id.clone(), result));
    }
    req.messages.push(ChatMessage::assistant_tool_calls(text, calls));
    req.messages.extend(results);
}

/// The post-commit part of the loop: forwards text and usage, runs tool calls between rounds.
struct Continuation {
    chain: Arc<Chain>,
    runner: Arc<ToolRunner>,
    req: ChatRequest,
    turn_id: String,
    pii: Option<Arc<dyn ToolPii>>,
    round: u32,
    tools: ToolCallAssembler,
    /// Text of the current round, for its assistant turn.
    text: String,
    /// `None` once the stream has ended.
    current: Option<crate::EventStream>,
}

impl Continuation {
    fn into_stream(self) -> crate::EventStream {
        futures::stream::unfold(self, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
        .boxed()
    }

    async fn next(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        loop {
            let current = self.current.as_mut()?;
            match current.next().await {
                Some(Ok(LlmEvent::TextDelta(t))) => {
                    self.text.push_str(&t);
                    return Some(Ok(LlmEvent::TextDelta(t)));
                }
                Some(Ok(LlmEvent::ToolCallDelta { index, id, name, arguments })) => {
                    self.tools.push(index, id, name, &arguments)
                }
                Some(Ok(LlmEvent::Finish { reason })) if reason == "tool_calls" => {}
                Some(Ok(event)) => return Some(Ok(event)),
                Some(Err(e)) => {
                    self.current = None;
                    return Some(Err(e));
                }
                None => {
                    let calls = std::mem::take(&mut self.tools).finish();
                    if calls.is_empty() {
                        self.current = None;
                        return None;
                    }
                    if self.round >= self.runner.max_rounds {
                        self.current = None;
                        return Some(Ok(LlmEvent::Finish { reason: "tool_limit".into() }));
                    }
                    let text = std::mem::take(&mut self.text);
                    run_round(&self.runner, &self.turn_id, self.pii.as_deref(), &mut self.req, text, calls).await;
                    self.round += 1;
                    match self.chain.stream(&self.req).await {
                        Ok(answer) => self.current = Some(answer.events),
                        Err(cause) => {
                            self.current = None;
                            let deployment = format!("{} (tool round {})", self.chain.tier, self.round);
                            return Some(Err(LlmError::Interrupted { deployment, cause: Box::new(cause) }));
                        }
                    }
                }
            }
        }
    }
}
