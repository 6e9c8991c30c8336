//! [`Budgets`]: per-tenant (or per-user) spend limits that hold under concurrency.
//!
//! Guarantee: before a call, [`Budgets::reserve`] atomically (one Lua script) checks
//! `spent + reserved + estimate <= limit` for every scope of the call (tenant, user, ...) and adds the
//! estimate to `reserved` in all of them, or refuses without touching any; after it,
//! [`Budgets::settle`] atomically moves the reservation out of `reserved` and adds the provider-reported
//! cost to `spent`. Check and increment are one step, so any number of concurrent requests (across
//! processes) cannot together pass the limit as long as each estimate bounds its call's cost (see
//! [`crate::cost::Pricing::upper_bound_micros`]). Reservations are keyed by an id (the turn id), so a
//! redelivered turn neither reserves twice nor settles twice.
//!
//! Known limit: a process that dies between reserve and settle leaves its reservation counted until the
//! budget's period key expires (conservative: it can only under-spend).

use redis::aio::ConnectionManager;
use turnpike_core::{Classify, ErrorClass};

/// Atomic check-and-reserve over every scope of a call (e.g. tenant and user): all admit, or none is
/// touched. KEYS: budget hashes; ARGV: estimate, reservation id, ttl seconds, then one limit per key.
/// Returns `{0 or index+1 of the refusing key, spent, reserved}` (0: admitted).
const RESERVE: &str = r"
local field = 'r:' .. ARGV[2]
local estimate = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if redis.call('HEXISTS', key, field) == 0 then
    local spent = tonumber(redis.call('HGET', key, 'spent') or '0')
    local reserved = tonumber(redis.call('HGET', key, 'reserved') or '0')
    if spent + reserved + estimate > tonumber(ARGV[3 + i]) then
      return {i, spent, reserved}
    end
  end
end
for _, key in ipairs(KEYS) do
  if redis.call('HEXISTS', key, field) == 0 then
    redis.call('HINCRBY', key, 'reserved', estimate)
    redis.call('HSET', key, field, estimate)
  end
  redis.call('EXPIRE', key, tonumber(ARGV[3]))
end
return {0, 0, 0}
";

/// Settles a reservation with the actual cost in every scope; a second settle of the same id is a no-op.
/// KEYS: budget hashes; ARGV: reservation id, actual cost. Returns how many scopes were settled now.
const SETTLE: &str = r"
local field = 'r:' .. ARGV[1]
local settled = 0
for _, key in ipairs(KEYS) do
  local estimate = redis.call('HGET', key, field)
  if estimate then
    redis.call('HDEL', key, field)
    redis.call('HINCRBY', key, 'reserved', -tonumber(estimate))
    redis.call('HINCRBY', key, 'spent', tonumber(ARGV[2]))
    settled = settled + 1
  end
end
return settled
";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The call would (or might) take the scope over its limit. Not retryable now: answer the user.
    #[error("budget {scope} exhausted: limit {limit} µ$, spent {spent} µ$, reserved {reserved} µ$")]
    Exceeded { scope: String, limit: i64, spent: i64, reserved: i64 },
    #[error("budget store: {0}")]
    Redis(String),
}

impl Classify for BudgetError {
    fn class(&self) -> ErrorClass {
        match self {
            // Poison for a runner that meets it unhandled: the same turn would be refused again.
            BudgetError::Exceeded { .. } => ErrorClass::Poison,
            BudgetError::Redis(_) => ErrorClass::Retryable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            BudgetError::Exceeded { .. } => "budget_exceeded",
            BudgetError::Redis(_) => "redis",
        }
    }
}

/// A held reservation; pass it to [`Budgets::settle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub keys: Vec<String>,
    pub id: String,
    pub estimate: i64,
}

/// Budget state in Redis, one hash per scope and period: `{prefix}:{scope}:{period}`.
#[derive(Clone)]
pub struct Budgets {
    redis: ConnectionManager,
    prefix: String,
    /// How long a period's hash lives after its last reservation (longer than the period itself).
    ttl_secs: u64,
}

impl Budgets {
    pub fn new(redis: ConnectionManager, prefix: impl Into<String>) -> Self {
        Budgets { redis, prefix: prefix.into(), ttl_secs: 3 * 24 * 3600 }
    }

    /// The hash for `scope` (e.g. `tenant:acme`) in `period` (e.g. the UTC day `2026-02-14`).
    pub fn key(&self, scope: &str, period: &str) -> String {
        format!("{}:{scope}:{period}", self.prefix)
    }

    /// Reserves `estimate` micro-dollars for reservation `id` in every `(key, limit)` at once, or in none.
    pub async fn reserve(&self, scopes: &[(String, i64)], estimate: i64, id: &str) -> Result<Reservation, BudgetError> {
        let script = redis::Script::new(RESERVE);
        let mut invocation = script.prepare_invoke();
        invocation.arg(estimate.max(0)).arg(id).arg(self.ttl_secs);
        for (key, limit) in scopes {
            invocation.key(key).arg(*limit);
        }
        let mut redis = self.redis.clone();
        let (refused, spent, reserved): (usize, i64, i64) =
            invocation.invoke_async(&mut redis).await.map_err(|e| BudgetError::Redis(e.to_string()))?;
        match refused.checked_sub(1).and_then(|i| scopes.get(i)) {
            None => {
                Ok(Reservation { keys: scopes.iter().map(|(k, _)| k.clone()).collect(), id: id.to_owned(), estimate })
            }
            Some((key, limit)) => Err(BudgetError::Exceeded { scope: key.clone(), limit: *limit, spent, reserved }),
        }
    }

    /// Replaces the reservation by the actual cost (0 releases it, e.g. when the call failed unseen).
    /// `true` if this call settled it, `false` if it had been settled already.
    pub async fn settle(&self, reservation: &Reservation, actual_micros: i64) -> Result<bool, BudgetError> {
        let script = redis::Script::new(SETTLE);
        let mut invocation = script.prepare_invoke();
        invocation.arg(&reservation.id).arg(actual_micros.max(0));
        for key in &reservation.keys {
            invocation.key(key);
        }
        let mut redis = self.redis.clone();
        let settled: i64 = invocation.invoke_async(&mut redis).await.map_err(|e| BudgetError::Redis(e.to_string()))?;
        Ok(settled > 0)
    }

    /// `(spent, reserved)` of `key`, for tests and dashboards.
    pub async fn usage(&self, key: &str) -> Result<(i64, i64), BudgetError> {
        let mut redis = self.redis.clone();
        let (spent, reserved): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(key)
            .arg("spent")
            .arg("reserved")
            .query_async(&mut redis)
            .await
            .map_err(|e| BudgetError::Redis(e.to_string()))?;
        Ok((spent.unwrap_or(0), reserved.unwrap_or(0)))
    }
}
