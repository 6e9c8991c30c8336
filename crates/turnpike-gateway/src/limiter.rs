//! Token quotas per user and per tenant, shared by every gateway instance: one Redis Lua script checks and
//! counts atomically, so N replicas admit what one would (their counters are the same keys), never N times
//! the limit.
//!
//! Windows are fixed (the current minute and the current day, on the Redis server's clock, so instances with
//! skewed clocks still agree). A message is admitted when, in all four budgets (user/minute, user/day,
//! tenant/minute, tenant/day), what was counted in the current window plus the message's estimated input
//! tokens fits the limit; then the estimate is added to all four, or nothing is touched. The real output
//! tokens are added when the reply's FINAL arrives ([`Limiter::charge`], once per turn: a marker keyed by the
//! turn id makes a redelivered FINAL a no-op), so a user whose replies are long is slowed down by them.
//! A refusal reports the window that refused and how long until it resets.
//!
//! Estimate: UTF-8 bytes / 4, rounded up — the usual rule of thumb for English with BPE tokenizers; it is
//! only the admission price, the pipeline's budgets count real tokens.
//!
//! Keys: `tp:gw:q:{tenant}:u:{user}` and `tp:gw:q:{tenant}:t` (hashes: window index and count per window),
//! `tp:gw:q:{tenant}:m:{session}:{message_id}` (a message admitted once is not charged again when the client
//! retries it) and `tp:gw:q:{tenant}:c:{turn_id}` (output charged). One hash tag per tenant, so the script's
//! keys share a Redis Cluster slot.

use crate::config::TenantLimits;
use redis::Script;
use turnpike_store::RedisPool;

/// Functions shared by the scripts. `add` moves a scope hash to the current windows before counting.
const LIB: &str = r"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = {60000, 86400000}
local function idx(w) return math.floor(now_ms / win[w]) end
local function used(key, w)
  local v = redis.call('HMGET', key, 'w' .. w, 'u' .. w)
  if tonumber(v[1]) == idx(w) then return tonumber(v[2]) or 0 end
  return 0
end
local function add(key, n, ttl)
  for w = 1, 2 do
    if tonumber(redis.call('HGET', key, 'w' .. w)) ~= idx(w) then
      redis.call('HSET', key, 'w' .. w, idx(w), 'u' .. w, 0)
    end
    local u = redis.call('HINCRBY', key, 'u' .. w, n)
    if u < 0 then redis.call('HSET', key, 'u' .. w, 0) end
  end
  redis.call('EXPIRE', key, ttl)
end
";

/// KEYS: message marker, user hash, tenant hash. ARGV: tokens, four limits (user/minute, user/day,
/// tenant/minute, tenant/day; 0 = none), marker ttl, scope ttl.
/// Returns {status, scope, window, retry_after_ms}: status 1 admitted, 2 already admitted (not charged
/// again), 0 refused by (scope 1 user | 2 tenant, window 1 minute | 2 day), 3 larger than that limit.
const ADMIT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return {2, 0, 0, 0} end
local tokens = tonumber(ARGV[1])
for s = 1, 2 do
  for w = 1, 2 do
    local limit = tonumber(ARGV[1 + (s - 1) * 2 + w])
    if limit > 0 then
      if tokens > limit then return {3, s, w, 0} end
      if used(KEYS[1 + s], w) + tokens > limit then
        return {0, s, w, (idx(w) + 1) * win[w] - now_ms}
      end
    end
  end
end
add(KEYS[2], tokens, ARGV[7])
add(KEYS[3], tokens, ARGV[7])
redis.call('SET', KEYS[1], tokens, 'EX', ARGV[6])
return {1, 0, 0, 0}
";

/// KEYS: turn marker, user hash, tenant hash. ARGV: tokens, marker ttl, scope ttl. Returns 1 when charged
/// now, 0 when this turn was charged before.
const CHARGE: &str = r"
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[2]) then return 0 end
add(KEYS[2], tonumber(ARGV[1]), ARGV[3])
add(KEYS[3], tonumber(ARGV[1]), ARGV[3])
return 1
";

/// KEYS: message marker, user hash, tenant hash. ARGV: scope ttl. Gives back what a message was charged at
/// admission when it could not be produced (the client retries it); only within the windows it was charged in.
const REFUND: &str = r"
local tokens = tonumber(redis.call('GET', KEYS[1]))
if not tokens then return 0 end
redis.call('DEL', KEYS[1])
for s = 2, 3 do
  for w = 1, 2 do
    if tonumber(redis.call('HGET', KEYS[s], 'w' .. w)) == idx(w) then
      local u = redis.call('HINCRBY', KEYS[s], 'u' .. w, -tokens)
      if u < 0 then redis.call('HSET', KEYS[s], 'u' .. w, 0) end
    end
  end
end
return 1
";

/// A day and a minute of windows plus margin.
const SCOPE_TTL_SECS: u64 = 2 * 86_400;
/// A client retrying a message id later than this is charged again.
const MARKER_TTL_SECS: u64 = 86_400;

/// Which budget refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    User,
    Tenant,
}

/// Which window refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Minute,
    Day,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Tenant => "tenant",
        }
    }
}

impl Window {
    pub fn name(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Day => "day",
        }
    }
}

/// The limiter's answer for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Counted; go ahead.
    Admitted,
    /// This message id was admitted before (a client retry): go ahead, nothing counted again.
    Duplicate,
    /// Over budget until `retry_after_ms` from now.
    Refused { scope: Scope, window: Window, retry_after_ms: u64 },
    /// The message alone is more than the window's whole limit: it can never be admitted.
    TooLarge { scope: Scope, window: Window },
}

/// The admission price of a message: UTF-8 bytes / 4, rounded up, at least 1.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

/// The shared quota store. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    pool: RedisPool,
    admit: std::sync::Arc<Script>,
    charge: std::sync::Arc<Script>,
    refund: std::sync::Arc<Script>,
}

fn user_key(tenant: &str, user: &str) -> String {
    format!("tp:gw:q:{{{tenant}}}:u:{user}")
}

fn tenant_key(tenant: &str) -> String {
    format!("tp:gw:q:{{{tenant}}}:t")
}

fn message_key(tenant: &str, session: &str, message_id: &str) -> String {
    format!("tp:gw:q:{{{tenant}}}:m:{session}:{message_id}")
}

fn scope_of(n: i64) -> Scope {
    if n == 2 {
        Scope::Tenant
    } else {
        Scope::User
    }
}

fn window_of(n: i64) -> Window {
    if n == 2 {
        Window::Day
    } else {
        Window::Minute
    }
}

impl Limiter {
    pub fn new(pool: RedisPool) -> Limiter {
        let script = |body: &str| std::sync::Arc::new(Script::new(&format!("{LIB}{body}")));
        Limiter { pool, admit: script(ADMIT), charge: script(CHARGE), refund: script(REFUND) }
    }

    /// Checks and counts `tokens` for a message of `user` in `tenant`, atomically across instances.
    pub async fn admit(
        &self,
        tenant: &str,
        user: &str,
        session: &str,
        message_id: &str,
        tokens: u64,
        limits: &TenantLimits,
    ) -> Result<Admission, redis::RedisError> {
        let mut conn = self.pool.clone();
        let (status, scope, window, retry): (i64, i64, i64, i64) = self
            .admit
            .key(message_key(tenant, session, message_id))
            .key(user_key(tenant, user))
            .key(tenant_key(tenant))
            .arg(tokens)
            .arg(limits.user_tokens_per_minute)
            .arg(limits.user_tokens_per_day)
            .arg(limits.tenant_tokens_per_minute)
            .arg(limits.tenant_tokens_per_day)
            .arg(MARKER_TTL_SECS)
            .arg(SCOPE_TTL_SECS)
            .invoke_async(&mut conn)
            .await?;
        let (scope, window) = (scope_of(scope), window_of(window));
        Ok(match status {
            1 => Admission::Admitted,
            2 => Admission::Duplicate,
            3 => Admission::TooLarge { scope, window },
            _ => Admission::Refused { scope, window, retry_after_ms: retry.max(1) as u64 },
        })
    }

    /// Adds a reply's output tokens to the user's and the tenant's budgets, once per `turn_id`.
    pub async fn charge(
        &self,
        tenant: &str,
        user: &str,
        turn_id: &str,
        tokens: u64,
    ) -> Result<bool, redis::RedisError> {
        let mut conn = self.pool.clone();
        let charged: i64 = self
            .charge
            .key(format!("tp:gw:q:{{{tenant}}}:c:{turn_id}"))
            .key(user_key(tenant, user))
            .key(tenant_key(tenant))
            .arg(tokens)
            .arg(MARKER_TTL_SECS)
            .arg(SCOPE_TTL_SECS)
            .invoke_async(&mut conn)
            .await?;
        Ok(charged == 1)
    }

    /// Undoes an admission whose message could not be produced.
    pub async fn refund(
        &self,
        tenant: &str,
        user: &str,
        session: &str,
        message_id: &str,
    ) -> Result<(), redis::RedisError> {
        let mut conn = self.pool.clone();
        let _: i64 = self
            .refund
            .key(message_key(tenant, session, message_id))
            .key(user_key(tenant, user))
            .key(tenant_key(tenant))
            .arg(SCOPE_TTL_SECS)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_a_quarter_token_per_byte() {
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens(&"é".repeat(10)), 5, "bytes, not characters");
    }
}
