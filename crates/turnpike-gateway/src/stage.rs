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
//! Redis restarted empty: every append also sets a marker per input partition. An append that finds the
//! marker gone while this instance still holds recent events of that partition ([`crate::replay`]) is refused
//! by the script; the stage then re-appends those events (same ids, so clients get none twice), sets the
//! marker, and appends the record. So a client that was away while Redis lost its data still reads every
//! event since it left, as long as the instance that appended them is still up.
//!
//! Only replies whose channel is a gateway channel (`ws`, `sse`, `web`) are copied: Kafka-channel replies are
//! for clients that read the outbound topic themselves, and copying them would store every enterprise reply
//! in Redis for nobody.

use crate::config::EventsConfig;
use crate::events::{
    entry_id, event_json, is_gateway_channel, kind_name, notify_channel, split_session, stream_key, trim_mark_key,
};
use crate::limiter::Limiter;
use crate::replay::{Appended, Recent};
use redis::Script;
use std::time::Duration;
use turnpike_runner::{Emitter, Stage, StageError};
use turnpike_schemas::{OutboundKind, OutboundReply};
use turnpike_store::RedisPool;

/// KEYS: the stream, its trim mark, the input partition's marker. ARGV: entry id, max length, ttl seconds,
/// channel, turn id, kind, event JSON, mode, gap mark. Returns 1 when appended (and published), 0 when the id is not
/// above the stream's last (a duplicate), -1 when mode is `check` and the marker is gone (Redis lost data this
/// instance can put back). Modes: `check` (refuse without the marker; set it), `set` (nothing to put back:
/// set it), `replay` (putting back: neither). Trimming records the newest trimmed id, so a resume from before
/// it can be told that events are missing. So does a stream created by a later turn than the session's first
/// (the gap mark, `{seq}-0`): its earlier events expired or were lost with Redis and nobody could put them
/// back, and a client resuming from one of them must hear so rather than silently miss the rest.
const APPEND: &str = r"
if ARGV[8] == 'check' and redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local ok = redis.pcall('XADD', KEYS[1], ARGV[1], 't', ARGV[5], 'k', ARGV[6], 'e', ARGV[7])
if type(ok) == 'table' and ok.err then
  if string.find(ok.err, 'equal or smaller', 1, true) then return 0 end
  return redis.error_reply(ok.err)
end
if fresh and ARGV[8] ~= 'replay' and ARGV[9] ~= '' then redis.call('SET', KEYS[2], ARGV[9]) end
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[2])
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('SET', KEYS[2], old[#old][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[1])
if ARGV[8] ~= 'replay' then redis.call('SET', KEYS[3], '1') end
return 1
";

/// Recent appends kept for putting back: this long, and at most this many per input partition.
const REPLAY_WINDOW: Duration = Duration::from_secs(15 * 60);
const REPLAY_CAP: usize = 20_000;

/// The marker of an input partition (`topic/partition`; the topic carries the deployment's prefix).
fn marker_key(partition: &str) -> String {
    format!("turnpike:gw:marker:{partition}")
}

/// The outbound consumer of the gateway.
pub struct GatewayStage {
    pool: RedisPool,
    limiter: Limiter,
    events: EventsConfig,
    append: Script,
    recent: Recent,
    /// One put-back at a time: the records that find the marker gone meanwhile wait, then find it set.
    putting_back: tokio::sync::Mutex<()>,
}

impl GatewayStage {
    pub fn new(pool: RedisPool, events: EventsConfig) -> GatewayStage {
        GatewayStage {
            limiter: Limiter::new(pool.clone()),
            pool,
            events,
            append: Script::new(APPEND),
            recent: Recent::new(REPLAY_WINDOW, REPLAY_CAP),
            putting_back: tokio::sync::Mutex::new(()),
        }
    }

    async fn invoke(&self, e: &Appended, partition: &str, mode: &str) -> Result<i64, StageError> {
        let mut conn = self.pool.clone();
        self.append
            .key(&e.stream)
            .key(&e.trim_mark)
            .key(marker_key(partition))
            .arg(&e.id)
            .arg(self.events.max_len)
            .arg(self.events.ttl_secs)
            .arg(&e.channel)
            .arg(&e.turn_id)
            .arg(e.kind)
            .arg(&e.json)
            .arg(mode)
            .arg(&e.gap_mark)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    /// Puts back what this instance appended from `partition` lately, oldest first, then sets the marker.
    /// Records of the partition that find the marker missing meanwhile wait for the put-back (and would
    /// repeat it idempotently if it failed), so none appends a session's newer event before its older ones.
    async fn put_back(&self, partition: &str) -> Result<(), StageError> {
        let events = self.recent.events(partition);
        tracing::warn!(
            partition,
            events = events.len(),
            "Redis lost the gateway's event streams; putting back this instance's recent events."
        );
        let mut back = 0u64;
        for e in &events {
            back += (self.invoke(e, partition, "replay").await? == 1) as u64;
        }
        let mut conn = self.pool.clone();
        redis::cmd("SET").arg(marker_key(partition)).arg("1").query_async::<()>(&mut conn).await.map_err(redis_err)?;
        metrics::counter!("turnpike_gateway_events_put_back_total").increment(back);
        Ok(())
    }
}

fn redis_err(e: redis::RedisError) -> StageError {
    StageError::retryable("redis", e.to_string())
}

impl GatewayStage {
    /// The stage's side effect for one record read from `partition` (`topic/partition`): charge, append,
    /// notify. True when the event was appended now, false when it was skipped (not a gateway channel) or
    /// already there.
    pub async fn deliver(&self, r: &OutboundReply, partition: &str) -> Result<bool, StageError> {
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
        let event = Appended {
            stream: stream_key(&r.tenant_id, &r.session_id),
            trim_mark: trim_mark_key(&r.tenant_id, &r.session_id),
            id: id.to_string(),
            channel: notify_channel(&r.tenant_id, &r.session_id),
            turn_id: r.turn_id.clone(),
            kind: kind_name(r.kind),
            json: event_json(r, conversation),
            gap_mark: if id.seq > 1 { format!("{}-0", id.seq) } else { String::new() },
        };
        let mode = if self.recent.holds(partition) { "check" } else { "set" };
        let mut appended = self.invoke(&event, partition, mode).await?;
        if appended == -1 {
            let _one = self.putting_back.lock().await;
            appended = self.invoke(&event, partition, "check").await?;
            if appended == -1 {
                self.put_back(partition).await?;
                appended = self.invoke(&event, partition, "check").await?;
            }
            if appended == -1 {
                return Err(StageError::retryable("redis", "the event streams were lost again while being put back"));
            }
        }
        if appended == 1 {
            self.recent.remember(partition, event);
        }
        let outcome = if appended == 1 { "appended" } else { "duplicate" };
        metrics::counter!("turnpike_gateway_events_total", "outcome" => outcome, "kind" => kind_name(r.kind))
            .increment(1);
        Ok(appended == 1)
    }
}

impl Stage for GatewayStage {
    type In = OutboundReply;

    async fn process(&self, r: OutboundReply, out: &mut Emitter) -> Result<(), StageError> {
        let src = out.source();
        self.deliver(&r, &format!("{}/{}", src.topic, src.partition)).await.map(|_| ())
    }
}
