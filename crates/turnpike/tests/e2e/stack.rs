//! The ground under Turnpike, tested against the real local stack (Kafka, schema registry, Cassandra,
//! Redis) started by `deploy/local/stack.sh start` and prepared by `turnpike setup`.
//!
//! These tests fail, never skip, when a service is missing: the message says how to start it.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use turnpike_core::{Classify, Endpoints, ErrorClass};
use turnpike_schemas::{Codec, InboundTurn, Record, RegistryClient, RegistryError};
use turnpike_store::{TranscriptRow, TranscriptStore};
use turnpike_topology::Topology;

use crate::common::{root, unique, HINT};

fn endpoints() -> Endpoints {
    Endpoints::from_env()
}

fn topology() -> Topology {
    let t = Topology::load(&root().join("topology/turnpike.toml")).unwrap();
    t.validate(&root().join("schemas")).unwrap();
    t
}

#[tokio::test]
async fn avro_record_round_trips_through_kafka_and_the_registry() {
    let ep = endpoints();
    let topo = topology();
    let topic = &topo.topic("turnpike.turns.inbound").unwrap().name;
    // Topics are created idempotently: a second apply creates nothing and finds every topic in place.
    turnpike_topology::apply::apply(&topo, &ep.kafka_properties(), Duration::from_secs(30)).await.expect(HINT);
    let again = turnpike_topology::apply::apply(&topo, &ep.kafka_properties(), Duration::from_secs(30)).await.unwrap();
    assert!(again.created.is_empty(), "second apply created {:?}", again.created);
    assert_eq!(again.existing.len(), topo.topics.len());

    let codec = Codec::for_endpoints(&ep, Duration::from_secs(5)).unwrap();
    let session_id = unique("user-7:conv");
    let turn = InboundTurn {
        tenant_id: "acme".into(),
        session_id: session_id.clone(),
        user_id: "user-7".into(),
        message_id: unique("m"),
        text: "Hello, where is order #1234? ✓".into(),
        channel: "kafka".into(),
        sent_at_ms: 1_764_000_000_123,
        attributes: [("tier".to_string(), "gold".to_string())].into(),
        ..Default::default()
    };
    let payload = codec.encode(topic, &turn).await.expect(HINT);
    assert_eq!(payload[0], 0, "Confluent magic byte");
    let id = u32::from_be_bytes(payload[1..5].try_into().unwrap());

    // The id in the header resolves in the registry to our schema.
    let registry = RegistryClient::for_endpoints(&ep, Duration::from_secs(5)).unwrap();
    let registered = registry.schema_by_id(id).await.unwrap();
    assert!(registered.contains("InboundTurn"), "{registered}");

    let producer: FutureProducer = ep
        .kafka_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let delivery = producer
        .send(FutureRecord::to(topic).key(&session_id).payload(&payload), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect(HINT);
    let (partition, offset) = (delivery.partition, delivery.offset);

    let consumer: BaseConsumer = ep
        .kafka_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .set("group.id", unique("it-roundtrip"))
        // deliver writes in transactions: only committed replies, each once.
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).unwrap();
    consumer.assign(&tpl).unwrap();
    let msg = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(500)) {
                return m.unwrap().detach();
            }
        }
        panic!("no record within 20 s");
    })
    .await
    .unwrap();
    assert_eq!(msg.key(), Some(session_id.as_bytes()));
    let decoded: InboundTurn = codec.decode(msg.payload().unwrap()).await.unwrap();
    assert_eq!(decoded, turn);
    assert_eq!(decoded.session_id(), session_id);
}

#[tokio::test]
async fn registry_outage_is_retryable_and_bad_bytes_are_poison() {
    // Nothing listens on port 9: every call is a transport failure, which must never dead-letter.
    let dead = Codec::new("http://127.0.0.1:9/apis/ccompat/v7", None, Duration::from_millis(500)).unwrap();
    let err = dead.decode::<InboundTurn>(&[0, 0, 0, 0, 1, 2, 3]).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    let err = dead.encode("turnpike.turns.inbound", &InboundTurn::default()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");

    let live = Codec::for_endpoints(&endpoints(), Duration::from_secs(5)).unwrap();
    let not_framed = live.decode::<InboundTurn>(b"{\"text\":\"json, not avro\"}").await.unwrap_err();
    assert_eq!((not_framed.class(), not_framed.code()), (ErrorClass::Poison, "bad_framing"));
    // A real id with a datum that does not match it.
    let good = live.encode("turnpike.turns.inbound", &InboundTurn::default()).await.expect(HINT);
    let mut truncated = good[..5].to_vec();
    truncated.push(0x80);
    let err = live.decode::<InboundTurn>(&truncated).await.unwrap_err();
    assert_eq!((err.class(), err.code()), (ErrorClass::Poison, "avro_decode"), "{err}");
}

#[tokio::test]
async fn a_record_from_an_older_client_schema_decodes_with_defaults() {
    // The codec reads its own schema's records straight into the type; a writer schema that differs (here
    // a client's minimal, older inbound turn) must still go through schema resolution and get defaults.
    let ep = endpoints();
    let client = RegistryClient::for_endpoints(&ep, Duration::from_secs(10)).unwrap();
    let old = r#"{"type":"record","name":"InboundTurn","namespace":"io.turnpike.v1","fields":[
        {"name":"tenant_id","type":"string"},{"name":"session_id","type":"string"},
        {"name":"user_id","type":"string"},{"name":"message_id","type":"string"},
        {"name":"text","type":"string"},{"name":"sent_at_ms","type":"long"}]}"#;
    let id = client.register(&unique("it-old-client"), old).await.expect(HINT);
    // Avro binary by hand: strings are a zigzag-varint length and the bytes; 5 as a long is zigzag 10.
    let mut payload = vec![0u8];
    payload.extend_from_slice(&id.to_be_bytes());
    for s in ["acme", "s", "u", "m", "hello"] {
        payload.push((s.len() * 2) as u8);
        payload.extend_from_slice(s.as_bytes());
    }
    payload.push(10);
    let codec = Codec::for_endpoints(&ep, Duration::from_secs(5)).unwrap();
    let turn: InboundTurn = codec.decode(&payload).await.unwrap();
    assert_eq!((turn.tenant_id.as_str(), turn.text.as_str(), turn.sent_at_ms), ("acme", "hello", 5));
    assert_eq!(turn.channel, "kafka", "the default of a field the old writer lacks");
    assert_eq!(turn.turn_id, None);
    // And a record of today's schema through the same codec: read straight into the type.
    let today = codec.encode("turnpike.turns.inbound", &turn).await.unwrap();
    assert_eq!(codec.decode::<InboundTurn>(&today).await.unwrap(), turn);
}

#[tokio::test]
async fn schemas_register_idempotently_with_backward_compatibility() {
    let ep = endpoints();
    let client = RegistryClient::for_endpoints(&ep, Duration::from_secs(10)).unwrap();
    let topo = topology();
    let pairs: Vec<(String, String)> = topo.topics.iter().map(|t| (t.name.clone(), t.schema.clone())).collect();
    let first = turnpike_schemas::register_all(&client, &pairs).await.expect(HINT);
    let second = turnpike_schemas::register_all(&client, &pairs).await.unwrap();
    assert_eq!(first, second, "registering the same schemas again must return the same ids");
    for t in &topo.topics {
        let id = client.latest_id(&t.value_subject()).await.unwrap_or_else(|e| panic!("{}: {e}", t.value_subject()));
        assert!(
            first.contains(&(t.value_subject(), id)),
            "{} is at schema id {id}, not the one registered",
            t.value_subject()
        );
    }

    // A new required field without a default breaks BACKWARD compatibility and must be refused.
    let subject = unique("it-compat");
    let v1 = r#"{"type":"record","name":"T","namespace":"io.turnpike.test","fields":[{"name":"a","type":"string"}]}"#;
    let v2_ok = r#"{"type":"record","name":"T","namespace":"io.turnpike.test","fields":[{"name":"a","type":"string"},{"name":"b","type":"string","default":""}]}"#;
    let v3_bad = r#"{"type":"record","name":"T","namespace":"io.turnpike.test","fields":[{"name":"a","type":"string"},{"name":"b","type":"string","default":""},{"name":"c","type":"int"}]}"#;
    client.set_compatibility(&subject, "BACKWARD").await.unwrap();
    client.register(&subject, v1).await.unwrap();
    client.register(&subject, v2_ok).await.unwrap();
    match client.register(&subject, v3_bad).await {
        Err(RegistryError::Incompatible { subject: s, .. }) => assert_eq!(s, subject),
        other => panic!("incompatible schema was not refused: {other:?}"),
    }
}

#[tokio::test]
async fn transcript_rows_are_written_idempotently_and_read_in_order() {
    let ep = endpoints();
    let session = Arc::new(turnpike_store::connect_cql(&ep).await.expect(HINT));
    let replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    turnpike_store::migrate(&session, &ep.keyspace, replication).await.unwrap();
    let second = turnpike_store::migrate(&session, &ep.keyspace, replication).await.unwrap();
    assert!(second.is_empty(), "second migrate applied {second:?}");

    let store = TranscriptStore::new(session, &ep.keyspace).await.unwrap();
    let session_id = unique("user-1:conv");
    let row = |seq: i64, role: &str, content: &str| TranscriptRow {
        tenant_id: "acme".into(),
        session_id: session_id.clone(),
        seq,
        role: role.into(),
        turn_id: format!("t{seq}"),
        content: content.into(),
        ..Default::default()
    };
    // Written out of order, one of them twice (a redelivery).
    for r in [row(2, "user", "second"), row(1, "assistant", "hi!"), row(1, "user", "hello"), row(2, "user", "second")] {
        store.append(&r).await.unwrap();
    }
    store.append(&row(2, "assistant", "an answer")).await.unwrap();
    let rows = store.read("acme", &session_id).await.unwrap();
    let got: Vec<(i64, &str, &str)> = rows.iter().map(|r| (r.seq, r.role.as_str(), r.content.as_str())).collect();
    assert_eq!(
        got,
        vec![(1, "assistant", "hi!"), (1, "user", "hello"), (2, "assistant", "an answer"), (2, "user", "second")]
    );
    // Another tenant with the same session id sees nothing: the tenant is part of the partition key.
    assert!(store.read("other-tenant", &session_id).await.unwrap().is_empty());
    assert_eq!(store.read_since("acme", &session_id, 2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn redis_key_round_trips_with_ttl() {
    let mut redis = turnpike_store::connect_redis(&endpoints().redis_url).await.expect(HINT);
    let key = unique("turnpike:it");
    let _: () = redis::cmd("SET").arg(&key).arg("value-✓").arg("EX").arg(60).query_async(&mut redis).await.unwrap();
    let got: String = redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(got, "value-✓");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis).await.unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    let deleted: i64 = redis::cmd("DEL").arg(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(deleted, 1);
}

#[test]
fn validate_command_rejects_a_broken_topology_with_a_clear_message() {
    let dir = std::env::temp_dir().join(unique("turnpike-topo"));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = std::fs::read_to_string(root().join("topology/turnpike.toml"))
        .unwrap()
        .replace("outputs = [\"turnpike.replies.outbound\"]", "outputs = [\"turnpike.replies.nowhere\"]");
    let file = dir.join("broken.toml");
    std::fs::write(&file, broken).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_turnpike"))
        .args(["topology", "validate", "--topology"])
        .arg(&file)
        .arg("--schemas")
        .arg(root().join("schemas"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("stage deliver: output topic `turnpike.replies.nowhere` is not declared"), "{stderr}");
    assert!(stderr.contains("topic turnpike.replies.outbound: is a sink but no stage writes it"), "{stderr}");

    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_turnpike"))
        .args(["topology", "validate", "--topology"])
        .arg(root().join("topology/turnpike.toml"))
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("is valid: 22 topics, 10 stages"));
}

/// Secure by default: the project's own stack authenticates every client. Kafka, Cassandra, Redis and the
/// schema registry accept our login and refuse a client without one or with a wrong password.
#[tokio::test]
async fn every_service_refuses_clients_that_do_not_log_in() {
    let ep = endpoints();
    let env_hint = "no credentials in the environment: `eval \"$(deploy/local/stack.sh env)\"`";

    // Kafka (SASL/PLAIN): a metadata request with each set of client properties.
    let login = ep.kafka_login.clone().expect(env_hint);
    let metadata = |props: Vec<(String, String)>| {
        tokio::task::spawn_blocking(move || {
            let client: BaseConsumer = props.into_iter().collect::<ClientConfig>().create().unwrap();
            client.fetch_metadata(None, Duration::from_secs(5)).map(|m| m.brokers().len()).map_err(|e| e.to_string())
        })
    };
    let anonymous = Endpoints { kafka_login: None, ..ep.clone() };
    let mut wrong = login.clone();
    wrong.password.push('x');
    let wrong_password = Endpoints { kafka_login: Some(wrong), ..ep.clone() };
    assert_eq!(metadata(ep.kafka_properties()).await.unwrap(), Ok(1), "{HINT}");
    assert!(metadata(anonymous.kafka_properties()).await.unwrap().is_err(), "Kafka answered a client without a login");
    let refused = metadata(wrong_password.kafka_properties()).await.unwrap();
    assert!(refused.is_err(), "Kafka answered a wrong password: {refused:?}");

    // Cassandra (PasswordAuthenticator).
    let (role, password) = ep.cql_credentials.clone().expect(env_hint);
    turnpike_store::connect_cql(&ep).await.expect(HINT);
    let anonymous = Endpoints { cql_credentials: None, ..ep.clone() };
    let anonymous =
        turnpike_store::connect_cql(&anonymous).await.expect_err("Cassandra let in a client without a login");
    assert!(anonymous.to_string().to_lowercase().contains("auth"), "{anonymous}");
    let wrong = Endpoints { cql_credentials: Some((role, format!("{password}x"))), ..ep.clone() };
    assert!(turnpike_store::connect_cql(&wrong).await.is_err(), "Cassandra let in a wrong password");
    let builtin = Endpoints { cql_credentials: Some(("cassandra".into(), "cassandra".into())), ..ep.clone() };
    assert!(
        turnpike_store::connect_cql(&builtin).await.is_err(),
        "the built-in superuser's well-known password still opens Cassandra"
    );

    // Redis (requirepass): the URL without its password gets NOAUTH for every command.
    let (_, host) = ep.redis_url.split_once('@').expect(env_hint);
    let client = redis::Client::open(format!("redis://{host}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.expect(HINT);
    let err =
        redis::cmd("PING").query_async::<String>(&mut conn).await.expect_err("Redis answered a client without a login");
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    let mut ours = turnpike_store::connect_redis(&ep.redis_url).await.expect(HINT);
    let pong: String = redis::cmd("PING").query_async(&mut ours).await.unwrap();
    assert_eq!(pong, "PONG");

    // Schema registry (HTTP basic): reading subjects, and a codec's first encode (it looks the schema up).
    let login = ep.registry_login.clone().expect(env_hint);
    let mut wrong = login.clone();
    wrong.password.push('x');
    let subjects = |login: Option<turnpike_core::BasicLogin>| {
        let url = ep.schema_registry_url.clone();
        async move {
            RegistryClient::new(&url, login.as_ref(), Duration::from_secs(5)).unwrap().subjects().await.map(|s| s.len())
        }
    };
    assert!(subjects(Some(login.clone())).await.expect(HINT) > 0, "our login reads the registered subjects");
    for (who, login) in [("a client without a login", None), ("a wrong password", Some(wrong))] {
        match subjects(login.clone()).await {
            Err(RegistryError::Refused { status: 401, .. }) => {}
            other => panic!("the registry answered {who} with {other:?}, not 401"),
        }
        let codec = Codec::new(&ep.schema_registry_url, login.as_ref(), Duration::from_secs(5)).unwrap();
        let err = codec
            .encode("turns.inbound", &crate::common::turn("acme", "u:c", "m1", "hi"))
            .await
            .expect_err("encoded without a valid login");
        assert_eq!(err.code(), "registry_access", "{who}: {err}");
    }
}
