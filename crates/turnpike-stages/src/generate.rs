//! generate: routed prompt → reply chunks (+ handoff request).
//!
//! Guarantee: every routed prompt yields reply chunks numbered from 0 and exactly one FINAL chunk per
//! processing, streamed as the model produces them: the first text is emitted at once (time to first token
//! matters most), later text is coalesced into chunks of at least `min_chunk_chars` or `max_chunk_delay`.
//!
//! Commit point: until the first chunk is emitted, an LLM failure is retryable and invisible (the runner
//! retries the prompt). Once text has left, the answer is never silently cut and never restarted: a failure
//! ends the reply with an explicit incomplete notice, `finish_reason = "incomplete"`, and a handoff request.
//! The same holds across crashes: a Redis counter per turn records how many chunks were emitted; a
//! redelivered prompt whose counter is non-zero is *not* regenerated (a new generation would differ from
//! what the user already saw) but ended with the incomplete notice, numbered after the last chunk.
//! Refused, handed-off and human-owned turns are answered without calling the LLM.

use std::time::{Duration, Instant};

use crate::{session, Deps};
use futures::StreamExt;
use redis::AsyncCommands;
use turnpike_core::{Classify, ErrorClass};
use turnpike_llm::{ChatMessage as LlmMessage, ChatRequest, LlmEvent, OpenAiClient};
use turnpike_runner::{now_ms, Emitter, Stage, StageError};
use turnpike_schemas::{ChunkKind, HandoffKind, HandoffRequest, ReplyChunk, Role, RoutedPrompt, TurnAction, Usage};

/// Price of a model in micro-dollars per token (= dollars per million tokens).
#[derive(Clone, Debug)]
pub struct Price {
    pub model: String,
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
}

/// The seed's February 2026 prices.
pub fn default_prices() -> Vec<Price> {
    let p = |m: &str, i: f64, o: f64| Price { model: m.into(), input: i, output: o, cached_input: i / 2.0 };
    vec![
        p("gpt-4o-mini", 0.15, 0.60),
        p("gemini-2.0-flash", 0.10, 0.40),
        p("gpt-4o", 2.50, 10.0),
        p("claude-sonnet-4", 3.0, 15.0),
    ]
}

/// Cost of a call in micro-dollars, from the provider's own usage figures.
pub fn cost_micros(prices: &[Price], model: &str, input: u32, output: u32, cached: u32) -> i64 {
    let Some(p) = prices.iter().find(|p| p.model == model) else { return 0 };
    let uncached = input.saturating_sub(cached) as f64;
    (uncached * p.input + cached as f64 * p.cached_input + output as f64 * p.output).round() as i64
}

pub struct Generate {
    pub deps: Deps,
    pub llm: OpenAiClient,
    pub prices: Vec<Price>,
    pub min_chunk_chars: usize,
    pub max_chunk_delay: Duration,
    /// After this long since the turn was received, retrying an LLM failure stops and the user gets an
    /// apology instead of an ever-longer wait.
    pub turn_deadline: Duration,
    pub apology: String,
}

impl Generate {
    pub fn new(deps: Deps, llm: OpenAiClient) -> Self {
        Generate {
            deps,
            llm,
            prices: default_prices(),
            min_chunk_chars: 24,
            max_chunk_delay: Duration::from_millis(50),
            turn_deadline: Duration::from_secs(60),
            apology: "I'm sorry, I couldn't finish my answer. I'm passing your question to a member of our team."
                .into(),
        }
    }
}

/// Builds chunk records for one turn and counts them in Redis (see the module comment).
struct Chunks<'a> {
    p: &'a RoutedPrompt,
    next: i32,
    redis: redis::aio::ConnectionManager,
    counter: String,
}

impl Chunks<'_> {
    /// Emits a DELTA and counts it; the count is written before the next chunk is made, so a crash can only
    /// over-count (a gap downstream), never under-count (a duplicate).
    async fn emit_delta(&mut self, out: &mut Emitter, text: String) -> Result<(), StageError> {
        let chunk = self.make(ChunkKind::Delta, text);
        let _: () = redis::pipe()
            .set(&self.counter, self.next)
            .expire(&self.counter, 3600)
            .query_async(&mut self.redis)
            .await
            .map_err(crate::redis_err)?;
        out.emit(&chunk).await
    }

    fn make(&mut self, kind: ChunkKind, text: String) -> ReplyChunk {
        let c = ReplyChunk {
            tenant_id: self.p.tenant_id.clone(),
            session_id: self.p.session_id.clone(),
            turn_id: self.p.turn_id.clone(),
            seq: self.p.seq,
            chunk_index: self.next,
            kind,
            text,
            action: self.p.action,
            tier: Some(self.p.tier.clone()),
            citations: if kind == ChunkKind::Final { self.p.citations.clone() } else { vec![] },
            channel: self.p.channel.clone(),
            received_at_ms: self.p.received_at_ms,
            ..Default::default()
        };
        self.next += 1;
        c
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
    }
}

impl Stage for Generate {
    type In = RoutedPrompt;

    async fn process(&self, p: RoutedPrompt, out: &mut Emitter) -> Result<(), StageError> {
        let counter = session::key(&p.tenant_id, &p.session_id, &format!("turn:{}:gen", p.turn_id));
        let mut redis = self.deps.redis.clone();
        let already: Option<i32> = redis.get(&counter).await.map_err(crate::redis_err)?;
        let mut chunks = Chunks { p: &p, next: already.unwrap_or(0), redis, counter };
        if already.is_some_and(|n| n > 0) {
            // Redelivered after text already left: end it, never restart it.
            metrics::counter!("turnpike_generate_resumed_incomplete_total").increment(1);
            return self.give_up(Ok(()), &mut chunks, out, &p).await;
        }
        if p.action != TurnAction::Proceed {
            let mut fin = chunks.make(ChunkKind::Final, p.reply_text.clone().unwrap_or_default());
            fin.finish_reason = Some(format!("{:?}", p.action).to_lowercase());
            return out.emit(&fin).await;
        }
        let req = ChatRequest {
            model: p.model.clone(),
            messages: p
                .messages
                .iter()
                .map(|m| LlmMessage {
                    role: match m.role {
                        Role::System => turnpike_llm::Role::System,
                        Role::User => turnpike_llm::Role::User,
                        Role::Assistant => turnpike_llm::Role::Assistant,
                        Role::Tool => turnpike_llm::Role::Tool,
                    },
                    content: m.content.clone(),
                })
                .collect(),
            max_tokens: None,
            temperature: None,
        };
        let started = Instant::now();
        let labels = [("tier", p.tier.clone())];
        let failure = |e: turnpike_llm::LlmError, emitted: bool| -> Result<(), StageError> {
            metrics::counter!("turnpike_llm_errors_total", "code" => e.code()).increment(1);
            let overdue = now_ms() - p.received_at_ms > self.turn_deadline.as_millis() as i64;
            if !emitted && e.class() == ErrorClass::Retryable && !overdue {
                return Err(StageError::retryable(e.code(), e.to_string()));
            }
            Ok(())
        };
        let mut stream = match self.llm.stream(&req).await {
            Ok(s) => Box::pin(s),
            Err(e) => return self.give_up(failure(e, false), &mut chunks, out, &p).await,
        };
        let (mut buf, mut last_flush, mut ttft_ms) = (String::new(), Instant::now(), None::<i32>);
        let (mut usage, mut finish) = (None, None);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(LlmEvent::TextDelta(t)) => {
                    buf.push_str(&t);
                    let first = ttft_ms.is_none();
                    if first {
                        let ms = started.elapsed().as_millis() as i32;
                        ttft_ms = Some(ms);
                        metrics::histogram!("turnpike_llm_ttft_seconds", &labels).record(ms as f64 / 1000.0);
                    }
                    if first || buf.len() >= self.min_chunk_chars || last_flush.elapsed() >= self.max_chunk_delay {
                        chunks.emit_delta(out, std::mem::take(&mut buf)).await?;
                        last_flush = Instant::now();
                    }
                }
                Ok(LlmEvent::Usage { input_tokens, output_tokens, cached_input_tokens }) => {
                    usage = Some((input_tokens, output_tokens, cached_input_tokens))
                }
                Ok(LlmEvent::Finish { reason }) => finish = Some(reason),
                Err(e) => {
                    let emitted = chunks.next > 0 || !buf.is_empty();
                    if !buf.is_empty() {
                        chunks.emit_delta(out, std::mem::take(&mut buf)).await?;
                    }
                    return self.give_up(failure(e, emitted), &mut chunks, out, &p).await;
                }
            }
        }
        if !buf.is_empty() {
            chunks.emit_delta(out, buf).await?;
        }
        let mut fin = chunks.make(ChunkKind::Final, String::new());
        fin.finish_reason = Some(finish.unwrap_or_else(|| "stop".into()));
        fin.model = Some(p.model.clone());
        fin.provider = Some("openai".into());
        fin.ttft_ms = ttft_ms;
        if let Some((i, o, c)) = usage {
            let cost = cost_micros(&self.prices, &p.model, i, o, c);
            metrics::counter!("turnpike_llm_tokens_total", "direction" => "input", "tier" => p.tier.clone())
                .increment(i as u64);
            metrics::counter!("turnpike_llm_tokens_total", "direction" => "output", "tier" => p.tier.clone())
                .increment(o as u64);
            metrics::counter!("turnpike_llm_cost_usd_micros_total", "tier" => p.tier.clone())
                .increment(cost.max(0) as u64);
            fin.usage = Some(Usage {
                input_tokens: i as i32,
                output_tokens: o as i32,
                cached_input_tokens: c as i32,
                cost_usd_micros: cost,
            });
        }
        out.emit(&fin).await
    }
}

impl Generate {
    /// Ends a turn whose LLM call failed for good (or after text already left): apology, explicit
    /// incomplete marker, handoff. `retry` carries the runner-level retry when the failure is invisible.
    async fn give_up(
        &self,
        retry: Result<(), StageError>,
        chunks: &mut Chunks<'_>,
        out: &mut Emitter,
        p: &RoutedPrompt,
    ) -> Result<(), StageError> {
        retry?;
        let mut fin = chunks.make(ChunkKind::Final, self.apology.clone());
        fin.finish_reason = Some("incomplete".into());
        fin.model = Some(p.model.clone());
        out.emit(&fin).await?;
        out.emit(&handoff(p, "llm_failure")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_uses_the_price_table() {
        let prices = default_prices();
        // 1,000 input and 500 output tokens of gpt-4o-mini: 150 + 300 micro-dollars.
        assert_eq!(cost_micros(&prices, "gpt-4o-mini", 1000, 500, 0), 450);
        assert_eq!(cost_micros(&prices, "gpt-4o", 1000, 100, 0), 3500);
        assert_eq!(cost_micros(&prices, "unknown", 1000, 100, 0), 0);
    }
}
