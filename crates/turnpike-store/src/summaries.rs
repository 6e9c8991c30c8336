//! Session summaries in CQL: the long-term copy of each running summary (Redis holds the current one while
//! the session is active). Rows are keyed by (tenant, session) and clustered by the last turn they cover,
//! newest first, so writing a summary again is an idempotent upsert and the latest is one single-row read.

use crate::cql::{collect_rows, prepare_idempotent, request_error, StoreError};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use scylla::{DeserializeRow, SerializeRow};
use std::sync::Arc;

/// One summary of a session's turns up to `covered_seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq, SerializeRow, DeserializeRow)]
pub struct SummaryRow {
    pub tenant_id: String,
    pub session_id: String,
    /// The last turn sequence folded into this summary.
    pub covered_seq: i64,
    /// The model's summary text.
    pub summary: String,
    /// The assistant's commitment sentences, verbatim, oldest first.
    pub commitments: Option<Vec<String>>,
    pub model: Option<String>,
    pub summary_tokens: Option<i32>,
    pub input_tokens: Option<i32>,
    pub output_tokens: Option<i32>,
    pub created_at: Option<CqlTimestamp>,
}

const COLUMNS: &str = "tenant_id, session_id, covered_seq, summary, commitments, model, summary_tokens, \
                       input_tokens, output_tokens, created_at";

/// Prepared statements over `session_summaries`; build once per process and share.
#[derive(Clone)]
pub struct SummaryStore {
    session: Arc<Session>,
    insert: PreparedStatement,
    latest: PreparedStatement,
    all: PreparedStatement,
}

impl SummaryStore {
    /// Prepares the statements against `keyspace` (migration `0002_summaries` must be applied).
    pub async fn new(session: Arc<Session>, keyspace: &str) -> Result<SummaryStore, StoreError> {
        let placeholders = vec!["?"; COLUMNS.split(',').count()].join(", ");
        let insert = prepare_idempotent(
            &session,
            format!("INSERT INTO {keyspace}.session_summaries ({COLUMNS}) VALUES ({placeholders})"),
        )
        .await?;
        let latest = prepare_idempotent(
            &session,
            format!(
                "SELECT {COLUMNS} FROM {keyspace}.session_summaries WHERE tenant_id = ? AND session_id = ? LIMIT 1"
            ),
        )
        .await?;
        let all = prepare_idempotent(
            &session,
            format!("SELECT {COLUMNS} FROM {keyspace}.session_summaries WHERE tenant_id = ? AND session_id = ?"),
        )
        .await?;
        Ok(SummaryStore { session, insert, latest, all })
    }

    /// Writes (or rewrites) one summary.
    pub async fn put(&self, row: &SummaryRow) -> Result<(), StoreError> {
        self.session.execute_unpaged(&self.insert, row).await.map_err(request_error)?;
        Ok(())
    }

    /// The newest summary of a session, if any.
    pub async fn latest(&self, tenant_id: &str, session_id: &str) -> Result<Option<SummaryRow>, StoreError> {
        self.session
            .execute_unpaged(&self.latest, (tenant_id, session_id))
            .await
            .map_err(request_error)?
            .into_rows_result()
            .map_err(|e| StoreError::Cql(e.to_string()))?
            .maybe_first_row::<SummaryRow>()
            .map_err(|e| StoreError::Cql(e.to_string()))
    }

    /// Every summary of a session, newest first (a session has a few dozen at most: one per ten messages).
    pub async fn history(&self, tenant_id: &str, session_id: &str) -> Result<Vec<SummaryRow>, StoreError> {
        collect_rows(&self.session, &self.all, (tenant_id, session_id)).await
    }
}
