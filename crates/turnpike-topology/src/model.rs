//! The shape of a topology file. Unknown keys are rejected so a typo never silently falls back to a default.

use serde::Deserialize;
use std::time::Duration;

/// The stages of the chat pipeline: the eight of a turn, and desk (helpdesk events back into the
/// conversation). A topology must declare each exactly once.
pub const STAGE_NAMES: [&str; 9] =
    ["ingest", "guard-in", "assemble", "route", "generate", "guard-out", "deliver", "handoff", "desk"];

/// Stages at the edge of the pipeline: they read a sink topic and deliver to clients outside Kafka, so they
/// have no output topics. Optional (a pipeline without them is complete), but like every stage each has its
/// own consumer group and dead-letter topic.
pub const EDGE_STAGE_NAMES: [&str; 1] = ["gateway"];

/// The `&'static` name of a pipeline or edge stage.
pub fn known_stage(name: &str) -> Option<&'static str> {
    STAGE_NAMES.iter().chain(EDGE_STAGE_NAMES.iter()).find(|n| **n == name).copied()
}

/// A whole topology file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Format version of the file; this build understands version 1.
    pub version: u32,
    /// Name of the deployment, for logs.
    pub name: String,
    /// Every topic.
    #[serde(rename = "topic", default)]
    pub topics: Vec<Topic>,
    /// Every stage.
    #[serde(rename = "stage", default)]
    pub stages: Vec<Stage>,
}

/// What a topic is for; decides which chain rules apply to it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Produced by clients; the start of the chain.
    Source,
    /// Produced and consumed by stages.
    Internal,
    /// Produced by stages and read by clients; the end of the chain.
    Sink,
    /// A stage's dead-letter topic.
    Dlq,
}

/// One Kafka topic.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// Kafka topic name.
    pub name: String,
    /// Role in the chain.
    pub role: Role,
    /// Avro schema of the record value: the file `schemas/<schema>.avsc`.
    pub schema: String,
    /// Partition count. Equal along the chain so keys keep their partition index at every hop.
    pub partitions: i32,
    /// Retention such as `7d`, `12h`, `30m` or `forever`. Mutually exclusive with `compact = true`.
    #[serde(default)]
    pub retention: Option<String>,
    /// Log compaction instead of time retention.
    #[serde(default)]
    pub compact: bool,
    /// Replication factor; 1 on the local single-node stack, 3 in production.
    #[serde(default = "default_replication")]
    pub replication: i32,
}

fn default_replication() -> i32 {
    1
}

/// One stage: a consumer group reading one topic and producing to others.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// One of [`STAGE_NAMES`] or [`EDGE_STAGE_NAMES`].
    pub name: String,
    /// Topic it consumes.
    pub input: String,
    /// Topics it may produce to.
    pub outputs: Vec<String>,
    /// Its dead-letter topic.
    pub dlq: String,
    /// Kafka consumer group id.
    pub group: String,
    /// Exactly-once consume-transform-produce with Kafka transactions: the stage's output records and its
    /// input offsets commit together, so a consumer reading its outputs `read_committed` sees each record
    /// once, whatever crashes. For the stages whose duplicates a customer would see.
    #[serde(default)]
    pub exactly_once: bool,
}

impl Topology {
    /// The topic with this name.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// A copy with every topic name and consumer group prefixed by `prefix` and a dot. Lets several
    /// pipelines (tests, staging next to production) share a cluster without seeing each other's records.
    pub fn prefixed(&self, prefix: &str) -> Topology {
        let p = |name: &str| format!("{prefix}.{name}");
        let mut t = self.clone();
        for topic in &mut t.topics {
            topic.name = p(&topic.name);
        }
        for stage in &mut t.stages {
            stage.input = p(&stage.input);
            stage.outputs = stage.outputs.iter().map(|o| p(o)).collect();
            stage.dlq = p(&stage.dlq);
            stage.group = p(&stage.group);
        }
        t
    }

    /// The topic with this name after [`Topology::prefixed`] (or without prefix when `prefix` is empty).
    pub fn topic_named(&self, base: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == base || t.name.ends_with(&format!(".{base}")))
    }

    /// The stage with this name.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

impl Topic {
    /// Schema registry subject of the record value (TopicNameStrategy, as Confluent clients use by default).
    pub fn value_subject(&self) -> String {
        format!("{}-value", self.name)
    }

    /// `retention.ms` for Kafka: `None` when compacted or unset, `Some(-1)` for `forever`.
    pub fn retention_ms(&self) -> Result<Option<i64>, String> {
        match self.retention.as_deref() {
            None => Ok(None),
            Some("forever") => Ok(Some(-1)),
            Some(text) => parse_duration(text).map(|d| Some(d.as_millis() as i64)),
        }
    }
}

/// Parses `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let unit = unit.trim();
    let n: u64 = num.parse().map_err(|_| format!("`{text}` is not a duration such as 7d, 12h or 30m"))?;
    let per_unit: u64 = match unit {
        "ms" if n <= i64::MAX as u64 => return Ok(Duration::from_millis(n)),
        "ms" => return Err(format!("`{text}` is too long a duration")),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}` has unknown unit `{unit}` (use ms, s, m, h or d)")),
    };
    // Checked: `99999999999999999999d` overflowed (a panic in debug builds, a wrong retention in release;
    // found by the `topology_file` fuzz target). Kafka takes milliseconds as an i64.
    n.checked_mul(per_unit)
        .filter(|secs| secs.checked_mul(1000).is_some_and(|ms| ms <= i64::MAX as u64))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    /// Regression (fuzz target `topology_file`): a retention too long for Kafka is an error, not an overflow.
    #[test]
    fn a_duration_too_long_for_kafka_is_refused() {
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 7 * 86_400);
        assert!(parse_duration("99999999999999999999d").is_err(), "not even a u64");
        assert!(parse_duration("999999999999999999d").is_err());
        assert!(parse_duration("18446744073709551615ms").is_err());
        assert_eq!(parse_duration("9223372036854775807ms").unwrap().as_millis(), i64::MAX as u128);
    }
}
