//! Session records and handoff tickets in CQL: the long-term side of session state (Redis holds the hot
//! side). Every write is an idempotent upsert.

use crate::cql::{prepare_idempotent, request_error, StoreError};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use std::sync::Arc;

/// Prepared statements over `sessions` and `handoff_tickets`.
#[derive(Clone)]
pub struct SessionStore {
    session: Arc<Session>,
    touch: PreparedStatement,
    last_seq: PreparedStatement,
    set_owner: PreparedStatement,
    owner: PreparedStatement,
    ticket: PreparedStatement,
    tickets: PreparedStatement,
}

/// A handoff ticket row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub ticket_id: String,
    pub turn_id: String,
    pub reason: String,
    pub status: String,
}

impl SessionStore {
    /// Prepares the statements against `keyspace`.
    pub async fn new(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let prep = |cql: String| {
            let session = session.clone();
            async move { prepare_idempotent(&session, cql).await }
        };
        Ok(SessionStore {
            touch: prep(format!(
                "UPDATE {keyspace}.sessions SET user_id = ?, last_seq = ?, updated_at = ? WHERE tenant_id = ? AND session_id = ?"
            ))
            .await?,
            last_seq: prep(format!(
                "SELECT last_seq, owner FROM {keyspace}.sessions WHERE tenant_id = ? AND session_id = ?"
            ))
            .await?,
            set_owner: prep(format!(
                "UPDATE {keyspace}.sessions SET owner = ?, ticket_id = ?, updated_at = ? WHERE tenant_id = ? AND session_id = ?"
            ))
            .await?,
            owner: prep(format!(
                "SELECT owner, ticket_id FROM {keyspace}.sessions WHERE tenant_id = ? AND session_id = ?"
            ))
            .await?,
            ticket: prep(format!(
                "INSERT INTO {keyspace}.handoff_tickets (tenant_id, session_id, ticket_id, turn_id, reason, status, summary, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            tickets: prep(format!(
                "SELECT ticket_id, turn_id, reason, status FROM {keyspace}.handoff_tickets WHERE tenant_id = ? AND session_id = ?"
            ))
            .await?,
            session,
        })
    }

    /// Records that the session is active up to turn `seq`.
    pub async fn touch(
        &self,
        tenant: &str,
        session_id: &str,
        user_id: &str,
        seq: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.touch, (user_id, seq, CqlTimestamp(now_ms), tenant, session_id))
            .await
            .map_err(request_error)?;
        Ok(())
    }

    /// The last turn sequence recorded for a session (0 for a new one) and its owner, if recorded: what
    /// resuming a session Redis no longer holds needs, in one read.
    pub async fn last_seq_and_owner(
        &self,
        tenant: &str,
        session_id: &str,
    ) -> Result<(i64, Option<String>), StoreError> {
        let rows = self.session.execute_unpaged(&self.last_seq, (tenant, session_id)).await.map_err(request_error)?;
        let row = rows
            .into_rows_result()
            .map_err(|e| StoreError::Cql(e.to_string()))?
            .maybe_first_row::<(Option<i64>, Option<String>)>()
            .map_err(|e| StoreError::Cql(e.to_string()))?;
        Ok(row.map_or((0, None), |(s, o)| (s.unwrap_or(0), o)))
    }

    /// Marks the session as owned by `owner` (`bot` or `human`) with its ticket.
    pub async fn set_owner(
        &self,
        tenant: &str,
        session_id: &str,
        owner: &str,
        ticket: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.set_owner, (owner, ticket, CqlTimestamp(now_ms), tenant, session_id))
            .await
            .map_err(request_error)?;
        Ok(())
    }

    /// The session's owner and ticket, if recorded.
    pub async fn owner(&self, tenant: &str, session_id: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        let rows = self.session.execute_unpaged(&self.owner, (tenant, session_id)).await.map_err(request_error)?;
        let row = rows
            .into_rows_result()
            .map_err(|e| StoreError::Cql(e.to_string()))?
            .maybe_first_row::<(Option<String>, Option<String>)>()
            .map_err(|e| StoreError::Cql(e.to_string()))?;
        Ok(row.and_then(|(o, t)| o.map(|o| (o, t))))
    }

    /// Writes a ticket (idempotent: the same ticket id rewrites the same row).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_ticket(
        &self,
        tenant: &str,
        session_id: &str,
        ticket: &Ticket,
        summary: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.ticket,
                (
                    tenant,
                    session_id,
                    &ticket.ticket_id,
                    &ticket.turn_id,
                    &ticket.reason,
                    &ticket.status,
                    summary,
                    CqlTimestamp(now_ms),
                ),
            )
            .await
            .map_err(request_error)?;
        Ok(())
    }

    /// Every ticket of a session.
    pub async fn tickets(&self, tenant: &str, session_id: &str) -> Result<Vec<Ticket>, StoreError> {
        let rows = self.session.execute_unpaged(&self.tickets, (tenant, session_id)).await.map_err(request_error)?;
        let rows = rows.into_rows_result().map_err(|e| StoreError::Cql(e.to_string()))?;
        let mut out = Vec::new();
        for r in rows
            .rows::<(String, Option<String>, Option<String>, Option<String>)>()
            .map_err(|e| StoreError::Cql(e.to_string()))?
        {
            let (ticket_id, turn_id, reason, status) = r.map_err(|e| StoreError::Cql(e.to_string()))?;
            out.push(Ticket {
                ticket_id,
                turn_id: turn_id.unwrap_or_default(),
                reason: reason.unwrap_or_default(),
                status: status.unwrap_or_default(),
            });
        }
        Ok(out)
    }
}
