//! Client message → inbound turn on Kafka. Guarantee: a client is told `accepted` only after Kafka
//! acknowledged the turn (idempotent producer, `acks=all`), so an accepted message is durable and will be
//! answered; the turn's tenant and user come from the credential, its session is `{user}:{conversation}`,
//! its key is the session id (so the pipeline keeps the session's turns in order), and its turn id is derived
//! from (tenant, session, message id), so a client retrying a message id gets the same turn, which ingest
//! then drops as a duplicate. The quota is checked and counted before producing and given back when the
//! produce fails.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::events::{session_id, valid_conversation_id, valid_message_id};
use crate::limiter::{estimate_tokens, Admission};
use crate::App;
use axum::http::StatusCode;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use turnpike_runner::trace;
use turnpike_schemas::{Codec, InboundTurn};

/// A message as a client sends it (the `message` frame, or the POST body).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageIn {
    pub conversation_id: String,
    pub text: String,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub attributes: HashMap<String, String>,
}

/// What `accepted` says.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub conversation_id: String,
    pub message_id: String,
    pub turn_id: String,
    pub estimated_tokens: u64,
    pub duplicate: bool,
}

impl Accepted {
    pub fn to_json(&self) -> String {
        json!({
            "type": "accepted",
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "turn_id": self.turn_id,
            "estimated_tokens": self.estimated_tokens,
            "duplicate": self.duplicate,
        })
        .to_string()
    }
}

/// Stable turn id for (tenant, session, message id); the same derivation ingest uses when a client leaves
/// it unset, so Kafka clients and gateway clients see the same kind of id.
pub fn turn_id(tenant: &str, session: &str, message_id: &str) -> String {
    let name = format!("{tenant}\u{1f}{session}\u{1f}{message_id}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// The producer to the inbound topic.
pub struct Inbound {
    producer: FutureProducer,
    codec: Codec,
    topic: String,
}

impl Inbound {
    /// A producer to `topic` with the brokers, registry and logins of `endpoints`.
    pub fn new(endpoints: &turnpike_core::Endpoints, topic: String) -> Result<Inbound, String> {
        let producer = endpoints
            .kafka_properties()
            .into_iter()
            .collect::<ClientConfig>()
            .set("client.id", "turnpike-gateway")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Java's partitioner, as every stage uses: the session lands where the pipeline expects it.
            .set("partitioner", "murmur2_random")
            // No linger, as the stages: the user waits on this hop (see turnpike-runner's producer config).
            .set("linger.ms", "0")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| e.to_string())?;
        let codec = Codec::for_endpoints(endpoints, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        Ok(Inbound { producer, codec, topic })
    }

    /// Produces `turn` with its trace context (the gateway's span: the parent of ingest's) and waits for the
    /// acknowledgement, at most `timeout`. Records the gateway's span when spans are exported.
    pub async fn send(&self, turn: &InboundTurn, timeout: Duration, trace: Traced) -> Result<(), String> {
        let started = std::time::SystemTime::now();
        let payload = self.codec.encode(&self.topic, turn).await.map_err(|e| e.to_string())?;
        let traceparent = trace.ctx.header();
        let headers = OwnedHeaders::new().insert(Header { key: trace::TRACEPARENT, value: Some(traceparent.as_str()) });
        let record = FutureRecord::to(&self.topic).key(turn.session_id.as_bytes()).payload(&payload).headers(headers);
        let delivery = self.producer.send(record, Duration::from_millis(100));
        let result = match tokio::time::timeout(timeout, delivery).await {
            Ok(Ok(d)) => Ok((d.partition, d.offset)),
            Ok(Err((e, _))) => Err(e.to_string()),
            Err(_) => Err(format!("no acknowledgement within {timeout:?}")),
        };
        if trace::enabled() {
            let (partition, offset) = result.clone().unwrap_or((-1, -1));
            trace::record(trace::SpanRecord {
                ctx: trace.ctx,
                parent: trace.parent,
                stage: "gateway",
                turn_id: turn.turn_id.clone().unwrap_or_default(),
                tenant: turnpike_core::tenant_label(&turn.tenant_id),
                topic: self.topic.clone(),
                partition,
                offset,
                start: started,
                end: std::time::SystemTime::now(),
                error: result.as_ref().err().map(|_| "produce"),
            });
        }
        result.map(|_| ())
    }
}

/// The gateway's span of a turn: a child of the caller's `traceparent` when it sent a valid one, else the
/// root of a new trace.
#[derive(Clone, Copy, Debug)]
pub struct Traced {
    pub ctx: trace::TraceContext,
    pub parent: Option<[u8; 8]>,
}

impl Traced {
    pub fn from_header(traceparent: Option<&str>) -> Traced {
        let parent = traceparent.and_then(trace::TraceContext::parse);
        Traced { ctx: trace::TraceContext::child_of(parent.as_ref()), parent: parent.map(|p| p.span_id) }
    }
}

/// Validates, admits and produces one message of `principal`; `channel` is `ws` or `sse`.
pub async fn accept(
    app: &App,
    principal: &Principal,
    m: MessageIn,
    channel: &str,
    traceparent: Option<&str>,
) -> Result<Accepted, ApiError> {
    let message_id = match m.message_id {
        Some(id) if valid_message_id(&id) => id,
        Some(_) => return Err(ApiError::invalid("message_id must be 1-128 of A-Z a-z 0-9 _ - . :")),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let fail = |e: ApiError| e.for_message(Some(&message_id));
    if !valid_conversation_id(&m.conversation_id) {
        return Err(fail(ApiError::invalid("conversation_id must be 1-64 of A-Z a-z 0-9 _ -")));
    }
    let max = app.cfg.limits.max_message_bytes;
    if m.text.len() > max {
        return Err(fail(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
            format!("the text is {} bytes; the limit is {max}", m.text.len()),
        )));
    }
    if m.text.trim().is_empty() {
        return Err(fail(ApiError::invalid("text is empty")));
    }
    let (tenant, user) = (principal.tenant.as_str(), principal.user.as_str());
    let session = session_id(user, &m.conversation_id);
    let tokens = estimate_tokens(&m.text);
    let admission = app
        .limiter
        .admit(tenant, user, &session, &message_id, tokens, app.limits.get(tenant))
        .await
        .map_err(|e| fail(ApiError::unavailable(format!("quota store: {e}"))))?;
    match admission {
        Admission::Admitted | Admission::Duplicate => {}
        Admission::Refused { scope, window, retry_after_ms } => {
            metrics::counter!("turnpike_gateway_rate_limited_total", "scope" => scope.name(), "window" => window.name())
                .increment(1);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                format!("{} token quota per {} exhausted", scope.name(), window.name()),
            )
            .retry_after(retry_after_ms);
            e.quota = Some((scope, window));
            return Err(fail(e));
        }
        Admission::TooLarge { scope, window } => {
            let mut e = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "message_too_large",
                format!("the message alone exceeds the {} token quota per {}", scope.name(), window.name()),
            );
            e.quota = Some((scope, window));
            return Err(fail(e));
        }
    }
    let turn = InboundTurn {
        tenant_id: tenant.to_string(),
        session_id: session.clone(),
        turn_id: Some(turn_id(tenant, &session, &message_id)),
        user_id: user.to_string(),
        message_id: message_id.clone(),
        text: m.text,
        channel: channel.to_string(),
        locale: m.locale,
        sent_at_ms: turnpike_runner::now_ms(),
        attributes: m.attributes,
    };
    let traced = Traced::from_header(traceparent);
    if let Err(e) = app.inbound.send(&turn, app.cfg.limits.produce_timeout(), traced).await {
        tracing::warn!(tenant, error = %e, "Inbound produce failed; the message was refused.");
        if admission == Admission::Admitted {
            if let Err(e) = app.limiter.refund(tenant, user, &session, &message_id).await {
                tracing::warn!(tenant, error = %e, "Quota refund failed.");
            }
        }
        return Err(fail(ApiError::unavailable("the message could not be stored; retry with the same message_id")));
    }
    metrics::counter!("turnpike_gateway_messages_in_total", "transport" => channel.to_string()).increment(1);
    Ok(Accepted {
        conversation_id: m.conversation_id,
        message_id,
        turn_id: turn.turn_id.unwrap_or_default(),
        estimated_tokens: tokens,
        duplicate: admission == Admission::Duplicate,
    })
}
