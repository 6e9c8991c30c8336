//! Rust mirrors of `schemas/*.avsc`. Field names and order follow the schema files exactly.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A record type carried on a topic, bound to its schema file.
pub trait Record: Serialize + for<'de> Deserialize<'de> + Send + Sync + 'static {
    /// Schema name, the file stem in `schemas/` (also the `schema` field of a topology topic).
    const SCHEMA_NAME: &'static str;
    /// The schema text, compiled in.
    const SCHEMA: &'static str;
    /// Tenant id.
    fn tenant_id(&self) -> &str;
    /// Session id: the record key on every topic.
    fn session_id(&self) -> &str;
    /// Turn id (empty where unknown, as on an inbound turn before ingest).
    fn turn_id(&self) -> &str;
}

macro_rules! record {
    ($ty:ty, $name:literal) => {
        impl Record for $ty {
            const SCHEMA_NAME: &'static str = $name;
            const SCHEMA: &'static str = include_str!(concat!("../../../schemas/", $name, ".avsc"));
            fn tenant_id(&self) -> &str {
                &self.tenant_id
            }
            fn session_id(&self) -> &str {
                &self.session_id
            }
            fn turn_id(&self) -> &str {
                &self.turn_id
            }
        }
    };
}

/// Every schema name with its text, for registration and validation.
pub const ALL_SCHEMAS: [(&str, &str); 13] = [
    (InboundTurn::SCHEMA_NAME, InboundTurn::SCHEMA),
    (AcceptedTurn::SCHEMA_NAME, AcceptedTurn::SCHEMA),
    (GuardedTurn::SCHEMA_NAME, GuardedTurn::SCHEMA),
    (AssembledPrompt::SCHEMA_NAME, AssembledPrompt::SCHEMA),
    (RoutedPrompt::SCHEMA_NAME, RoutedPrompt::SCHEMA),
    (ReplyChunk::SCHEMA_NAME, ReplyChunk::SCHEMA),
    (CheckedReplyChunk::SCHEMA_NAME, CheckedReplyChunk::SCHEMA),
    (OutboundReply::SCHEMA_NAME, OutboundReply::SCHEMA),
    (HandoffRequest::SCHEMA_NAME, HandoffRequest::SCHEMA),
    (TicketEvent::SCHEMA_NAME, TicketEvent::SCHEMA),
    (DeskEvent::SCHEMA_NAME, DeskEvent::SCHEMA),
    (DeadLetter::SCHEMA_NAME, DeadLetter::SCHEMA),
    (GuardAudit::SCHEMA_NAME, GuardAudit::SCHEMA),
];

/// Who answers a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionOwner {
    /// The bot answers.
    #[default]
    Bot,
    /// A human agent owns the session after a handoff.
    Human,
}

/// What the pipeline does with a turn after the input guardrails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TurnAction {
    /// Answer with the LLM.
    #[default]
    Proceed,
    /// Reply with the canned refusal; no LLM call.
    Refuse,
    /// Reply with the canned handoff line; a handoff was requested.
    Handoff,
    /// Human-owned session: the bot stays silent.
    Human,
    /// From the helpdesk side (desk stage, handoff stage), not the model: an agent's message, a status such
    /// as `agent_joined`, or the bot's line when the conversation comes back to it.
    Desk,
}

/// Role of a chat message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    System,
    #[default]
    User,
    Assistant,
    Tool,
}

/// Kind of a reply chunk between generate and deliver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChunkKind {
    #[default]
    Delta,
    Final,
}

/// Kind of an outbound record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundKind {
    #[default]
    Delta,
    Final,
    Status,
}

/// What guard-out did to a chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    #[default]
    Pass,
    Redact,
    Replace,
    Block,
}

/// Why a record reached the handoff stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HandoffKind {
    /// Hand the session to a human.
    #[default]
    Request,
    /// A user message for a session a human already owns.
    UserMessage,
}

/// Ticket lifecycle events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketEventKind {
    Opened,
    UserMessage,
    AgentJoined,
    AgentMessage,
    Closed,
    /// Reader fallback for symbols added by a newer writer.
    #[default]
    Unknown,
}

/// What happened on a handoff ticket at the helpdesk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeskEventKind {
    /// An agent wrote to the customer.
    AgentMessage,
    /// The agent solved, closed or handed the conversation back.
    Closed,
    /// No agent picked the conversation up within the tenant's queue timeout.
    QueueTimeout,
    /// Reader fallback for symbols added by a newer writer.
    #[default]
    Unknown,
}

/// One guardrail finding. `detail` never holds raw PII.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardTrigger {
    pub check: String,
    pub verdict: String,
    pub detail: String,
}

/// A chat message in a prompt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// A knowledge source an answer relies on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citation {
    pub source: String,
    pub location: String,
    pub snippet: String,
}

/// Token usage and cost of a reply, from the provider's own figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: i32,
    pub output_tokens: i32,
    pub cached_input_tokens: i32,
    pub cost_usd_micros: i64,
}

/// `inbound_turn.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundTurn {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: Option<String>,
    pub user_id: String,
    pub message_id: String,
    pub text: String,
    pub channel: String,
    pub locale: Option<String>,
    pub sent_at_ms: i64,
    pub attributes: HashMap<String, String>,
}

impl Record for InboundTurn {
    const SCHEMA_NAME: &'static str = "inbound_turn";
    const SCHEMA: &'static str = include_str!("../../../schemas/inbound_turn.avsc");
    fn tenant_id(&self) -> &str {
        &self.tenant_id
    }
    fn session_id(&self) -> &str {
        &self.session_id
    }
    fn turn_id(&self) -> &str {
        self.turn_id.as_deref().unwrap_or("")
    }
}

/// `accepted_turn.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedTurn {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub seq: i64,
    pub user_id: String,
    pub message_id: String,
    pub text: String,
    pub channel: String,
    pub locale: Option<String>,
    pub owner: SessionOwner,
    pub received_at_ms: i64,
    pub attributes: HashMap<String, String>,
}
record!(AcceptedTurn, "accepted_turn");

/// `guarded_turn.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardedTurn {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub seq: i64,
    pub user_id: String,
    pub text: String,
    pub action: TurnAction,
    pub reply_text: Option<String>,
    pub triggers: Vec<GuardTrigger>,
    pub channel: String,
    pub received_at_ms: i64,
    pub attributes: HashMap<String, String>,
}
record!(GuardedTurn, "guarded_turn");

/// `assembled_prompt.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssembledPrompt {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub seq: i64,
    pub user_id: String,
    pub action: TurnAction,
    pub reply_text: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub citations: Vec<Citation>,
    pub prompt_tokens: i32,
    pub budget_tokens: i32,
    pub channel: String,
    pub received_at_ms: i64,
    pub attributes: HashMap<String, String>,
}
record!(AssembledPrompt, "assembled_prompt");

/// `routed_prompt.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedPrompt {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub seq: i64,
    pub user_id: String,
    pub action: TurnAction,
    pub reply_text: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub citations: Vec<Citation>,
    pub tier: String,
    pub model: String,
    pub route_reason: String,
    pub variant: Option<String>,
    pub prompt_tokens: i32,
    pub budget_tokens: i32,
    pub channel: String,
    pub received_at_ms: i64,
    pub attributes: HashMap<String, String>,
}
record!(RoutedPrompt, "routed_prompt");

/// `reply_chunk.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyChunk {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub seq: i64,
    pub chunk_index: i32,
    pub kind: ChunkKind,
    pub text: String,
    pub action: TurnAction,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub tier: Option<String>,
    pub ttft_ms: Option<i32>,
    pub citations: Vec<Citation>,
    pub channel: String,
    pub received_at_ms: i64,
    /// FINAL only: `text` is the model's last words, checked like a DELTA's (else the pipeline's own text).
    pub generated: bool,
}
record!(ReplyChunk, "reply_chunk");

/// `checked_reply_chunk.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedReplyChunk {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub seq: i64,
    pub chunk_index: i32,
    pub kind: ChunkKind,
    pub text: String,
    pub action: TurnAction,
    pub verdict: Verdict,
    pub triggers: Vec<GuardTrigger>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub tier: Option<String>,
    pub ttft_ms: Option<i32>,
    pub citations: Vec<Citation>,
    pub channel: String,
    /// `DESK` records only: a status for the customer instead of text.
    pub status: Option<String>,
    pub received_at_ms: i64,
}
record!(CheckedReplyChunk, "checked_reply_chunk");

/// `outbound_reply.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundReply {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub seq: i64,
    pub chunk_index: i32,
    pub kind: OutboundKind,
    pub text: String,
    pub status: Option<String>,
    pub finish_reason: Option<String>,
    pub citations: Vec<Citation>,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    pub channel: String,
    pub received_at_ms: i64,
}
record!(OutboundReply, "outbound_reply");

/// `handoff_request.avsc`. Not `Eq`: `frustration` is a float.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandoffRequest {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub seq: i64,
    pub user_id: String,
    pub kind: HandoffKind,
    pub reason: String,
    pub source_stage: String,
    pub text: String,
    pub summary: Option<String>,
    pub requested_at_ms: i64,
    /// Why the trigger fired (masked text, scores, turns), for the agent and the audit.
    pub evidence: String,
    /// `low`, `normal`, `high` or `urgent` ([`HandoffRequest::PRIORITIES`]).
    pub priority: String,
    /// Ticket labels from the trigger, such as `handoff:loop` or `topic:legal`.
    pub tags: Vec<String>,
    /// The triggering turn's frustration score in [0, 1], when the turn was scored.
    pub frustration: Option<f64>,
}
record!(HandoffRequest, "handoff_request");

impl HandoffRequest {
    /// Every priority a request may carry, lowest first (the helpdesk connectors map them to theirs).
    pub const PRIORITIES: [&'static str; 4] = ["low", "normal", "high", "urgent"];
    /// The schema's default priority, also what an older writer's record is read with.
    pub const DEFAULT_PRIORITY: &'static str = "normal";
}

/// By hand rather than derived, so a request built in code has the same `priority` as one decoded from an
/// older writer (the schema's default, `normal`), not an empty string.
impl Default for HandoffRequest {
    fn default() -> Self {
        HandoffRequest {
            tenant_id: String::new(),
            session_id: String::new(),
            turn_id: String::new(),
            seq: 0,
            user_id: String::new(),
            kind: HandoffKind::default(),
            reason: String::new(),
            source_stage: String::new(),
            text: String::new(),
            summary: None,
            requested_at_ms: 0,
            evidence: String::new(),
            priority: HandoffRequest::DEFAULT_PRIORITY.to_string(),
            tags: vec![],
            frustration: None,
        }
    }
}

/// `ticket_event.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketEvent {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub ticket_id: String,
    pub kind: TicketEventKind,
    pub text: String,
    pub helpdesk: String,
    pub at_ms: i64,
}
record!(TicketEvent, "ticket_event");

/// `desk_event.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskEvent {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub ticket_id: String,
    pub helpdesk: String,
    pub external_id: String,
    pub kind: DeskEventKind,
    pub event_id: String,
    pub text: String,
    pub author: String,
    pub at_ms: i64,
}
record!(DeskEvent, "desk_event");

/// `dead_letter.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub stage: String,
    pub error_code: String,
    pub error_class: String,
    pub reason: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_key: Option<Vec<u8>>,
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_value: Option<Vec<u8>>,
    pub original_headers: HashMap<String, String>,
    pub failed_at_ms: i64,
}
record!(DeadLetter, "dead_letter");

/// `guard_audit.avsc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardAudit {
    pub audit_id: String,
    pub tenant_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub seq: i64,
    pub stage: String,
    pub check: String,
    pub verdict: String,
    pub detail: String,
    pub action: String,
    pub policy: String,
    pub at_ms: i64,
}
record!(GuardAudit, "guard_audit");
