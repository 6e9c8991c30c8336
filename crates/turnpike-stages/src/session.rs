//! Hot session state in Redis. Keys are namespaced by tenant *and* session (`tp:{tenant:session}:...`, the
//! braces keep a session's keys in one Redis Cluster slot), so one tenant can never read another's state.

use crate::{redis_err, Deps};
use redis::AsyncCommands;
use turnpike_runner::StageError;

/// Active sessions expire from Redis after a day without turns; Cassandra keeps the record.
pub const SESSION_TTL_SECS: u64 = 24 * 3600;

/// Redis key for one piece of a session's state.
pub fn key(tenant: &str, session: &str, what: &str) -> String {
    format!("tp:{{{tenant}:{session}}}:{what}")
}

/// Claims a turn sequence for `message_id`, idempotently.
///
/// Returns `(seq, claimed_by)`: `claimed_by` is the source position that first claimed the message id. If
/// it equals the caller's position, this is the same record again (a redelivery after a crash) and the turn
/// must be re-emitted; otherwise the client sent the message twice and it is dropped.
const CLAIM: &str = r#"
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], ARGV[3]) end
local seq = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
local v = seq .. '|' .. ARGV[1]
redis.call('SET', KEYS[1], v, 'EX', ARGV[2])
return v
"#;

/// See [`CLAIM`]. `floor` is the last sequence known from Cassandra, used when Redis lost the counter.
pub async fn claim_seq(
    deps: &Deps,
    tenant: &str,
    session: &str,
    message_id: &str,
    position: &str,
    floor: i64,
) -> Result<(i64, String), StageError> {
    let mut redis = deps.redis.clone();
    let v: String = redis::Script::new(CLAIM)
        .key(key(tenant, session, &format!("msg:{message_id}")))
        .key(key(tenant, session, "seq"))
        .arg(position)
        .arg(SESSION_TTL_SECS)
        .arg(floor)
        .invoke_async(&mut redis)
        .await
        .map_err(redis_err)?;
    let (seq, by) = v.split_once('|').ok_or_else(|| StageError::retryable("redis", format!("bad claim value {v}")))?;
    let seq = seq.parse().map_err(|_| StageError::retryable("redis", format!("bad claim value {v}")))?;
    Ok((seq, by.to_string()))
}

/// Whether Redis still has the session's sequence counter (if not, ingest rebuilds it from Cassandra).
pub async fn has_seq(deps: &Deps, tenant: &str, session: &str) -> Result<bool, StageError> {
    let mut redis = deps.redis.clone();
    redis.exists(key(tenant, session, "seq")).await.map_err(redis_err)
}

/// `human` when the session was handed off, else `bot`. Redis first, Cassandra when Redis lost it.
pub async fn owner(deps: &Deps, tenant: &str, session: &str) -> Result<String, StageError> {
    let mut redis = deps.redis.clone();
    let cached: Option<String> = redis.get(key(tenant, session, "owner")).await.map_err(redis_err)?;
    if let Some(o) = cached {
        return Ok(o);
    }
    let stored = deps.sessions.owner(tenant, session).await.map_err(crate::store_err)?;
    let owner = stored.map(|(o, _)| o).unwrap_or_else(|| "bot".to_string());
    let _: () = redis.set_ex(key(tenant, session, "owner"), &owner, SESSION_TTL_SECS).await.map_err(redis_err)?;
    Ok(owner)
}

/// Records the owner in Redis (Cassandra is written by the caller first, so a crash in between is healed by
/// the read path above).
pub async fn set_owner(deps: &Deps, tenant: &str, session: &str, owner: &str) -> Result<(), StageError> {
    let mut redis = deps.redis.clone();
    redis.set_ex(key(tenant, session, "owner"), owner, SESSION_TTL_SECS).await.map_err(redis_err)
}
