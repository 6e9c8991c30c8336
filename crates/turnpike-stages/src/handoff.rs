//! handoff: handoff request → a ticket at the tenant's helpdesk, and a ticket event.
//!
//! Guarantee: one helpdesk ticket per handoff request, also after a crash or redelivery mid-creation. The
//! ticket id is derived from the turn id; the connector looks the ticket up at the helpdesk by that id before
//! it creates one (Zendesk also gets it as `Idempotency-Key`); the agent's note is kept in Redis before the
//! first call, so a repeat sends the same body; and the helpdesk's id is recorded in Cassandra (then Redis)
//! before the offset moves, so a later redelivery needs no call at all. The session becomes human-owned
//! (state `waiting_for_agent`: Cassandra first, Redis second) and its queue deadline is scheduled.
//!
//! A `USER_MESSAGE` (the customer writing while a human owns the session) is added to the ticket as the
//! customer's comment, once per turn: a Redis marker written after the call skips it on redelivery. A crash
//! between the call and the marker repeats that one comment (marked `[tp:<turn id>]` so the agent can tell).
//!
//! PII: the note and messages reach the helpdesk with the vault's real values; Kafka and Cassandra keep the
//! tokens.

use crate::handoff_summary::{self, Reveal};
use crate::{redis_err, session, store_err, Deps};
use redis::AsyncCommands;
use turnpike_core::PerTenant;
use turnpike_guard::vault::RedisVault;
use turnpike_helpdesk::{Connector, HelpdeskConfig, NewTicket, OpenedTicket, Priority};
use turnpike_llm::LlmRouter;
use turnpike_runner::{now_ms, Emitter, Stage, StageError};
use turnpike_schemas::{HandoffKind, HandoffRequest, TicketEvent, TicketEventKind};
use turnpike_store::{HelpdeskLink, Ticket};

/// States of a handed-off conversation (`helpdesk_links.state`).
pub const WAITING: &str = "waiting_for_agent";
pub const AGENT: &str = "agent";
pub const CLOSED: &str = "closed";
pub const TIMED_OUT: &str = "timed_out";

/// Redis sorted set of tickets waiting for an agent, scored by their queue deadline (unix ms); members are
/// `tenant \x1f session \x1f ticket`. One per pipeline: named after the topic prefix of `topic` (any of the
/// handoff topics), so pipelines sharing a Redis (tests, staging beside production) never time out each
/// other's tickets.
pub fn queue_key(topic: &str) -> String {
    let prefix = ["turnpike.handoff.requests", "turnpike.handoff.desk"]
        .iter()
        .find_map(|base| topic.strip_suffix(base))
        .unwrap_or(topic);
    format!("tp:helpdesk:queue:{prefix}")
}
/// How long Redis keeps a note and a comment marker: beyond any redelivery.
const MARK_TTL_SECS: u64 = 7 * 24 * 3600;

pub struct Handoff {
    deps: Deps,
    desks: PerTenant<(Connector, HelpdeskConfig)>,
    llm: Option<LlmRouter>,
    vault: Option<RedisVault>,
}

/// Stable ticket id for the turn that asked for it.
pub fn ticket_id(tenant: &str, turn_id: &str) -> String {
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("{tenant}/{turn_id}").as_bytes());
    format!("T-{}", &id.simple().to_string()[..12])
}

/// The tenants' helpdesks (section `helpdesk` of `TURNPIKE_TENANTS_CONFIG`), credentials resolved.
pub fn load_desks() -> Result<PerTenant<(Connector, HelpdeskConfig)>, StageError> {
    let config =
        turnpike_core::TenantsConfig::from_env().map_err(|e| StageError::fatal("helpdesk_config", e.to_string()))?;
    desks_from(&config)
}

/// [`load_desks`] from an already loaded tenants file.
pub fn desks_from(config: &turnpike_core::TenantsConfig) -> Result<PerTenant<(Connector, HelpdeskConfig)>, StageError> {
    let fatal = |e: String| StageError::fatal("helpdesk_config", e);
    let section = config.section::<HelpdeskConfig>("helpdesk").map_err(|e| fatal(e.to_string()))?;
    let http = reqwest::Client::builder().build().map_err(|e| fatal(e.to_string()))?;
    section.try_map(|cfg| cfg.clone().resolve().map(|c| (Connector::new(c.clone(), http.clone()), c))).map_err(fatal)
}

/// Ticket labels from the trigger's tags: lower case, `[a-z0-9_-]` only (what every helpdesk accepts).
fn tags(r: &HandoffRequest) -> Vec<String> {
    let clean = |t: &str| {
        t.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
    };
    let mut out: Vec<String> = vec!["turnpike".into(), "handoff".into()];
    out.extend(r.tags.iter().map(|t| clean(t)));
    out.push(clean(&format!("reason_{}", r.reason)));
    out.dedup();
    out
}

impl Handoff {
    pub async fn new(deps: Deps, llm: Option<LlmRouter>, redis_url: &str) -> Result<Handoff, StageError> {
        let vault = RedisVault::connect(redis_url, session::SESSION_TTL_SECS as i64)
            .await
            .map_err(|e| StageError::retryable("pii_vault", e.to_string()))?;
        Ok(Handoff { deps, desks: load_desks()?, llm, vault: Some(vault) })
    }

    fn link_key(r: &HandoffRequest, ticket: &str) -> String {
        session::key(&r.tenant_id, &r.session_id, &format!("desk:link:{ticket}"))
    }

    /// The recorded ticket: Redis first, Cassandra when Redis lost it.
    async fn link(&self, r: &HandoffRequest, ticket: &str) -> Result<Option<HelpdeskLink>, StageError> {
        let mut redis = self.deps.pool.clone();
        let cached: Option<String> = redis.get(Self::link_key(r, ticket)).await.map_err(redis_err)?;
        if let Some(external_id) = cached.as_deref().and_then(|c| c.split('\u{1f}').next()) {
            let requester_id = cached.as_deref().and_then(|c| c.split('\u{1f}').nth(1)).filter(|s| !s.is_empty());
            return Ok(Some(HelpdeskLink {
                ticket_id: ticket.into(),
                external_id: external_id.into(),
                requester_id: requester_id.map(str::to_string),
                ..Default::default()
            }));
        }
        self.deps.helpdesk.get(&r.tenant_id, &r.session_id, ticket).await.map_err(store_err)
    }

    async fn cache_link(&self, r: &HandoffRequest, l: &HelpdeskLink) -> Result<(), StageError> {
        let mut redis = self.deps.pool.clone();
        let v = format!("{}\u{1f}{}", l.external_id, l.requester_id.as_deref().unwrap_or(""));
        redis.set_ex(Self::link_key(r, &l.ticket_id), v, session::SESSION_TTL_SECS).await.map_err(redis_err)
    }

    /// The masked note for this ticket: the one a first attempt kept, else a new one (kept before any call).
    async fn note(&self, r: &HandoffRequest, ticket: &str) -> Result<(String, Option<String>), StageError> {
        let key = session::key(&r.tenant_id, &r.session_id, &format!("desk:note:{ticket}"));
        let mut redis = self.deps.pool.clone();
        let kept: Option<String> = redis.get(&key).await.map_err(redis_err)?;
        if let Some(k) = kept {
            let (channel, text) = k.split_once('\u{1f}').unwrap_or(("", k.as_str()));
            return Ok((text.to_string(), Some(channel.to_string()).filter(|c| !c.is_empty())));
        }
        let note = handoff_summary::note(&self.deps, self.llm.as_ref(), r).await?;
        let stored = format!("{}\u{1f}{}", note.channel.as_deref().unwrap_or(""), note.text);
        let _: () = redis.set_ex(&key, stored, MARK_TTL_SECS).await.map_err(redis_err)?;
        Ok((note.text, note.channel))
    }

    fn new_ticket(&self, r: &HandoffRequest, id: &str, note: &str, reveal: &Reveal) -> NewTicket {
        let first = reveal.text(&r.text);
        let subject: String =
            format!("Chat handoff ({}): {}", r.reason, first.split_whitespace().collect::<Vec<_>>().join(" "))
                .chars()
                .take(120)
                .collect();
        NewTicket {
            ticket_id: id.into(),
            tenant_id: r.tenant_id.clone(),
            session_id: r.session_id.clone(),
            subject,
            summary: reveal.text(note),
            first_message: first,
            customer_id: r.user_id.clone(),
            customer_name: None,
            customer_email: reveal.email(),
            priority: Priority::parse(&r.priority),
            tags: tags(r),
        }
    }

    async fn request(&self, r: &HandoffRequest, out: &mut Emitter) -> Result<(), StageError> {
        let (tenant, sid) = (r.tenant_id.as_str(), r.session_id.as_str());
        let id = ticket_id(tenant, &r.turn_id);
        let now = now_ms();
        let (desk, cfg) = self.desks.get(tenant);
        let (note, channel) = self.note(r, &id).await?;
        let link = match self.link(r, &id).await? {
            Some(l) => l,
            None => {
                // A session already with a human keeps its ticket: a second trigger opens no second one.
                if let Some((owner, Some(open))) = self.deps.sessions.owner(tenant, sid).await.map_err(store_err)? {
                    let state = self.deps.helpdesk.get(tenant, sid, &open).await.map_err(store_err)?.map(|l| l.state);
                    if owner == "human" && matches!(state.as_deref(), Some(WAITING | AGENT)) {
                        metrics::counter!("turnpike_handoff_requests_ignored_total").increment(1);
                        return Ok(());
                    }
                }
                let reveal = Reveal::load(self.vault.as_ref(), tenant, sid).await?;
                let started = std::time::Instant::now();
                let opened = desk
                    .open_ticket(&self.new_ticket(r, &id, &note, &reveal))
                    .await
                    .map_err(StageError::from_classified)?;
                metrics::histogram!("turnpike_handoff_ticket_seconds", "helpdesk" => cfg.kind.as_str())
                    .record(started.elapsed().as_secs_f64());
                let link = HelpdeskLink {
                    ticket_id: id.clone(),
                    helpdesk: cfg.kind.as_str().into(),
                    external_id: opened.external_id,
                    requester_id: opened.requester_id,
                    state: WAITING.into(),
                    channel: channel.clone().unwrap_or_else(|| "kafka".into()),
                    user_id: r.user_id.clone(),
                };
                self.deps.helpdesk.put(tenant, sid, &link, now).await.map_err(store_err)?;
                // Counted where the ticket is recorded: a redelivered request finds the link and is not a
                // second handoff.
                let label = turnpike_core::tenant_label(tenant);
                metrics::counter!("turnpike_handoffs_total", "reason" => r.reason.clone(), "tenant" => label)
                    .increment(1);
                link
            }
        };
        self.cache_link(r, &link).await?;
        let ticket = Ticket {
            ticket_id: id.clone(),
            turn_id: r.turn_id.clone(),
            reason: r.reason.clone(),
            status: WAITING.into(),
        };
        self.deps.sessions.put_ticket(tenant, sid, &ticket, Some(&note), now).await.map_err(store_err)?;
        self.deps.sessions.set_owner(tenant, sid, "human", Some(&id), now).await.map_err(store_err)?;
        session::set_owner(&self.deps, tenant, sid, "human").await?;
        // The queue deadline counts from the request; NX keeps the first deadline across redeliveries.
        let deadline = r.requested_at_ms + (cfg.queue_timeout_secs as i64) * 1000;
        let mut redis = self.deps.pool.clone();
        let _: i64 = redis::cmd("ZADD")
            .arg(queue_key(&out.source().topic))
            .arg("NX")
            .arg(deadline)
            .arg(format!("{tenant}\u{1f}{sid}\u{1f}{id}"))
            .query_async(&mut redis)
            .await
            .map_err(redis_err)?;
        out.emit(&self.event(r, &id, TicketEventKind::Opened, note)).await
    }

    async fn user_message(&self, r: &HandoffRequest, out: &mut Emitter) -> Result<(), StageError> {
        let (tenant, sid) = (r.tenant_id.as_str(), r.session_id.as_str());
        let owner = self.deps.sessions.owner(tenant, sid).await.map_err(store_err)?;
        let id = owner.and_then(|(_, t)| t).unwrap_or_else(|| ticket_id(tenant, &r.turn_id));
        if let Some(link) = self.link(r, &id).await? {
            let marker = session::key(tenant, sid, &format!("desk:comment:{}", r.turn_id));
            let mut redis = self.deps.pool.clone();
            let done: bool = redis.exists(&marker).await.map_err(redis_err)?;
            if !done {
                let (desk, _) = self.desks.get(tenant);
                let reveal = Reveal::load(self.vault.as_ref(), tenant, sid).await?;
                let ticket = NewTicket {
                    ticket_id: id.clone(),
                    tenant_id: tenant.into(),
                    session_id: sid.into(),
                    ..Default::default()
                };
                let opened =
                    OpenedTicket { external_id: link.external_id, requester_id: link.requester_id, existed: true };
                desk.add_customer_message(&ticket, &opened, &reveal.text(&r.text), &r.turn_id)
                    .await
                    .map_err(StageError::from_classified)?;
                let _: () = redis.set_ex(&marker, 1, MARK_TTL_SECS).await.map_err(redis_err)?;
            }
        }
        out.emit(&self.event(r, &id, TicketEventKind::UserMessage, r.text.clone())).await
    }

    fn event(&self, r: &HandoffRequest, ticket_id: &str, kind: TicketEventKind, text: String) -> TicketEvent {
        TicketEvent {
            tenant_id: r.tenant_id.clone(),
            session_id: r.session_id.clone(),
            turn_id: r.turn_id.clone(),
            ticket_id: ticket_id.into(),
            kind,
            text,
            helpdesk: self.desks.get(&r.tenant_id).1.kind.as_str().into(),
            at_ms: now_ms(),
        }
    }
}

impl Stage for Handoff {
    type In = HandoffRequest;

    async fn process(&self, r: HandoffRequest, out: &mut Emitter) -> Result<(), StageError> {
        match r.kind {
            HandoffKind::Request => self.request(&r, out).await,
            HandoffKind::UserMessage => self.user_message(&r, out).await,
        }
    }
}
