//! The handoff triggers' glue in guard-in and guard-out: the session history they need (kept in Redis),
//! the `HandoffRequest` a decision becomes, and the count by reason.
//!
//! Guarantee: the decisions themselves are `turnpike_guard::handoff` (pure, per-tenant policy `guard.handoff`);
//! this module only gathers their inputs and writes their outputs. History is written keyed by the turn's
//! `seq` and read back only for earlier turns (`seq` below the current one), so a redelivered turn sees the
//! same history and decides the same way. A Redis error costs the turn its history-based triggers
//! (sentiment run, repeated answer), never the turn: it is logged and counted
//! (`turnpike_handoff_trigger_history_errors_total`). Every handoff a trigger decides is counted once per
//! processing in `turnpike_handoff_triggers_total{reason, stage}`.

use crate::{session, Deps};
use redis::AsyncCommands;
use turnpike_guard::handoff::HandoffDecision;
use turnpike_runner::now_ms;
use turnpike_schemas::{HandoffKind, HandoffRequest};

/// Scored turns and replies kept per session: more than any threshold needs.
const KEEP: isize = 20;
/// Longest reply kept for the repeated-answer comparison (normalised text, bytes).
const REPLY_KEEP_BYTES: usize = 2000;

fn frustration_key(tenant: &str, session_id: &str) -> String {
    format!("turnpike:handoff:frustration:{tenant}:{session_id}")
}

fn replies_key(tenant: &str, session_id: &str) -> String {
    format!("turnpike:handoff:replies:{tenant}:{session_id}")
}

fn history_error(key: &str, error: &redis::RedisError) {
    tracing::warn!(%error, key, "Could not use the session's handoff-trigger history; its triggers skip this turn.");
    metrics::counter!("turnpike_handoff_trigger_history_errors_total").increment(1);
}

/// The entries of a session's history list recorded before `seq` (parsed by `parse` into `(seq, value)`),
/// then records `entry` for this turn (newest last, at most [`KEEP`], as long as the session's state).
async fn history<T>(
    deps: &Deps,
    key: &str,
    seq: i64,
    entry: String,
    parse: impl Fn(&str) -> Option<(i64, T)>,
) -> Vec<T> {
    let mut redis = deps.pool.clone();
    let raw: Result<Vec<String>, _> = redis.lrange(key, -KEEP, -1).await;
    let earlier = match raw {
        Ok(items) => items.iter().filter_map(|e| parse(e)).filter(|(s, _)| *s < seq).map(|(_, v)| v).collect(),
        Err(e) => {
            history_error(key, &e);
            return vec![];
        }
    };
    let written: Result<(), _> = redis::pipe()
        .rpush(key, entry)
        .ltrim(key, -KEEP, -1)
        .expire(key, session::SESSION_TTL_SECS as i64)
        .query_async(&mut redis)
        .await;
    if let Err(e) = written {
        history_error(key, &e);
    }
    earlier
}

/// The session's scored turns before `seq`, as `(seq, negative)`, and records this turn's (entries
/// `"{seq}:{0|1}:{score}"`).
pub async fn frustration_history(
    deps: &Deps,
    tenant: &str,
    session_id: &str,
    seq: i64,
    negative: bool,
    score: f32,
) -> Vec<(i64, bool)> {
    let entry = format!("{seq}:{}:{score:.3}", u8::from(negative));
    history(deps, &frustration_key(tenant, session_id), seq, entry, |e| {
        let mut f = e.splitn(3, ':');
        let s = f.next()?.parse::<i64>().ok()?;
        Some((s, (s, f.next()? == "1")))
    })
    .await
}

/// The session's bot replies before `seq` (normalised), and records this one (entries
/// `"{seq}\u{1f}{text}"`, cut at [`REPLY_KEEP_BYTES`]).
pub async fn reply_history(deps: &Deps, tenant: &str, session_id: &str, seq: i64, normalised: &str) -> Vec<String> {
    let cut = (0..=REPLY_KEEP_BYTES.min(normalised.len())).rev().find(|i| normalised.is_char_boundary(*i)).unwrap_or(0);
    let entry = format!("{seq}\u{1f}{}", &normalised[..cut]);
    history(deps, &replies_key(tenant, session_id), seq, entry, |e| {
        let (s, t) = e.split_once('\u{1f}')?;
        Some((s.parse().ok()?, t.to_string()))
    })
    .await
}

/// The turn a handoff request is about.
pub struct TurnRef<'a> {
    pub tenant_id: &'a str,
    pub session_id: &'a str,
    pub turn_id: &'a str,
    pub seq: i64,
    pub user_id: &'a str,
    /// The user's masked message (guard-in) or empty (guard-out).
    pub text: &'a str,
}

/// The request a trigger's decision becomes, counted by reason.
pub fn request(t: &TurnRef, d: &HandoffDecision, stage: &'static str) -> HandoffRequest {
    metrics::counter!("turnpike_handoff_triggers_total", "reason" => d.reason, "stage" => stage, "tenant" => turnpike_core::tenant_label(t.tenant_id))
        .increment(1);
    tracing::info!(tenant = %t.tenant_id, turn = %t.turn_id, reason = d.reason, priority = d.priority.as_str(),
        evidence = %d.evidence, "Handoff triggered.");
    HandoffRequest {
        tenant_id: t.tenant_id.to_string(),
        session_id: t.session_id.to_string(),
        turn_id: t.turn_id.to_string(),
        seq: t.seq,
        user_id: t.user_id.to_string(),
        kind: HandoffKind::Request,
        reason: d.reason.to_string(),
        source_stage: stage.to_string(),
        text: t.text.to_string(),
        summary: None,
        requested_at_ms: now_ms(),
        evidence: d.evidence.clone(),
        priority: d.priority.as_str().to_string(),
        tags: d.tags.clone(),
        frustration: d.frustration.map(f64::from),
    }
}
