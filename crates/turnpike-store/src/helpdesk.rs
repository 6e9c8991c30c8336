//! Helpdesk tickets of handoffs in CQL (`helpdesk_links`, `helpdesk_external`): the durable side of the
//! ownership state machine and the mapping between Turnpike's ticket ids and the helpdesk's. Every write is
//! an idempotent upsert.

use crate::cql::{prepare_idempotent, request_error, StoreError};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use std::sync::Arc;

/// One handoff ticket and where its conversation stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelpdeskLink {
    pub ticket_id: String,
    /// `zendesk`, `freshdesk`, `intercom`, `webhook` or `none`.
    pub helpdesk: String,
    pub external_id: String,
    pub requester_id: Option<String>,
    /// `waiting_for_agent`, `agent`, `closed` or `timed_out`.
    pub state: String,
    /// The channel the customer was on (agent replies go back there).
    pub channel: String,
    pub user_id: String,
}

/// Prepared statements over the helpdesk tables.
#[derive(Clone)]
pub struct HelpdeskStore {
    session: Arc<Session>,
    put: PreparedStatement,
    get: PreparedStatement,
    set_state: PreparedStatement,
    put_external: PreparedStatement,
    by_external: PreparedStatement,
}

type LinkRow = (String, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);

impl HelpdeskStore {
    pub async fn new(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let prep = |cql: String| {
            let session = session.clone();
            async move { prepare_idempotent(&session, cql).await }
        };
        Ok(HelpdeskStore {
            put: prep(format!(
                "INSERT INTO {keyspace}.helpdesk_links (tenant_id, session_id, ticket_id, helpdesk, external_id, requester_id, \
                 state, channel, user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            get: prep(format!(
                "SELECT ticket_id, helpdesk, external_id, requester_id, state, channel, user_id FROM {keyspace}.helpdesk_links \
                 WHERE tenant_id = ? AND session_id = ? AND ticket_id = ?"
            ))
            .await?,
            set_state: prep(format!(
                "UPDATE {keyspace}.helpdesk_links SET state = ?, updated_at = ? WHERE tenant_id = ? AND session_id = ? AND ticket_id = ?"
            ))
            .await?,
            put_external: prep(format!(
                "INSERT INTO {keyspace}.helpdesk_external (tenant_id, helpdesk, external_id, session_id, ticket_id) VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            by_external: prep(format!(
                "SELECT session_id, ticket_id FROM {keyspace}.helpdesk_external WHERE tenant_id = ? AND helpdesk = ? AND external_id = ?"
            ))
            .await?,
            session,
        })
    }

    /// Records the ticket and its reverse mapping (external id → conversation).
    pub async fn put(&self, tenant: &str, session_id: &str, l: &HelpdeskLink, now_ms: i64) -> Result<(), StoreError> {
        let now = CqlTimestamp(now_ms);
        self.session
            .execute_unpaged(
                &self.put,
                (
                    tenant,
                    session_id,
                    &l.ticket_id,
                    &l.helpdesk,
                    &l.external_id,
                    &l.requester_id,
                    &l.state,
                    &l.channel,
                    &l.user_id,
                    now,
                    now,
                ),
            )
            .await
            .map_err(request_error)?;
        self.session
            .execute_unpaged(&self.put_external, (tenant, &l.helpdesk, &l.external_id, session_id, &l.ticket_id))
            .await
            .map_err(request_error)?;
        Ok(())
    }

    pub async fn get(
        &self,
        tenant: &str,
        session_id: &str,
        ticket_id: &str,
    ) -> Result<Option<HelpdeskLink>, StoreError> {
        let rows =
            self.session.execute_unpaged(&self.get, (tenant, session_id, ticket_id)).await.map_err(request_error)?;
        let row = rows
            .into_rows_result()
            .map_err(|e| StoreError::Cql(e.to_string()))?
            .maybe_first_row::<LinkRow>()
            .map_err(|e| StoreError::Cql(e.to_string()))?;
        Ok(row.map(|(ticket_id, helpdesk, external_id, requester_id, state, channel, user_id)| HelpdeskLink {
            ticket_id,
            helpdesk: helpdesk.unwrap_or_default(),
            external_id: external_id.unwrap_or_default(),
            requester_id,
            state: state.unwrap_or_default(),
            channel: channel.unwrap_or_default(),
            user_id: user_id.unwrap_or_default(),
        }))
    }

    pub async fn set_state(
        &self,
        tenant: &str,
        session_id: &str,
        ticket_id: &str,
        state: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.set_state, (state, CqlTimestamp(now_ms), tenant, session_id, ticket_id))
            .await
            .map_err(request_error)?;
        Ok(())
    }

    /// The conversation and Turnpike ticket behind a helpdesk's ticket id.
    pub async fn by_external(
        &self,
        tenant: &str,
        helpdesk: &str,
        external_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.by_external, (tenant, helpdesk, external_id))
            .await
            .map_err(request_error)?;
        rows.into_rows_result()
            .map_err(|e| StoreError::Cql(e.to_string()))?
            .maybe_first_row::<(String, String)>()
            .map_err(|e| StoreError::Cql(e.to_string()))
    }
}
