//! Turnpike's stores. ScyllaDB (Cassandra in tests) keeps the long-term record: transcripts, sessions and
//! handoff tickets; Redis keeps what is hot and short-lived.
//!
//! Only CQL that both ScyllaDB and Apache Cassandra 5 accept is used: no materialized views, no SAI or
//! secondary indexes on the hot path, no lightweight transactions where an idempotent upsert does the job.

pub mod cql;
pub mod helpdesk;
pub mod migrate;
pub mod redis_pool;
pub mod sessions;
pub mod summaries;
pub mod transcript;

pub use cql::{connect_cql, StoreError};
pub use helpdesk::{HelpdeskLink, HelpdeskStore};
pub use migrate::{migrate, Migration, MIGRATIONS};
pub use redis_pool::RedisPool;
pub use sessions::{SessionStore, Ticket};
pub use summaries::{SummaryRow, SummaryStore};
pub use transcript::{TranscriptRow, TranscriptStore};

/// Opens a Redis connection manager (reconnects by itself; clone it freely).
/// The response timeout is 5 s rather than the library's 500 ms: on a loaded machine a burst can queue
/// longer than that, and a timed-out write is retried anyway.
pub async fn connect_redis(url: &str) -> Result<redis::aio::ConnectionManager, StoreError> {
    let client = redis::Client::open(url).map_err(|e| StoreError::Redis(e.to_string()))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(5)))
        .set_connection_timeout(Some(std::time::Duration::from_secs(2)));
    client.get_connection_manager_with_config(config).await.map_err(|e| StoreError::Redis(e.to_string()))
}
