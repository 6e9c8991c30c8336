//! The connectors: one [`Connector`] per tenant, speaking its helpdesk's documented REST API
//! (../shared/notes/integrations.md §1–3) through one shared `reqwest::Client`.

use crate::config::{HelpdeskConfig, Kind};
use crate::http::{call, Answer, Retry};
use crate::{signature, HelpdeskError};
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

/// How urgent a handoff is (the trigger's `priority`).
pub use turnpike_core::Priority;

/// Zendesk's priority names are the schema's.
fn zendesk_priority(p: Priority) -> &'static str {
    p.as_str()
}

/// Freshdesk: 1 Low, 2 Medium, 3 High, 4 Urgent.
fn freshdesk_priority(p: Priority) -> u8 {
    match p {
        Priority::Low => 1,
        Priority::Normal => 2,
        Priority::High => 3,
        Priority::Urgent => 4,
    }
}

/// What a handoff puts in a ticket. `summary` is for the agent, with PII revealed: it is sent to the
/// helpdesk only, never written to Kafka.
#[derive(Clone, Debug, Default)]
pub struct NewTicket {
    /// Turnpike's ticket id (stable per handoff): the helpdesk's external id, the idempotency key.
    pub ticket_id: String,
    pub tenant_id: String,
    pub session_id: String,
    pub subject: String,
    pub summary: String,
    /// The customer's own message that led to the handoff (Intercom opens the conversation with it).
    pub first_message: String,
    pub customer_id: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub priority: Priority,
    pub tags: Vec<String>,
}

/// A ticket at the helpdesk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedTicket {
    /// The helpdesk's id (Zendesk/Freshdesk ticket id, Intercom conversation id).
    pub external_id: String,
    /// The requester/contact id where the API gives one (later comments are written as this customer).
    pub requester_id: Option<String>,
    /// True when the ticket already existed (a repeat after a crash) and nothing was created.
    pub existed: bool,
}

/// One tenant's connector. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Connector {
    cfg: HelpdeskConfig,
    http: reqwest::Client,
    retry: Retry,
}

impl Connector {
    /// A connector for an already [`HelpdeskConfig::resolve`]d config, sharing `http`.
    pub fn new(cfg: HelpdeskConfig, http: reqwest::Client) -> Connector {
        let retry =
            Retry { max_attempts: cfg.max_attempts.max(1), max_backoff: Duration::from_millis(cfg.max_backoff_ms) };
        Connector { cfg, http, retry }
    }

    pub fn kind(&self) -> Kind {
        self.cfg.kind
    }

    pub fn config(&self) -> &HelpdeskConfig {
        &self.cfg
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.base_url.trim_end_matches('/'))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    /// A request with the tenant's authentication and a timeout.
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let token = self.cfg.token.expose();
        let b = self.http.request(method, self.url(path)).timeout(self.timeout());
        match self.cfg.kind {
            Kind::Zendesk => b.basic_auth(format!("{}/token", self.cfg.email), Some(token)),
            Kind::Freshdesk => b.basic_auth(token, Some("X")),
            Kind::Intercom => {
                b.bearer_auth(token).header("Intercom-Version", "2.14").header("Accept", "application/json")
            }
            Kind::Webhook | Kind::None => b,
        }
    }

    /// Finds the ticket opened for `t.ticket_id`, or creates it (see the crate docs for the guarantee).
    pub async fn open_ticket(&self, t: &NewTicket) -> Result<OpenedTicket, HelpdeskError> {
        match self.cfg.kind {
            Kind::None => Ok(OpenedTicket { external_id: t.ticket_id.clone(), requester_id: None, existed: false }),
            Kind::Zendesk => self.zendesk_open(t).await,
            Kind::Freshdesk => self.freshdesk_open(t).await,
            Kind::Intercom => self.intercom_open(t).await,
            Kind::Webhook => self.webhook_post("ticket.created", t, &t.ticket_id, None).await.map(|_| OpenedTicket {
                external_id: t.ticket_id.clone(),
                requester_id: None,
                existed: false,
            }),
        }
    }

    /// Adds the customer's later message to the ticket, marked `[tp:<marker>]` so a repeat can be recognised.
    pub async fn add_customer_message(
        &self,
        t: &NewTicket,
        opened: &OpenedTicket,
        text: &str,
        marker: &str,
    ) -> Result<(), HelpdeskError> {
        let body = format!("{text}\n\n[tp:{marker}]");
        let id = &opened.external_id;
        match self.cfg.kind {
            Kind::None => Ok(()),
            Kind::Zendesk => {
                // Written as the requester when known (a public comment by the customer), else as an
                // internal note by the bot: a public comment by the bot would be emailed to the customer.
                let comment = match &opened.requester_id {
                    Some(author) => json!({"body": body, "public": true, "author_id": author.parse::<i64>().ok()}),
                    None => json!({"body": format!("Customer (via chat): {body}"), "public": false}),
                };
                let payload = json!({"ticket": {"comment": comment}});
                let path = format!("/api/v2/tickets/{id}.json");
                call("zendesk", "comment", self.retry, || self.req(reqwest::Method::PUT, &path).json(&payload)).await?;
                Ok(())
            }
            Kind::Freshdesk => {
                // `incoming: true` shows the note as coming from outside (the customer), not from an agent.
                let payload = json!({"body": html(&body), "private": false, "incoming": true});
                let path = format!("/api/v2/tickets/{id}/notes");
                call("freshdesk", "note", self.retry, || self.req(reqwest::Method::POST, &path).json(&payload)).await?;
                Ok(())
            }
            Kind::Intercom => {
                let contact = opened.requester_id.clone().unwrap_or_default();
                let payload =
                    json!({"message_type": "comment", "type": "user", "intercom_user_id": contact, "body": body});
                let path = format!("/conversations/{id}/reply");
                call("intercom", "reply", self.retry, || self.req(reqwest::Method::POST, &path).json(&payload)).await?;
                Ok(())
            }
            Kind::Webhook => self.webhook_post("ticket.customer_message", t, marker, Some(text)).await.map(|_| ()),
        }
    }

    async fn zendesk_open(&self, t: &NewTicket) -> Result<OpenedTicket, HelpdeskError> {
        let find = format!("/api/v2/tickets.json?external_id={}", t.ticket_id);
        let found = call("zendesk", "find", self.retry, || self.req(reqwest::Method::GET, &find)).await?;
        if let Some(existing) = found.body["tickets"].as_array().and_then(|a| a.first()) {
            return zendesk_ticket(existing, true);
        }
        let mut requester = json!({"name": customer_name(t)});
        if let Some(email) = &t.customer_email {
            requester["email"] = json!(email);
        }
        let payload = json!({"ticket": {
            "subject": t.subject,
            "comment": {"html_body": html(&t.summary), "public": false},
            "requester": requester,
            "priority": zendesk_priority(t.priority),
            "type": "question",
            "tags": t.tags,
            "external_id": t.ticket_id,
        }});
        let key = format!("tp-{}", t.ticket_id);
        let created = call("zendesk", "create", self.retry, || {
            self.req(reqwest::Method::POST, "/api/v2/tickets.json").header("Idempotency-Key", &key).json(&payload)
        })
        .await?;
        zendesk_ticket(&created.body["ticket"], false)
    }

    async fn freshdesk_open(&self, t: &NewTicket) -> Result<OpenedTicket, HelpdeskError> {
        let find = format!("/api/v2/search/tickets?query=\"cf_turnpike_ticket_id:'{}'\"", t.ticket_id);
        let found = call("freshdesk", "find", self.retry, || self.req(reqwest::Method::GET, &find)).await?;
        if let Some(existing) = found.body["results"].as_array().and_then(|a| a.first()) {
            return freshdesk_ticket(existing, true);
        }
        let mut payload = json!({
            "name": customer_name(t),
            "subject": t.subject,
            "description": html(&t.summary),
            "status": 2, "priority": freshdesk_priority(t.priority), "source": 7,
            "tags": t.tags,
            "custom_fields": {"cf_turnpike_ticket_id": t.ticket_id},
        });
        match &t.customer_email {
            Some(email) => payload["email"] = json!(email),
            None => payload["unique_external_id"] = json!(t.customer_id),
        }
        let created = call("freshdesk", "create", self.retry, || {
            self.req(reqwest::Method::POST, "/api/v2/tickets").json(&payload)
        })
        .await?;
        freshdesk_ticket(&created.body, false)
    }

    async fn intercom_open(&self, t: &NewTicket) -> Result<OpenedTicket, HelpdeskError> {
        let contact = self.intercom_contact(t).await?;
        let search = json!({"query": {"field": "source.body", "operator": "~", "value": t.ticket_id}});
        let found = call("intercom", "search", self.retry, || {
            self.req(reqwest::Method::POST, "/conversations/search").json(&search)
        })
        .await?;
        if let Some(existing) = found.body["conversations"].as_array().and_then(|a| a.first()) {
            let id = id_of(&existing["id"]).ok_or(HelpdeskError::Protocol { call: "search", missing: "id" })?;
            return Ok(OpenedTicket { external_id: id, requester_id: Some(contact), existed: true });
        }
        let first = if t.first_message.is_empty() { "(handed over from the chat bot)" } else { &t.first_message };
        let create = json!({"from": {"type": "user", "id": contact}, "body": format!("{first}\n\n[{}]", t.ticket_id)});
        let created =
            call("intercom", "create", self.retry, || self.req(reqwest::Method::POST, "/conversations").json(&create))
                .await?;
        let id = id_of(&created.body["conversation_id"])
            .ok_or(HelpdeskError::Protocol { call: "create", missing: "conversation_id" })?;
        // The agent's summary as an internal note (the first message is the customer's own words).
        let note =
            json!({"message_type": "note", "type": "admin", "admin_id": self.cfg.admin_id, "body": html(&t.summary)});
        let path = format!("/conversations/{id}/reply");
        call("intercom", "note", self.retry, || self.req(reqwest::Method::POST, &path).json(&note)).await?;
        Ok(OpenedTicket { external_id: id, requester_id: Some(contact), existed: false })
    }

    /// The Intercom contact for the customer, found by our user id or created.
    async fn intercom_contact(&self, t: &NewTicket) -> Result<String, HelpdeskError> {
        let path = format!("/contacts/find_by_external_id/{}", t.customer_id);
        match call("intercom", "find_contact", self.retry, || self.req(reqwest::Method::GET, &path)).await {
            Ok(Answer { body, .. }) => {
                return id_of(&body["id"]).ok_or(HelpdeskError::Protocol { call: "find_contact", missing: "id" })
            }
            Err(HelpdeskError::Refused { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let mut payload = json!({"role": "user", "external_id": t.customer_id, "name": customer_name(t)});
        if let Some(email) = &t.customer_email {
            payload["email"] = json!(email);
        }
        let created = call("intercom", "create_contact", self.retry, || {
            self.req(reqwest::Method::POST, "/contacts").json(&payload)
        })
        .await?;
        id_of(&created.body["id"]).ok_or(HelpdeskError::Protocol { call: "create_contact", missing: "id" })
    }

    /// The generic webhook: a signed JSON POST; the receiver de-duplicates on `idempotency_key`.
    async fn webhook_post(
        &self,
        event: &'static str,
        t: &NewTicket,
        idempotency_key: &str,
        text: Option<&str>,
    ) -> Result<Answer, HelpdeskError> {
        let body = serde_json::to_vec(&json!({
            "event": event, "idempotency_key": idempotency_key, "ticket_id": t.ticket_id,
            "tenant_id": t.tenant_id, "session_id": t.session_id, "subject": t.subject, "summary": t.summary,
            "priority": zendesk_priority(t.priority), "tags": t.tags, "customer_id": t.customer_id, "text": text,
        }))
        .unwrap_or_default();
        let secret = self.cfg.webhook_secret.expose();
        call("webhook", "post", self.retry, || {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            self.http
                .post(&self.cfg.base_url)
                .timeout(self.timeout())
                .header("content-type", "application/json")
                .header("idempotency-key", idempotency_key)
                .header(signature::GENERIC_SIGNATURE_HEADER, signature::generic_sign(secret, now, &body))
                .body(body.clone())
        })
        .await
    }
}

fn customer_name(t: &NewTicket) -> String {
    t.customer_name.clone().unwrap_or_else(|| format!("Chat customer {}", t.customer_id))
}

/// Plain text as minimal HTML (escaped, line breaks kept), for the fields the APIs read as HTML.
fn html(text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!("<p>{}</p>", escaped.replace('\n', "<br>"))
}

/// Ids are numbers in Zendesk and Freshdesk, strings in Intercom.
fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn zendesk_ticket(v: &Value, existed: bool) -> Result<OpenedTicket, HelpdeskError> {
    let external_id = id_of(&v["id"]).ok_or(HelpdeskError::Protocol { call: "create", missing: "ticket.id" })?;
    Ok(OpenedTicket { external_id, requester_id: id_of(&v["requester_id"]), existed })
}

fn freshdesk_ticket(v: &Value, existed: bool) -> Result<OpenedTicket, HelpdeskError> {
    let external_id = id_of(&v["id"]).ok_or(HelpdeskError::Protocol { call: "create", missing: "id" })?;
    Ok(OpenedTicket { external_id, requester_id: id_of(&v["requester_id"]), existed })
}

/// A public message an agent wrote on a ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentMessage {
    /// The helpdesk's comment (conversation) id: the same on every read, so repeats can be recognised.
    pub id: String,
    pub text: String,
    pub author: String,
}

impl Connector {
    /// The agents' public messages on a ticket, oldest first: what a Zendesk or Freshdesk webhook (which
    /// carries ids only, so a forged call cannot inject text) is resolved into. Messages by the requester and
    /// the bot's internal notes are left out.
    pub async fn agent_messages(&self, opened: &OpenedTicket) -> Result<Vec<AgentMessage>, HelpdeskError> {
        let id = &opened.external_id;
        let requester = opened.requester_id.as_deref().unwrap_or("");
        let (list, helpdesk, text_field, author_field) = match self.cfg.kind {
            Kind::Zendesk => {
                let path = format!("/api/v2/tickets/{id}/comments.json");
                let a = call("zendesk", "comments", self.retry, || self.req(reqwest::Method::GET, &path)).await?;
                (a.body["comments"].clone(), "zendesk", "body", "author_id")
            }
            Kind::Freshdesk => {
                let path = format!("/api/v2/tickets/{id}/conversations");
                let a =
                    call("freshdesk", "conversations", self.retry, || self.req(reqwest::Method::GET, &path)).await?;
                (a.body, "freshdesk", "body_text", "user_id")
            }
            _ => return Ok(Vec::new()),
        };
        let public = |c: &Value| match helpdesk {
            "zendesk" => c["public"].as_bool() == Some(true),
            _ => c["private"].as_bool() == Some(false) && c["incoming"].as_bool() != Some(true),
        };
        Ok(list
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter(|c| public(c) && id_of(&c[author_field]).as_deref() != Some(requester))
                    .filter_map(|c| {
                        Some(AgentMessage {
                            id: id_of(&c["id"])?,
                            text: c[text_field].as_str()?.to_string(),
                            author: id_of(&c[author_field]).unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Basic-auth header value, for the fake's own checks and tests.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}
