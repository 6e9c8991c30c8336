//! Every Rust record type matches its `.avsc` file: a populated value encodes with the schema and decodes
//! back unchanged, and an old writer's datum (fields with defaults missing) resolves into today's type.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{from_value, to_value, Schema};
use std::collections::HashMap;
use turnpike_schemas::*;

fn roundtrip<R: Record + PartialEq + std::fmt::Debug>(record: R) {
    let schema = Schema::parse_str(R::SCHEMA).unwrap();
    let value = to_value(&record).unwrap().resolve(&schema).unwrap_or_else(|e| panic!("{}: {e}", R::SCHEMA_NAME));
    let writer = GenericDatumWriter::builder(&schema).build().unwrap();
    let bytes = writer.write_value_to_vec(value).unwrap();
    // The codec serializes straight from the record (no intermediate `Value`): the same bytes.
    let direct = writer.write_ser_to_vec(&record).unwrap_or_else(|e| panic!("{}: {e}", R::SCHEMA_NAME));
    assert_eq!(direct, bytes, "{}: direct serialization differs", R::SCHEMA_NAME);
    let reader = GenericDatumReader::builder(&schema).build().unwrap();
    // The codec deserializes straight into the record when writer and reader schema are the same.
    let direct: R = reader.read_deser(&mut &bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", R::SCHEMA_NAME));
    assert_eq!(direct, record, "{}: direct deserialization differs", R::SCHEMA_NAME);
    let back = reader.read_value(&mut &bytes[..]).unwrap();
    let decoded: R = from_value(&back).unwrap_or_else(|e| panic!("{}: {e}", R::SCHEMA_NAME));
    assert_eq!(decoded, record, "{} did not round-trip", R::SCHEMA_NAME);
}

fn ids() -> (String, String, String) {
    ("acme".into(), "user-1:conv-1".into(), "turn-1".into())
}

#[test]
fn every_record_round_trips_through_its_schema() {
    let (tenant_id, session_id, turn_id) = ids();
    let attrs: HashMap<String, String> = [("tier".to_string(), "gold".to_string())].into();
    let cite = Citation { source: "faq.md".into(), location: "#refunds".into(), snippet: "30 days".into() };
    let usage = Usage { input_tokens: 900, output_tokens: 120, cached_input_tokens: 10, cost_usd_micros: 183 };
    let trig = GuardTrigger { check: "pii".into(), verdict: "mask".into(), detail: "email".into() };
    roundtrip(InboundTurn {
        tenant_id: tenant_id.clone(),
        session_id: session_id.clone(),
        turn_id: None,
        user_id: "user-1".into(),
        message_id: "m-1".into(),
        text: "Where is my order? ünïcödé ✓".into(),
        channel: "web".into(),
        locale: Some("de-DE".into()),
        sent_at_ms: 1_764_000_000_000,
        attributes: attrs.clone(),
    });
    roundtrip(AcceptedTurn {
        tenant_id: tenant_id.clone(),
        session_id: session_id.clone(),
        turn_id: turn_id.clone(),
        seq: 3,
        owner: SessionOwner::Human,
        attributes: attrs.clone(),
        ..Default::default()
    });
    roundtrip(GuardedTurn {
        tenant_id: tenant_id.clone(),
        turn_id: turn_id.clone(),
        action: TurnAction::Refuse,
        reply_text: Some("Sorry".into()),
        triggers: vec![trig.clone()],
        ..Default::default()
    });
    let msgs = vec![
        ChatMessage { role: Role::System, content: "You are helpful.".into() },
        ChatMessage { role: Role::User, content: "Hi".into() },
    ];
    roundtrip(AssembledPrompt {
        messages: msgs.clone(),
        citations: vec![cite.clone()],
        prompt_tokens: 42,
        ..Default::default()
    });
    roundtrip(RoutedPrompt { messages: msgs, tier: "capable".into(), variant: Some("b".into()), ..Default::default() });
    roundtrip(ReplyChunk {
        kind: ChunkKind::Final,
        usage: Some(usage.clone()),
        ttft_ms: Some(212),
        citations: vec![cite.clone()],
        finish_reason: Some("stop".into()),
        text: "Anything else?".into(),
        generated: true,
        ..Default::default()
    });
    roundtrip(CheckedReplyChunk { verdict: Verdict::Redact, triggers: vec![trig], ..Default::default() });
    roundtrip(CheckedReplyChunk {
        action: TurnAction::Desk,
        kind: ChunkKind::Final,
        status: Some("agent_joined".into()),
        ..Default::default()
    });
    roundtrip(OutboundReply {
        kind: OutboundKind::Status,
        status: Some("typing".into()),
        usage: Some(usage),
        ..Default::default()
    });
    roundtrip(HandoffRequest { kind: HandoffKind::UserMessage, reason: "user_asked".into(), ..Default::default() });
    roundtrip(HandoffRequest {
        reason: "sentiment".into(),
        evidence: "frustration 0.81, 0.74 on turns 4, 5".into(),
        priority: "high".into(),
        tags: vec!["handoff:sentiment".into(), "tier:gold".into()],
        frustration: Some(0.74),
        ..Default::default()
    });
    roundtrip(TicketEvent { kind: TicketEventKind::AgentJoined, ticket_id: "T-1".into(), ..Default::default() });
    roundtrip(DeskEvent {
        kind: DeskEventKind::AgentMessage,
        ticket_id: "T-1".into(),
        event_id: "zendesk:35437".into(),
        text: "Hi, I'm Sam from support.".into(),
        ..Default::default()
    });
    roundtrip(DeadLetter {
        original_key: Some(b"user-1:conv-1".to_vec()),
        original_value: Some(vec![0, 0, 0, 0, 1, 255, 254]),
        original_headers: [("h".to_string(), "v".to_string())].into(),
        ..Default::default()
    });
    roundtrip(GuardAudit {
        stage: "guard-in".into(),
        check: "pii".into(),
        verdict: "mask".into(),
        detail: "email [EMAIL_1]".into(),
        at_ms: 1_700_000_000_000,
        ..Default::default()
    });
}

#[test]
fn an_older_writer_without_defaulted_fields_is_read_with_defaults() {
    // A minimal client schema of the inbound turn: only the required fields. A producer using it must be
    // readable by today's consumer, which is what BACKWARD compatibility promises.
    let old = Schema::parse_str(
        r#"{"type":"record","name":"InboundTurn","namespace":"io.turnpike.v1","fields":[
            {"name":"tenant_id","type":"string"},{"name":"session_id","type":"string"},
            {"name":"user_id","type":"string"},{"name":"message_id","type":"string"},
            {"name":"text","type":"string"},{"name":"sent_at_ms","type":"long"}]}"#,
    )
    .unwrap();
    let mut rec = apache_avro::types::Record::new(&old).unwrap();
    rec.put("tenant_id", "acme");
    rec.put("session_id", "s");
    rec.put("user_id", "u");
    rec.put("message_id", "m");
    rec.put("text", "hello");
    rec.put("sent_at_ms", 5i64);
    let bytes = GenericDatumWriter::builder(&old).build().unwrap().write_value_to_vec(rec).unwrap();
    let new = Schema::parse_str(InboundTurn::SCHEMA).unwrap();
    let value =
        GenericDatumReader::builder(&old).reader_schema(&new).build().unwrap().read_value(&mut &bytes[..]).unwrap();
    let turn: InboundTurn = from_value(&value).unwrap();
    assert_eq!(turn.text, "hello");
    assert_eq!(turn.channel, "kafka");
    assert_eq!(turn.turn_id, None);
    assert!(turn.attributes.is_empty());
}

#[test]
fn a_handoff_request_from_before_trigger_evidence_reads_with_the_defaults() {
    // The schema as it was before evidence, priority, tags and frustration: records already on the topic
    // (and producers not yet upgraded) must still decode, with the defaults the helpdesk side relies on.
    let old = Schema::parse_str(
        r#"{"type":"record","name":"HandoffRequest","namespace":"io.turnpike.v1","fields":[
            {"name":"tenant_id","type":"string"},{"name":"session_id","type":"string"},
            {"name":"turn_id","type":"string"},{"name":"seq","type":"long"},{"name":"user_id","type":"string"},
            {"name":"kind","type":{"type":"enum","name":"HandoffKind","symbols":["REQUEST","USER_MESSAGE"],
             "default":"REQUEST"},"default":"REQUEST"},
            {"name":"reason","type":"string"},{"name":"source_stage","type":"string"},
            {"name":"text","type":"string","default":""},
            {"name":"summary","type":["null","string"],"default":null},
            {"name":"requested_at_ms","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#,
    )
    .unwrap();
    let mut rec = apache_avro::types::Record::new(&old).unwrap();
    for (field, value) in [("tenant_id", "acme"), ("session_id", "s"), ("turn_id", "t"), ("user_id", "u")] {
        rec.put(field, value);
    }
    rec.put("seq", 4i64);
    rec.put("kind", apache_avro::types::Value::Enum(0, "REQUEST".into()));
    rec.put("reason", "user_asked");
    rec.put("source_stage", "guard-in");
    rec.put("text", "a human please");
    rec.put("summary", apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)));
    rec.put("requested_at_ms", apache_avro::types::Value::TimestampMillis(9));
    let bytes = GenericDatumWriter::builder(&old).build().unwrap().write_value_to_vec(rec).unwrap();
    let new = Schema::parse_str(HandoffRequest::SCHEMA).unwrap();
    let value =
        GenericDatumReader::builder(&old).reader_schema(&new).build().unwrap().read_value(&mut &bytes[..]).unwrap();
    let r: HandoffRequest = from_value(&value).unwrap();
    assert_eq!((r.reason.as_str(), r.seq, r.text.as_str()), ("user_asked", 4, "a human please"));
    assert_eq!(r.evidence, "");
    assert_eq!(r.priority, "normal");
    assert_eq!(r.priority, HandoffRequest::default().priority);
    assert!(r.tags.is_empty());
    assert_eq!(r.frustration, None);
}
