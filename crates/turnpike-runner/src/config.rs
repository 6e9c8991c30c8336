//! Runner configuration, derived from the topology for one stage. Kafka client settings that carry the
//! delivery guarantees are fixed here, not left to defaults.

use rdkafka::config::ClientConfig;
use std::collections::HashMap;
use std::time::Duration;
use turnpike_core::Endpoints;
use turnpike_topology::Topology;

/// Everything the runner needs to run one stage.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Stage name (metrics label, client id, dead-letter header).
    pub stage: &'static str,
    /// Topic consumed.
    pub input_topic: String,
    /// Output topic per record schema name.
    pub outputs: HashMap<&'static str, String>,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Consumer group.
    pub group_id: String,
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// SASL login to the brokers (its Debug form hides the password).
    pub kafka_login: Option<turnpike_core::KafkaLogin>,
    /// Schema registry base URL.
    pub registry_url: String,
    /// Schema registry login (its Debug form hides the password).
    pub registry_login: Option<turnpike_core::BasicLogin>,
    /// Messages received but not finished per partition before the partition is paused.
    pub max_in_flight_per_partition: usize,
    /// How long a revoke or shutdown waits for in-flight work before giving up on it (it is then
    /// reprocessed by the next owner). Must stay below the session timeout.
    pub drain_timeout: Duration,
    /// Consumer group session timeout.
    pub session_timeout: Duration,
    /// First back-off after a retryable failure; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest back-off.
    pub retry_max: Duration,
    /// Dead letters allowed per tenant per minute: past it a tenant's poison is counted apart, and when
    /// `dlq_tenants_to_stop` tenants are past it the stage stops (a bad deploy must not dead-letter
    /// everything; one tenant's garbage must not stop the others). See `dlq_cap`.
    pub dlq_max_per_minute: u32,
    /// Tenants past `dlq_max_per_minute` in one minute that stop the stage (1 for a single-tenant deployment).
    pub dlq_tenants_to_stop: usize,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id gets its
    /// partitions back at once instead of after a session timeout.
    pub instance_id: Option<String>,
    /// librdkafka settings applied last, for both clients (tuning only; guarantees are not overridable).
    pub kafka_overrides: Vec<(String, String)>,
    /// Kafka transactions around outputs and input offsets (the topology's `exactly_once`).
    pub exactly_once: bool,
    /// This process's part of the `transactional.id` when no `instance_id` is set (unique per process).
    pub process_id: String,
}

/// Why a configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("stage `{0}` is not declared in the topology")]
    UnknownStage(String),
    #[error("topic `{0}` is not declared in the topology")]
    UnknownTopic(String),
    #[error("topic `{topic}` names schema `{schema}`, which this build does not have")]
    UnknownSchema { topic: String, schema: String },
    #[error("drain timeout {drain:?} must be below the session timeout {session:?}, or a slow drain gets the consumer evicted mid-drain")]
    DrainTooLong { drain: Duration, session: Duration },
    #[error("`{0}` cannot be overridden: the runner's delivery guarantees depend on it")]
    Protected(String),
}

/// Settings the runner's guarantees rest on.
const PROTECTED: [&str; 8] = [
    "transactional.id",
    "transaction.timeout.ms",
    "enable.auto.offset.store",
    "enable.idempotence",
    "partitioner",
    "group.id",
    "isolation.level",
    "enable.auto.commit",
];

impl RunnerConfig {
    /// The configuration of `stage` in `topology`, with defaults for the tuning knobs.
    pub fn from_topology(topology: &Topology, stage: &str, endpoints: &Endpoints) -> Result<Self, ConfigError> {
        let s = topology.stage(stage).ok_or_else(|| ConfigError::UnknownStage(stage.to_string()))?;
        let name = turnpike_topology::known_stage(stage).ok_or_else(|| ConfigError::UnknownStage(stage.to_string()))?;
        let mut outputs = HashMap::new();
        for out in &s.outputs {
            let topic = topology.topic(out).ok_or_else(|| ConfigError::UnknownTopic(out.clone()))?;
            let schema = turnpike_schemas::ALL_SCHEMAS
                .iter()
                .map(|(n, _)| *n)
                .find(|n| *n == topic.schema)
                .ok_or_else(|| ConfigError::UnknownSchema { topic: out.clone(), schema: topic.schema.clone() })?;
            outputs.insert(schema, out.clone());
        }
        Ok(RunnerConfig {
            stage: name,
            input_topic: s.input.clone(),
            outputs,
            dlq_topic: s.dlq.clone(),
            group_id: s.group.clone(),
            bootstrap: endpoints.kafka_bootstrap.clone(),
            kafka_login: endpoints.kafka_login.clone(),
            registry_url: endpoints.schema_registry_url.clone(),
            registry_login: endpoints.registry_login.clone(),
            max_in_flight_per_partition: 512,
            drain_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(30),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            dlq_max_per_minute: 600,
            // A single-tenant deployment sets 1, or a bad deploy would never stop its stages.
            dlq_tenants_to_stop: std::env::var("TURNPIKE_DLQ_TENANTS_TO_STOP")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
            instance_id: None,
            kafka_overrides: Vec::new(),
            exactly_once: s.exactly_once,
            process_id: process_id(),
        })
    }

    /// Cross-field checks, run before anything connects.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.drain_timeout >= self.session_timeout {
            return Err(ConfigError::DrainTooLong { drain: self.drain_timeout, session: self.session_timeout });
        }
        if let Some((k, _)) = self.kafka_overrides.iter().find(|(k, _)| PROTECTED.contains(&k.as_str())) {
            return Err(ConfigError::Protected(k.clone()));
        }
        Ok(())
    }

    /// The producer's `transactional.id` in exactly-once mode: group and instance id (or process id).
    pub fn transactional_id(&self) -> String {
        format!("{}.{}", self.group_id, self.instance_id.as_deref().unwrap_or(&self.process_id))
    }

    /// Where the brokers are and how to log in: what every client of the runner starts from.
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c.extend(self.kafka_login.iter().flat_map(|l| l.properties()));
        c
    }

    /// At-least-once consumer: offsets are stored by the runner only after processing, and committed
    /// automatically from that store (and synchronously on revoke and shutdown).
    pub(crate) fn consumer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        c.set("group.id", &self.group_id)
            .set("client.id", format!("turnpike-{}", self.stage))
            // In exactly-once mode offsets go with the transaction, never through the consumer.
            .set("enable.auto.commit", (!self.exactly_once).to_string())
            .set("auto.commit.interval.ms", "1000")
            // Records of aborted transactions are never processed (and open ones wait): an input written
            // transactionally counts only once committed. Costs nothing on topics written without them.
            .set("isolation.level", "read_committed")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", self.session_timeout.as_millis().to_string())
            .set("heartbeat.interval.ms", "3000")
            .set("max.poll.interval.ms", "300000")
            .set("fetch.wait.max.ms", "50")
            .set("queued.max.messages.kbytes", "16384")
            .set("statistics.interval.ms", "5000");
        if let Some(id) = &self.instance_id {
            c.set("group.instance.id", id);
        }
        for (k, v) in &self.kafka_overrides {
            c.set(k, v);
        }
        c
    }

    /// Idempotent producer with Java's partitioner, so a key lands on the same partition whoever produces it.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        c.set("client.id", format!("turnpike-{}", self.stage))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            // No linger: a turn crosses eight produce hops before its first chunk reaches a client, and
            // under load batches form anyway while earlier requests are in flight. Measured with
            // turnpike-loadtest at 58 turns/s: first chunk p50 21.5 ms with 1 ms, 10.4 ms with 0; at full
            // load 277 vs 297-306 turns/s.
            .set("linger.ms", "0")
            // One request in flight per broker: idle, a record still leaves at once; busy, what is produced
            // while a request is out waits for its response and leaves as one request (batching that
            // costs no latency when there is nothing to batch). turnpike-loadtest --rate 0, alternating:
            // 878-898 turns/s with 1, 821-836 with librdkafka's 5; at 58 turns/s first chunk p50 10.3-13.4
            // vs 12.5-12.7 ms, p99 17.9-36.0 vs 21.8-22.0 ms.
            .set("max.in.flight.requests.per.connection", "1")
            // Uncompressed: records are a few hundred bytes and batches small, so lz4 saved little while the
            // broker had to decompress every batch to validate it (uncompressed v2 batches skip that).
            // turnpike-loadtest --rate 0 with the mock apart, alternating: 779-784 turns/s without, 658-665
            // with lz4; Kafka CPU per turn 0.61-0.74 vs 0.76-0.87 ms. Where bandwidth costs (cross-zone
            // traffic), set it back with `turnpike stage ... --kafka-set compression.type=lz4`.
            .set("compression.type", "none")
            .set("message.timeout.ms", "30000");
        if self.exactly_once {
            // Stable per instance, so a restarted instance fences its predecessor and aborts its open
            // transaction at once; without an instance id, a crashed process's open transaction holds
            // read_committed readers of its output partitions until the transaction timeout.
            c.set("transactional.id", self.transactional_id()).set("transaction.timeout.ms", "60000");
        }
        for (k, v) in &self.kafka_overrides {
            c.set(k, v);
        }
        c
    }
}

/// An id unique to this process among the stage's instances: process id and start time.
fn process_id() -> String {
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("p{}-{}", std::process::id(), started.as_micros())
}
