//! The rules a topology must satisfy before anything is created or started.
//!
//! Validation collects every problem instead of stopping at the first, so one run tells the operator all that
//! is wrong with the file.

use crate::model::{parse_duration, Role, Topology, EDGE_STAGE_NAMES, STAGE_NAMES};
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::path::Path;

/// One thing wrong with a topology, located by the topic or stage it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `topic <name>`, `stage <name>` or `topology`.
    pub subject: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

/// A topology that broke at least one rule.
#[derive(Debug, thiserror::Error)]
#[error("topology is invalid ({} problem(s)):\n{}", .problems.len(), render(.problems))]
pub struct ValidationError {
    /// Every problem found.
    pub problems: Vec<Problem>,
}

fn render(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

const SUPPORTED_VERSION: u32 = 1;
const DLQ_SCHEMA: &str = "dead_letter";

impl Topology {
    /// Checks every rule; `schemas_dir` is where `<schema>.avsc` files live.
    pub fn validate(&self, schemas_dir: &Path) -> Result<(), ValidationError> {
        let mut v = Validator { problems: Vec::new() };
        v.check(self, schemas_dir);
        if v.problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { problems: v.problems })
        }
    }
}

struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { subject: subject.into(), message: message.into() });
    }

    fn check(&mut self, t: &Topology, schemas_dir: &Path) {
        if t.version != SUPPORTED_VERSION {
            self.problem("topology", format!("version {} is not supported (expected {SUPPORTED_VERSION})", t.version));
        }
        self.check_topics(t, schemas_dir);
        self.check_stages(t);
        self.check_chain(t);
    }

    fn check_topics(&mut self, t: &Topology, schemas_dir: &Path) {
        let mut seen = BTreeSet::new();
        let mut checked_schemas = BTreeSet::new();
        for topic in &t.topics {
            let subject = format!("topic {}", topic.name);
            if !seen.insert(topic.name.as_str()) {
                self.problem(&subject, "declared more than once");
            }
            if let Err(e) = check_topic_name(&topic.name) {
                self.problem(&subject, e);
            }
            if topic.partitions < 1 {
                self.problem(&subject, format!("partitions must be at least 1, got {}", topic.partitions));
            }
            if topic.replication < 1 {
                self.problem(&subject, format!("replication must be at least 1, got {}", topic.replication));
            }
            match (&topic.retention, topic.compact) {
                (Some(_), true) => self.problem(&subject, "set either `retention` or `compact = true`, not both"),
                (Some(r), false) if r != "forever" => {
                    if let Err(e) = parse_duration(r) {
                        self.problem(&subject, format!("retention {e}"));
                    }
                }
                _ => {}
            }
            if topic.role == Role::Dlq && topic.schema != DLQ_SCHEMA {
                self.problem(&subject, format!("a dead-letter topic must carry the `{DLQ_SCHEMA}` schema"));
            }
            if checked_schemas.insert(topic.schema.as_str()) {
                if let Err(e) = check_schema(schemas_dir, &topic.schema) {
                    self.problem(&subject, e);
                }
            }
        }
    }

    fn check_stages(&mut self, t: &Topology) {
        let mut groups = BTreeSet::new();
        let mut names = BTreeSet::new();
        for stage in &t.stages {
            let subject = format!("stage {}", stage.name);
            let edge = EDGE_STAGE_NAMES.contains(&stage.name.as_str());
            if !edge && !STAGE_NAMES.contains(&stage.name.as_str()) {
                let known: Vec<&str> = STAGE_NAMES.iter().chain(EDGE_STAGE_NAMES.iter()).copied().collect();
                self.problem(&subject, format!("unknown stage (known: {})", known.join(", ")));
            }
            if !names.insert(stage.name.as_str()) {
                self.problem(&subject, "declared more than once");
            }
            if !groups.insert(stage.group.as_str()) {
                self.problem(&subject, format!("consumer group `{}` is shared with another stage", stage.group));
            }
            match t.topic(&stage.input) {
                None => self.problem(&subject, format!("input topic `{}` is not declared", stage.input)),
                // An edge stage delivers what the pipeline produced: it reads a sink topic and writes none.
                Some(topic) if edge && topic.role != Role::Sink => self.problem(
                    &subject,
                    format!("input topic `{}` is a {:?} topic; edge stages read sink topics", stage.input, topic.role),
                ),
                Some(_) if edge => {}
                Some(topic) if matches!(topic.role, Role::Sink | Role::Dlq) => self.problem(
                    &subject,
                    format!(
                        "input topic `{}` is a {:?} topic; stages read source or internal topics",
                        stage.input, topic.role
                    ),
                ),
                Some(_) => {}
            }
            if edge && !stage.outputs.is_empty() {
                self.problem(&subject, "is an edge stage: it delivers outside Kafka and declares no output topic");
            } else if !edge && stage.outputs.is_empty() {
                self.problem(&subject, "has no output topic");
            }
            for out in &stage.outputs {
                match t.topic(out) {
                    None => self.problem(&subject, format!("output topic `{out}` is not declared")),
                    Some(topic) if matches!(topic.role, Role::Source | Role::Dlq) => self.problem(
                        &subject,
                        format!(
                            "output topic `{out}` is a {:?} topic; stages write internal or sink topics",
                            topic.role
                        ),
                    ),
                    Some(_) => {}
                }
                if *out == stage.input {
                    self.problem(&subject, format!("output `{out}` is also its input (a loop)"));
                }
            }
            match t.topic(&stage.dlq) {
                None => self.problem(&subject, format!("dead-letter topic `{}` is not declared", stage.dlq)),
                Some(topic) if topic.role != Role::Dlq => {
                    self.problem(&subject, format!("dead-letter topic `{}` must have role = \"dlq\"", stage.dlq))
                }
                Some(_) => {}
            }
        }
        for required in STAGE_NAMES {
            if !names.contains(required) {
                self.problem(format!("stage {required}"), "is missing: every pipeline stage must be declared");
            }
        }
        let dlqs: BTreeSet<&str> = t.stages.iter().map(|s| s.dlq.as_str()).collect();
        if dlqs.len() < t.stages.len() {
            self.problem("topology", "stages share a dead-letter topic; give each stage its own");
        }
    }

    /// The chain: partitions equal along every edge, nothing dangling, everything reachable from a source.
    fn check_chain(&mut self, t: &Topology) {
        let consumed: BTreeSet<&str> = t.stages.iter().map(|s| s.input.as_str()).collect();
        let produced: BTreeSet<&str> = t.stages.iter().flat_map(|s| s.outputs.iter().map(String::as_str)).collect();
        let sources: Vec<&str> = t.topics.iter().filter(|x| x.role == Role::Source).map(|x| x.name.as_str()).collect();
        if sources.is_empty() {
            self.problem("topology", "no topic has role = \"source\": nothing feeds the chain");
        }
        for topic in &t.topics {
            let subject = format!("topic {}", topic.name);
            let name = topic.name.as_str();
            match topic.role {
                Role::Source if !consumed.contains(name) => self.problem(&subject, "is a source but no stage reads it"),
                Role::Internal if !produced.contains(name) => {
                    self.problem(&subject, "is internal but no stage writes it (the chain is broken before it)")
                }
                Role::Internal if !consumed.contains(name) => {
                    self.problem(&subject, "is internal but no stage reads it (the chain is broken after it)")
                }
                Role::Sink if !produced.contains(name) => self.problem(&subject, "is a sink but no stage writes it"),
                _ => {}
            }
        }
        for stage in &t.stages {
            let Some(input) = t.topic(&stage.input) else {
                continue;
            };
            for out in &stage.outputs {
                if let Some(o) = t.topic(out) {
                    if o.partitions != input.partitions {
                        self.problem(
                            format!("stage {}", stage.name),
                            format!(
                                "input `{}` has {} partitions but output `{}` has {}: per-session order needs equal counts along the chain",
                                input.name, input.partitions, o.name, o.partitions
                            ),
                        );
                    }
                }
            }
        }
        // Breadth-first from the sources over stage edges.
        let mut reached: BTreeSet<&str> = BTreeSet::new();
        let mut queue: VecDeque<&str> = sources.iter().copied().collect();
        let mut seen_topics: BTreeSet<&str> = queue.iter().copied().collect();
        while let Some(topic) = queue.pop_front() {
            for stage in t.stages.iter().filter(|s| s.input == topic) {
                if reached.insert(stage.name.as_str()) {
                    for out in &stage.outputs {
                        if seen_topics.insert(out.as_str()) {
                            queue.push_back(out.as_str());
                        }
                    }
                }
            }
        }
        for stage in &t.stages {
            if !reached.contains(stage.name.as_str()) {
                self.problem(format!("stage {}", stage.name), "is not reachable from any source topic");
            }
        }
    }
}

/// The schema file exists and parses as Avro.
fn check_schema(schemas_dir: &Path, schema: &str) -> Result<(), String> {
    let path = schemas_dir.join(format!("{schema}.avsc"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("schema `{schema}` not found at {}: {e}", path.display()))?;
    apache_avro::Schema::parse_str(&text).map_err(|e| format!("schema {} is not valid Avro: {e}", path.display()))?;
    Ok(())
}

/// Kafka's own rule: 1-249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return Err("topic names must be 1-249 characters and not `.` or `..`".into());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("character `{c}` is not allowed in a topic name (use a-z, A-Z, 0-9, `.`, `_`, `-`)"));
    }
    Ok(())
}
