//! desk: helpdesk event → what the customer sees, and the ownership state machine's moves.
//!
//! States (`helpdesk_links.state`, Cassandra; the owner is cached in Redis): the handoff stage puts a session
//! in `waiting_for_agent` (owner `human`). Here: an agent's first message moves it to `agent` (the customer
//! sees `agent_joined`, then the message); the agent closing or solving the ticket moves it to `closed` and
//! no agent within the tenant's queue timeout to `timed_out` (the customer gets the tenant's message); both
//! give the session back to the bot (owner `bot`, status `bot_resumed`).
//!
//! Guarantee: each helpdesk event reaches the customer once, in order with the rest of the conversation.
//! Its records go to the checked-reply topic under the session's key, so deliver publishes them exactly once
//! (its transaction) in the order of that partition. Each record takes the session's next sequence number
//! through the same claim ingest uses for a client's message id, keyed by the helpdesk's event id: a webhook
//! the helpdesk delivers twice is claimed once, and a redelivery of the same Kafka record gets the same
//! numbers. What an event does is decided once and kept in Redis (the plan), so a redelivery after a crash
//! emits the same records although the state already moved.
//!
//! Known window: desk numbers and ingest numbers are claimed by different stages, so a customer message and
//! an agent message crossing each other can reach deliver in the opposite order of their numbers; the
//! gateway then drops the older one's event from the stream (a `forwarded_to_agent` status at worst).

use crate::handoff::{queue_key, AGENT, CLOSED, TIMED_OUT, WAITING};
use crate::{redis_err, session, store_err, Deps};
use redis::AsyncCommands;
use turnpike_core::PerTenant;
use turnpike_helpdesk::{Connector, HelpdeskConfig};
use turnpike_runner::{now_ms, Emitter, Stage, StageError};
use turnpike_schemas::{
    CheckedReplyChunk, ChunkKind, DeskEvent, DeskEventKind, TicketEvent, TicketEventKind, TurnAction,
};
use turnpike_store::HelpdeskLink;

/// Statuses the customer sees (`OutboundReply.status`).
pub const HANDED_OFF: &str = "handed_off";
pub const AGENT_JOINED: &str = "agent_joined";
pub const BOT_RESUMED: &str = "bot_resumed";

const PLAN_TTL_SECS: u64 = 7 * 24 * 3600;

pub struct Desk {
    pub deps: Deps,
    pub desks: PerTenant<(Connector, HelpdeskConfig)>,
}

/// Claims the session's next sequence number for the desk record `event`, as ingest claims one for a client's
/// message id. `None` when another Kafka record claimed it first (the helpdesk sent the event twice).
pub(crate) async fn claim(
    deps: &Deps,
    tenant: &str,
    sid: &str,
    user: &str,
    event: &str,
    position: &str,
) -> Result<Option<i64>, StageError> {
    let id = format!("desk:{event}");
    let claim = match session::claim_seq(deps, tenant, sid, &id, position, -1).await? {
        Some(c) => c,
        None => {
            let (floor, _) = deps.sessions.last_seq_and_owner(tenant, sid).await.map_err(store_err)?;
            session::claim_seq(deps, tenant, sid, &id, position, floor)
                .await?
                .ok_or_else(|| StageError::retryable("redis", "sequence counter vanished while claiming"))?
        }
    };
    if claim.claimed_by != position {
        return Ok(None);
    }
    // The long-term record of the last number, so a counter Redis lost resumes after it.
    deps.sessions.touch(tenant, sid, user, claim.seq, now_ms()).await.map_err(store_err)?;
    Ok(Some(claim.seq))
}

/// A record for deliver that is not the model's: a status (`status`) or a line of text, for the session
/// `at` = (tenant, session, channel).
pub(crate) fn record(
    at: (&str, &str, &str),
    seq: i64,
    event: &str,
    text: String,
    status: Option<&str>,
    finish_reason: Option<&str>,
) -> CheckedReplyChunk {
    let (tenant, sid, channel) = at;
    let turn_id =
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{tenant}\u{1f}{sid}\u{1f}desk:{event}").as_bytes());
    CheckedReplyChunk {
        tenant_id: tenant.into(),
        session_id: sid.into(),
        turn_id: turn_id.to_string(),
        seq,
        chunk_index: 0,
        kind: ChunkKind::Final,
        text,
        action: TurnAction::Desk,
        finish_reason: finish_reason.map(str::to_string),
        channel: channel.into(),
        status: status.map(str::to_string),
        received_at_ms: now_ms(),
        ..Default::default()
    }
}

/// What one event does, in the order the customer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Joined,
    Message,
    TimeoutLine,
    Resumed,
}

impl Item {
    fn name(self) -> &'static str {
        match self {
            Item::Joined => "joined",
            Item::Message => "message",
            Item::TimeoutLine => "timeout_line",
            Item::Resumed => "resumed",
        }
    }
    fn parse(s: &str) -> Option<Item> {
        [Item::Joined, Item::Message, Item::TimeoutLine, Item::Resumed].into_iter().find(|i| i.name() == s)
    }
}

/// The items of `kind` given the conversation's state (empty: nothing to do, e.g. a timeout after the agent
/// joined).
fn decide(kind: DeskEventKind, state: &str) -> Vec<Item> {
    match (kind, state) {
        (DeskEventKind::AgentMessage, WAITING) => vec![Item::Joined, Item::Message],
        // A late reply on a closed ticket still reaches the customer: they should read what the agent wrote.
        (DeskEventKind::AgentMessage, _) => vec![Item::Message],
        (DeskEventKind::Closed, WAITING | AGENT) => vec![Item::Resumed],
        (DeskEventKind::QueueTimeout, WAITING) => vec![Item::TimeoutLine, Item::Resumed],
        _ => Vec::new(),
    }
}

impl Desk {
    /// The plan for event `e`: the one kept by an earlier attempt, else decided now from the state and kept.
    async fn plan(&self, e: &DeskEvent, link: &HelpdeskLink) -> Result<Vec<Item>, StageError> {
        let key = session::key(&e.tenant_id, &e.session_id, &format!("desk:plan:{}", e.event_id));
        let mut redis = self.deps.pool.clone();
        let kept: Option<String> = redis.get(&key).await.map_err(redis_err)?;
        if let Some(k) = kept {
            return Ok(k.split(',').filter_map(Item::parse).collect());
        }
        let items = decide(e.kind, &link.state);
        let text = items.iter().map(|i| i.name()).collect::<Vec<_>>().join(",");
        let _: () = redis.set_ex(&key, text, PLAN_TTL_SECS).await.map_err(redis_err)?;
        Ok(items)
    }

    /// Moves the state machine for the plan (idempotent writes: Cassandra first, then Redis).
    async fn apply(&self, e: &DeskEvent, items: &[Item], topic: &str) -> Result<(), StageError> {
        let (t, s, now) = (e.tenant_id.as_str(), e.session_id.as_str(), now_ms());
        let state = if items.contains(&Item::TimeoutLine) {
            TIMED_OUT
        } else if items.contains(&Item::Resumed) {
            CLOSED
        } else if items.contains(&Item::Joined) {
            AGENT
        } else {
            return Ok(());
        };
        self.deps.helpdesk.set_state(t, s, &e.ticket_id, state, now).await.map_err(store_err)?;
        if state != AGENT {
            self.deps.sessions.set_owner(t, s, "bot", Some(&e.ticket_id), now).await.map_err(store_err)?;
            session::set_owner(&self.deps, t, s, "bot").await?;
        }
        let mut redis = self.deps.pool.clone();
        let _: i64 =
            redis.zrem(queue_key(topic), format!("{t}\u{1f}{s}\u{1f}{}", e.ticket_id)).await.map_err(redis_err)?;
        Ok(())
    }
}

impl Stage for Desk {
    type In = DeskEvent;

    async fn process(&self, e: DeskEvent, out: &mut Emitter) -> Result<(), StageError> {
        let (t, s) = (e.tenant_id.as_str(), e.session_id.as_str());
        let Some(link) = self.deps.helpdesk.get(t, s, &e.ticket_id).await.map_err(store_err)? else {
            tracing::warn!(tenant = t, ticket = %e.ticket_id, "Helpdesk event for an unknown ticket; ignored.");
            metrics::counter!("turnpike_desk_events_total", "outcome" => "unknown_ticket").increment(1);
            return Ok(());
        };
        let src = out.source();
        let position = format!("{}/{}/{}", src.topic, src.partition, src.offset);
        let Some(first_seq) = claim(&self.deps, t, s, &link.user_id, &e.event_id, &position).await? else {
            metrics::counter!("turnpike_desk_events_total", "outcome" => "duplicate").increment(1);
            return Ok(());
        };
        let items = self.plan(&e, &link).await?;
        self.apply(&e, &items, &src.topic).await?;
        let (_, cfg) = self.desks.get(t);
        for (i, item) in items.iter().enumerate() {
            let name = format!("{}:{}", e.event_id, item.name());
            let seq =
                if i == 0 { Some(first_seq) } else { claim(&self.deps, t, s, &link.user_id, &name, &position).await? };
            let Some(seq) = seq else { continue };
            let at = (t, s, link.channel.as_str());
            let (rec, kind, text) = match item {
                Item::Joined => (
                    record(at, seq, &name, String::new(), Some(AGENT_JOINED), None),
                    TicketEventKind::AgentJoined,
                    e.author.clone(),
                ),
                Item::Message => (
                    record(at, seq, &name, e.text.clone(), None, Some("agent")),
                    TicketEventKind::AgentMessage,
                    e.text.clone(),
                ),
                Item::TimeoutLine => {
                    // The timer writes the tenant's message into the event; this stage's copy is the fallback.
                    let line = if e.text.is_empty() { cfg.queue_timeout_message.clone() } else { e.text.clone() };
                    (record(at, seq, &name, line.clone(), None, Some("queue_timeout")), TicketEventKind::Closed, line)
                }
                Item::Resumed => (
                    record(at, seq, &name, String::new(), Some(BOT_RESUMED), None),
                    TicketEventKind::Closed,
                    String::new(),
                ),
            };
            out.emit(&rec).await?;
            if *item != Item::Resumed || !items.contains(&Item::TimeoutLine) {
                out.emit(&TicketEvent {
                    tenant_id: t.into(),
                    session_id: s.into(),
                    turn_id: rec.turn_id.clone(),
                    ticket_id: e.ticket_id.clone(),
                    kind,
                    text,
                    helpdesk: link.helpdesk.clone(),
                    at_ms: e.at_ms,
                })
                .await?;
            }
        }
        metrics::counter!("turnpike_desk_events_total", "outcome" => "applied").increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine_moves_only_from_the_states_it_names() {
        assert_eq!(decide(DeskEventKind::AgentMessage, WAITING), vec![Item::Joined, Item::Message]);
        assert_eq!(decide(DeskEventKind::AgentMessage, AGENT), vec![Item::Message]);
        assert_eq!(decide(DeskEventKind::Closed, AGENT), vec![Item::Resumed]);
        assert_eq!(decide(DeskEventKind::Closed, CLOSED), vec![]);
        assert_eq!(decide(DeskEventKind::QueueTimeout, WAITING), vec![Item::TimeoutLine, Item::Resumed]);
        assert_eq!(decide(DeskEventKind::QueueTimeout, AGENT), vec![], "an agent took it in time");
        for i in [Item::Joined, Item::Message, Item::TimeoutLine, Item::Resumed] {
            assert_eq!(Item::parse(i.name()), Some(i));
        }
    }
}
