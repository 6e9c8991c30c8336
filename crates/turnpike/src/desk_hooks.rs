//! The helpdesk webhook endpoint and the queue timer (`turnpike helpdesk-hooks`): helpdesk events become
//! `DeskEvent` records on the desk topic, keyed by session, for the desk stage.
//!
//! `POST /v1/helpdesk/{vendor}/{tenant}`, where `vendor` is the tenant's helpdesk (`zendesk`, `freshdesk`,
//! `intercom`, `webhook`). Every request is verified in the vendor's documented scheme over the raw body
//! (`turnpike_helpdesk::signature`) before anything is read: a request without a signature gets
//! `401 {"error": "missing_signature"}`, a wrong one `401 {"error": "bad_signature"}`, a Zendesk or generic
//! signature older than 5 minutes `401 {"error": "stale_signature"}`, a tenant without a webhook secret
//! `403`, a vendor that is not the tenant's `404`. A webhook for a ticket of ours that the handoff stage has not
//! recorded yet gets `503` (the helpdesk delivers it again); one for a ticket that is not ours `200` and nothing. Zendesk and Freshdesk send ids only; the agent's text is read
//! back through their API (a forged id cannot inject text). The answer is `200` once Kafka acknowledged the
//! records (`503` when it did not: the helpdesk retries), so nothing acknowledged is lost; helpdesks deliver
//! at least once, and the desk stage drops repeats by event id.
//!
//! The queue timer moves tickets whose queue deadline passed (the handoff stage schedules them in Redis) to
//! the desk topic as `QUEUE_TIMEOUT` events, then unschedules them; several instances may race, and the desk
//! stage claims each event once.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use turnpike_core::PerTenant;
use turnpike_helpdesk::{signature, Connector, HelpdeskConfig, Kind, OpenedTicket};
use turnpike_schemas::{Codec, DeskEvent, DeskEventKind};
use turnpike_stages::handoff::queue_key;
use turnpike_stages::Deps;

/// How old a signed timestamp may be.
const MAX_AGE_SECS: i64 = 300;

/// What the endpoint and the timer share.
pub struct Hooks {
    pub producer: FutureProducer,
    pub codec: Codec,
    /// The desk topic (after any prefix); also names the pipeline's queue of waiting tickets.
    pub topic: String,
    pub deps: Deps,
    pub desks: PerTenant<(Connector, HelpdeskConfig)>,
}

type Refusal = (StatusCode, Json<Value>);

fn refuse(status: StatusCode, error: &str) -> Refusal {
    (status, Json(json!({"error": error})))
}

pub fn router(hooks: Arc<Hooks>) -> Router {
    Router::new()
        .route("/v1/helpdesk/{vendor}/{tenant}", post(webhook))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(hooks)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Checks the request's signature in `kind`'s scheme.
fn verify(kind: Kind, secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let missing = || refuse(StatusCode::UNAUTHORIZED, "missing_signature");
    let bad = || refuse(StatusCode::UNAUTHORIZED, "bad_signature");
    let stale = || refuse(StatusCode::UNAUTHORIZED, "stale_signature");
    if secret.is_empty() {
        return Err(refuse(StatusCode::FORBIDDEN, "webhook_secret_not_configured"));
    }
    match kind {
        Kind::Zendesk => {
            let (sig, ts) = header(signature::ZENDESK_SIGNATURE_HEADER)
                .zip(header(signature::ZENDESK_TIMESTAMP_HEADER))
                .ok_or_else(missing)?;
            if !signature::zendesk_verify(secret, ts, body, sig) {
                return Err(bad());
            }
            let at = turnpike_helpdesk::fake::parse_iso8601(ts).ok_or_else(bad)?;
            if (now_secs() - at).abs() > MAX_AGE_SECS {
                return Err(stale());
            }
        }
        Kind::Intercom => {
            let sig = header(signature::INTERCOM_SIGNATURE_HEADER).ok_or_else(missing)?;
            if !signature::intercom_verify(secret, body, sig) {
                return Err(bad());
            }
        }
        Kind::Freshdesk => {
            let token = header(signature::FRESHDESK_TOKEN_HEADER).ok_or_else(missing)?;
            if !signature::token_verify(secret, token) {
                return Err(bad());
            }
        }
        Kind::Webhook => {
            let sig = header(signature::GENERIC_SIGNATURE_HEADER).ok_or_else(missing)?;
            let at = signature::generic_verify(secret, body, sig).ok_or_else(bad)?;
            if (now_secs() - at).abs() > MAX_AGE_SECS {
                return Err(stale());
            }
        }
        Kind::None => return Err(refuse(StatusCode::NOT_FOUND, "no_helpdesk")),
    }
    Ok(())
}

async fn webhook(
    State(h): State<Arc<Hooks>>,
    Path((vendor, tenant)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, Refusal> {
    let (desk, cfg) = h.desks.get(&tenant);
    if cfg.kind.as_str() != vendor {
        return Err(refuse(StatusCode::NOT_FOUND, "not_this_tenants_helpdesk"));
    }
    if let Err(r) = verify(cfg.kind, cfg.webhook_secret.expose(), &headers, &body) {
        metrics::counter!("turnpike_helpdesk_webhooks_total", "helpdesk" => cfg.kind.as_str(), "outcome" => "refused")
            .increment(1);
        tracing::warn!(tenant, vendor, error = %r.1 .0["error"], "Helpdesk webhook refused.");
        return Err(r);
    }
    let v: Value = serde_json::from_slice(&body).map_err(|_| refuse(StatusCode::BAD_REQUEST, "invalid_json"))?;
    let events = events(&h, desk, cfg, &tenant, &headers, &v).await?;
    for e in &events {
        produce(&h, e).await.map_err(|_| refuse(StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable"))?;
    }
    metrics::counter!("turnpike_helpdesk_webhooks_total", "helpdesk" => cfg.kind.as_str(), "outcome" => "accepted")
        .increment(1);
    Ok(Json(json!({"accepted": events.len()})))
}

/// The desk events a verified webhook stands for (none for a ticket that is not one of ours).
async fn events(
    h: &Hooks,
    desk: &Connector,
    cfg: &HelpdeskConfig,
    tenant: &str,
    headers: &HeaderMap,
    v: &Value,
) -> Result<Vec<DeskEvent>, Refusal> {
    let unavailable = |_| refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    let kind = cfg.kind;
    let str_of = |x: &Value| x.as_str().map(str::to_string).or_else(|| x.as_u64().map(|n| n.to_string()));
    let (external, closed) = match kind {
        Kind::Zendesk => (
            str_of(&v["ticket_id"]),
            v["event"] == "solved" || matches!(v["status"].as_str(), Some("solved" | "closed")),
        ),
        Kind::Freshdesk => (
            str_of(&v["ticket_id"]),
            matches!(v["event"].as_str(), Some("solved" | "resolved" | "closed"))
                || matches!(v["status"].as_u64(), Some(4 | 5)),
        ),
        Kind::Intercom => (str_of(&v["data"]["item"]["id"]), v["topic"] == "conversation.admin.closed"),
        _ => (str_of(&v["ticket_id"]), v["event"] == "closed"),
    };
    let external = external.ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "no_ticket_id"))?;
    let Some((session, ticket)) =
        h.deps.helpdesk.by_external(tenant, kind.as_str(), &external).await.map_err(unavailable)?
    else {
        // A ticket that names one of ours (Zendesk's external_id) but is not recorded yet: the helpdesk was
        // faster than the handoff stage's write after the create. 503 makes the helpdesk deliver it again.
        if v["external_id"].as_str().is_some_and(|x| x.starts_with("T-")) {
            return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "ticket_not_recorded_yet"));
        }
        return Ok(Vec::new());
    };
    let base = DeskEvent {
        tenant_id: tenant.into(),
        session_id: session.clone(),
        ticket_id: ticket.clone(),
        helpdesk: kind.as_str().into(),
        external_id: external.clone(),
        at_ms: turnpike_runner::now_ms(),
        ..Default::default()
    };
    if closed {
        let invocation = headers.get("x-zendesk-webhook-invocation-id").and_then(|x| x.to_str().ok());
        let id = v["id"].as_str().or(invocation).or(v["event_id"].as_str()).unwrap_or("closed");
        return Ok(vec![DeskEvent {
            kind: DeskEventKind::Closed,
            event_id: format!("{}:{external}:closed:{id}", kind.as_str()),
            ..base
        }]);
    }
    let messages: Vec<(String, String, String)> = match kind {
        Kind::Intercom => {
            let parts =
                v["data"]["item"]["conversation_parts"]["conversation_parts"].as_array().cloned().unwrap_or_default();
            parts
                .iter()
                .filter(|p| p["author"]["type"] == "admin" && p["part_type"] == "comment")
                .filter_map(|p| {
                    Some((
                        str_of(&p["id"])?,
                        p["body"].as_str()?.to_string(),
                        str_of(&p["author"]["name"]).unwrap_or_default(),
                    ))
                })
                .collect()
        }
        Kind::Webhook => {
            let id = v["event_id"].as_str().ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "no_event_id"))?;
            vec![(
                id.to_string(),
                v["text"].as_str().unwrap_or("").to_string(),
                v["author"].as_str().unwrap_or("").to_string(),
            )]
        }
        _ => {
            let link = h.deps.helpdesk.get(tenant, &session, &ticket).await.map_err(unavailable)?.unwrap_or_default();
            let opened = OpenedTicket { external_id: external.clone(), requester_id: link.requester_id, existed: true };
            let read = desk
                .agent_messages(&opened)
                .await
                .map_err(|_| refuse(StatusCode::SERVICE_UNAVAILABLE, "helpdesk_unavailable"))?;
            read.into_iter().map(|m| (m.id, m.text, m.author)).collect()
        }
    };
    Ok(messages
        .into_iter()
        .map(|(id, text, author)| DeskEvent {
            kind: DeskEventKind::AgentMessage,
            event_id: format!("{}:msg:{id}", kind.as_str()),
            text,
            author,
            ..base.clone()
        })
        .collect())
}

async fn produce(h: &Hooks, e: &DeskEvent) -> Result<(), String> {
    let mut e = e.clone();
    let name = format!("{}\u{1f}{}\u{1f}{}", e.tenant_id, e.session_id, e.event_id);
    e.turn_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string();
    let e = &e;
    let payload = h.codec.encode(&h.topic, e).await.map_err(|e| e.to_string())?;
    h.producer
        .send(FutureRecord::to(&h.topic).key(e.session_id.as_bytes()).payload(&payload), Duration::from_secs(10))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

/// Every second: tickets past their queue deadline become `QUEUE_TIMEOUT` events, then are unscheduled.
pub async fn queue_timer(h: Arc<Hooks>, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !shutdown.is_cancelled() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = expire(&h).await {
            tracing::warn!(error = %e, "Queue timer failed; trying again in a second.");
        }
    }
}

async fn expire(h: &Hooks) -> Result<(), String> {
    let mut redis = h.deps.pool.clone();
    let queue = queue_key(&h.topic);
    let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(&queue)
        .arg("-inf")
        .arg(turnpike_runner::now_ms())
        .arg("LIMIT")
        .arg(0)
        .arg(100)
        .query_async(&mut redis)
        .await
        .map_err(|e| e.to_string())?;
    for member in due {
        let mut parts = member.split('\u{1f}');
        let (Some(tenant), Some(session), Some(ticket)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let e = DeskEvent {
            tenant_id: tenant.into(),
            session_id: session.into(),
            ticket_id: ticket.into(),
            kind: DeskEventKind::QueueTimeout,
            event_id: format!("timeout:{ticket}"),
            text: h.desks.get(tenant).1.queue_timeout_message.clone(),
            at_ms: turnpike_runner::now_ms(),
            ..Default::default()
        };
        produce(h, &e).await?;
        let _: i64 =
            redis::cmd("ZREM").arg(&queue).arg(&member).query_async(&mut redis).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

impl Hooks {
    /// Connects the producer, the registry codec, the stores and the tenants' helpdesks; `topology` names the
    /// desk topic (after any prefix).
    pub async fn connect(
        topology: &turnpike_topology::Topology,
        endpoints: &turnpike_core::Endpoints,
    ) -> anyhow::Result<Hooks> {
        let topic = topology
            .topic_named("turnpike.handoff.desk")
            .ok_or_else(|| anyhow::anyhow!("the topology has no turnpike.handoff.desk topic"))?
            .name
            .clone();
        // The pipeline's producer settings: idempotent, acks=all, and murmur2 so a session's events land on
        // the partition of its turns.
        let producer = endpoints
            .kafka_properties()
            .into_iter()
            .collect::<rdkafka::ClientConfig>()
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .create()?;
        let codec = Codec::for_endpoints(endpoints, Duration::from_secs(5))?;
        let deps = Deps::connect(endpoints).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let desks = turnpike_stages::handoff::load_desks().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Hooks { producer, codec, topic, deps, desks })
    }
}

/// Serves the endpoint on `listener` and runs the queue timer until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hooks: Arc<Hooks>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let timer = tokio::spawn(queue_timer(hooks.clone(), shutdown.clone()));
    let stop = shutdown.clone();
    let served =
        axum::serve(listener, router(hooks)).with_graceful_shutdown(async move { stop.cancelled().await }).await;
    shutdown.cancel();
    let _ = timer.await;
    served
}
