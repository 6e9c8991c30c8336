//! Transcript access. Rows are keyed by (tenant, session) and clustered by (seq, role), so appends are
//! idempotent upserts and a session's history reads back in turn order from one partition.

use crate::cql::{collect_rows, prepare_idempotent, request_error, StoreError};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use scylla::{DeserializeRow, SerializeRow};
use std::sync::Arc;

/// One message of a conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq, SerializeRow, DeserializeRow)]
pub struct TranscriptRow {
    pub tenant_id: String,
    pub session_id: String,
    /// Turn sequence within the session.
    pub seq: i64,
    /// `user` or `assistant` (also `agent` for human replies after a handoff).
    pub role: String,
    pub turn_id: String,
    pub user_id: Option<String>,
    pub content: String,
    pub channel: Option<String>,
    pub model: Option<String>,
    pub tier: Option<String>,
    pub finish_reason: Option<String>,
    pub input_tokens: Option<i32>,
    pub output_tokens: Option<i32>,
    pub cost_usd_micros: Option<i64>,
    /// Citations as JSON.
    pub citations: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: Option<CqlTimestamp>,
}

const COLUMNS: &str = "tenant_id, session_id, seq, role, turn_id, user_id, content, channel, model, tier, \
                       finish_reason, input_tokens, output_tokens, cost_usd_micros, citations, created_at";

/// Prepared statements over the transcript table; build once per process and share.
#[derive(Clone)]
pub struct TranscriptStore {
    session: Arc<Session>,
    insert: PreparedStatement,
    select: PreparedStatement,
    select_since: PreparedStatement,
}

impl TranscriptStore {
    /// Prepares the statements against `keyspace` (which must be migrated).
    pub async fn new(session: Arc<Session>, keyspace: &str) -> Result<TranscriptStore, StoreError> {
        let prep = |cql: String| {
            let session = session.clone();
            async move { prepare_idempotent(&session, cql).await }
        };
        let placeholders = vec!["?"; COLUMNS.split(',').count()].join(", ");
        let insert = prep(format!("INSERT INTO {keyspace}.transcript ({COLUMNS}) VALUES ({placeholders})")).await?;
        let select =
            prep(format!("SELECT {COLUMNS} FROM {keyspace}.transcript WHERE tenant_id = ? AND session_id = ?")).await?;
        let select_since = prep(format!(
            "SELECT {COLUMNS} FROM {keyspace}.transcript WHERE tenant_id = ? AND session_id = ? AND seq >= ?"
        ))
        .await?;
        Ok(TranscriptStore { session, insert, select, select_since })
    }

    /// Writes (or rewrites) one message.
    pub async fn append(&self, row: &TranscriptRow) -> Result<(), StoreError> {
        self.session.execute_unpaged(&self.insert, row).await.map_err(request_error)?;
        Ok(())
    }

    /// The whole transcript of a session, in (seq, role) order, read page by page.
    pub async fn read(&self, tenant_id: &str, session_id: &str) -> Result<Vec<TranscriptRow>, StoreError> {
        self.collect(&self.select, (tenant_id, session_id)).await
    }

    /// The messages of a session from turn `from_seq` on.
    pub async fn read_since(
        &self,
        tenant_id: &str,
        session_id: &str,
        from_seq: i64,
    ) -> Result<Vec<TranscriptRow>, StoreError> {
        self.collect(&self.select_since, (tenant_id, session_id, from_seq)).await
    }

    async fn collect(
        &self,
        stmt: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<TranscriptRow>, StoreError> {
        collect_rows(&self.session, stmt, values).await
    }
}
