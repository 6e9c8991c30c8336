//! The contract between a stage and the runner. A stage sees decoded input records and emits typed output
//! records; it never touches Kafka. Everything else (offsets, ordering, retries, dead letters, shutdown)
//! is the runner's job, so every stage inherits the same guarantees.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use turnpike_core::{Classify, ErrorClass};
use turnpike_schemas::{Codec, Record};

/// A pipeline stage: one input record type, outputs emitted through an [`Emitter`].
pub trait Stage: Send + Sync + 'static {
    /// The record type of the input topic.
    type In: Record + Clone;

    /// Handles one input record. Emitted records are produced as they are emitted (so a streaming stage's
    /// first chunk leaves before its last is made); the input's offset is stored only after this returns
    /// `Ok` *and* Kafka acknowledged every emitted record. An `Err` is handled by its class: retryable →
    /// the same input is processed again after a back-off (emitted records may then be emitted twice, so
    /// downstream stages must be idempotent); poison → dead-lettered; fatal → the process exits.
    fn process(&self, input: Self::In, out: &mut Emitter) -> impl Future<Output = Result<(), StageError>> + Send;

    /// Called once before consuming starts (prepare statements, warm caches).
    fn on_start(&self) -> impl Future<Output = Result<(), StageError>> + Send {
        async { Ok(()) }
    }

    /// Called about once a second while running (flush batches, refresh configuration).
    fn on_tick(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Called once after the last input was processed at shutdown.
    fn on_close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A failed `process`, with the class that tells the runner what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    class: ErrorClass,
    code: &'static str,
    message: String,
    /// A poison input that is the sender's fault and was diagnosed as such (see [`StageError::rejected`]).
    rejected: bool,
}

impl StageError {
    /// A temporary failure: retry the same input later.
    pub fn retryable(code: &'static str, message: impl Into<String>) -> Self {
        StageError { class: ErrorClass::Retryable, code, message: message.into(), rejected: false }
    }
    /// The input can never be processed: dead-letter it.
    pub fn poison(code: &'static str, message: impl Into<String>) -> Self {
        StageError { class: ErrorClass::Poison, code, message: message.into(), rejected: false }
    }
    /// Client input that validation refused (empty text, oversized, bad ids): dead-lettered like poison, but
    /// not counted toward the dead-letter rate cap. The cap exists to stop a stage whose *code* poisons
    /// everything; counting rejects too would let one client sending garbage stop the stage for every tenant.
    pub fn rejected(code: &'static str, message: impl Into<String>) -> Self {
        StageError { class: ErrorClass::Poison, code, message: message.into(), rejected: true }
    }
    /// Whether this is a [`StageError::rejected`] input.
    pub fn is_rejected(&self) -> bool {
        self.rejected
    }
    /// The process cannot go on.
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        StageError { class: ErrorClass::Fatal, code, message: message.into(), rejected: false }
    }
    /// Wraps any classified error, keeping its class and code.
    pub fn from_classified<E: Classify + std::fmt::Display>(e: E) -> Self {
        StageError { class: e.class(), code: e.code(), message: e.to_string(), rejected: false }
    }
}

impl Classify for StageError {
    fn class(&self) -> ErrorClass {
        self.class
    }
    fn code(&self) -> &'static str {
        self.code
    }
}

/// Where a stage's records go: schema name → topic, from the topology.
#[derive(Clone)]
pub(crate) struct OutputRoutes {
    pub producer: FutureProducer,
    pub codec: Codec,
    pub topics: Arc<HashMap<&'static str, String>>,
    pub stage: &'static str,
}

/// Produces a stage's output records for one input, keyed by the input's key.
pub struct Emitter {
    routes: OutputRoutes,
    key: Vec<u8>,
    source: Source,
    pending: Vec<(String, DeliveryFuture)>,
    /// This stage's span of the turn's trace: its `traceparent` goes on every emitted record.
    trace: crate::trace::TraceContext,
    /// The turn id of the first record emitted (ingest gives an inbound turn its id).
    emitted_turn: Option<String>,
}

/// Where the input being processed was read from. Stable across redeliveries of the same record, so a stage
/// can tell "the same record again" (a redelivery after a crash) from "an equal record again" (a client
/// retry): see ingest's duplicate detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Emitter {
    pub(crate) fn new(routes: OutputRoutes, key: Vec<u8>, source: Source, trace: crate::trace::TraceContext) -> Self {
        Emitter { routes, key, source, pending: Vec::new(), trace, emitted_turn: None }
    }

    /// The turn id of the first record emitted, if any.
    pub(crate) fn emitted_turn(&mut self) -> Option<String> {
        self.emitted_turn.take()
    }

    /// The input record's position.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The stage's name.
    pub fn stage(&self) -> &'static str {
        self.routes.stage
    }

    /// Encodes and produces `record` to the stage's output topic for its type, under the input's key (the
    /// session id travels unchanged along the chain). Returns once the record is queued in the producer;
    /// the runner awaits the acknowledgement before the input's offset is stored.
    pub async fn emit<R: Record>(&mut self, record: &R) -> Result<(), StageError> {
        let topic = self.routes.topics.get(R::SCHEMA_NAME).ok_or_else(|| {
            StageError::fatal(
                "undeclared_output",
                format!(
                    "stage {} emitted a {} record but the topology declares no output topic with that schema",
                    self.routes.stage,
                    R::SCHEMA_NAME
                ),
            )
        })?;
        let payload = self.routes.codec.encode(topic, record).await.map_err(StageError::from_classified)?;
        let traceparent = self.trace.header();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "turnpike-stage", value: Some(self.routes.stage) })
            .insert(Header { key: crate::trace::TRACEPARENT, value: Some(traceparent.as_str()) });
        if self.emitted_turn.is_none() {
            self.emitted_turn = Some(record.turn_id().to_string());
        }
        let delivery = send_with_backpressure(&self.routes.producer, topic, &self.key, &payload, headers).await?;
        metrics::counter!("turnpike_stage_messages_out_total", "stage" => self.routes.stage, "topic" => topic.clone())
            .increment(1);
        self.pending.push((topic.clone(), delivery));
        Ok(())
    }

    /// Number of records emitted so far for this input.
    pub fn emitted(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn take_pending(&mut self) -> Vec<(String, DeliveryFuture)> {
        std::mem::take(&mut self.pending)
    }
}

/// Queues a record in the producer; a full queue is back-pressure, not an error: wait and try again.
pub(crate) async fn send_with_backpressure(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: OwnedHeaders,
) -> Result<DeliveryFuture, StageError> {
    let mut headers = Some(headers);
    loop {
        let record = FutureRecord::to(topic).key(key).payload(payload).headers(headers.take().unwrap_or_default());
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                headers = record.headers;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err((e, _)) => {
                return Err(StageError::retryable("produce", format!("cannot queue record for {topic}: {e}")))
            }
        }
    }
}
