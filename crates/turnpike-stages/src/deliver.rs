//! deliver: checked reply chunk → outbound reply, and the assistant's message into the transcript.
//!
//! Guarantee: every chunk reaches the outbound topic, in order per session, each chunk index of a turn and
//! its FINAL once. deliver runs `exactly_once` (topology): its outbound records and its input offsets commit
//! in one Kafka transaction, so a crash or restart of deliver repeats nothing a `read_committed` reader sees
//! (the redelivered inputs' first outputs were aborted). Upstream repeats are dropped here: a chunk index
//! or FINAL that arrives again from another input position (guard-out re-released it after a crash: the
//! same bytes, see guard_out) is not published again. The record of what was published is in Redis: the
//! turn's chunks in a hash keyed by chunk index, and the FINALs in one hash per session keyed by turn seq
//! (one hash rather than a key per turn: ~35M keys a day at 1M conversations), each value naming the input
//! position that published it, so a redelivery of *that* record (whose first publication was aborted)
//! publishes again. Without transactions (a topology without `exactly_once`) the same record can repeat
//! after a crash and readers de-duplicate by (turn_id, chunk_index) and turn_id. The reply's text is
//! gathered from the chunk hash for the transcript; the transcript row is an idempotent upsert keyed by
//! (seq, role).
//! Records from the helpdesk side (action `DESK`: an agent's message, a status, the bot's line when no agent
//! came) are published the same way, each under its own session number. A FINAL that hands the turn off is
//! followed by a `handed_off` STATUS in the same transaction.
//! After the transcript write, a turn that went to the model is appended to the session's memory in Redis
//! (user message and reply, keyed by seq and role: idempotent), before the offset is stored.
//! The same record is mirrored in process (the turns this instance published lately, with their input
//! positions): when Redis comes back empty, an upstream repeat (upstream stages retry while Redis is away)
//! is still recognised. Being keyed by input position, the mirror is right across aborted transactions too:
//! a partition is processed in offset order, so a redelivered position republishes, another one does not.

use crate::{memory, redis_err, session, store_err, Deps};
use lru::LruCache;
use redis::AsyncCommands;
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use turnpike_runner::{now_ms, Emitter, Stage, StageError};
use turnpike_schemas::{CheckedReplyChunk, ChunkKind, OutboundKind, OutboundReply, TurnAction};
use turnpike_store::TranscriptRow;

/// Turn buffers outlive any plausible reply; the marker outlives any plausible redelivery.
const TURN_TTL_SECS: u64 = 3600;
const FINAL_TTL_SECS: u64 = 7 * 24 * 3600;
/// A finished turn's buffer is kept this long for a redelivery of its FINAL (an aborted transaction is
/// retried within seconds; a crashed instance restarts within minutes), then expires.
const DONE_TURN_TTL_SECS: i64 = 300;
/// Separates the source position that first stored a chunk from its text in the turn buffer.
const SEP: char = '\u{1f}';

/// Turns whose publications one instance mirrors in process (a few minutes of traffic at 1M/day).
const RECENT_TURNS: usize = 20_000;

/// The input positions that published a turn's chunks and its FINAL (see the module comment).
#[derive(Default)]
struct Published {
    chunks: HashMap<i32, String>,
    /// The FINAL's (or the forwarded-to-agent status's).
    last: Option<String>,
}

pub struct Deliver {
    deps: Deps,
    recent: Mutex<LruCache<String, Published>>,
}

fn chunks_key(c: &CheckedReplyChunk) -> String {
    session::key(&c.tenant_id, &c.session_id, &format!("turn:{}:chunks", c.turn_id))
}

/// The session's delivered FINALs, one field per turn seq (seq is unique per accepted turn).
fn finals_key(c: &CheckedReplyChunk) -> String {
    session::key(&c.tenant_id, &c.session_id, "finals")
}

fn outbound(c: &CheckedReplyChunk, kind: OutboundKind, text: String) -> OutboundReply {
    OutboundReply {
        tenant_id: c.tenant_id.clone(),
        session_id: c.session_id.clone(),
        turn_id: c.turn_id.clone(),
        seq: c.seq,
        chunk_index: c.chunk_index,
        kind,
        text,
        status: None,
        finish_reason: c.finish_reason.clone(),
        citations: c.citations.clone(),
        usage: c.usage.clone(),
        model: c.model.clone(),
        channel: c.channel.clone(),
        received_at_ms: c.received_at_ms,
    }
}

impl Deliver {
    pub fn new(deps: Deps) -> Deliver {
        let recent = Mutex::new(LruCache::new(NonZeroUsize::new(RECENT_TURNS).unwrap_or(NonZeroUsize::MIN)));
        Deliver { deps, recent }
    }

    /// The input position this instance lately published `c` from (a chunk index, or the FINAL when `last`).
    fn published_from(&self, c: &CheckedReplyChunk, last: bool) -> Option<String> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let seen = recent.get(&c.turn_id)?;
        if last {
            seen.last.clone()
        } else {
            seen.chunks.get(&c.chunk_index).cloned()
        }
    }

    /// Records that `position` publishes `c`: called just before it is emitted.
    fn remember(&self, c: &CheckedReplyChunk, last: bool, position: &str) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let seen = recent.get_or_insert_mut(c.turn_id.clone(), Published::default);
        if last {
            seen.last = Some(position.to_owned());
        } else {
            seen.chunks.insert(c.chunk_index, position.to_owned());
        }
    }

    /// The user's message of this turn from the transcript, when Redis lost assemble's copy.
    async fn user_message(&self, c: &CheckedReplyChunk) -> Result<Option<String>, StageError> {
        let rows = self.deps.transcript.read_since(&c.tenant_id, &c.session_id, c.seq).await.map_err(store_err)?;
        Ok(rows.into_iter().find(|r| r.seq == c.seq && r.role == "user").map(|r| r.content))
    }
}

/// The transcript row of a record deliver publishes: who said `content` in which turn, and when.
fn transcript_row(c: &CheckedReplyChunk, role: &str, content: String) -> TranscriptRow {
    TranscriptRow {
        tenant_id: c.tenant_id.clone(),
        session_id: c.session_id.clone(),
        seq: c.seq,
        role: role.into(),
        turn_id: c.turn_id.clone(),
        content,
        channel: Some(c.channel.clone()),
        finish_reason: c.finish_reason.clone(),
        created_at: Some(scylla::value::CqlTimestamp(now_ms())),
        ..Default::default()
    }
}

impl Stage for Deliver {
    type In = CheckedReplyChunk;

    async fn process(&self, c: CheckedReplyChunk, out: &mut Emitter) -> Result<(), StageError> {
        let mut redis = self.deps.pool.clone();
        let src = out.source();
        let position = format!("{}/{}/{}", src.topic, src.partition, src.offset);
        if c.kind == ChunkKind::Delta {
            let key = chunks_key(&c);
            let (fresh, _): (bool, bool) = redis::pipe()
                .hset_nx(&key, c.chunk_index, format!("{position}{SEP}{}", c.text))
                .expire(&key, TURN_TTL_SECS as i64)
                .query_async(&mut redis)
                .await
                .map_err(redis_err)?;
            // A chunk seen before was published before (or is being re-published by a redelivery of this
            // very record, whose first publication may not have been acknowledged: publish again then).
            let seen_from: Option<String> =
                if fresh { None } else { redis.hget(&key, c.chunk_index).await.map_err(redis_err)? };
            // Redis may have come back empty: this instance's own record then still knows (the chunk's text
            // is in the buffer again either way, for the transcript).
            let seen_from = seen_from.or_else(|| self.published_from(&c, false));
            if seen_from.is_some_and(|v| v.split(SEP).next() != Some(position.as_str())) {
                metrics::counter!("turnpike_deliver_duplicate_chunks_total").increment(1);
                return Ok(());
            }
            self.remember(&c, false, &position);
            return out.emit(&outbound(&c, OutboundKind::Delta, c.text.clone())).await;
        }
        // One round trip for all three: the done marker, the turn's buffered chunks, the user's message.
        let (published_from, parts, pending_user): (Option<String>, BTreeMap<i32, String>, Option<String>) =
            redis::pipe()
                .hget(finals_key(&c), c.seq)
                .hgetall(chunks_key(&c))
                .get(crate::assemble::pending_user_key(&c.tenant_id, &c.session_id, &c.turn_id))
                .query_async(&mut redis)
                .await
                .map_err(redis_err)?;
        if published_from.or_else(|| self.published_from(&c, true)).is_some_and(|p| p != position) {
            metrics::counter!("turnpike_deliver_duplicate_finals_total").increment(1);
            return Ok(());
        }
        if c.action == TurnAction::Human {
            self.mark_final(&c, &position).await?;
            let mut status = outbound(&c, OutboundKind::Status, String::new());
            status.status = Some("forwarded_to_agent".into());
            return out.emit(&status).await;
        }
        if c.action == TurnAction::Desk {
            return self.desk(&c, &position, out).await;
        }
        let mut text: String =
            parts.into_values().map(|v| v.split_once(SEP).map(|(_, t)| t.to_string()).unwrap_or(v)).collect();
        text.push_str(&c.text);
        let usage = c.usage.clone().unwrap_or_default();
        let citations = if c.citations.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&c.citations.iter().map(|x| (&x.source, &x.location)).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )
        };
        self.deps
            .transcript
            .append(&TranscriptRow {
                model: c.model.clone(),
                tier: c.tier.clone(),
                input_tokens: c.usage.as_ref().map(|_| usage.input_tokens),
                output_tokens: c.usage.as_ref().map(|_| usage.output_tokens),
                cost_usd_micros: c.usage.as_ref().map(|_| usage.cost_usd_micros),
                citations,
                ..transcript_row(&c, "assistant", text.clone())
            })
            .await
            .map_err(store_err)?;
        if c.action == TurnAction::Proceed {
            // After the transcript (the long-term record memory is rebuilt from), before the offset.
            let user = match pending_user {
                Some(u) => Some(u),
                None => self.user_message(&c).await?,
            };
            if let Some(user) = user {
                memory::append_turn(&self.deps, &c.tenant_id, &c.session_id, c.seq, &user, &text).await?;
            }
        }
        let latency = (now_ms() - c.received_at_ms).max(0) as f64 / 1000.0;
        let tenant = turnpike_core::tenant_label(&c.tenant_id);
        metrics::histogram!("turnpike_turn_latency_seconds", "tenant" => tenant).record(latency);
        let outcome = match c.action {
            TurnAction::Handoff => "handoff",
            TurnAction::Refuse => "refused",
            // guard-out ends a reply it hands over (a trigger) with `handoff`, generate one it cannot finish
            // with `incomplete`.
            _ if matches!(c.finish_reason.as_deref(), Some("incomplete" | "handoff")) => "handoff",
            _ => "contained",
        };
        metrics::counter!("turnpike_turns_total", "outcome" => outcome, "tenant" => tenant).increment(1);
        self.mark_final(&c, &position).await?;
        out.emit(&outbound(&c, OutboundKind::Final, c.text.clone())).await?;
        if outcome == "handoff" || c.finish_reason.as_deref() == Some("guardrail") {
            // The customer's page shows the handoff: after the turn's FINAL, in the same transaction, so in
            // order on every reader (a larger chunk index than the FINAL's, as the gateway's ids require).
            let mut status = outbound(&c, OutboundKind::Status, String::new());
            status.chunk_index = c.chunk_index + 1;
            status.status = Some(crate::desk::HANDED_OFF.into());
            status.finish_reason = None;
            out.emit(&status).await?;
        }
        Ok(())
    }
}

impl Deliver {
    /// A record from the helpdesk side (desk stage): an agent's message (FINAL, `finish_reason` `agent`, in the
    /// transcript as role `agent`), the bot's line on a queue timeout (role `assistant`), or a status. Each has
    /// its own session number (the desk stage claimed it), so the FINAL marker per seq de-duplicates it.
    async fn desk(&self, c: &CheckedReplyChunk, position: &str, out: &mut Emitter) -> Result<(), StageError> {
        if let Some(status) = &c.status {
            self.mark_final(c, position).await?;
            let mut r = outbound(c, OutboundKind::Status, String::new());
            r.status = Some(status.clone());
            return out.emit(&r).await;
        }
        let role = if c.finish_reason.as_deref() == Some("agent") { "agent" } else { "assistant" };
        self.deps.transcript.append(&transcript_row(c, role, c.text.clone())).await.map_err(store_err)?;
        metrics::counter!("turnpike_desk_messages_total", "role" => role).increment(1);
        self.mark_final(c, position).await?;
        out.emit(&outbound(c, OutboundKind::Final, c.text.clone())).await
    }

    /// Records that the input at `position` publishes the turn's FINAL (just before it is emitted, in the
    /// same transaction as its offset): a FINAL from any other position is then a repeat. The turn's chunk
    /// buffer is kept a while for a redelivery of this very record, whose transcript write reads it again.
    async fn mark_final(&self, c: &CheckedReplyChunk, position: &str) -> Result<(), StageError> {
        self.remember(c, true, position);
        let (mut redis, finals) = (self.deps.pool.clone(), finals_key(c));
        let _: () = redis::pipe()
            .hset(&finals, c.seq, position)
            .expire(&finals, FINAL_TTL_SECS as i64)
            .expire(chunks_key(c), DONE_TURN_TTL_SECS)
            .query_async(&mut redis)
            .await
            .map_err(redis_err)?;
        Ok(())
    }
}
