//! The eight stages of the chat pipeline. Each module states its guarantee; all inherit the runner's
//! (at-least-once, in order per session, dead-letter on poison, drain on revoke and shutdown).
//!
//! Side effects are idempotent because redelivery is the normal case: Cassandra writes are upserts keyed by
//! (tenant, session, seq, role) or ticket id, Redis writes are keyed by turn id or guarded by scripts.

pub mod assemble;
pub mod audit;
pub mod context;
pub mod crm;
pub mod deliver;
pub mod desk;
pub mod generate;
pub mod guard_in;
pub mod guard_out;
pub mod handoff;
pub mod handoff_summary;
pub mod ingest;
pub mod memory;
pub mod retrieve;
pub mod route;
pub mod session;
pub mod summarize;
pub mod tokens;
pub mod triggers;

use std::sync::Arc;
use std::time::Duration;
use turnpike_core::{Classify, Endpoints, ErrorClass};
use turnpike_runner::StageError;
use turnpike_store::{HelpdeskStore, SessionStore, SummaryStore, TranscriptStore};

/// Connections shared by the stages of one process: built once, cloned into each stage.
#[derive(Clone)]
pub struct Deps {
    /// One multiplexed connection (kept for code that needs a `ConnectionManager`).
    pub redis: redis::aio::ConnectionManager,
    /// Several connections used round-robin: the hot paths use this.
    pub pool: turnpike_store::RedisPool,
    pub transcript: TranscriptStore,
    pub sessions: SessionStore,
    /// Long-term copies of the sessions' running summaries.
    pub summaries: SummaryStore,
    /// Handoff tickets at helpdesks and where their conversations stand.
    pub helpdesk: HelpdeskStore,
}

/// How long [`Deps::connect`] waits for Redis and Cassandra at start-up: a stage started beside a database that
/// is still starting (or restarting after a crash: Cassandra replays its commit log first) waits for it
/// instead of exiting, but a database that never comes is reported within minutes.
pub const STARTUP_WAIT: Duration = Duration::from_secs(180);

impl Deps {
    /// Connects to Redis and CQL and prepares the statements (the keyspace must be migrated), waiting up to
    /// [`STARTUP_WAIT`] while either is unreachable.
    pub async fn connect(endpoints: &Endpoints) -> Result<Deps, StageError> {
        Self::connect_within(endpoints, STARTUP_WAIT).await
    }

    /// [`Deps::connect`] with its own bound. Retryable failures (a refused or broken connection, a node that
    /// cannot prepare yet) are retried with a doubling pause of at most 5 s and logged at each attempt;
    /// a fatal one (a statement the database refuses, e.g. an unmigrated keyspace) ends the wait at once.
    pub async fn connect_within(endpoints: &Endpoints, wait: Duration) -> Result<Deps, StageError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(250);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let e = match Self::connect_once(endpoints).await {
                Ok(deps) => {
                    if attempt > 1 {
                        tracing::info!(attempt, waited_ms = started.elapsed().as_millis() as u64, "Stores reachable.");
                    }
                    return Ok(deps);
                }
                Err(e) => e,
            };
            let left = wait.saturating_sub(started.elapsed());
            if e.class() != ErrorClass::Retryable || left.is_zero() {
                return Err(e);
            }
            let pause_now = pause.min(left);
            tracing::warn!(code = e.code(), error = %e, attempt, retry_in_ms = pause_now.as_millis() as u64,
                left_s = left.as_secs(), "Stores not reachable yet; waiting for them.");
            tokio::time::sleep(pause_now).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    async fn connect_once(endpoints: &Endpoints) -> Result<Deps, StageError> {
        let redis = turnpike_store::connect_redis(&endpoints.redis_url).await.map_err(StageError::from_classified)?;
        let pool =
            turnpike_store::RedisPool::connect(&endpoints.redis_url, 4).await.map_err(StageError::from_classified)?;
        let cql = Arc::new(turnpike_store::connect_cql(endpoints).await.map_err(StageError::from_classified)?);
        let transcript =
            TranscriptStore::new(cql.clone(), &endpoints.keyspace).await.map_err(StageError::from_classified)?;
        let sessions =
            SessionStore::new(cql.clone(), &endpoints.keyspace).await.map_err(StageError::from_classified)?;
        let summaries =
            SummaryStore::new(cql.clone(), &endpoints.keyspace).await.map_err(StageError::from_classified)?;
        let helpdesk = HelpdeskStore::new(cql, &endpoints.keyspace).await.map_err(StageError::from_classified)?;
        Ok(Deps { redis, pool, transcript, sessions, summaries, helpdesk })
    }
}

/// Maps a store error into the runner's classes.
pub(crate) fn store_err(e: turnpike_store::StoreError) -> StageError {
    StageError::from_classified(e)
}

/// Maps a Redis error: every Redis failure here is an availability problem, so it is retried.
pub(crate) fn redis_err(e: redis::RedisError) -> StageError {
    StageError::retryable("redis", e.to_string())
}
