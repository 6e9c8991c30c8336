//! A terminal chat against a running pipeline: each line typed becomes an inbound turn; the reply's chunks
//! are printed as they arrive on the outbound topic.

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use turnpike_core::Endpoints;
use turnpike_schemas::{Codec, InboundTurn, OutboundKind, OutboundReply};

pub async fn chat(
    topology: &Path,
    schemas: &Path,
    prefix: Option<&str>,
    ep: &Endpoints,
    tenant: &str,
    user: &str,
) -> anyhow::Result<()> {
    let topo = crate::admin::load_valid(topology, schemas, prefix)?;
    let inbound = topo.topics.iter().find(|t| t.role == turnpike_topology::Role::Source).context("no source topic")?;
    let outbound = topo.topic_named("turnpike.replies.outbound").context("no outbound topic")?;
    let codec = Codec::for_endpoints(ep, Duration::from_secs(5))?;
    let producer: FutureProducer = ep
        .kafka_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()?;
    let consumer: StreamConsumer = ep
        .kafka_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .set("group.id", format!("turnpike-chat-{}", uuid::Uuid::new_v4().simple()))
        // deliver writes in transactions: only committed replies, each once.
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..outbound.partitions {
        tpl.add_partition_offset(&outbound.name, p, Offset::End)?;
    }
    consumer.assign(&tpl)?;
    let session_id = format!("{user}:{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    println!("Turnpike chat — tenant {tenant}, session {session_id}. Type a message; Ctrl-D quits.");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        print!("\nyou> ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next_line().await? else { break };
        if line.trim().is_empty() {
            continue;
        }
        let turn = InboundTurn {
            tenant_id: tenant.into(),
            session_id: session_id.clone(),
            user_id: user.into(),
            message_id: uuid::Uuid::new_v4().to_string(),
            text: line,
            channel: "terminal".into(),
            sent_at_ms: turnpike_runner::now_ms(),
            ..Default::default()
        };
        let payload = codec.encode(&inbound.name, &turn).await?;
        producer
            .send(FutureRecord::to(&inbound.name).key(&session_id).payload(&payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
        print!("bot> ");
        std::io::stdout().flush()?;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(90), consumer.recv())
                .await
                .context("no reply within 90 s")??;
            if msg.key() != Some(session_id.as_bytes()) {
                continue;
            }
            let Some(bytes) = msg.payload() else { continue };
            let reply: OutboundReply = codec.decode(bytes).await?;
            match reply.kind {
                OutboundKind::Delta => print!("{}", reply.text),
                OutboundKind::Status => println!("[{}]", reply.status.unwrap_or_default()),
                OutboundKind::Final => {
                    println!("{}", reply.text);
                    if let Some(u) = reply.usage {
                        println!(
                            "     ({} in / {} out tokens, ${:.6})",
                            u.input_tokens,
                            u.output_tokens,
                            u.cost_usd_micros as f64 / 1e6
                        );
                    }
                    break;
                }
            }
            std::io::stdout().flush()?;
        }
    }
    Ok(())
}
