//! Per-session routing signals in Redis: which earlier turns of a session went wrong, so the router can
//! weigh "earlier failures" and send the turn after a hedged reply to the capable tier, and which turn
//! was complex, so its follow-up stays on the capable tier.
//!
//! One hash per session, `tp:{tenant:session}:route:signals` (tenant-scoped like every session key), with
//! one field per (turn seq, kind): `7:escalated`, `7:low_confidence`, ... Writing a field is idempotent,
//! so a redelivered turn never counts twice. Writers: route (refused turns, which it sees pass by, and
//! complex ones, which it decides) and generate (escalated, low-confidence and incomplete replies). The hash expires with the session.
//!
//! Signals are a routing hint, not a record: if Redis loses the hash, the next turns route as if nothing
//! had failed (the record of each turn is on its topics and in the metrics).

use redis::AsyncCommands;
use turnpike_runner::StageError;

use crate::session::{key, SESSION_TTL_SECS};
use crate::{redis_err, Deps};

/// What went wrong with a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    /// guard-in refused the message.
    Refused,
    /// The cheap tier failed or answered nothing; the capable tier answered instead.
    Escalated,
    /// The reply hedged or was cut by the output cap.
    LowConfidence,
    /// The reply ended with the incomplete notice (and a handoff).
    Incomplete,
    /// Routed to the capable tier on its own merits (score or sensitive topic). Not a failure.
    Complex,
}

impl SignalKind {
    pub fn name(self) -> &'static str {
        match self {
            SignalKind::Refused => "refused",
            SignalKind::Escalated => "escalated",
            SignalKind::LowConfidence => "low_confidence",
            SignalKind::Incomplete => "incomplete",
            SignalKind::Complex => "complex",
        }
    }
}

/// What the router knows about a session's earlier turns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signals {
    /// Earlier turns with at least one signal.
    pub earlier_failures: u32,
    /// The turn just before this one was low confidence.
    pub previous_low_confidence: bool,
    /// The turn just before this one was complex.
    pub previous_complex: bool,
}

impl Signals {
    /// From the hash's field names, for the turn `seq`.
    pub fn from_fields<S: AsRef<str>>(fields: &[S], seq: i64) -> Signals {
        let mut turns = std::collections::BTreeSet::new();
        let mut s = Signals::default();
        for field in fields {
            let Some((turn, kind)) = field.as_ref().split_once(':') else { continue };
            let Ok(turn) = turn.parse::<i64>() else { continue };
            let previous = turn == seq - 1;
            if kind == SignalKind::Complex.name() {
                s.previous_complex |= previous;
            } else if turn < seq {
                turns.insert(turn);
                s.previous_low_confidence |= previous && kind == SignalKind::LowConfidence.name();
            }
        }
        s.earlier_failures = turns.len() as u32;
        s
    }
}

/// The session's signal hash.
pub fn hash_key(tenant: &str, session: &str) -> String {
    key(tenant, session, "route:signals")
}

/// The session's signals as seen by turn `seq`.
pub async fn read(deps: &Deps, tenant: &str, session: &str, seq: i64) -> Result<Signals, StageError> {
    let mut redis = deps.pool.clone();
    let fields: Vec<String> = redis.hkeys(hash_key(tenant, session)).await.map_err(redis_err)?;
    Ok(Signals::from_fields(&fields, seq))
}

/// Whether `kind` was recorded for turn `seq`.
pub async fn has(deps: &Deps, tenant: &str, session: &str, seq: i64, kind: SignalKind) -> Result<bool, StageError> {
    let mut redis = deps.pool.clone();
    redis.hexists(hash_key(tenant, session), format!("{seq}:{}", kind.name())).await.map_err(redis_err)
}

/// Records `kind` for turn `seq` (idempotent).
pub async fn record(deps: &Deps, tenant: &str, session: &str, seq: i64, kind: SignalKind) -> Result<(), StageError> {
    let mut redis = deps.pool.clone();
    let hash = hash_key(tenant, session);
    let _: () = redis::pipe()
        .hset(&hash, format!("{seq}:{}", kind.name()), 1)
        .expire(&hash, SESSION_TTL_SECS as i64)
        .query_async(&mut redis)
        .await
        .map_err(redis_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_earlier_turns_once_and_spots_a_hedged_previous_turn() {
        let fields =
            ["2:escalated", "2:low_confidence", "4:refused", "5:complex", "6:low_confidence", "9:incomplete", "junk"];
        let s = Signals::from_fields(&fields, 7);
        assert_eq!(s, Signals { earlier_failures: 3, previous_low_confidence: true, previous_complex: false });
        let s = Signals::from_fields(&fields, 8);
        assert_eq!(s, Signals { earlier_failures: 3, ..Signals::default() }, "turn 7 was fine");
        let s = Signals::from_fields(&fields, 6);
        assert_eq!(s, Signals { earlier_failures: 2, previous_complex: true, ..Signals::default() }, "not a failure");
        assert_eq!(Signals::from_fields(&fields, 2), Signals::default(), "a turn's own signals are not earlier");
    }
}
