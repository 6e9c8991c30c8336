//! handoff: handoff request → ticket event.
//!
//! Guarantee: one ticket per handoff request, idempotently (the ticket id is derived from the turn id, and
//! the ticket row is an upsert), with the session marked human-owned in Cassandra first and Redis second, so
//! later turns skip the bot. Messages for a human-owned session are forwarded to its ticket. The helpdesk
//! itself is reached through ticket events; a helpdesk connector is a later issue.

use crate::{session, store_err, Deps};
use turnpike_runner::{now_ms, Emitter, Stage, StageError};
use turnpike_schemas::{HandoffKind, HandoffRequest, TicketEvent, TicketEventKind};
use turnpike_store::Ticket;

pub struct Handoff {
    pub deps: Deps,
    pub helpdesk: String,
}

/// Stable ticket id for the turn that asked for it.
pub fn ticket_id(tenant: &str, turn_id: &str) -> String {
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("{tenant}/{turn_id}").as_bytes());
    format!("T-{}", &id.simple().to_string()[..12])
}

impl Handoff {
    /// A short warm-handoff summary from the latest transcript messages.
    async fn summary(&self, r: &HandoffRequest) -> Result<String, StageError> {
        let rows = self
            .deps
            .transcript
            .read_since(&r.tenant_id, &r.session_id, (r.seq - 5).max(1))
            .await
            .map_err(store_err)?;
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| format!("{}: {}", if row.role == "user" { "Customer" } else { "Bot" }, row.content))
            .collect();
        lines.push(format!("Reason for handoff: {}", r.reason));
        let mut s = lines.join("\n");
        if s.len() > 2000 {
            let cut = s.char_indices().map(|(i, _)| i).take_while(|i| *i <= 2000).last().unwrap_or(0);
            s.truncate(cut);
        }
        Ok(s)
    }
}

impl Stage for Handoff {
    type In = HandoffRequest;

    async fn process(&self, r: HandoffRequest, out: &mut Emitter) -> Result<(), StageError> {
        let now = now_ms();
        let event = |ticket_id: String, kind, text: String| TicketEvent {
            tenant_id: r.tenant_id.clone(),
            session_id: r.session_id.clone(),
            turn_id: r.turn_id.clone(),
            ticket_id,
            kind,
            text,
            helpdesk: self.helpdesk.clone(),
            at_ms: now,
        };
        match r.kind {
            HandoffKind::Request => {
                let id = ticket_id(&r.tenant_id, &r.turn_id);
                let summary = self.summary(&r).await?;
                let ticket = Ticket {
                    ticket_id: id.clone(),
                    turn_id: r.turn_id.clone(),
                    reason: r.reason.clone(),
                    status: "open".into(),
                };
                self.deps
                    .sessions
                    .put_ticket(&r.tenant_id, &r.session_id, &ticket, Some(&summary), now)
                    .await
                    .map_err(store_err)?;
                self.deps
                    .sessions
                    .set_owner(&r.tenant_id, &r.session_id, "human", Some(&id), now)
                    .await
                    .map_err(store_err)?;
                session::set_owner(&self.deps, &r.tenant_id, &r.session_id, "human").await?;
                metrics::counter!("turnpike_handoffs_total", "reason" => r.reason.clone()).increment(1);
                out.emit(&event(id, TicketEventKind::Opened, summary)).await
            }
            HandoffKind::UserMessage => {
                let owner = self.deps.sessions.owner(&r.tenant_id, &r.session_id).await.map_err(store_err)?;
                let id = owner.and_then(|(_, t)| t).unwrap_or_else(|| ticket_id(&r.tenant_id, &r.turn_id));
                out.emit(&event(id, TicketEventKind::UserMessage, r.text.clone())).await
            }
        }
    }
}
