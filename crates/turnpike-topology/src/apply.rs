//! Creates the topology's topics with the Kafka admin client. Idempotent: existing topics are left as they
//! are, but a partition-count mismatch is reported, because it would break per-session order silently.

use crate::model::{Topic, Topology};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// What [`apply`] did to each topic.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Topics created by this call.
    pub created: Vec<String>,
    /// Topics that already existed with the declared partition count.
    pub existing: Vec<String>,
}

/// Why [`apply`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Kafka could not be reached or refused the request.
    #[error("kafka admin request failed: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A topic could not be created.
    #[error("cannot create topic {topic}: {code}")]
    Create { topic: String, code: RDKafkaErrorCode },
    /// A topic exists with another partition count than declared.
    #[error("topic {topic} exists with {actual} partitions but the topology declares {declared}; Kafka cannot shrink a topic and growing it re-maps keys, so fix it deliberately")]
    PartitionMismatch { topic: String, declared: i32, actual: i32 },
    /// A topic's retention is invalid (validate first).
    #[error("topic {topic}: {message}")]
    Invalid { topic: String, message: String },
}

/// Creates every missing topic, then checks partition counts of all of them. `kafka` holds the client
/// properties (bootstrap servers, login: `Endpoints::kafka_properties`).
pub async fn apply(
    topology: &Topology,
    kafka: &[(String, String)],
    timeout: Duration,
) -> Result<ApplyReport, ApplyError> {
    let config: ClientConfig = kafka.iter().cloned().collect();
    let admin: AdminClient<DefaultClientContext> = config.create()?;

    let mut new_topics = Vec::new();
    let mut configs: Vec<Vec<(&str, String)>> = Vec::new();
    for topic in &topology.topics {
        configs.push(topic_configs(topic)?);
    }
    for (topic, cfg) in topology.topics.iter().zip(&configs) {
        let mut nt = NewTopic::new(&topic.name, topic.partitions, TopicReplication::Fixed(topic.replication));
        for (k, v) in cfg {
            nt = nt.set(k, v);
        }
        new_topics.push(nt);
    }
    let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let mut report = ApplyReport::default();
    for result in admin.create_topics(new_topics.iter(), &opts).await? {
        match result {
            Ok(name) => report.created.push(name),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => report.existing.push(name),
            Err((topic, code)) => return Err(ApplyError::Create { topic, code }),
        }
    }
    // Metadata polling blocks (librdkafka calls); keep it off the async workers.
    let (topo, cfg) = (topology.clone(), config.clone());
    tokio::task::spawn_blocking(move || check_partitions(&topo, &cfg, timeout)).await.map_err(|e| {
        ApplyError::Invalid { topic: String::new(), message: format!("metadata check panicked: {e}") }
    })??;
    for name in &report.created {
        tracing::info!(topic = %name, "Created topic.");
    }
    Ok(report)
}

fn topic_configs(topic: &Topic) -> Result<Vec<(&'static str, String)>, ApplyError> {
    let mut cfg = Vec::new();
    if topic.compact {
        cfg.push(("cleanup.policy", "compact".to_string()));
    } else {
        cfg.push(("cleanup.policy", "delete".to_string()));
        if let Some(ms) =
            topic.retention_ms().map_err(|message| ApplyError::Invalid { topic: topic.name.clone(), message })?
        {
            cfg.push(("retention.ms", ms.to_string()));
        }
    }
    Ok(cfg)
}

/// Reads cluster metadata and compares partition counts with the declaration. Topics created a moment ago
/// may be missing from the metadata for a little while, so a missing topic is looked up again until
/// `timeout`; a topic present with another count fails at once.
pub fn check_partitions(topology: &Topology, config: &ClientConfig, timeout: Duration) -> Result<(), ApplyError> {
    let consumer: BaseConsumer = config.create()?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let metadata = consumer.fetch_metadata(None, timeout)?;
        let mut missing = None;
        for topic in &topology.topics {
            let actual = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic.name)
                .map(|t| t.partitions().len() as i32)
                .unwrap_or(0);
            if actual == 0 {
                missing = Some(topic);
            } else if actual != topic.partitions {
                return Err(ApplyError::PartitionMismatch {
                    topic: topic.name.clone(),
                    declared: topic.partitions,
                    actual,
                });
            }
        }
        match missing {
            None => return Ok(()),
            Some(t) if std::time::Instant::now() >= deadline => {
                return Err(ApplyError::PartitionMismatch { topic: t.name.clone(), declared: t.partitions, actual: 0 })
            }
            Some(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Deletes every topic of `topology` that exists (missing ones are not an error). For throw-away
/// topologies — tests and load tests on prefixed copies — so a long test run does not leave the broker
/// holding thousands of partitions; never pointed at a production topology by Turnpike itself.
pub async fn delete_topics(
    topology: &Topology,
    kafka: &[(String, String)],
    timeout: Duration,
) -> Result<(), ApplyError> {
    let admin: AdminClient<DefaultClientContext> = kafka.iter().cloned().collect::<ClientConfig>().create()?;
    let names: Vec<&str> = topology.topics.iter().map(|t| t.name.as_str()).collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    for result in admin.delete_topics(&names, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => return Err(ApplyError::Create { topic, code }),
        }
    }
    Ok(())
}
