//! A few multiplexed Redis connections used round-robin. One connection serialises every command of a
//! process on one socket: under load (thousands of sessions in flight across eight stages) the queue grows
//! past any sane response timeout. Each command (or pipeline, or script call) goes whole to one connection.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::StoreError;

/// Round-robin over several [`ConnectionManager`]s (each reconnects by itself). Cheap to clone.
#[derive(Clone)]
pub struct RedisPool {
    conns: Arc<[ConnectionManager]>,
    next: Arc<AtomicUsize>,
    db: i64,
}

impl RedisPool {
    /// Opens `size` connections to `url`, with a response timeout generous enough for a loaded machine.
    pub async fn connect(url: &str, size: usize) -> Result<RedisPool, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Redis(e.to_string()))?;
        let db = client.get_connection_info().redis_settings().db();
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let mut conns = Vec::with_capacity(size.max(1));
        for _ in 0..size.max(1) {
            conns.push(
                client
                    .get_connection_manager_with_config(config.clone())
                    .await
                    .map_err(|e| StoreError::Redis(e.to_string()))?,
            );
        }
        Ok(RedisPool { conns: conns.into(), next: Arc::new(AtomicUsize::new(0)), db })
    }

    fn pick(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }
}

impl ConnectionLike for RedisPool {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut conn = self.pick();
        Box::pin(async move { conn.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut conn = self.pick();
        Box::pin(async move { conn.req_packed_commands(pipeline, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}
