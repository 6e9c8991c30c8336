//! generate: routed prompt → reply chunks (+ handoff request).
//!
//! Guarantee: every routed prompt yields reply chunks numbered from 0 and exactly one FINAL chunk per
//! processing, streamed as the model produces them, cut where guard-out can use them: guard-out releases
//! whole sentences only, so a chunk leaves when it completes a sentence (the first at once, later ones at
//! most every `max_chunk_delay`) or after `max_partial_delay` of unfinished text; text that has already
//! arrived always joins the chunk it finds leaving. A model streaming at 50 tokens/s then costs a chunk
//! record per sentence instead of one per 50 ms; a finished sentence waits here at most `max_chunk_delay`.
//! Text held when the model's finish has already arrived rides in the FINAL (`generated = true`, checked
//! by guard-out like a DELTA), so a reply that arrives whole is one record per reply topic.
//!
//! Commit point: until the first chunk is emitted, an LLM failure is retryable and invisible (the runner
//! retries the prompt). Once text has left, the answer is never silently cut, never restarted and never
//! duplicated: it is *resumed*. When the provider's stream fails after text left (`LlmError::Interrupted`),
//! the tier's chain is asked to continue the text already emitted (a continuation request, see
//! [`turnpike_llm::continuation`]: the same or the next deployment, breakers applying), at most
//! `max_continuations` times; the continuation's text follows in chunks numbered after the last. The same
//! holds across crashes: every DELTA's text is recorded in Redis before it is emitted, and how the reply
//! ended before its FINAL is; a redelivered prompt with a record is not regenerated (a new generation would
//! differ from what the user already saw) but replayed: its recorded chunks are emitted again with their
//! indexes and texts (filling any the crash lost; downstream drops the others as re-releases), then its
//! recorded ending, or else the continuation of the recorded text (see [`resume`]). Only when no
//! continuation is possible (no deployment of the chain can continue, tools are configured) or it fails
//! does the reply end as it did before this existed: an explicit incomplete notice, `finish_reason =
//! "incomplete"`, and a handoff request. A reply that leaves as a single FINAL (chunk 0) is not recorded:
//! redelivered, it is answered again, and deliver, which publishes one FINAL per turn, drops the second
//! answer when the first reached it. Recording it would cost a Redis round trip per turn. Refused,
//! handed-off and human-owned turns are answered without calling the LLM.
//!
//! The LLM call goes through the tier's failover chain ([`turnpike_llm::Chain`], configured by
//! `TURNPIKE_LLM_CONFIG`, see [`turnpike_llm::config`]): retries and failover happen inside it, before the
//! first text, and are invisible. Cost is computed from the provider's streamed usage with the configured
//! prices; a call whose usage never came (a cut stream) is charged its reservation's estimate.
//! With a `[budget]`, the tenant's and/or user's daily budget is reserved (an upper bound of the call's cost) before the
//! call and settled from the usage after it (summed over the model calls of a tool loop and of continuations), keyed by turn id; a turn over budget is answered with
//! `budget_message` and `finish_reason = "budget_exceeded"`, without calling the LLM. With `[[tools]]`,
//! the model's tool calls run between rounds (idempotent per turn, see [`turnpike_llm::tools`]); a model
//! still calling tools after `max_tool_rounds` ends like a failed answer (apology, incomplete, handoff).
//!
//! Escalation from the cheap to the capable tier, and what a low-confidence reply does: see [`escalation`].

mod escalation;
mod resume;
pub mod tool_pii;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::route::{signals, CompiledRoute, SignalKind, Tier};
use crate::Deps;
use futures::StreamExt;
use turnpike_core::{Classify, ErrorClass, PerTenant};
use turnpike_llm::{
    Answer, BudgetError, Budgets, ChatMessage as LlmMessage, ChatRequest, LlmError, LlmEvent, LlmRouter, Reservation,
};
use turnpike_runner::{now_ms, Emitter, Stage, StageError};
use turnpike_schemas::{ChunkKind, HandoffKind, HandoffRequest, Role, RoutedPrompt, TurnAction, Usage};

use resume::{Chunks, Reason};

// Prices moved to turnpike-llm (configurable there); re-exported for existing callers.
pub use turnpike_llm::cost::{cost_micros, default_prices, Price};

pub struct Generate {
    pub deps: Deps,
    /// Chains per tier, prices, budget and output cap.
    pub llm: LlmRouter,
    /// A chunk leaves when it completes a sentence (the reply's first at once, later ones once
    /// `max_chunk_delay` has passed since the last chunk), when it has held unfinished text for
    /// `max_partial_delay`, or at `max_chunk_chars`; and it grows past that point with text that has
    /// already arrived.
    pub max_chunk_chars: usize,
    pub max_chunk_delay: Duration,
    pub max_partial_delay: Duration,
    /// After this long since the turn was received, retrying an LLM failure stops and the user gets an
    /// apology instead of an ever-longer wait.
    pub turn_deadline: Duration,
    /// Continuation requests per processing of a turn (each with the chain's own retries and failover):
    /// a provider that keeps cutting its streams ends in the apology, not in a loop.
    pub max_continuations: u32,
    pub apology: String,
    pub budget_message: String,
    /// Each tenant's routing policy: its escalation settings and capable model.
    pub routes: PerTenant<CompiledRoute>,
    /// With tools configured: masks their results (see [`tool_pii`]).
    pub tool_masker: Option<Arc<turnpike_guard::PiiMasker>>,
}

impl Generate {
    pub fn new(deps: Deps, llm: LlmRouter) -> Self {
        let mut tool_masker = None;
        if let Some(tools) = &llm.tools {
            // Tool results are recorded per turn, so a redelivered turn does not repeat a side effect.
            tools.attach_ledger(deps.redis.clone());
            // The patterns are the crate's constants, compiled by its own tests.
            tool_masker = Some(Arc::new(turnpike_guard::PiiMasker::new().expect("the PII patterns compile")));
        }
        Generate {
            deps,
            llm,
            max_chunk_chars: 2048,
            max_chunk_delay: Duration::from_millis(50),
            max_partial_delay: Duration::from_millis(250),
            turn_deadline: Duration::from_secs(60),
            max_continuations: 2,
            apology: "I'm sorry, I couldn't finish my answer. I'm passing your question to a member of our team."
                .into(),
            budget_message: "I'm sorry, this service has reached its usage limit for today. Please try again later."
                .into(),
            routes: PerTenant::default(),
            tool_masker,
        }
    }

    /// The reveal path for `p`'s tool calls: its session's vault.
    fn tool_pii(&self, p: &RoutedPrompt) -> Option<Arc<dyn turnpike_llm::tools::ToolPii>> {
        let masker = self.tool_masker.as_ref()?;
        Some(Arc::new(tool_pii::VaultToolPii {
            vault: turnpike_guard::vault::RedisVault::from_connection(
                self.deps.redis.clone(),
                crate::session::SESSION_TTL_SECS as i64,
            ),
            masker: Arc::clone(masker),
            session: format!("{}:{}", p.tenant_id, p.session_id),
        }))
    }
}

fn handoff(p: &RoutedPrompt, reason: &str) -> HandoffRequest {
    HandoffRequest {
        tenant_id: p.tenant_id.clone(),
        session_id: p.session_id.clone(),
        turn_id: p.turn_id.clone(),
        seq: p.seq,
        user_id: p.user_id.clone(),
        kind: HandoffKind::Request,
        reason: reason.into(),
        source_stage: "generate".into(),
        text: p.messages.last().map(|m| m.content.clone()).unwrap_or_default(),
        summary: None,
        requested_at_ms: now_ms(),
        evidence: format!("generate could not complete the reply on tier {} ({reason}).", p.tier),
        // The customer was left without an answer mid-conversation: ahead of an ordinary request.
        priority: "high".into(),
        tags: vec![format!("handoff:{reason}")],
        frustration: None,
    }
}

/// What the model calls of one reply have produced so far: the first call and any continuations.
struct Progress {
    /// Text arrived and not yet emitted.
    buf: String,
    last_flush: Instant,
    /// From the first call to the first text, when this processing saw it (a replayed turn did not).
    ttft_ms: Option<i32>,
    started: Instant,
    /// Summed over the calls that reported it, and its cost.
    usage: Option<turnpike_llm::Usage>,
    cost: i64,
    /// The budget estimates charged for calls whose usage never came (cut streams).
    unreported: i64,
    finish: Option<String>,
}

/// How one call's stream ended.
enum Pumped {
    Finished,
    ToolLimit,
    Failed(LlmError),
}

fn llm_request(p: &RoutedPrompt, max_tokens: u32) -> ChatRequest {
    let messages = p
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => turnpike_llm::Role::System,
                Role::User => turnpike_llm::Role::User,
                Role::Assistant => turnpike_llm::Role::Assistant,
                Role::Tool => turnpike_llm::Role::Tool,
            };
            LlmMessage::new(role, m.content.clone())
        })
        .collect();
    let mut req = ChatRequest::new(p.model.clone(), messages);
    // The cap is what makes a budget reservation an upper bound of the call's cost. Tools are set by the
    // tool loop, when configured.
    req.max_tokens = Some(max_tokens);
    req
}

impl Stage for Generate {
    type In = RoutedPrompt;

    async fn process(&self, p: RoutedPrompt, out: &mut Emitter) -> Result<(), StageError> {
        let (mut chunks, record) = Chunks::load(&p, self.deps.redis.clone()).await?;
        let mut req = llm_request(&p, self.llm.max_output_tokens);
        let mut continuations = 0;
        let opened = if record.is_empty() {
            if p.action != TurnAction::Proceed {
                let mut fin = chunks.make(ChunkKind::Final, p.reply_text.clone().unwrap_or_default());
                fin.finish_reason = Some(format!("{:?}", p.action).to_lowercase());
                return out.emit(&fin).await;
            }
            self.open(&p, &mut req, &mut chunks, out).await?
        } else {
            // Redelivered after text already left: never regenerated, replayed and resumed on the tier that
            // answered (see the module comment).
            if signals::has(&self.deps, &p.tenant_id, &p.session_id, p.seq, SignalKind::Escalated).await? {
                chunks.tier = Tier::Capable.name().into();
                chunks.model = self.routes.get(&p.tenant_id).policy.capable_model.clone();
                req.model = chunks.model.clone();
            }
            if self.replay(record, &mut chunks, out).await? {
                return Ok(());
            }
            self.reopen(&p, &req, &mut chunks, out, &mut continuations).await?
        };
        let Some((answer, reservation, started)) = opened else { return Ok(()) };
        let estimate = reservation.as_ref().map_or(0, |r| r.estimate);
        let mut progress = Progress {
            buf: String::new(),
            last_flush: Instant::now(),
            ttft_ms: None,
            started,
            usage: None,
            cost: 0,
            unreported: 0,
            finish: None,
        };
        let resumed = chunks.next > 0;
        let mut answer = answer;
        let (provider, model) = loop {
            let labels = [
                ("tier", chunks.tier.clone()),
                ("provider", answer.provider.to_owned()),
                ("model", answer.model.clone()),
                ("tenant", turnpike_core::tenant_label(&p.tenant_id).to_string()),
            ];
            let (provider, model) = (answer.provider, answer.model.clone());
            let failure = match self.pump(answer.events, &labels, resumed, &mut chunks, out, &mut progress).await? {
                Pumped::Finished => break (provider, model),
                Pumped::ToolLimit => None,
                Pumped::Failed(e) => Some(e),
            };
            if !progress.buf.is_empty() {
                chunks.emit_delta(out, std::mem::take(&mut progress.buf)).await?;
            }
            let Some(e) = failure else {
                // The model kept calling tools: end like any other unfinished answer, charging the bound.
                metrics::counter!("turnpike_llm_tool_limit_total", &labels).increment(1);
                self.settle(reservation.as_ref(), estimate.max(progress.cost + progress.unreported)).await?;
                return self.give_up(Ok(()), &mut chunks, out, &p).await;
            };
            // The provider's final usage never came: charge the estimate, the bound of what it bills.
            progress.unreported += estimate;
            // Text has left (a stream opens at its first text): this counts the error and never retries.
            let retry = self.failure(&p, &e, true);
            let cut_on = match &e {
                LlmError::Interrupted { deployment, .. } => Some(deployment.clone()),
                _ => None,
            };
            match self.resume(&req, &chunks, Reason::Interrupted, cut_on, &mut continuations).await? {
                Some(next) => answer = next,
                None => {
                    self.settle(reservation.as_ref(), progress.cost + progress.unreported).await?;
                    return self.give_up(retry, &mut chunks, out, &p).await;
                }
            }
        };
        let finish = progress.finish.take().unwrap_or_else(|| "stop".into());
        let shown = format!("{}{}", chunks.shown, progress.buf);
        self.check_confidence(&p, &chunks.tier, &shown, &finish).await;
        // The last words ride in the FINAL (one record fewer on each of the three reply topics per turn).
        let generated = !progress.buf.is_empty();
        let mut fin = chunks.make(ChunkKind::Final, std::mem::take(&mut progress.buf));
        fin.generated = generated;
        fin.finish_reason = Some(finish);
        fin.model = Some(model);
        fin.provider = Some(provider.into());
        fin.ttft_ms = progress.ttft_ms;
        if let Some(u) = progress.usage {
            fin.usage = Some(Usage {
                input_tokens: u.input_tokens as i32,
                output_tokens: u.output_tokens as i32,
                cached_input_tokens: u.cached_input_tokens as i32,
                cost_usd_micros: progress.cost,
            });
        }
        chunks.record_end(&fin).await?;
        self.settle(reservation.as_ref(), progress.cost + progress.unreported).await?;
        out.emit(&fin).await
    }
}

impl Generate {
    /// Streams one model call's events into chunks until it finishes or fails (see the module comment).
    /// `resumed`: the reply's first text left in an earlier processing (no time to first token here).
    async fn pump(
        &self,
        mut stream: turnpike_llm::EventStream,
        labels: &[(&'static str, String); 4],
        resumed: bool,
        chunks: &mut Chunks<'_>,
        out: &mut Emitter,
        progress: &mut Progress,
    ) -> Result<Pumped, StageError> {
        // An event read ahead while deciding whether to flush (see `ready_text`).
        let mut ahead = None;
        loop {
            let next = match ahead.take() {
                Some(next) => next,
                None => stream.next().await,
            };
            let Some(ev) = next else { return Ok(Pumped::Finished) };
            match ev {
                Ok(LlmEvent::TextDelta(t)) => {
                    progress.buf.push_str(&t);
                    if progress.ttft_ms.is_none() && !resumed {
                        let ms = progress.started.elapsed().as_millis() as i32;
                        progress.ttft_ms = Some(ms);
                        metrics::histogram!("turnpike_llm_ttft_seconds", labels).record(ms as f64 / 1000.0);
                        progress.last_flush = Instant::now();
                    }
                    // guard-out releases whole sentences only: a chunk leaves when it completes a sentence
                    // (the first at once, later ones at most every `max_chunk_delay`), unfinished text only
                    // after `max_partial_delay` (a run-on reply still reaches guard-out's length cut).
                    let buf = &progress.buf;
                    let complete = turnpike_guard::output::next_sentence(buf, usize::MAX).is_some();
                    let since = progress.last_flush.elapsed();
                    let due = (complete && (chunks.next == 0 || since >= self.max_chunk_delay))
                        || since >= self.max_partial_delay
                        || buf.len() >= self.max_chunk_chars;
                    if due && !ready_text(&mut stream, &mut ahead, buf.len(), self.max_chunk_chars) {
                        chunks.emit_delta(out, std::mem::take(&mut progress.buf)).await?;
                        progress.last_flush = Instant::now();
                    }
                }
                Ok(LlmEvent::Usage { input_tokens, output_tokens, cached_input_tokens }) => {
                    // One per model call: a tool loop and continuations make several, all paid for.
                    let call = turnpike_llm::Usage { input_tokens, output_tokens, cached_input_tokens };
                    progress.cost += self.account(labels, &call);
                    let u = progress.usage.get_or_insert(turnpike_llm::Usage::default());
                    u.input_tokens += input_tokens;
                    u.output_tokens += output_tokens;
                    u.cached_input_tokens += cached_input_tokens;
                    self.flush_unless_ending(&mut stream, &mut ahead, &mut progress.buf, chunks, out).await?;
                }
                // The tool loop consumes tool calls; any left over are not reply text.
                Ok(LlmEvent::ToolCallDelta { .. }) => {}
                Ok(LlmEvent::Finish { reason }) if reason == "tool_limit" => return Ok(Pumped::ToolLimit),
                Ok(LlmEvent::Finish { reason }) => {
                    progress.finish = Some(reason);
                    self.flush_unless_ending(&mut stream, &mut ahead, &mut progress.buf, chunks, out).await?;
                }
                Err(e) => return Ok(Pumped::Failed(e)),
            }
        }
    }

    /// After a crash: continues the replayed text (see [`resume`]) with a budget reservation of its own
    /// kind (the turn's, found again by its id); `None` when the turn was ended instead.
    async fn reopen(
        &self,
        p: &RoutedPrompt,
        req: &ChatRequest,
        chunks: &mut Chunks<'_>,
        out: &mut Emitter,
        continuations: &mut u32,
    ) -> Result<Option<(Answer, Option<Reservation>, Instant)>, StageError> {
        let started = Instant::now();
        let id = match chunks.tier == p.tier {
            true => p.turn_id.clone(),
            false => format!("{}:escalated", p.turn_id),
        };
        let reservation = match self.reserve(self.llm.chain(&chunks.tier), req, p, &id).await? {
            Ok(reservation) => reservation,
            Err(refusal) => {
                tracing::info!(tenant = %p.tenant_id, %refusal, "Resumed turn refused by its budget.");
                self.give_up(Ok(()), chunks, out, p).await?;
                return Ok(None);
            }
        };
        match self.resume(req, chunks, Reason::Crash, None, continuations).await? {
            Some(answer) => Ok(Some((answer, reservation, started))),
            None => {
                self.settle(reservation.as_ref(), reservation.as_ref().map_or(0, |r| r.estimate)).await?;
                self.give_up(Ok(()), chunks, out, p).await?;
                Ok(None)
            }
        }
    }
}

/// True when the event after the held text has already arrived (read into `ahead`) and is more text or the
/// reply's end (finish, usage, end of stream): the chunk then leaves with that text, or in the FINAL,
/// instead of on its own. What is already here costs no latency to wait for, and a model (or mock) that
/// outruns the pipeline then costs a few records per reply instead of one per flush; a model streaming
/// slower than the pipeline reads sees no change. Tool calls, a tool-limit finish and errors flush first.
fn ready_text<S>(stream: &mut S, ahead: &mut Option<Option<S::Item>>, len: usize, max: usize) -> bool
where
    S: futures::Stream<Item = Result<LlmEvent, turnpike_llm::LlmError>> + Unpin,
{
    use futures::FutureExt;
    if len >= max {
        return false;
    }
    // `Some(None)` is the end of the stream: kept too, so the stream is never polled past its end.
    let Some(next) = stream.next().now_or_never() else { return false };
    let hold = match &next {
        None | Some(Ok(LlmEvent::TextDelta(_) | LlmEvent::Usage { .. })) => true,
        Some(Ok(LlmEvent::Finish { reason })) => reason != "tool_limit",
        Some(Ok(LlmEvent::ToolCallDelta { .. }) | Err(_)) => false,
    };
    *ahead = Some(next);
    hold
}

/// Days since the Unix epoch (UTC): the budget period. A number, not a date string: no calendar code
/// is needed to roll over at midnight UTC.
fn budget_day(ms: i64) -> String {
    format!("d{}", ms.div_euclid(86_400_000))
}

impl Generate {
    fn budgets(&self) -> Budgets {
        Budgets::new(self.deps.redis.clone(), "turnpike:budget")
    }

    /// Reserves the most this turn can cost on any deployment of its chain (failover may land on the
    /// priciest). `Ok(Ok(None))`: no budget configured. `Ok(Err(_))`: over budget.
    async fn reserve(
        &self,
        chain: &turnpike_llm::Chain,
        req: &ChatRequest,
        p: &RoutedPrompt,
        id: &str,
    ) -> Result<Result<Option<Reservation>, BudgetError>, StageError> {
        let Some(budget) = &self.llm.budget else { return Ok(Ok(None)) };
        let max_out = self.llm.max_output_tokens;
        // With tools, up to `max_rounds` model calls, each reading the previous rounds' replies and results.
        let (rounds, growth) = match &self.llm.tools {
            Some(tools) => (tools.max_rounds, tools.round_growth_tokens(max_out)),
            None => (1, 0),
        };
        let mut with_tools = req.clone();
        with_tools.tools = self.llm.tools.as_ref().map(|t| t.specs()).unwrap_or_default();
        let estimate = chain
            .deployments
            .iter()
            .filter_map(|d| {
                let model = d.model_for(&req.model);
                self.llm.pricing.upper_bound_rounds_micros(model, &with_tools, max_out, rounds, growth)
            })
            .max()
            .unwrap_or(0);
        let budgets = self.budgets();
        let day = budget_day(now_ms());
        let mut scopes = Vec::new();
        if let Some(limit) = budget.tenant_daily_limit_micros {
            scopes.push((budgets.key(&format!("tenant:{}", p.tenant_id), &day), limit));
        }
        if let Some(limit) = budget.user_daily_limit_micros {
            scopes.push((budgets.key(&format!("user:{}:{}", p.tenant_id, p.user_id), &day), limit));
        }
        if scopes.is_empty() {
            return Ok(Ok(None));
        }
        match budgets.reserve(&scopes, estimate, id).await {
            Ok(reservation) => Ok(Ok(Some(reservation))),
            Err(e @ BudgetError::Exceeded { .. }) => Ok(Err(e)),
            Err(e) => Err(StageError::retryable(e.code(), e.to_string())),
        }
    }

    async fn settle(&self, reservation: Option<&Reservation>, cost: i64) -> Result<(), StageError> {
        let Some(reservation) = reservation else { return Ok(()) };
        self.budgets().settle(reservation, cost).await.map_err(|e| StageError::retryable(e.code(), e.to_string()))?;
        Ok(())
    }
}

impl Generate {
    /// After a finish or usage event, held text leaves at once unless the reply's next event is already
    /// here (then it can still ride in the FINAL): text never waits for an event that has not arrived.
    async fn flush_unless_ending<S>(
        &self,
        stream: &mut S,
        ahead: &mut Option<Option<S::Item>>,
        buf: &mut String,
        chunks: &mut Chunks<'_>,
        out: &mut Emitter,
    ) -> Result<(), StageError>
    where
        S: futures::Stream<Item = Result<LlmEvent, turnpike_llm::LlmError>> + Unpin,
    {
        if buf.is_empty() || ahead.is_some() || ready_text(stream, ahead, buf.len(), self.max_chunk_chars) {
            return Ok(());
        }
        chunks.emit_delta(out, std::mem::take(buf)).await
    }

    /// Counts an LLM error; `Err` (a runner retry) when nothing was shown, the error is retryable and the
    /// turn is not overdue, else `Ok` (the caller ends the turn).
    fn failure(&self, p: &RoutedPrompt, e: &turnpike_llm::LlmError, emitted: bool) -> Result<(), StageError> {
        metrics::counter!("turnpike_llm_errors_total", "code" => e.code()).increment(1);
        let overdue = now_ms() - p.received_at_ms > self.turn_deadline.as_millis() as i64;
        if !emitted && e.class() == ErrorClass::Retryable && !overdue {
            return Err(StageError::retryable(e.code(), e.to_string()));
        }
        Ok(())
    }

    /// The cost of one call's usage, counted in the token and cost metrics.
    fn account(&self, labels: &[(&'static str, String); 4], u: &turnpike_llm::Usage) -> i64 {
        let model = &labels[2].1;
        let cost = self.llm.pricing.cost_micros(model, u).unwrap_or_else(|| {
            metrics::counter!("turnpike_llm_unpriced_calls_total", labels).increment(1);
            0
        });
        metrics::counter!("turnpike_llm_input_tokens_total", labels).increment(u64::from(u.input_tokens));
        metrics::counter!("turnpike_llm_output_tokens_total", labels).increment(u64::from(u.output_tokens));
        metrics::counter!("turnpike_llm_cost_usd_micros_total", labels).increment(cost.max(0) as u64);
        cost
    }

    /// Ends a turn whose LLM call failed for good (or after text already left and could not be
    /// continued): apology, explicit incomplete marker, handoff. `retry` carries the runner-level retry when the failure is invisible.
    async fn give_up(
        &self,
        retry: Result<(), StageError>,
        chunks: &mut Chunks<'_>,
        out: &mut Emitter,
        p: &RoutedPrompt,
    ) -> Result<(), StageError> {
        retry?;
        self.note(p, &chunks.tier, SignalKind::Incomplete).await;
        let mut fin = chunks.make(ChunkKind::Final, self.apology.clone());
        fin.finish_reason = Some("incomplete".into());
        fin.model = Some(chunks.model.clone());
        // After text left, a redelivery must end the reply the same way, not try to continue it.
        chunks.record_end(&fin).await?;
        out.emit(&fin).await?;
        out.emit(&handoff(p, "llm_failure")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_grows_only_with_text_that_has_already_arrived() {
        let delta = |t: &str| Ok(LlmEvent::TextDelta(t.into()));
        let mut ahead = None;
        // Text already here: the chunk waits for it (and keeps it).
        let mut arrived = futures::stream::iter(vec![delta("more"), Ok(LlmEvent::Finish { reason: "stop".into() })]);
        assert!(ready_text(&mut arrived, &mut ahead, 70, 2048));
        assert!(matches!(ahead.take(), Some(Some(Ok(LlmEvent::TextDelta(t)))) if t == "more"));
        // The reply's end is here too: the text waits for it and rides in the FINAL (the event is kept).
        assert!(ready_text(&mut arrived, &mut ahead, 70, 2048));
        assert!(matches!(ahead.take(), Some(Some(Ok(LlmEvent::Finish { .. })))));
        // Never past the cap.
        assert!(!ready_text(&mut futures::stream::iter(vec![delta("x")]), &mut ahead, 2048, 2048));
        assert!(ahead.is_none());
        // A tool-limit finish or an error: flush now (kept for the loop).
        let limit = Ok(LlmEvent::Finish { reason: "tool_limit".into() });
        assert!(!ready_text(&mut futures::stream::iter(vec![limit]), &mut ahead, 70, 2048));
        assert!(matches!(ahead.take(), Some(Some(Ok(LlmEvent::Finish { .. })))));
        let failed = Err(turnpike_llm::LlmError::Unavailable("reset".into()));
        assert!(!ready_text(&mut futures::stream::iter(vec![failed]), &mut ahead, 70, 2048));
        assert!(matches!(ahead.take(), Some(Some(Err(_)))));
        // The end of the stream is kept, so the stream is not polled past it.
        assert!(ready_text(&mut arrived, &mut ahead, 70, 2048));
        assert!(matches!(ahead, Some(None)));
        // Nothing has arrived yet: flush at once, nothing read ahead.
        let mut ahead = None;
        let mut waiting = futures::stream::pending::<Result<LlmEvent, turnpike_llm::LlmError>>();
        assert!(!ready_text(&mut waiting, &mut ahead, 70, 2048));
        assert!(ahead.is_none());
    }

    #[test]
    fn budget_days_roll_over_at_utc_midnight() {
        assert_eq!(budget_day(0), "d0");
        assert_eq!(budget_day(86_399_999), "d0");
        assert_eq!(budget_day(86_400_000), "d1");
    }
}
