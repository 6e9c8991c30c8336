//! ingest: inbound turn → accepted turn.
//!
//! Guarantee: every valid inbound record yields exactly one accepted turn per (tenant, session, message id)
//! with a gap-free per-session sequence, even across redeliveries; a client that sends the same message id
//! twice gets one turn. Invalid input is dead-lettered with a reason, never dropped silently.

use crate::{session, store_err, Deps};
use turnpike_runner::{now_ms, Emitter, Stage, StageError};
use turnpike_schemas::{AcceptedTurn, InboundTurn, SessionOwner};

/// Limits on inbound turns.
#[derive(Clone, Debug)]
pub struct IngestLimits {
    /// Longest accepted message, in bytes of UTF-8 (longer ones are dead-lettered as invalid).
    pub max_text_bytes: usize,
    /// Longest id (tenant, session, user, message).
    pub max_id_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits { max_text_bytes: 32 * 1024, max_id_bytes: 256 }
    }
}

pub struct Ingest {
    pub deps: Deps,
    pub limits: IngestLimits,
}

/// Why an inbound turn is refused; the message becomes the dead letter's reason.
pub fn validate(turn: &InboundTurn, limits: &IngestLimits) -> Result<(), StageError> {
    for (name, value) in [
        ("tenant_id", &turn.tenant_id),
        ("session_id", &turn.session_id),
        ("user_id", &turn.user_id),
        ("message_id", &turn.message_id),
    ] {
        if value.trim().is_empty() {
            return Err(StageError::rejected("invalid_turn", format!("{name} is empty")));
        }
        if value.len() > limits.max_id_bytes {
            return Err(StageError::rejected(
                "invalid_turn",
                format!("{name} is longer than {} bytes", limits.max_id_bytes),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(StageError::rejected("invalid_turn", format!("{name} contains control characters")));
        }
    }
    if turn.text.trim().is_empty() {
        return Err(StageError::rejected("invalid_turn", "text is empty"));
    }
    if turn.text.len() > limits.max_text_bytes {
        return Err(StageError::rejected(
            "too_large",
            format!("text is {} bytes; the limit is {}", turn.text.len(), limits.max_text_bytes),
        ));
    }
    Ok(())
}

/// Stable turn id: the same (tenant, session, message id) always gives the same id, so redelivered and
/// re-emitted turns are recognisable downstream.
pub fn turn_id(tenant: &str, session: &str, message_id: &str) -> String {
    let name = format!("{tenant}\u{1f}{session}\u{1f}{message_id}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

impl Stage for Ingest {
    type In = InboundTurn;

    async fn process(&self, turn: InboundTurn, out: &mut Emitter) -> Result<(), StageError> {
        validate(&turn, &self.limits)?;
        let received_at_ms = now_ms();
        let (tenant, sid) = (turn.tenant_id.as_str(), turn.session_id.as_str());
        let src = out.source();
        let position = format!("{}/{}/{}", src.topic, src.partition, src.offset);
        let claim = match session::claim_seq(&self.deps, tenant, sid, &turn.message_id, &position, -1).await? {
            Some(c) => c,
            None => {
                // Redis lost the counter (new session, eviction, expiry, failover): continue from the
                // long-term record so sequences never restart. The same read gives the owner.
                let (floor, stored_owner) =
                    self.deps.sessions.last_seq_and_owner(tenant, sid).await.map_err(store_err)?;
                let mut claim = session::claim_seq(&self.deps, tenant, sid, &turn.message_id, &position, floor)
                    .await?
                    .ok_or_else(|| StageError::retryable("redis", "sequence counter vanished while claiming"))?;
                if claim.owner.is_none() {
                    claim.owner = Some(session::cache_owner(&self.deps, tenant, sid, stored_owner).await?);
                }
                claim
            }
        };
        let (seq, claimed_by) = (claim.seq, claim.claimed_by);
        if claimed_by != position {
            metrics::counter!("turnpike_ingest_duplicates_total").increment(1);
            tracing::info!(tenant, seq, "Duplicate message id dropped.");
            return Ok(());
        }
        self.deps.sessions.touch(tenant, sid, &turn.user_id, seq, received_at_ms).await.map_err(store_err)?;
        let owner = match claim.owner {
            Some(o) => o,
            None => session::owner(&self.deps, tenant, sid).await?,
        };
        let owner = match owner.as_str() {
            "human" => SessionOwner::Human,
            _ => SessionOwner::Bot,
        };
        let turn_id =
            turn.turn_id.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| turn_id(tenant, sid, &turn.message_id));
        out.emit(&AcceptedTurn {
            tenant_id: turn.tenant_id,
            session_id: turn.session_id,
            turn_id,
            seq,
            user_id: turn.user_id,
            message_id: turn.message_id,
            text: turn.text,
            channel: turn.channel,
            locale: turn.locale,
            owner,
            received_at_ms,
            attributes: turn.attributes,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_core::{Classify, ErrorClass};

    fn turn() -> InboundTurn {
        InboundTurn {
            tenant_id: "acme".into(),
            session_id: "u:c".into(),
            user_id: "u".into(),
            message_id: "m1".into(),
            text: "hello".into(),
            ..Default::default()
        }
    }

    #[test]
    fn refuses_empty_oversized_and_control_characters() {
        let limits = IngestLimits { max_text_bytes: 10, max_id_bytes: 8 };
        assert!(validate(&turn(), &limits).is_ok());
        let e = validate(&InboundTurn { text: "  ".into(), ..turn() }, &limits).unwrap_err();
        assert_eq!((e.class(), e.code()), (ErrorClass::Poison, "invalid_turn"));
        let e = validate(&InboundTurn { text: "x".repeat(11), ..turn() }, &limits).unwrap_err();
        assert_eq!(e.code(), "too_large");
        let e = validate(&InboundTurn { user_id: "a\nb".into(), ..turn() }, &limits).unwrap_err();
        assert!(e.to_string().contains("user_id contains control characters"));
        let e = validate(&InboundTurn { tenant_id: "".into(), ..turn() }, &limits).unwrap_err();
        assert!(e.to_string().contains("tenant_id is empty"));
    }

    #[test]
    fn turn_ids_are_stable_and_tenant_scoped() {
        assert_eq!(turn_id("a", "s", "m"), turn_id("a", "s", "m"));
        assert_ne!(turn_id("a", "s", "m"), turn_id("b", "s", "m"));
        assert_ne!(turn_id("a", "s", "m1"), turn_id("a", "s", "m2"));
    }
}
