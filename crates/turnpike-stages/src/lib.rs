//! The eight stages of the chat pipeline. Each module states its guarantee; all inherit the runner's
//! (at-least-once, in order per session, dead-letter on poison, drain on revoke and shutdown).
//!
//! Side effects are idempotent because redelivery is the normal case: Cassandra writes are upserts keyed by
//! (tenant, session, seq, role) or ticket id, Redis writes are keyed by turn id or guarded by scripts.

pub mod assemble;
pub mod audit;
pub mod context;
pub mod deliver;
pub mod generate;
pub mod guard_in;
pub mod guard_out;
pub mod handoff;
pub mod ingest;
pub mod memory;
pub mod retrieve;
pub mod route;
pub mod session;
pub mod summarize;
pub mod tokens;

use std::sync::Arc;
use turnpike_core::Endpoints;
use turnpike_runner::StageError;
use turnpike_store::{SessionStore, SummaryStore, TranscriptStore};

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
}

impl Deps {
    /// Connects to Redis and CQL and prepares the statements (the keyspace must be migrated).
    pub async fn connect(endpoints: &Endpoints) -> Result<Deps, StageError> {
        let redis = turnpike_store::connect_redis(&endpoints.redis_url).await.map_err(StageError::from_classified)?;
        let pool =
            turnpike_store::RedisPool::connect(&endpoints.redis_url, 4).await.map_err(StageError::from_classified)?;
        let cql = Arc::new(turnpike_store::connect_cql(endpoints).await.map_err(StageError::from_classified)?);
        let transcript =
            TranscriptStore::new(cql.clone(), &endpoints.keyspace).await.map_err(StageError::from_classified)?;
        let sessions =
            SessionStore::new(cql.clone(), &endpoints.keyspace).await.map_err(StageError::from_classified)?;
        let summaries = SummaryStore::new(cql, &endpoints.keyspace).await.map_err(StageError::from_classified)?;
        Ok(Deps { redis, pool, transcript, sessions, summaries })
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
