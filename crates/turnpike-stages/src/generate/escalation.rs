//! Escalation of generate (see the module comment of `generate` for its commit point).
//!
//! Escalation (policy: the tenant's `route.escalation`, see [`crate::route::policy`]). A turn routed to the
//! cheap tier whose call fails, or finishes without any text, is retried once on the capable tier with
//! the capable model: nothing has been shown yet, so the switch is invisible except for its latency. Every
//! chunk of the turn then carries the tier that answered (`tier = "capable"`, the routed record says
//! `cheap`), the session's signals record `escalated` for the turn, and
//! `turnpike_route_escalations_total{from,to,reason}` counts it (reason `failure` or `empty`); an empty
//! cheap answer's tokens are paid and settled before the capable call reserves its own budget.
//! Low confidence is judged on the finished reply — it hedges (`escalation.low_confidence_phrases`: "I'm
//! not sure", "I don't know", ...) or was cut by the output cap (`finish_reason = length`) — and cannot
//! be retracted: text is streamed as it arrives, and holding it back to check would add the time to the
//! end of the reply (a hedge is not confined to the first sentence) to every cheap turn's first token.
//! So it is recorded instead (`low_confidence` signal, `turnpike_route_low_confidence_total{tier,reason}`)
//! and the session's *next* turn goes to the capable tier (route's `previous_low_confidence` rule).
//! Signals are best effort here: a Redis error writing one is logged and counted, never fails the turn.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use turnpike_core::Classify;
use turnpike_llm::tools::stream_with_tools;
use turnpike_llm::{Answer, ChatRequest, LlmEvent, Reservation};
use turnpike_runner::{Emitter, StageError};
use turnpike_schemas::{ChunkKind, RoutedPrompt};

use super::{Chunks, Generate};
use crate::route::{signals, SignalKind, Tier};

impl Generate {
    /// Calls the LLM up to the commit point, escalating once from the cheap to the capable tier when the
    /// cheap call fails or finishes without text (see the module comment). Returns the answer, its budget
    /// reservation and when the first call started (time to first token counts the escalation too), or
    /// `None` when the turn was already ended (over budget, or given up).
    pub(super) async fn open(
        &self,
        p: &RoutedPrompt,
        req: &mut ChatRequest,
        chunks: &mut Chunks<'_>,
        out: &mut Emitter,
    ) -> Result<Option<(Answer, Option<Reservation>, Instant)>, StageError> {
        let policy = &self.routes.get(&p.tenant_id).policy;
        let mut escalation =
            (p.tier == Tier::Cheap.name() && policy.escalation.on_failure).then(|| policy.capable_model.clone());
        let mut reservation_id = p.turn_id.clone();
        let started = Instant::now();
        loop {
            let chain = self.llm.chain(&chunks.tier);
            let reservation = match self.reserve(chain, req, p, &reservation_id).await? {
                Ok(reservation) => reservation,
                Err(refusal) => {
                    tracing::info!(tenant = %p.tenant_id, %refusal, "Turn refused by its budget.");
                    metrics::counter!("turnpike_budget_refusals_total", "tier" => chunks.tier.clone(), "tenant" => turnpike_core::tenant_label(&p.tenant_id))
                        .increment(1);
                    let mut fin = chunks.make(ChunkKind::Final, self.budget_message.clone());
                    fin.finish_reason = Some("budget_exceeded".into());
                    out.emit(&fin).await?;
                    return Ok(None);
                }
            };
            let streamed = match &self.llm.tools {
                Some(tools) => {
                    let pii = self.tool_pii(p);
                    stream_with_tools(Arc::clone(chain), Arc::clone(tools), req.clone(), p.turn_id.clone(), pii).await
                }
                None => chain.stream(req).await,
            };
            let Some(target) = escalation.take() else {
                return match streamed {
                    Ok(answer) => Ok(Some((answer, reservation, started))),
                    Err(e) => {
                        let retry = self.failure(p, &e, false);
                        if retry.is_ok() {
                            // Giving up for good with nothing generated: nothing to pay for. (A runner retry
                            // keeps the reservation; the same turn id finds it again.)
                            self.settle(reservation.as_ref(), 0).await?;
                        }
                        self.give_up(retry, chunks, out, p).await?;
                        Ok(None)
                    }
                };
            };
            let reason = match streamed {
                Ok(answer) if answer.ttft.is_some() => return Ok(Some((answer, reservation, started))),
                Ok(empty) => {
                    // Finished without a word: nothing shown, but its tokens were billed.
                    let labels = [
                        ("tier", chunks.tier.clone()),
                        ("provider", empty.provider.into()),
                        ("model", empty.model),
                        ("tenant", turnpike_core::tenant_label(&p.tenant_id).to_string()),
                    ];
                    let mut cost = 0;
                    let mut events = empty.events;
                    while let Some(event) = events.next().await {
                        if let Ok(LlmEvent::Usage { input_tokens, output_tokens, cached_input_tokens }) = event {
                            let u = turnpike_llm::Usage { input_tokens, output_tokens, cached_input_tokens };
                            cost += self.account(&labels, &u);
                        }
                    }
                    self.settle(reservation.as_ref(), cost).await?;
                    "empty"
                }
                Err(e) => {
                    metrics::counter!("turnpike_llm_errors_total", "code" => e.code()).increment(1);
                    tracing::warn!(tenant = %p.tenant_id, error = %e, "Cheap tier failed before any text; escalating.");
                    self.settle(reservation.as_ref(), 0).await?;
                    "failure"
                }
            };
            let to = Tier::Capable.name();
            metrics::counter!("turnpike_route_escalations_total", "from" => chunks.tier.clone(), "to" => to, "reason" => reason)
                .increment(1);
            self.note(p, &chunks.tier, SignalKind::Escalated).await;
            chunks.tier = to.to_string();
            chunks.model = target.clone();
            req.model = target;
            reservation_id = format!("{}:escalated", p.turn_id);
        }
    }

    /// Records a finished reply that hedged or was cut by the output cap (see the module comment).
    pub(super) async fn check_confidence(&self, p: &RoutedPrompt, tier: &str, shown: &str, finish: &str) {
        let route = self.routes.get(&p.tenant_id);
        let reason = if finish == "length" && route.policy.escalation.length_is_low_confidence {
            "length"
        } else if route.hedges.any_in(shown) {
            "hedge"
        } else {
            return;
        };
        metrics::counter!("turnpike_route_low_confidence_total", "tier" => tier.to_string(), "reason" => reason)
            .increment(1);
        self.note(p, tier, SignalKind::LowConfidence).await;
    }

    /// Best effort: a routing hint must not fail a turn.
    pub(super) async fn note(&self, p: &RoutedPrompt, tier: &str, kind: SignalKind) {
        if let Err(e) = signals::record(&self.deps, &p.tenant_id, &p.session_id, p.seq, kind).await {
            tracing::warn!(tenant = %p.tenant_id, tier, signal = kind.name(), error = %e, "Cannot record a routing signal.");
            metrics::counter!("turnpike_route_signal_errors_total").increment(1);
        }
    }
}
