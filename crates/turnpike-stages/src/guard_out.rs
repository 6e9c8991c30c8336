//! guard-out: reply chunk → checked reply chunks (+ handoff request).
//!
//! Guarantee: generated text reaches deliver only as whole sentences that passed the output checks of
//! `turnpike-guard` (content safety, brand, commitments, canary leaks, grounding flags), so an unsafe sentence
//! never reaches a user, not even partly; each release carries an explicit verdict; after a block nothing more
//! of the turn is released and a handoff is requested. Chunks are re-cut on sentence boundaries and numbered
//! afresh from 0; the FINAL comes last, carrying the reply's last sentences when they passed untouched and
//! it brings no text of its own. The model's last words arriving in a FINAL (`generated`) are checked like
//! a DELTA's; canned text (refusals, apologies) in a FINAL is the pipeline's own and passes unchecked.
//!
//! Re-releases are byte-for-byte the first release. The checker's state (held-back text, previous
//! sentence, blocked flag, next output index) after each *input* chunk index is kept in Redis (field
//! `s<index>` of the turn's hash) and in a small in-process cache, and input chunk `i` is always checked
//! from the state after chunk `i - 1` (chunk 0 from the empty state). The checks are a pure function of
//! that state, the chunk and the turn's sources, so whichever instance processes a chunk, and however
//! often (a redelivery after a crash, a rebalance, generate re-sending a chunk), the released chunks,
//! their boundaries and their indexes are the same, and deliver's de-duplication by index is sound. The
//! cache keeps a turn going when Redis lost its copy (restarted empty) while this process lived; a chunk
//! whose predecessor's state is in neither (Redis lost *and* a crash) is checked from the empty state with
//! its output indexes moved past any the turn can have used (`LOST_STATE_INDEX_BASE`), counted in
//! `turnpike_guard_out_state_lost_total`: text held back before it may be lost, but no index is reused.
//! A turn that arrives as a single FINAL (numbered 0) is checked from an empty state and keeps none.
//! Each tenant gets its own policy (section `guard` of the tenants file) and every trigger is audited.
//! On the FINAL of a turn the bot answered, the tenant's reply triggers (`guard.handoff`: the bot repeating
//! an earlier reply, low confidence) judge the whole reply — what every input chunk released, kept per input
//! index in field `t<index>` of the turn's hash — and a handoff they decide ends the reply with the handoff
//! line (`finish_reason = "handoff"`) and a `HandoffRequest` with its reason and evidence.

use crate::audit::{self, AuditSite};
use crate::triggers::{self, TurnRef};
use crate::{redis_err, session, Deps};
use lru::LruCache;
use redis::AsyncCommands;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use turnpike_core::PerTenant;
use turnpike_guard::handoff::{reply, HandoffDecision};
use turnpike_guard::{CheckerState, CompiledPolicy, Guard, OutputVerdict, Release};
use turnpike_runner::{now_ms, Emitter, Stage, StageError};
use turnpike_schemas::{
    CheckedReplyChunk, ChunkKind, GuardTrigger, HandoffKind, HandoffRequest, ReplyChunk, TurnAction, Verdict,
};

pub struct GuardOut {
    pub deps: Deps,
    pub guard: Arc<Guard>,
    pub policies: PerTenant<CompiledPolicy>,
    /// The latest state of each turn this process checked: (input index, encoded state, sources).
    recent: Mutex<LruCache<String, (i32, String, String)>>,
}

/// Turns whose latest state the process keeps: far more than are in flight at once at full load.
const RECENT_TURNS: usize = 65_536;

/// Where the output indexes of a chunk checked without its predecessor's state start, times its input
/// index: an input chunk of at most generate's 2,048-character cap cannot release this many sentences,
/// so no index of the turn released before the loss is reused.
const LOST_STATE_INDEX_BASE: i32 = 4096;

impl GuardOut {
    pub fn new(deps: Deps, policies: PerTenant<CompiledPolicy>) -> Result<Self, StageError> {
        let guard = Guard::new().map_err(|e| StageError::fatal("guard_policy", e.to_string()))?;
        let recent = Mutex::new(LruCache::new(NonZeroUsize::new(RECENT_TURNS).unwrap_or(NonZeroUsize::MIN)));
        Ok(GuardOut { deps, guard: Arc::new(guard), policies, recent })
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, LruCache<String, (i32, String, String)>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state after input chunk `index - 1` (the empty state for chunk 0) and the turn's sources, from
    /// Redis or else from this process's cache; `None` when neither has the state (see the module comment).
    async fn load(&self, key: &str, index: i32) -> Result<(Option<TurnState>, String), StageError> {
        let mut redis = self.deps.pool.clone();
        let (prev, src): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(key)
            .arg(format!("s{}", index - 1))
            .arg("src")
            .query_async(&mut redis)
            .await
            .map_err(redis_err)?;
        let cached = self.recent().get(key).cloned();
        let cached_prev = cached.as_ref().filter(|(i, _, _)| *i == index - 1).map(|(_, s, _)| s.clone());
        let state =
            if index == 0 { Some(TurnState::default()) } else { prev.or(cached_prev).as_deref().and_then(decode) };
        Ok((state, src.or(cached.map(|(_, _, src)| src)).unwrap_or_default()))
    }
}

impl GuardOut {
    /// What input chunks `0..index` of the turn released, with their grounding flags (fields `t<i>` of the
    /// turn's hash); a chunk whose record is gone (Redis lost it) adds nothing.
    async fn released_before(&self, key: &str, index: i32) -> Result<Vec<(usize, String)>, StageError> {
        if index <= 0 {
            return Ok(vec![]);
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(key);
        for i in 0..index {
            cmd.arg(format!("t{i}"));
        }
        let mut redis = self.deps.pool.clone();
        let raw: Vec<Option<String>> = cmd.query_async(&mut redis).await.map_err(redis_err)?;
        Ok(raw
            .into_iter()
            .flatten()
            .filter_map(|v| v.split_once(SEP).map(|(n, t)| (n.parse().unwrap_or(0), t.to_string())))
            .collect())
    }

    /// The handoff triggers on the finished reply (the bot repeating itself, low confidence): the reply is
    /// what the earlier chunks and this one released; the session's earlier replies come from Redis, and this
    /// one is recorded there.
    async fn reply_trigger(
        &self,
        c: &ReplyChunk,
        earlier: &[(usize, String)],
        this: (&str, usize),
        had_sources: bool,
    ) -> Option<HandoffDecision> {
        let t = &self.policies.get(&c.tenant_id).triggers;
        if !t.triggers.repeat.enabled && !t.triggers.low_confidence.enabled {
            return None;
        }
        let text: String = earlier.iter().map(|(_, t)| t.as_str()).chain([this.0]).collect();
        let unsupported = earlier.iter().map(|(n, _)| n).sum::<usize>() + this.1;
        let normalised = reply::normalise(&text);
        let before = triggers::reply_history(&self.deps, &c.tenant_id, &c.session_id, c.seq, &normalised).await;
        let tier = c.tier.as_deref().unwrap_or("");
        let signals = reply::ReplySignals { text: &text, unsupported, had_sources, earlier: &before, tier };
        reply::decide(t, &signals)
    }
}

/// Persisted between chunks of one turn.
#[derive(Default)]
struct TurnState {
    checker: CheckerState,
    next_index: i32,
}

const SEP: char = '\u{1f}';

fn encode(s: &TurnState) -> String {
    format!("{}{SEP}{}{SEP}{}{SEP}{}", s.next_index, u8::from(s.checker.blocked), s.checker.prev_folded, s.checker.held)
}

fn decode(v: &str) -> Option<TurnState> {
    let mut p = v.splitn(4, SEP);
    let next_index = p.next()?.parse().ok()?;
    let blocked = p.next()? == "1";
    let prev_folded = p.next()?.to_string();
    let held = p.next()?.to_string();
    Some(TurnState { checker: CheckerState { held, prev_folded, blocked }, next_index })
}

fn verdict(v: OutputVerdict) -> Verdict {
    match v {
        OutputVerdict::Pass => Verdict::Pass,
        OutputVerdict::Redact => Verdict::Redact,
        OutputVerdict::Replace => Verdict::Replace,
        OutputVerdict::BlockAndHandoff => Verdict::Block,
    }
}

fn checked(
    c: &ReplyChunk,
    index: i32,
    kind: ChunkKind,
    text: String,
    v: Verdict,
    triggers: Vec<GuardTrigger>,
) -> CheckedReplyChunk {
    CheckedReplyChunk {
        tenant_id: c.tenant_id.clone(),
        session_id: c.session_id.clone(),
        turn_id: c.turn_id.clone(),
        seq: c.seq,
        chunk_index: index,
        kind,
        text,
        action: c.action,
        verdict: v,
        triggers,
        finish_reason: None,
        usage: None,
        provider: None,
        model: None,
        tier: c.tier.clone(),
        ttft_ms: None,
        citations: vec![],
        channel: c.channel.clone(),
        status: None,
        received_at_ms: c.received_at_ms,
    }
}

/// Passed untouched: no trigger, nothing to audit or mark.
fn clean(r: &Release) -> bool {
    r.verdict == OutputVerdict::Pass && r.triggers.is_empty()
}

/// The last release when it passed untouched: a FINAL without text of its own carries it. The reply is the
/// DELTA texts followed by the FINAL's (docs/kafka-contract.md), so this is one record fewer on this topic
/// and the outbound one per turn. A FINAL with a text of its own (an incomplete-answer notice) keeps the
/// model's words and the pipeline's apart, and a flagged sentence keeps its own chunk and verdict.
fn take_tail(releases: &mut Vec<Release>) -> Option<Release> {
    if releases.last().is_some_and(clean) {
        releases.pop()
    } else {
        None
    }
}

/// Sentences released by the same record that passed untouched leave as one chunk: they are released at
/// the same instant anyway, and a model faster than the pipeline would otherwise cost a record per sentence
/// on two topics. A sentence with a trigger or another verdict keeps a chunk of its own, so its verdict and
/// audit position stay exact.
fn merge_passed(releases: Vec<Release>) -> Vec<Release> {
    let mut merged: Vec<Release> = Vec::with_capacity(releases.len());
    for r in releases.into_iter().filter(|r| !r.text.is_empty()) {
        match merged.last_mut() {
            Some(last) if clean(last) && clean(&r) => last.text.push_str(&r.text),
            _ => merged.push(r),
        }
    }
    merged
}

impl Stage for GuardOut {
    type In = ReplyChunk;

    async fn process(&self, c: ReplyChunk, out: &mut Emitter) -> Result<(), StageError> {
        let key = session::key(&c.tenant_id, &c.session_id, &format!("turn:{}:guard", c.turn_id));
        // A FINAL numbered 0 by generate is the turn's only record: no chunk came before it, and none follows.
        // Its checks start from an empty state and leave nothing a later record could need, so it neither
        // reads nor writes state; redelivered, it is checked again from the same empty state.
        let whole_turn = c.kind == ChunkKind::Final && c.chunk_index == 0;
        let (start, stored_src) = if whole_turn {
            (Some(TurnState::default()), String::new())
        } else {
            self.load(&key, c.chunk_index).await?
        };
        let mut state = start.unwrap_or_else(|| {
            metrics::counter!("turnpike_guard_out_state_lost_total").increment(1);
            tracing::warn!(turn = %c.turn_id, chunk = c.chunk_index, "Checker state of the previous chunk lost; checking from an empty state.");
            TurnState { next_index: c.chunk_index.saturating_mul(LOST_STATE_INDEX_BASE), ..TurnState::default() }
        });

        // The turn's retrieved sources arrive once, on its first chunk (and again on the FINAL, for deliver);
        // they are kept with the checker state so every sentence's grounding check sees them.
        let arrived: Option<String> = (!c.citations.is_empty())
            .then(|| c.citations.iter().map(|x| x.snippet.as_str()).collect::<Vec<_>>().join(&SEP.to_string()));
        let kept = arrived.unwrap_or(stored_src);
        let sources: Vec<&str> = kept.split(SEP).filter(|s| !s.is_empty()).collect();
        let mut checker = self
            .guard
            .output_checker(self.policies.get(&c.tenant_id), &sources)
            .with_state(std::mem::take(&mut state.checker));
        let was_blocked = checker.is_blocked();
        let mut releases: Vec<Release> = Vec::new();
        if c.kind == ChunkKind::Delta || c.generated {
            releases.extend(checker.push(&c.text));
        }
        if c.kind == ChunkKind::Final {
            releases.extend(checker.finish());
        }
        let newly_blocked = checker.is_blocked() && !was_blocked;
        state.checker = checker.state();

        let mut releases = merge_passed(releases);
        // What this chunk released, kept per input index for the handoff triggers on the finished reply.
        let released: String = releases.iter().map(|r| r.text.as_str()).collect();
        let unsupported = releases.iter().filter(|r| r.triggers.iter().any(|t| t.check == "grounding")).count();
        let handoff = if c.kind == ChunkKind::Final && c.action == TurnAction::Proceed && !state.checker.blocked {
            let earlier = if whole_turn { vec![] } else { self.released_before(&key, c.chunk_index).await? };
            self.reply_trigger(&c, &earlier, (&released, unsupported), !sources.is_empty()).await
        } else {
            None
        };
        // The pipeline's own closing text, which a FINAL then carries instead of the model's.
        let canned = match &handoff {
            Some(_) => self.policies.get(&c.tenant_id).policy.handoff_line.as_str(),
            None if c.kind == ChunkKind::Final && !c.generated => c.text.as_str(),
            None => "",
        };
        let tail = if c.kind == ChunkKind::Final && canned.is_empty() && !state.checker.blocked {
            take_tail(&mut releases)
        } else {
            None
        };
        let mut outputs = Vec::with_capacity(releases.len() + 1);
        for r in releases {
            let triggers: Vec<GuardTrigger> = r
                .triggers
                .iter()
                .map(|t| GuardTrigger { check: t.check.into(), verdict: t.verdict.into(), detail: t.detail.clone() })
                .collect();
            outputs.push(checked(&c, state.next_index, ChunkKind::Delta, r.text, verdict(r.verdict), triggers));
            state.next_index += 1;
        }
        if c.kind == ChunkKind::Final {
            let text = tail.map_or_else(|| canned.to_string(), |t| t.text);
            let mut fin = checked(&c, state.next_index, ChunkKind::Final, text, Verdict::Pass, vec![]);
            if state.checker.blocked {
                fin.verdict = Verdict::Block;
                fin.text.clear();
            }
            fin.finish_reason = if state.checker.blocked {
                Some("guardrail".into())
            } else if handoff.is_some() {
                Some("handoff".into())
            } else {
                c.finish_reason.clone()
            };
            fin.usage = c.usage.clone();
            fin.provider = c.provider.clone();
            fin.model = c.model.clone();
            fin.ttft_ms = c.ttft_ms;
            fin.citations = c.citations.clone();
            outputs.push(fin);
        }
        // Persist before emitting: the state after this input index, which the next index starts from.
        if !whole_turn {
            let after = encode(&state);
            let mut redis = self.deps.pool.clone();
            let _: () = redis::pipe()
                .hset(&key, format!("s{}", c.chunk_index), &after)
                .hset(&key, format!("t{}", c.chunk_index), format!("{unsupported}{SEP}{released}"))
                .hset(&key, "src", &kept)
                .expire(&key, 3600)
                .query_async(&mut redis)
                .await
                .map_err(redis_err)?;
            self.recent().put(key.clone(), (c.chunk_index, after, kept.clone()));
        }
        let policy = audit::policy_label(&self.policies, &c.tenant_id);
        for o in &outputs {
            out.emit(o).await?;
            let site = AuditSite {
                tenant_id: &o.tenant_id,
                session_id: &o.session_id,
                turn_id: &o.turn_id,
                seq: o.seq,
                stage: "guard-out",
                position: o.chunk_index,
                action: audit::sentence_verdict(o.verdict),
                policy: &policy,
            };
            audit::emit(&site, &o.triggers, out).await?;
        }
        if let Some(d) = &handoff {
            let at = TurnRef {
                tenant_id: &c.tenant_id,
                session_id: &c.session_id,
                turn_id: &c.turn_id,
                seq: c.seq,
                user_id: "",
                text: "",
            };
            out.emit(&triggers::request(&at, d, "guard-out")).await?;
        }
        if newly_blocked {
            out.emit(&HandoffRequest {
                tenant_id: c.tenant_id.clone(),
                session_id: c.session_id.clone(),
                turn_id: c.turn_id.clone(),
                seq: c.seq,
                user_id: String::new(),
                kind: HandoffKind::Request,
                reason: "output_guardrail".into(),
                source_stage: "guard-out".into(),
                text: String::new(),
                summary: None,
                requested_at_ms: now_ms(),
                evidence: "An output guardrail blocked the reply.".into(),
                tags: vec!["handoff:output_guardrail".into()],
                ..Default::default()
            })
            .await?;
        }
        if c.kind == ChunkKind::Final && !whole_turn {
            // Kept a minute for a redelivery of the turn's last records; the process's copy is done.
            self.recent().pop(&key);
            let mut redis = self.deps.pool.clone();
            let _: () = redis.expire(&key, 60).await.map_err(redis_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_its_encoding() {
        let s = TurnState {
            checker: CheckerState { held: "It will arr".into(), prev_folded: "your parcel left".into(), blocked: true },
            next_index: 7,
        };
        let back = decode(&encode(&s)).unwrap();
        assert_eq!((back.next_index, back.checker), (7, s.checker));
        assert!(decode("garbage").is_none());
    }

    #[test]
    fn sentences_that_passed_together_leave_together_and_flagged_ones_alone() {
        let pass = |t: &str| Release { text: t.into(), verdict: OutputVerdict::Pass, triggers: vec![] };
        let redacted = Release { text: "Call [redacted]. ".into(), verdict: OutputVerdict::Redact, triggers: vec![] };
        let merged = merge_passed(vec![pass("One. "), pass("Two. "), redacted.clone(), pass(""), pass("Three.")]);
        assert_eq!(merged, vec![pass("One. Two. "), redacted, pass("Three.")]);
    }

    #[test]
    fn only_a_clean_last_release_rides_in_the_final() {
        let pass = |t: &str| Release { text: t.into(), verdict: OutputVerdict::Pass, triggers: vec![] };
        let redacted = Release { text: "Call [redacted].".into(), verdict: OutputVerdict::Redact, triggers: vec![] };
        let mut releases = vec![redacted.clone(), pass("Anything else?")];
        assert_eq!(take_tail(&mut releases), Some(pass("Anything else?")));
        assert_eq!(releases, vec![redacted.clone()]);
        assert_eq!(take_tail(&mut releases), None, "a flagged sentence keeps its own chunk");
        assert_eq!(releases, vec![redacted]);
        assert_eq!(take_tail(&mut Vec::new()), None);
    }
}
