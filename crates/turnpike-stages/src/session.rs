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

/// Claims a turn sequence for `message_id`, idempotently, in one round trip.
///
/// Returns `seq|claimed_by|owner`: `claimed_by` is the source position that first claimed the message id. If
/// it equals the caller's position, this is the same record again (a redelivery after a crash) and the turn
/// must be re-emitted; otherwise the client sent the message twice and it is dropped. `owner` is the cached
/// session owner, empty when Redis does not know it. When Redis lost the sequence counter and `ARGV[3]` is
/// `-1`, the script answers `floor?` and the caller retries with the last sequence from Cassandra.
const CLAIM: &str = r#"
local existing = redis.call('GET', KEYS[1])
local owner = redis.call('GET', KEYS[3]) or ''
if existing then return existing .. '|' .. owner end
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[3] == '-1' then return 'floor?' end
  redis.call('SET', KEYS[2], ARGV[3])
end
local seq = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
local v = seq .. '|' .. ARGV[1]
redis.call('SET', KEYS[1], v, 'EX', ARGV[2])
return v .. '|' .. owner
"#;

/// The outcome of [`claim_seq`].
pub struct Claim {
    pub seq: i64,
    pub claimed_by: String,
    /// `Some("bot" | "human")` when Redis knows the owner.
    pub owner: Option<String>,
}

/// See [`CLAIM`]. `floor` is the last sequence known from Cassandra, or -1 when not yet read.
pub async fn claim_seq(
    deps: &Deps,
    tenant: &str,
    session: &str,
    message_id: &str,
    position: &str,
    floor: i64,
) -> Result<Option<Claim>, StageError> {
    let mut redis = deps.pool.clone();
    let v: String = redis::Script::new(CLAIM)
        .key(key(tenant, session, &format!("msg:{message_id}")))
        .key(key(tenant, session, "seq"))
        .key(key(tenant, session, "owner"))
        .arg(position)
        .arg(SESSION_TTL_SECS)
        .arg(floor)
        .invoke_async(&mut redis)
        .await
        .map_err(redis_err)?;
    if v == "floor?" {
        return Ok(None);
    }
    let bad = || StageError::retryable("redis", format!("bad claim value {v}"));
    let mut parts = v.splitn(3, '|');
    let seq = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let claimed_by = parts.next().ok_or_else(bad)?.to_string();
    let owner = parts.next().filter(|o| !o.is_empty()).map(str::to_string);
    Ok(Some(Claim { seq, claimed_by, owner }))
}

/// `human` when the session was handed off, else `bot`. Redis first, Cassandra when Redis lost it.
pub async fn owner(deps: &Deps, tenant: &str, session: &str) -> Result<String, StageError> {
    let mut redis = deps.pool.clone();
    let cached: Option<String> = redis.get(key(tenant, session, "owner")).await.map_err(redis_err)?;
    if let Some(o) = cached {
        return Ok(o);
    }
    let stored = deps.sessions.owner(tenant, session).await.map_err(crate::store_err)?;
    cache_owner(deps, tenant, session, stored.map(|(o, _)| o)).await
}

/// Caches the owner read from Cassandra (`bot` when none is recorded) in Redis, and returns it.
pub async fn cache_owner(
    deps: &Deps,
    tenant: &str,
    session: &str,
    stored: Option<String>,
) -> Result<String, StageError> {
    let owner = stored.unwrap_or_else(|| "bot".to_string());
    set_owner(deps, tenant, session, &owner).await?;
    Ok(owner)
}

/// Records the owner in Redis (Cassandra is written by the caller first, so a crash in between is healed by
/// the read path above).
pub async fn set_owner(deps: &Deps, tenant: &str, session: &str, owner: &str) -> Result<(), StageError> {
    let mut redis = deps.pool.clone();
    redis.set_ex(key(tenant, session, "owner"), owner, SESSION_TTL_SECS).await.map_err(redis_err)
}
