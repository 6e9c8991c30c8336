//! Where a session's PII tokens and their original values are kept.
//!
//! Guarantee: values are stored per session and only under that session's key, so one session can never
//! reveal another's token; `store` is idempotent (same token, same value), so a redelivered Kafka record
//! can replay it safely. The guard itself never touches a vault: the stage loads a [`SessionPii`] before
//! the check and stores `take_new()` after it, keeping the check synchronous and fast.

use crate::SessionPii;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault backend: {0}")]
    Backend(String),
}

pub trait PiiVault: Send + Sync {
    /// The session's whole token map (empty for a new session).
    fn load(&self, session_id: &str) -> impl Future<Output = Result<SessionPii, VaultError>> + Send;
    /// Persists newly minted (token, value) pairs.
    fn store(
        &self,
        session_id: &str,
        entries: &[(String, String)],
    ) -> impl Future<Output = Result<(), VaultError>> + Send;
    /// One token's value, for a tool call or the human agent's view.
    fn reveal(&self, session_id: &str, token: &str) -> impl Future<Output = Result<Option<String>, VaultError>> + Send;
}

/// A process-local vault for tests and single-process runs.
#[derive(Default)]
pub struct InMemoryVault {
    sessions: Mutex<HashMap<String, HashMap<String, String>>>,
}

impl InMemoryVault {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, HashMap<String, String>>) -> T) -> Result<T, VaultError> {
        let mut g = self.sessions.lock().map_err(|_| VaultError::Backend("in-memory vault lock poisoned".into()))?;
        Ok(f(&mut g))
    }
}

impl PiiVault for InMemoryVault {
    async fn load(&self, session_id: &str) -> Result<SessionPii, VaultError> {
        self.with(|s| SessionPii::from_entries(s.get(session_id).cloned().unwrap_or_default()))
    }

    async fn store(&self, session_id: &str, entries: &[(String, String)]) -> Result<(), VaultError> {
        self.with(|s| s.entry(session_id.to_string()).or_default().extend(entries.iter().cloned()))
    }

    async fn reveal(&self, session_id: &str, token: &str) -> Result<Option<String>, VaultError> {
        self.with(|s| s.get(session_id).and_then(|m| m.get(token).cloned()))
    }
}

/// Redis hash per session (`turnpike:pii:{session}`), refreshed to a TTL on every write so tokens die with
/// the session instead of accumulating.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub struct RedisVault {
    conn: redis::aio::ConnectionManager,
    ttl_secs: i64,
}

#[cfg(feature = "redis")]
impl RedisVault {
    pub async fn connect(url: &str, ttl_secs: i64) -> Result<Self, VaultError> {
        let err = |e: redis::RedisError| VaultError::Backend(e.to_string());
        let client = redis::Client::open(url).map_err(err)?;
        // The crate's default response timeout (500 ms) is shorter than a busy stage's own queueing: under a
        // load burst the vault then timed out while Redis was fine, and guard-in retried whole turns. 5 s,
        // as every other Redis client of the pipeline.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(5)))
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)));
        let conn = client.get_connection_manager_with_config(config).await.map_err(err)?;
        Ok(RedisVault { conn, ttl_secs })
    }

    /// The vault on a connection the caller already has (a stage's own Redis client).
    pub fn from_connection(conn: redis::aio::ConnectionManager, ttl_secs: i64) -> Self {
        RedisVault { conn, ttl_secs }
    }

    fn key(session_id: &str) -> String {
        format!("turnpike:pii:{{{session_id}}}")
    }
}

#[cfg(feature = "redis")]
impl PiiVault for RedisVault {
    async fn load(&self, session_id: &str) -> Result<SessionPii, VaultError> {
        use redis::AsyncCommands;
        let mut c = self.conn.clone();
        let m: HashMap<String, String> =
            c.hgetall(Self::key(session_id)).await.map_err(|e| VaultError::Backend(e.to_string()))?;
        Ok(SessionPii::from_entries(m))
    }

    async fn store(&self, session_id: &str, entries: &[(String, String)]) -> Result<(), VaultError> {
        if entries.is_empty() {
            return Ok(());
        }
        let key = Self::key(session_id);
        let mut pipe = redis::pipe();
        pipe.atomic().hset_multiple(&key, entries).ignore().expire(&key, self.ttl_secs).ignore();
        let mut c = self.conn.clone();
        pipe.query_async::<()>(&mut c).await.map_err(|e| VaultError::Backend(e.to_string()))
    }

    async fn reveal(&self, session_id: &str, token: &str) -> Result<Option<String>, VaultError> {
        use redis::AsyncCommands;
        let mut c = self.conn.clone();
        c.hget(Self::key(session_id), token).await.map_err(|e| VaultError::Backend(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PiiKind;

    async fn round_trip<V: PiiVault>(vault: &V, session: &str) {
        let mut s = vault.load(session).await.unwrap();
        let t = s.token_for(PiiKind::Email, "x@y.org");
        vault.store(session, &s.take_new()).await.unwrap();
        assert_eq!(vault.reveal(session, &t).await.unwrap().as_deref(), Some("x@y.org"));
        assert_eq!(vault.reveal("other-session", &t).await.unwrap(), None);
        let mut again = vault.load(session).await.unwrap();
        assert_eq!(again.token_for(PiiKind::Email, "x@y.org"), t, "same value keeps its token across turns");
        assert_eq!(again.token_for(PiiKind::Email, "z@y.org"), "[EMAIL_2]");
    }

    #[tokio::test]
    async fn in_memory_vault_round_trips_per_session() {
        round_trip(&InMemoryVault::default(), "s1").await;
    }

    /// Runs against TURNPIKE_REDIS_URL; without a reachable Redis it says so and checks nothing else.
    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn redis_vault_round_trips_per_session() {
        let url = std::env::var("TURNPIKE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        // The local stack provides Redis (deploy/local/stack.sh start); without it this test fails, never skips.
        let vault = tokio::time::timeout(std::time::Duration::from_secs(5), RedisVault::connect(&url, 60))
            .await
            .unwrap_or_else(|_| panic!("redis at {url} did not answer; start the local stack"))
            .unwrap_or_else(|e| panic!("redis at {url}: {e}; start the local stack"));
        let session = format!("guard-test-{}", std::process::id());
        round_trip(&vault, &session).await;
    }
}
