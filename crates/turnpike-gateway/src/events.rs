//! A session's reply events in Redis: one stream per (tenant, session), written by the gateway stage and read
//! by whichever gateway instance holds the client's connection.
//!
//! Guarantee: an event's stream entry id is derived from its position in the session, `{seq}-{n}` with
//! `n = chunk_index * 16 + slot(kind, status)`, so it is the same on every redelivery of the same outbound
//! record, and it grows along the session (turns by `seq`, chunks by `chunk_index`). Redis refuses an entry
//! id not above the stream's last one, so a redelivered record is rejected instead of duplicated, and the ids
//! double as SSE event ids: a client resuming after id X reads exactly the entries after X.
//!
//! Ordering rule for producers of STATUS events: a STATUS at `chunk_index` i comes before the DELTA/FINAL
//! at i; a STATUS that follows a turn's FINAL must carry a larger `chunk_index` than that FINAL (or belong to a
//! later `seq`), or the stream refuses it as old.

use serde_json::json;
use std::fmt;
use std::str::FromStr;
use turnpike_schemas::{OutboundKind, OutboundReply};

/// Reply channels that belong to gateway clients. Replies on other channels (`kafka`, …) are for clients
/// that read the outbound topic themselves and are not copied to Redis.
pub const GATEWAY_CHANNELS: [&str; 3] = ["ws", "sse", "web"];

pub fn is_gateway_channel(channel: &str) -> bool {
    GATEWAY_CHANNELS.contains(&channel)
}

/// Events of one session. The braces keep a session's keys in one Redis Cluster slot, tenant first so
/// sessions of different tenants can never share a key.
pub fn stream_key(tenant: &str, session: &str) -> String {
    format!("tp:gw:{{{tenant}:{session}}}:events")
}

/// The newest event id trimmed from a session's stream (absent while nothing was trimmed).
pub fn trim_mark_key(tenant: &str, session: &str) -> String {
    format!("tp:gw:{{{tenant}:{session}}}:trimmed")
}

/// The pub/sub channel announcing new events of one session.
pub fn notify_channel(tenant: &str, session: &str) -> String {
    format!("tp:gw:{{{tenant}:{session}}}:notify")
}

/// The session id the gateway produces for a user's conversation.
pub fn session_id(user: &str, conversation: &str) -> String {
    format!("{user}:{conversation}")
}

/// (user, conversation) of a gateway session id. Conversation ids never contain `:`, user ids may.
pub fn split_session(session: &str) -> Option<(&str, &str)> {
    session.rsplit_once(':').filter(|(u, c)| !u.is_empty() && !c.is_empty())
}

/// A conversation id chosen by a client: 1-64 of `A-Z a-z 0-9 _ -`.
pub fn valid_conversation_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A message id chosen by a client: 1-128 of `A-Z a-z 0-9 _ - . :`.
pub fn valid_message_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

/// A position in a session's event stream; also the event id clients see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub seq: u64,
    pub n: u64,
}

impl EventId {
    /// Before every event: resuming from here replays everything kept.
    pub const START: EventId = EventId { seq: 0, n: 0 };

    /// The exclusive lower bound for `XRANGE` ("after this id").
    pub fn after(&self) -> String {
        format!("({self}")
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.seq, self.n)
    }
}

impl FromStr for EventId {
    type Err = ();
    /// `"{seq}-{n}"`, or `"0"` for [`EventId::START`].
    fn from_str(s: &str) -> Result<Self, ()> {
        if s == "0" {
            return Ok(EventId::START);
        }
        let (seq, n) = s.split_once('-').ok_or(())?;
        Ok(EventId { seq: seq.parse().map_err(|_| ())?, n: n.parse().map_err(|_| ())? })
    }
}

/// Orders events that share a `chunk_index`: statuses first (in the order a turn goes through them), then
/// the delta, then the final.
fn slot(kind: OutboundKind, status: Option<&str>) -> u64 {
    match kind {
        OutboundKind::Status => match status.unwrap_or("") {
            "accepted" => 1,
            "typing" => 2,
            "handed_off" => 3,
            "agent_joined" => 4,
            "forwarded_to_agent" => 5,
            "refused" => 6,
            _ => 7,
        },
        OutboundKind::Delta => 8,
        OutboundKind::Final => 9,
    }
}

/// The stream entry id of an outbound record, or why it has none.
pub fn entry_id(r: &OutboundReply) -> Result<EventId, String> {
    if r.seq < 1 {
        return Err(format!("seq {} is not positive", r.seq));
    }
    if r.chunk_index < 0 {
        return Err(format!("chunk_index {} is negative", r.chunk_index));
    }
    Ok(EventId { seq: r.seq as u64, n: r.chunk_index as u64 * 16 + slot(r.kind, r.status.as_deref()) })
}

pub fn kind_name(kind: OutboundKind) -> &'static str {
    match kind {
        OutboundKind::Delta => "delta",
        OutboundKind::Final => "final",
        OutboundKind::Status => "status",
    }
}

/// The client-facing JSON of an outbound record, without its `id` (added when sent: see [`with_id`]).
pub fn event_json(r: &OutboundReply, conversation: &str) -> String {
    let mut v = json!({
        "type": kind_name(r.kind),
        "conversation_id": conversation,
        "turn_id": r.turn_id,
        "seq": r.seq,
    });
    let o = v.as_object_mut().expect("a JSON object literal");
    match r.kind {
        OutboundKind::Status => {
            o.insert("status".into(), json!(r.status.as_deref().unwrap_or("")));
        }
        OutboundKind::Delta => {
            o.insert("chunk_index".into(), json!(r.chunk_index));
            o.insert("text".into(), json!(r.text));
        }
        OutboundKind::Final => {
            o.insert("chunk_index".into(), json!(r.chunk_index));
            o.insert("text".into(), json!(r.text));
            o.insert("finish_reason".into(), json!(r.finish_reason));
            o.insert("model".into(), json!(r.model));
            let citations: Vec<_> = r
                .citations
                .iter()
                .map(|c| json!({"source": c.source, "location": c.location, "snippet": c.snippet}))
                .collect();
            o.insert("citations".into(), json!(citations));
            o.insert(
                "usage".into(),
                r.usage.as_ref().map_or(serde_json::Value::Null, |u| {
                    json!({
                        "input_tokens": u.input_tokens,
                        "output_tokens": u.output_tokens,
                        "cached_input_tokens": u.cached_input_tokens,
                        "cost_usd_micros": u.cost_usd_micros,
                    })
                }),
            );
        }
    }
    v.to_string()
}

/// `json` (an object without `id`) with `"id"` as its first member.
pub fn with_id(id: &str, json: &str) -> String {
    match json.strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('}') => format!("{{\"id\":\"{id}\"}}"),
        Some(rest) => format!("{{\"id\":\"{id}\",{rest}"),
        None => json.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(seq: i64, chunk_index: i32, kind: OutboundKind, status: Option<&str>) -> OutboundReply {
        OutboundReply { seq, chunk_index, kind, status: status.map(String::from), ..Default::default() }
    }

    #[test]
    fn entry_ids_follow_the_session_order_and_repeat_for_the_same_record() {
        let turn = [
            reply(3, 0, OutboundKind::Status, Some("typing")),
            reply(3, 0, OutboundKind::Delta, None),
            reply(3, 1, OutboundKind::Delta, None),
            reply(3, 2, OutboundKind::Final, None),
            reply(3, 3, OutboundKind::Status, Some("handed_off")),
            reply(4, 0, OutboundKind::Delta, None),
        ];
        let ids: Vec<EventId> = turn.iter().map(|r| entry_id(r).unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(ids[1].to_string(), "3-8");
        assert_eq!(ids[2].to_string(), "3-24");
        assert_eq!(ids[3].to_string(), "3-41");
        assert_eq!(entry_id(&turn[2]).unwrap(), ids[2], "a redelivery gets the same id");
        // Deliver's STATUS for a human-owned session takes the FINAL's place, after the deltas.
        assert!(entry_id(&reply(3, 2, OutboundKind::Status, Some("forwarded_to_agent"))).unwrap() > ids[2]);
        assert!(entry_id(&reply(0, 0, OutboundKind::Delta, None)).is_err());
        assert!(entry_id(&reply(1, -1, OutboundKind::Delta, None)).is_err());
    }

    #[test]
    fn event_ids_parse_and_render() {
        assert_eq!("3-24".parse::<EventId>(), Ok(EventId { seq: 3, n: 24 }));
        assert_eq!("0".parse::<EventId>(), Ok(EventId::START));
        assert!("3".parse::<EventId>().is_err() && "a-b".parse::<EventId>().is_err());
        assert_eq!(EventId { seq: 3, n: 24 }.after(), "(3-24");
    }

    #[test]
    fn sessions_split_on_the_last_colon() {
        assert_eq!(split_session(&session_id("auth0:42", "c1")), Some(("auth0:42", "c1")));
        assert_eq!(split_session("nocolon"), None);
        assert!(valid_conversation_id("c-1_x") && !valid_conversation_id("a:b") && !valid_conversation_id(""));
        assert!(valid_message_id("m-1.2:3") && !valid_message_id("m 1"));
    }

    #[test]
    fn event_json_carries_what_clients_render() {
        let mut r = reply(2, 1, OutboundKind::Final, None);
        r.turn_id = "t".into();
        r.citations =
            vec![turnpike_schemas::Citation { source: "kb".into(), location: "#a".into(), snippet: "s".into() }];
        let v: serde_json::Value = serde_json::from_str(&with_id("2-25", &event_json(&r, "c1"))).unwrap();
        assert_eq!(v["id"], "2-25");
        assert_eq!(v["type"], "final");
        assert_eq!(v["citations"][0]["source"], "kb");
        assert_eq!(v["conversation_id"], "c1");
    }
}
