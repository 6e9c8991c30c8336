//! Helpdesk connectors for the handoff stage, the webhook signatures of the helpdesks, and a local fake of
//! the three helpdesks for tests and load runs.
//!
//! Guarantees of [`Connector::open_ticket`]: one ticket per Turnpike ticket id, also when called again after
//! a crash: it first looks the ticket up by our id at the helpdesk (Zendesk `external_id`, Freshdesk custom
//! field `cf_turnpike_ticket_id`, Intercom a conversation whose first message carries the id), and Zendesk's
//! create also carries `Idempotency-Key`. The caller records the returned external id before it
//! acknowledges its input, so the lookup is only needed for a crash between create and that record.
//! Errors say whether to retry ([`HelpdeskError`] implements `Classify`).

pub mod config;
pub mod connector;
pub mod fake;
pub mod http;
pub mod signature;

pub use config::{HelpdeskConfig, Kind, Secret};
pub use connector::{AgentMessage, Connector, NewTicket, OpenedTicket, Priority};

use turnpike_core::{Classify, ErrorClass};

/// A failed helpdesk call.
#[derive(Debug, thiserror::Error)]
pub enum HelpdeskError {
    /// The helpdesk is unreachable, overloaded (429) or failing (5xx): retry later.
    #[error("helpdesk {call} unavailable (status {status:?}): {detail}")]
    Unavailable { call: &'static str, status: Option<u16>, retry_after: Option<std::time::Duration>, detail: String },
    /// The helpdesk refused the request (4xx other than 429).
    #[error("helpdesk {call} refused with {status}: {detail}")]
    Refused { call: &'static str, status: u16, detail: String },
    /// An answer without what the API documents (no id in a created ticket).
    #[error("helpdesk {call} answered without {missing}")]
    Protocol { call: &'static str, missing: &'static str },
}

impl HelpdeskError {
    pub(crate) fn unavailable(call: &'static str, status: Option<u16>, detail: String) -> Self {
        HelpdeskError::Unavailable { call, status, retry_after: None, detail }
    }
}

impl Classify for HelpdeskError {
    fn class(&self) -> ErrorClass {
        match self {
            HelpdeskError::Unavailable { .. } => ErrorClass::Retryable,
            // Wrong or revoked credentials are an operator's fix, not the input's fault: the session waits
            // (only its own records back off) rather than losing its ticket to a dead letter.
            HelpdeskError::Refused { status: 401 | 403, .. } => ErrorClass::Retryable,
            HelpdeskError::Refused { .. } | HelpdeskError::Protocol { .. } => ErrorClass::Poison,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            HelpdeskError::Unavailable { .. } => "helpdesk_unavailable",
            HelpdeskError::Refused { status: 401 | 403, .. } => "helpdesk_auth",
            HelpdeskError::Refused { .. } => "helpdesk_refused",
            HelpdeskError::Protocol { .. } => "helpdesk_protocol",
        }
    }
}
