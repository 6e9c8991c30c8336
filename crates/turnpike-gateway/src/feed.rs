//! Reading one session's events for one client connection, WebSocket and SSE alike.
//!
//! Guarantee: events reach the connection in stream order, each once, with nothing skipped: the feed keeps
//! the id of the last event it handed out (its cursor) and reads strictly after it (`XRANGE (cursor`). It
//! subscribes to the session's notifications *before* it decides where to start, so an event appended in
//! between is either at or before the start (already there when it looked) or notified afterwards. Resume
//! is the same code path: the start is the id the client last received. Memory per connection is bounded:
//! events are read in pages of [`PAGE`] only when the connection is ready to send them.

use crate::events::{notify_channel, stream_key, trim_mark_key, with_id, EventId};
use crate::hub::Subscription;
use crate::App;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use turnpike_store::RedisPool;

/// Events read per Redis round trip.
pub const PAGE: usize = 64;

/// One event ready to send.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: EventId,
    pub turn_id: String,
    pub kind: String,
    /// The client-facing JSON, `id` included.
    pub json: String,
}

/// Where a new feed starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// After the last event that exists now: only new events.
    Latest,
    /// After this id (`EventId::START`: from the oldest event kept).
    After(EventId),
}

/// A connection's view of one session's events.
pub struct Feed {
    pub conversation: String,
    key: String,
    cursor: EventId,
    pool: RedisPool,
    _subscription: Subscription,
}

/// A feed that was opened, and whether events the client asked for were already trimmed or expired.
pub struct Opened {
    pub feed: Feed,
    pub expired: bool,
}

impl Feed {
    /// Subscribes `notify` to the session's notifications, then positions the cursor.
    pub async fn open(
        app: &App,
        tenant: &str,
        session: &str,
        conversation: &str,
        start: Start,
        notify: Arc<Notify>,
    ) -> Result<Opened, String> {
        let subscription = app.hub.subscribe(notify_channel(tenant, session), notify).await?;
        let key = stream_key(tenant, session);
        let mut conn = app.pool.clone();
        let (cursor, expired) = match start {
            Start::Latest => {
                let last: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
                    .arg(&key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let last = last.first().and_then(|(id, _)| id.parse().ok()).unwrap_or(EventId::START);
                (last, false)
            }
            Start::After(id) => (id, id != EventId::START && trimmed_after(&mut conn, tenant, session, id).await?),
        };
        let feed = Feed {
            conversation: conversation.to_string(),
            key,
            cursor,
            pool: app.pool.clone(),
            _subscription: subscription,
        };
        Ok(Opened { feed, expired })
    }

    /// The id of the last event handed out (or the start).
    pub fn cursor(&self) -> EventId {
        self.cursor
    }

    /// The next events after the cursor, at most `max`; advances the cursor past them.
    pub async fn next(&mut self, max: usize) -> Result<Vec<Event>, redis::RedisError> {
        let mut conn = self.pool.clone();
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg(self.cursor.after())
            .arg("+")
            .arg("COUNT")
            .arg(max.max(1))
            .query_async(&mut conn)
            .await?;
        let mut events = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let Ok(event_id) = id.parse::<EventId>() else { continue };
            self.cursor = event_id;
            let mut map: HashMap<&str, &str> = HashMap::with_capacity(3);
            for pair in fields.chunks(2) {
                if let [k, v] = pair {
                    map.insert(k, v);
                }
            }
            let json = with_id(&id, map.get("e").copied().unwrap_or("{}"));
            events.push(Event {
                id: event_id,
                turn_id: map.get("t").copied().unwrap_or_default().to_string(),
                kind: map.get("k").copied().unwrap_or_default().to_string(),
                json,
            });
        }
        Ok(events)
    }
}

/// Whether events after `id` are gone: trimmed by the length cap (the stage records the newest trimmed id),
/// or the whole stream expired.
async fn trimmed_after(conn: &mut RedisPool, tenant: &str, session: &str, id: EventId) -> Result<bool, String> {
    let (exists, mark): (bool, Option<String>) = redis::pipe()
        .exists(stream_key(tenant, session))
        .get(trim_mark_key(tenant, session))
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(!exists || mark.and_then(|m| m.parse::<EventId>().ok()).is_some_and(|m| m > id))
}
