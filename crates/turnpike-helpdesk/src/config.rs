//! Per-tenant helpdesk settings: section `helpdesk` of the tenants file (`TURNPIKE_TENANTS_CONFIG`).
//!
//! ```toml
//! [defaults.helpdesk]
//! queue_timeout_secs = 600          # no agent within this → back to the bot, with a message to the customer
//!
//! [tenants.acme.helpdesk]
//! kind = "zendesk"                  # none | zendesk | freshdesk | intercom | webhook
//! base_url = "https://acme.zendesk.com"
//! email = "bot@acme.example"        # Zendesk: the bot agent's address (token auth: `{email}/token`)
//! token_env = "ACME_ZENDESK_TOKEN"  # the credential itself: from this variable (or `token = "..."`)
//! webhook_secret_env = "ACME_ZENDESK_SIGNING_SECRET"
//! ```
//!
//! Credentials are [`Secret`]s: `Debug` prints `***`, so a logged config never shows them.

use serde::Deserialize;
use std::fmt;

/// A credential that cannot leak through `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The raw value, for an `Authorization` header or a MAC key only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "(unset)" } else { "***" })
    }
}

/// Which helpdesk a tenant's handoffs go to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// No helpdesk: tickets are recorded in Cassandra and on the ticket-event topic only.
    #[default]
    None,
    Zendesk,
    Freshdesk,
    Intercom,
    /// Our own JSON POST, signed with `webhook_secret` (see `signature::generic_sign`).
    Webhook,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Zendesk => "zendesk",
            Kind::Freshdesk => "freshdesk",
            Kind::Intercom => "intercom",
            Kind::Webhook => "webhook",
        }
    }
}

/// One tenant's helpdesk. Unknown keys are refused at start-up.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HelpdeskConfig {
    /// Which helpdesk.
    pub kind: Kind,
    /// API root: `https://{subdomain}.zendesk.com`, `https://{domain}.freshdesk.com`, `https://api.intercom.io`,
    /// or the full URL tickets are POSTed to for `webhook`.
    pub base_url: String,
    /// Zendesk: the bot agent's email (token auth user `{email}/token`).
    pub email: String,
    /// Zendesk API token, Freshdesk API key, Intercom access token (inline; prefer `token_env`).
    pub token: Secret,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// Zendesk signing secret, Intercom client secret, Freshdesk shared header token, generic HMAC key.
    pub webhook_secret: Secret,
    /// Environment variable holding the webhook secret.
    pub webhook_secret_env: Option<String>,
    /// Intercom: the admin (teammate) id bot notes are written as (`GET /me`).
    pub admin_id: String,
    /// Seconds a handed-off conversation waits for an agent before it returns to the bot.
    pub queue_timeout_secs: u64,
    /// What the customer reads when no agent picked up in time.
    pub queue_timeout_message: String,
    /// Attempts per call (429 and 5xx are retried with back-off, honouring `Retry-After`).
    pub max_attempts: u32,
    /// Longest wait between attempts, in milliseconds (also caps a `Retry-After`).
    pub max_backoff_ms: u64,
    /// Per-request timeout, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for HelpdeskConfig {
    fn default() -> Self {
        HelpdeskConfig {
            kind: Kind::None,
            base_url: String::new(),
            email: String::new(),
            token: Secret::default(),
            token_env: None,
            webhook_secret: Secret::default(),
            webhook_secret_env: None,
            admin_id: String::new(),
            queue_timeout_secs: 600,
            queue_timeout_message: "Our team could not pick up your conversation right now, so I'm back to help. \
                                    Your request is saved and an agent will follow up on it."
                .into(),
            max_attempts: 5,
            max_backoff_ms: 10_000,
            timeout_ms: 15_000,
        }
    }
}

impl HelpdeskConfig {
    /// Resolves `*_env` credentials from the environment and checks that what the kind needs is present.
    pub fn resolve(mut self) -> Result<Self, String> {
        let read = |name: &Option<String>, what: &str| -> Result<Option<Secret>, String> {
            match name {
                Some(var) => std::env::var(var)
                    .map(|v| Some(Secret::new(v)))
                    .map_err(|_| format!("helpdesk {what}: environment variable {var} is not set")),
                None => Ok(None),
            }
        };
        if let Some(t) = read(&self.token_env, "token")? {
            self.token = t;
        }
        if let Some(s) = read(&self.webhook_secret_env, "webhook secret")? {
            self.webhook_secret = s;
        }
        let need =
            |ok: bool, what: &str| if ok { Ok(()) } else { Err(format!("helpdesk {}: {what}", self.kind.as_str())) };
        match self.kind {
            Kind::None => {}
            Kind::Zendesk => {
                need(!self.base_url.is_empty() && !self.email.is_empty(), "needs base_url and email")?;
                need(!self.token.is_empty(), "needs token or token_env")?;
            }
            Kind::Freshdesk => need(!self.base_url.is_empty() && !self.token.is_empty(), "needs base_url and token")?,
            Kind::Intercom => {
                need(!self.base_url.is_empty() && !self.token.is_empty(), "needs base_url and token")?;
                need(!self.admin_id.is_empty(), "needs admin_id (GET /me)")?;
            }
            Kind::Webhook => {
                need(!self.base_url.is_empty() && !self.webhook_secret.is_empty(), "needs base_url and webhook_secret")?
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let c = HelpdeskConfig {
            token: Secret::new("tok-123"),
            webhook_secret: Secret::new("whs-9"),
            ..Default::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("tok-123") && !shown.contains("whs-9"), "{shown}");
    }

    #[test]
    fn a_zendesk_tenant_without_a_token_is_refused() {
        let c = HelpdeskConfig {
            kind: Kind::Zendesk,
            base_url: "http://x".into(),
            email: "a@b".into(),
            ..Default::default()
        };
        assert!(c.resolve().unwrap_err().contains("token"));
    }
}
