//! gateway (stage): outbound reply → the session's event stream in Redis, plus a notification.
//!
//! One consumer group shared by every gateway instance reads the outbound topic; whichever instance consumes
//! a record appends it to the session's stream and publishes on the session's channel, and the instance that
//! holds the client's connection (subscribed to that channel) sends it. So routing does not depend on which
//! instance owns which partition.
//!
//! Guarantee (at least once in, exactly once out): the append is idempotent — the entry id is derived from
//! the record's position in the session ([`crate::events::entry_id`]) and Redis refuses an id that is not
//! above the stream's last, so a redelivered record, or deliver's re-publication of a chunk, is not appended
//! twice; the notification is published only with a fresh entry. A FINAL's output tokens are charged to the
//! user's and tenant's quotas before the append, once per turn (marker keyed by turn id), so a crash between
//! the two neither loses nor doubles the charge. Streams are capped (`MAXLEN`) and expire a day after their
//! last event.
//!
//! Only replies whose channel is a gateway channel (`ws`, `sse`, `web`) are copied: Kafka-channel replies are
//! for clients that read the outbound topic themselves, and copying them would store every enterprise reply
//! in Redis for nobody.

use crate::config::EventsConfig;
use crate::events::{
    entry_id, event_json, is_gateway_channel, kind_name, notify_channel, split_session, stream_key, trim_mark_key,
};
use crate::limiter::Limiter;
use redis::Script;
use turnpike_runner::{Emitter, Stage, StageError};
use turnpike_schemas::{OutboundKind, OutboundReply};
use turnpike_store::RedisPool;

/// KEYS: the stream, its trim mark. ARGV: entry id, max length, ttl seconds, channel, turn id, kind, event
/// JSON. Returns 1 when appended (and published), 0 when the id is not above the stream's last (a duplicate).
/// Trimming records the newest trimmed id, so a resume from before it can be told that events are missing.
const APPEND: &str = r"
local ok = redis.pcall('XADD', KEYS[1], ARGV[1], 't', ARGV[5], 'k', ARGV[6], 'e', ARGV[7])
if type(ok) == 'table' and ok.err then
  if string.find(ok.err, 'equal or smaller', 1, true) then return 0 end
  return redis.error_reply(ok.err)
end
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[2])
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('SET', KEYS[2], old[#old][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
";

/// The outbound consumer of the gateway.
pub struct GatewayStage {
    pool: RedisPool,
    limiter: Limiter,
    events: EventsConfig,
    append: Script,
}

impl GatewayStage {
    pub fn new(pool: RedisPool, events: EventsConfig) -> GatewayStage {
        GatewayStage { limiter: Limiter::new(pool.clone()), pool, events, append: Script::new(APPEND) }
    }
}

fn redis_err(e: redis::RedisError) -> StageError {
    StageError::retryable("redis", e.to_string())
}

impl GatewayStage {
    /// The stage's side effect for one record (charge, append, notify); true when the event was appended
    /// now, false when it was skipped (not a gateway channel) or already there.
    pub async fn deliver(&self, r: &OutboundReply) -> Result<bool, StageError> {
        if !is_gateway_channel(&r.channel) {
            metrics::counter!("turnpike_gateway_replies_skipped_total").increment(1);
            return Ok(false);
        }
        let id = entry_id(r).map_err(|e| StageError::poison("invalid_reply", e))?;
        let (user, conversation) = split_session(&r.session_id)
            .ok_or_else(|| StageError::poison("invalid_reply", "session id is not `user:conversation`"))?;
        if r.kind == OutboundKind::Final {
            let output = r.usage.as_ref().map_or(0, |u| u.output_tokens.max(0) as u64);
            if output > 0 {
                let now = self.limiter.charge(&r.tenant_id, user, &r.turn_id, output).await.map_err(redis_err)?;
                if now {
                    metrics::counter!("turnpike_gateway_output_tokens_charged_total").increment(output);
                }
            }
        }
        let mut conn = self.pool.clone();
        let appended: i64 = self
            .append
            .key(stream_key(&r.tenant_id, &r.session_id))
            .key(trim_mark_key(&r.tenant_id, &r.session_id))
            .arg(id.to_string())
            .arg(self.events.max_len)
            .arg(self.events.ttl_secs)
            .arg(notify_channel(&r.tenant_id, &r.session_id))
            .arg(&r.turn_id)
            .arg(kind_name(r.kind))
            .arg(event_json(r, conversation))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let outcome = if appended == 1 { "appended" } else { "duplicate" };
        metrics::counter!("turnpike_gateway_events_total", "outcome" => outcome, "kind" => kind_name(r.kind))
            .increment(1);
        Ok(appended == 1)
    }
}

impl Stage for GatewayStage {
    type In = OutboundReply;

    async fn process(&self, r: OutboundReply, _out: &mut Emitter) -> Result<(), StageError> {
        self.deliver(&r).await.map(|_| ())
    }
}
