//! assemble: guarded turn → assembled prompt, under a hard per-tenant token budget.
//!
//! Guarantee: the prompt NEVER exceeds the tenant's `budget_tokens` (default 8K) as counted by the tenant
//! model's tokenizer ([`crate::tokens`]), framing included; `prompt_tokens` on the record is that count.
//! Parts are added in priority order, each taking what it needs while room is left:
//! 1. the system prompt (the seed's hardened template unless the tenant sets one; validated at start-up to
//!    leave room, so it is never cut in practice);
//! 2. the user's current message (cut, keeping its start, only when it alone does not fit: the last resort);
//! 3. the running summary of older turns, at most `summary_budget_tokens`: its verbatim "Commitments:" list
//!    is kept first, the narrative fills the rest (cut at its end);
//! 4. retrieved knowledge passages, best first, at most `knowledge_budget_tokens`: whole passages, the first
//!    one that does not fit is cut if a useful part fits (64 tokens), then the list ends;
//! 5. the last `recent_messages` messages verbatim, newest first, whole messages only, until the budget is
//!    used: the kept history is always a contiguous run ending at the newest message.
//!
//! In the prompt they appear as: system prompt, summary, knowledge (each its own system message), history
//! oldest first, then the user's message. Memory comes from Redis ([`crate::memory`]), rebuilt from Cassandra
//! when missing. After the prompt is emitted, a due summary is started in the background
//! ([`crate::summarize`]), so a turn never waits for one. The user's (masked) message is left in a
//! per-turn Redis key for deliver, which appends it to memory with the reply. Turns that will not reach the
//! LLM (refused, handed off, human-owned) pass through without history.

use std::sync::Arc;
use std::time::Instant;

use crate::memory::{self, Remembered, Summary};
use crate::summarize::{self, Job, Summarizer};
use crate::tokens::{TokenCounter, PER_MESSAGE, PER_REQUEST};
use crate::{redis_err, session, Deps};
use turnpike_core::PerTenant;
use turnpike_runner::{Emitter, Stage, StageError};
use turnpike_schemas::{AssembledPrompt, ChatMessage, Citation, GuardedTurn, Role, TurnAction};

pub use crate::context::{ContextPolicy, HARDENED_SYSTEM_PROMPT};

/// A retrieved knowledge passage; the knowledge index fills these, best first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Passage {
    /// The document it comes from (path or URL), cited in the reply.
    pub source: String,
    /// Where in the document (heading, line range).
    pub location: String,
    pub text: String,
}

/// The prompt and what went into it.
#[derive(Clone, Debug, Default)]
pub struct Assembly {
    pub messages: Vec<ChatMessage>,
    /// The passages included, as the reply's citations.
    pub citations: Vec<Citation>,
    /// The whole prompt, framing included: never above the budget.
    pub tokens: usize,
    pub summary_tokens: usize,
    pub knowledge_tokens: usize,
    pub history_kept: usize,
    pub history_dropped: usize,
    pub user_truncated: bool,
}

/// A passage is cut rather than dropped only if at least this much of it fits.
const MIN_PASSAGE_TOKENS: usize = 64;

/// Builds the prompt under the budget (see the module comment). `history` is oldest first.
pub fn build(
    counter: &TokenCounter,
    policy: &ContextPolicy,
    summary: Option<&Summary>,
    passages: &[Passage],
    history: &[ChatMessage],
    user_text: &str,
) -> Assembly {
    let counted: Vec<(ChatMessage, usize)> = history.iter().map(|m| (m.clone(), counter.message(&m.content))).collect();
    build_counted(counter, policy, summary, passages, &counted, user_text)
}

/// [`build`] with each history message's token count (framing included) already known.
pub fn build_counted(
    counter: &TokenCounter,
    policy: &ContextPolicy,
    summary: Option<&Summary>,
    passages: &[Passage],
    history: &[(ChatMessage, usize)],
    user_text: &str,
) -> Assembly {
    let budget = policy.budget_tokens;
    let room = |used: usize| budget.saturating_sub(used);
    let mut a = Assembly::default();
    let mut used = PER_REQUEST;

    let system = counter.prefix(&policy.system_prompt, room(used + PER_MESSAGE)).to_string();
    used += counter.message(&system);
    let user = counter.prefix(user_text, room(used + PER_MESSAGE)).to_string();
    a.user_truncated = user.len() < user_text.len();
    used += counter.message(&user);

    let mut summary_msg = None;
    if let Some(s) = summary {
        let space = room(used).min(policy.summary_budget_tokens).saturating_sub(PER_MESSAGE);
        if let Some(text) = render_summary(counter, s, space) {
            a.summary_tokens = counter.message(&text);
            used += a.summary_tokens;
            summary_msg = Some(text);
        }
    }

    let mut knowledge_msg = None;
    if !passages.is_empty() {
        let space = room(used).min(policy.knowledge_budget_tokens).saturating_sub(PER_MESSAGE);
        if let Some((text, cited)) = render_passages(counter, passages, space) {
            a.knowledge_tokens = counter.message(&text);
            used += a.knowledge_tokens;
            knowledge_msg = Some(text);
            a.citations = cited;
        }
    }

    let mut kept: Vec<&ChatMessage> = Vec::new();
    for (m, t) in history.iter().rev().take(policy.recent_messages) {
        if used + t > budget {
            break;
        }
        used += t;
        kept.push(m);
    }
    a.history_kept = kept.len();
    a.history_dropped = history.len() - kept.len();

    a.messages.push(ChatMessage { role: Role::System, content: system });
    for text in [summary_msg, knowledge_msg].into_iter().flatten() {
        a.messages.push(ChatMessage { role: Role::System, content: text });
    }
    a.messages.extend(kept.into_iter().rev().cloned());
    a.messages.push(ChatMessage { role: Role::User, content: user });
    a.tokens = used;
    a
}

/// Total tokens of a message list, framing included: what [`Assembly::tokens`] reports.
pub fn prompt_tokens(counter: &TokenCounter, messages: &[ChatMessage]) -> usize {
    PER_REQUEST + messages.iter().map(|m| counter.message(&m.content)).sum::<usize>()
}

/// The summary as a system message of at most `space` tokens: commitments first to be kept, the
/// narrative cut at its end to fit. `None` when not even the header and one commitment fit.
pub fn render_summary(counter: &TokenCounter, s: &Summary, space: usize) -> Option<String> {
    let header = format!("Summary of the earlier conversation (turns 1 to {}):\n", s.covered_seq);
    let mut commitments = s.commitments.clone();
    loop {
        let tail = if commitments.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = commitments.iter().map(|c| format!("- {c}")).collect();
            format!("\n\nCommitments:\n{}", list.join("\n"))
        };
        let frame = format!("{header}{tail}");
        let fixed = counter.count(&frame);
        if fixed <= space {
            // Narrative fills what is left; joins may merge tokens differently, so verify and shrink.
            let mut narrative_room = space - fixed;
            loop {
                let narrative = counter.prefix(&s.text, narrative_room);
                let text = format!("{header}{narrative}{tail}");
                if counter.count(&text) <= space {
                    let has_content = !narrative.trim().is_empty() || !commitments.is_empty();
                    return has_content.then_some(text);
                }
                narrative_room = narrative_room.saturating_sub(narrative_room / 10 + 1);
            }
        }
        // Not even the list fits: keep the oldest commitments that do.
        commitments.pop()?;
    }
}

/// Passages as one system message of at most `space` tokens, with the citations of those included.
fn render_passages(counter: &TokenCounter, passages: &[Passage], space: usize) -> Option<(String, Vec<Citation>)> {
    let mut text = String::from("Knowledge passages (use them to answer; cite the source in [brackets]):");
    if counter.count(&text) >= space {
        return None;
    }
    let mut cited = Vec::new();
    for (i, p) in passages.iter().enumerate() {
        let head = format!("\n\n[{}] {} ({})\n", i + 1, p.source, p.location);
        let whole = format!("{text}{head}{}", p.text);
        if counter.count(&whole) <= space {
            text = whole;
            cited.push(Citation { source: p.source.clone(), location: p.location.clone(), snippet: p.text.clone() });
            continue;
        }
        let left = space.saturating_sub(counter.count(&format!("{text}{head}")) + 1);
        if left >= MIN_PASSAGE_TOKENS {
            let mut cut = counter.prefix(&p.text, left);
            while !cut.is_empty() && counter.count(&format!("{text}{head}{cut}")) > space {
                cut = counter.prefix(cut, counter.count(cut).saturating_sub(8));
            }
            if !cut.is_empty() {
                text = format!("{text}{head}{cut}");
                cited.push(Citation { source: p.source.clone(), location: p.location.clone(), snippet: cut.into() });
            }
        }
        break;
    }
    (!cited.is_empty()).then_some((text, cited))
}

/// The per-turn Redis key holding the user's (masked) message until deliver appends the turn to memory.
pub fn pending_user_key(tenant: &str, session_id: &str, turn_id: &str) -> String {
    session::key(tenant, session_id, &format!("turn:{turn_id}:user"))
}

/// As long as other per-turn buffers: outlives any plausible reply.
const PENDING_TTL_SECS: u64 = 3600;

pub struct Assemble {
    pub deps: Deps,
    pub policies: PerTenant<ContextPolicy>,
    /// `None`: no summaries (memory keeps only the most recent messages that fit).
    pub summarizer: Option<Arc<Summarizer>>,
    /// `None`: no retrieval ([`Assemble::with_knowledge`]).
    pub knowledge: Option<crate::retrieve::Knowledge>,
}

impl Assemble {
    /// Validates every tenant's policy and loads the tokenizers, so neither fails on a turn.
    pub fn new(
        deps: Deps,
        policies: PerTenant<ContextPolicy>,
        summarizer: Option<Arc<Summarizer>>,
    ) -> Result<Self, StageError> {
        crate::tokens::warm_up().map_err(|e| StageError::fatal("tokenizer", e))?;
        for (tenant, p) in policies.iter() {
            p.validate()
                .map_err(|e| StageError::fatal("context_policy", format!("{}: {e}", tenant.unwrap_or("defaults"))))?;
        }
        Ok(Assemble { deps, policies, summarizer, knowledge: None })
    }
}

impl Stage for Assemble {
    type In = GuardedTurn;

    async fn process(&self, turn: GuardedTurn, out: &mut Emitter) -> Result<(), StageError> {
        let policy = self.policies.get(&turn.tenant_id);
        let mut job = None;
        let a = if turn.action == TurnAction::Proceed {
            let started = Instant::now();
            let counter = policy.counter().map_err(|e| StageError::fatal("tokenizer", e))?;
            let mem = memory::load(&self.deps, &turn.tenant_id, &turn.session_id, turn.seq).await?;
            // Only turns before this one: a redelivered turn must not see its own reply.
            let earlier: Vec<(Remembered, usize)> = mem
                .messages
                .iter()
                .filter(|m| m.seq < turn.seq)
                .map(|m| (m.clone(), counter.message(&m.content)))
                .collect();
            let history: Vec<(ChatMessage, usize)> = earlier.iter().map(|(m, t)| (m.chat(), *t)).collect();
            // Knowledge for this question (and the previous one, for follow-ups): see crate::retrieve.
            let knowledge = match &self.knowledge {
                Some(k) => {
                    let previous = history.iter().rev().find(|(m, _)| m.role == Role::User);
                    k.for_turn(&turn.tenant_id, &turn.text, previous.map(|(m, _)| m.content.as_str())).await
                }
                None => Default::default(),
            };
            let mut a =
                build_counted(&counter, policy, mem.summary.as_ref(), &knowledge.passages, &history, &turn.text);
            a.citations = knowledge.citations(std::mem::take(&mut a.citations));
            let mut redis = self.deps.pool.clone();
            let key = pending_user_key(&turn.tenant_id, &turn.session_id, &turn.turn_id);
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg(&turn.text)
                .arg("EX")
                .arg(PENDING_TTL_SECS)
                .query_async(&mut redis)
                .await
                .map_err(redis_err)?;
            if self.summarizer.is_some() {
                job = summarize::due(policy, &earlier).map(|(fold, cut_seq)| Job {
                    tenant: turn.tenant_id.clone(),
                    session: turn.session_id.clone(),
                    previous: mem.summary.clone(),
                    fold,
                    cut_seq,
                    tier: policy.summary_tier.clone(),
                    model: policy.summary_model.clone(),
                    max_tokens: policy.summary_max_tokens,
                });
            }
            metrics::histogram!("turnpike_assemble_seconds").record(started.elapsed().as_secs_f64());
            metrics::histogram!("turnpike_prompt_summary_tokens").record(a.summary_tokens as f64);
            metrics::histogram!("turnpike_prompt_knowledge_tokens").record(a.knowledge_tokens as f64);
            metrics::counter!("turnpike_history_messages_total", "kept" => "true").increment(a.history_kept as u64);
            metrics::counter!("turnpike_history_messages_total", "kept" => "false").increment(a.history_dropped as u64);
            if a.user_truncated {
                metrics::counter!("turnpike_prompt_user_truncated_total").increment(1);
            }
            if mem.rebuilt {
                tracing::info!(tenant = %turn.tenant_id, turn = %turn.turn_id, "Session memory rebuilt from Cassandra.");
            }
            a
        } else {
            Assembly::default()
        };
        metrics::histogram!("turnpike_prompt_tokens").record(a.tokens as f64);
        out.emit(&AssembledPrompt {
            tenant_id: turn.tenant_id,
            session_id: turn.session_id,
            turn_id: turn.turn_id,
            seq: turn.seq,
            user_id: turn.user_id,
            action: turn.action,
            reply_text: turn.reply_text,
            messages: a.messages,
            citations: a.citations,
            prompt_tokens: a.tokens as i32,
            budget_tokens: policy.budget_tokens as i32,
            channel: turn.channel,
            received_at_ms: turn.received_at_ms,
            attributes: turn.attributes,
        })
        .await?;
        // After the prompt left: the summary never delays the turn.
        if let (Some(job), Some(s)) = (job, &self.summarizer) {
            s.spawn(job);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;
