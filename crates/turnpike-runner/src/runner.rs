//! The stage runner: the one place that turns a [`Stage`] into a Kafka consumer-producer.
//!
//! Guarantees, for every stage:
//! - **At least once.** An input's offset is stored only after `process` succeeded, every record it emitted
//!   was acknowledged by Kafka (idempotent producer, `acks=all`), or it was dead-lettered and the dead
//!   letter was acknowledged. Only the contiguous completed prefix of a partition is stored.
//! - **Order per session, concurrency across sessions.** Records with the same key (session id) are
//!   processed one at a time in offset order; different sessions of a partition run concurrently, up to
//!   `max_in_flight_per_partition` records, beyond which the partition is paused (never the poll loop).
//! - **Failures by class.** Retryable: back off exponentially and retry the same record, blocking only its
//!   session. Poison: dead-letter with the original bytes and headers naming the cause, then move on,
//!   at most `dlq_max_per_minute` per tenant; the stage stops when `dlq_tenants_to_stop` tenants pass it in
//!   one minute (inputs a stage *rejected* after validating them do not count; see [`crate::dlq_cap`]).
//!   Fatal: drain, commit and return an error (the binary exits non-zero).
//! - **Clean hand-over.** On revoke and on shutdown, in-flight work is drained up to `drain_timeout`,
//!   offsets are committed synchronously, and only then are partitions released.
//! - **Exactly once, where declared.** A stage marked `exactly_once` in the topology produces in Kafka
//!   transactions that carry its input offsets (see [`crate::txn`]): `read_committed` consumers of its
//!   outputs see each record once, whatever crashes. Its records run one at a time per partition. An
//!   aborted transaction restarts the runner in-process from the committed offsets.

use crate::config::{ConfigError, RunnerConfig};
use crate::consumer::{self, Dispatch, PollEnd, RunnerConsumer, RunnerContext, Shared};
use crate::dlq_cap::{Cap, DlqCap};
use crate::stage::{send_with_backpressure, Emitter, OutputRoutes, Source, Stage, StageError};
use crate::trace;
use crate::txn::{self, Txn, TxnError};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::Message;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::OwnedRwLockReadGuard;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use turnpike_core::{Classify, ErrorClass};
use turnpike_schemas::{Codec, DeadLetter, Record};

/// Why a runner stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry client: {0}")]
    Codec(#[from] turnpike_schemas::CodecError),
    #[error("stage {stage} failed to start: {error}")]
    Start { stage: &'static str, error: StageError },
    #[error("stage {stage} stopped on a fatal error ({code}): {message}")]
    Fatal { stage: &'static str, code: &'static str, message: String },
    #[error("runner thread failed: {0}")]
    Thread(String),
    /// A transaction was aborted: this run ends and the runner starts again from the committed offsets.
    #[error("stage {stage}: {reason}")]
    Restart { stage: &'static str, reason: String },
}

/// Per-stage processing state shared by all session tasks.
struct Worker<S: Stage> {
    stage: Arc<S>,
    cfg: RunnerConfig,
    routes: OutputRoutes,
    consumer: Arc<RunnerConsumer>,
    shared: Arc<Shared>,
    dlq_cap: Mutex<DlqCap>,
    fatal: OnceLock<StageError>,
    stop: CancellationToken,
    /// Exactly-once mode: the transaction the outputs and offsets go into.
    txn: Option<Arc<Txn>>,
}

/// One Kafka producer for the stages of one process (`turnpike run`): their records leave in common
/// batches, so the broker serves a fraction of the produce requests that one producer per stage sends
/// (measured with `turnpike-loadtest --rate 0`, see loadtest/README.md). The guarantees are the runner's
/// own: it is built from a stage's [`RunnerConfig`] (idempotent, `acks=all`, `murmur2_random`), and one
/// idempotent producer keeps the order of each key on each topic just as a producer per stage does.
#[derive(Clone)]
pub struct SharedProducer(FutureProducer);

impl SharedProducer {
    /// A producer with `cfg`'s settings (its Kafka overrides included), for every stage of the process.
    pub fn new(cfg: &RunnerConfig) -> Result<Self, RunnerError> {
        cfg.check()?;
        let mut config = cfg.producer_config();
        config.set("client.id", "turnpike-shared");
        Ok(SharedProducer(config.create()?))
    }
}

impl std::fmt::Debug for SharedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedProducer")
    }
}

/// Runs `stage` until `shutdown` is cancelled or a fatal error occurs, with a producer of its own.
pub async fn run<S: Stage>(stage: S, cfg: RunnerConfig, shutdown: CancellationToken) -> Result<(), RunnerError> {
    run_with(stage, cfg, None, shutdown).await
}

/// [`run`], producing through `shared` when given (stages of one process), else through a producer of its
/// own. An exactly-once stage always has a transactional producer of its own.
pub async fn run_with<S: Stage>(
    stage: S,
    cfg: RunnerConfig,
    shared: Option<SharedProducer>,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    cfg.check()?;
    stage.on_start().await.map_err(|error| RunnerError::Start { stage: cfg.stage, error })?;
    let stage = Arc::new(stage);
    let mut recent_restarts = std::collections::VecDeque::new();
    let result = loop {
        match run_once(stage.clone(), &cfg, shared.clone(), &shutdown).await {
            // Restarting in a tight loop (e.g. two live instances configured with the same instance id,
            // fencing each other) helps nobody: stop and say so.
            Err(RunnerError::Restart { reason, .. })
                if !shutdown.is_cancelled() && restart_storm(&mut recent_restarts) =>
            {
                break Err(RunnerError::Fatal {
                    stage: cfg.stage,
                    code: "restart_storm",
                    message: format!(
                        "{MAX_RESTARTS} restarts within {} s; the last because {reason}",
                        RESTART_WINDOW.as_secs()
                    ),
                });
            }
            Err(RunnerError::Restart { reason, .. }) if !shutdown.is_cancelled() => {
                metrics::counter!("turnpike_runner_restarts_total", "stage" => cfg.stage).increment(1);
                tracing::warn!(stage = cfg.stage, reason, "Restarting from the committed offsets.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(RunnerError::Restart { .. }) => break Ok(()),
            other => break other,
        }
    };
    stage.on_close().await;
    tracing::info!(stage = cfg.stage, "Stage stopped.");
    result
}

/// At most this many in-process restarts within [`RESTART_WINDOW`] before the runner gives up.
const MAX_RESTARTS: usize = 10;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Records a restart now; true when it is one too many for the window.
fn restart_storm(recent: &mut std::collections::VecDeque<Instant>) -> bool {
    let now = Instant::now();
    while recent.front().is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW) {
        recent.pop_front();
    }
    recent.push_back(now);
    recent.len() > MAX_RESTARTS
}

/// One life of the consumer and producer, until shutdown, a fatal error or an aborted transaction.
async fn run_once<S: Stage>(
    stage: Arc<S>,
    cfg: &RunnerConfig,
    shared: Option<SharedProducer>,
    shutdown: &CancellationToken,
) -> Result<(), RunnerError> {
    let codec = Codec::new(&cfg.registry_url, cfg.registry_login.as_ref(), Duration::from_secs(5))?;
    // A fatal error in any task (or an aborted transaction) stops this run through this token, without
    // touching `shutdown`.
    let stop = shutdown.child_token();
    let shares_producer = shared.is_some() && !cfg.exactly_once;
    let (producer, txn): (FutureProducer, _) = if cfg.exactly_once {
        let producer: FutureProducer = cfg.producer_config().create()?;
        let txn_stop = stop.clone();
        let txn = tokio::task::spawn_blocking(move || Txn::start(producer, txn_stop))
            .await
            .map_err(|e| RunnerError::Thread(e.to_string()))?
            .map_err(|e| RunnerError::Fatal { stage: cfg.stage, code: "txn_init", message: e.to_string() })?;
        let txn = Arc::new(txn);
        (txn.producer.clone(), Some(txn))
    } else {
        match shared {
            Some(SharedProducer(p)) => (p, None),
            None => (cfg.producer_config().create()?, None),
        }
    };
    let shared = Arc::new(Shared {
        state: Default::default(),
        progress: Default::default(),
        topic: cfg.input_topic.clone(),
        stage: cfg.stage,
        max_in_flight: cfg.max_in_flight_per_partition,
        drain_timeout: cfg.drain_timeout,
        txn: txn.clone(),
    });
    let consumer: RunnerConsumer =
        cfg.consumer_config().create_with_context(RunnerContext { shared: shared.clone() })?;
    rdkafka::consumer::Consumer::subscribe(&consumer, &[cfg.input_topic.as_str()])?;
    let consumer = Arc::new(consumer);
    let routes =
        OutputRoutes { producer: producer.clone(), codec, topics: Arc::new(cfg.outputs.clone()), stage: cfg.stage };
    let worker = Arc::new(Worker {
        stage,
        cfg: cfg.clone(),
        routes,
        consumer: consumer.clone(),
        shared: shared.clone(),
        dlq_cap: Mutex::new(DlqCap::new(cfg.dlq_max_per_minute, cfg.dlq_tenants_to_stop, Instant::now())),
        fatal: OnceLock::new(),
        stop: stop.clone(),
        txn: txn.clone(),
    });
    tracing::info!(stage = cfg.stage, input = %cfg.input_topic, group = %cfg.group_id, exactly_once = cfg.exactly_once, "Stage started.");

    let ticker = {
        let (worker, stop) = (worker.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => worker.stage.on_tick().await,
                }
            }
        })
    };
    // The committer stops only after the poll thread ended: until then records still complete and need
    // committing (the poll thread's own last commit, at release, calls `Txn::commit` directly).
    let commit_stop = CancellationToken::new();
    let committer =
        txn.clone().map(|t| tokio::spawn(txn::committer(t, consumer.clone(), shared.clone(), commit_stop.clone())));

    let handle = tokio::runtime::Handle::current();
    let poll = {
        let (worker, stop) = (worker.clone(), stop.clone());
        let producer = producer.clone();
        std::thread::Builder::new()
            .name(format!("{}-poll", cfg.stage))
            .spawn(move || {
                let spawn_worker = worker.clone();
                let producer_fatal =
                    move || producer.client().fatal_error().map(|(code, m)| format!("producer: {code:?}: {m}"));
                consumer::poll_loop(worker.consumer.clone(), worker.shared.clone(), stop, producer_fatal, move |d| {
                    handle.spawn(session_task(spawn_worker.clone(), d));
                })
            })
            .map_err(|e| RunnerError::Thread(e.to_string()))?
    };
    let end = tokio::task::spawn_blocking(move || poll.join())
        .await
        .map_err(|e| RunnerError::Thread(e.to_string()))?
        .map_err(|_| RunnerError::Thread("poll thread panicked".into()))?;
    stop.cancel();
    commit_stop.cancel();
    if let Some(c) = committer {
        let _ = c.await;
    }
    let _ = ticker.await;
    if let PollEnd::Fatal(reason) = end {
        // A producer shared with the process's other stages cannot be replaced from here: stop, and let the
        // process (and its supervisor) start again.
        if shares_producer && producer.client().fatal_error().is_some() {
            return Err(RunnerError::Fatal { stage: cfg.stage, code: "kafka_fatal", message: reason });
        }
        // The new consumer of the next run takes over the same static membership; this one must not linger
        // in the group. A consumer with a fatal error leaves without a rebalance, but bound the wait anyway.
        let closing = std::thread::spawn(move || consumer::close(&consumer));
        let waited = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !closing.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let _ = waited.await;
        return Err(RunnerError::Restart { stage: cfg.stage, reason });
    }
    if let Some(e) = worker.fatal.get() {
        return Err(RunnerError::Fatal { stage: cfg.stage, code: e.code(), message: e.to_string() });
    }
    match txn.as_ref().and_then(|t| t.outcome()) {
        Some(TxnError::Fatal(message)) => Err(RunnerError::Fatal { stage: cfg.stage, code: "txn_failed", message }),
        Some(TxnError::Aborted(reason)) => {
            // Leave the group now, so the next consumer of this process is not kept waiting for this one.
            let _ = tokio::task::spawn_blocking(move || consumer::close(&consumer)).await;
            Err(RunnerError::Restart { stage: cfg.stage, reason })
        }
        None => {
            if txn.is_none() {
                let flush = producer.clone();
                let _ = tokio::task::spawn_blocking(move || flush.flush(Duration::from_secs(10))).await;
            }
            Ok(())
        }
    }
}

/// Processes a session's messages one after another, in offset order, storing offsets as they complete
/// (recording them for the transaction in exactly-once mode).
async fn session_task<S: Stage>(w: Arc<Worker<S>>, d: Dispatch) {
    let Dispatch { partition, epoch, key, mut message, cancel } = d;
    loop {
        let offset = message.offset();
        let outcome = tokio::select! {
            // Checked first: a task cancelled while it waited for the transaction gate must not start.
            biased;
            // Revoked or shut down past the drain deadline: the next owner reprocesses this message.
            _ = cancel.cancelled() => return,
            r = w.handle(&message) => r,
        };
        let permit = match outcome {
            Ok(permit) => permit,
            Err(e) if e.code() == TXN_BROKEN => return,
            Err(e) => {
                tracing::error!(stage = w.cfg.stage, code = e.code(), error = %e, "Fatal error; stopping the stage.");
                let _ = w.fatal.set(e);
                w.stop.cancel();
                return;
            }
        };
        let next = {
            let mut st = w.shared.lock();
            let Some(a) = st.partitions.get_mut(&partition).filter(|a| a.epoch == epoch) else {
                if let (Some(txn), Some(_)) = (&w.txn, &permit) {
                    // Its outputs are in the open transaction, its offset can no longer be: abort.
                    txn.break_with("a record finished after its partition was let go");
                }
                return;
            };
            let next = a.tracker.complete(&key, offset);
            // Stored under the lock so two sessions finishing together can never store out of order.
            if let Some(commit) = a.tracker.take_commit() {
                match &w.txn {
                    Some(_) => a.txn_next = Some(commit),
                    None => consumer::store(&w.consumer, &w.cfg.input_topic, partition, commit),
                }
            }
            if a.paused && a.tracker.in_flight() <= w.cfg.max_in_flight_per_partition / 2 {
                consumer::set_paused(&w.consumer, &w.cfg.input_topic, partition, false);
                a.paused = false;
            }
            let total: usize = st.partitions.values().map(|a| a.tracker.in_flight()).sum();
            metrics::gauge!("turnpike_stage_in_flight", "stage" => w.cfg.stage).set(total as f64);
            next
        };
        if let Some(txn) = &w.txn {
            txn.recorded.notify_one();
        }
        // The offset is recorded: the transaction may now commit this record's outputs.
        drop(permit);
        w.shared.progress.notify_all();
        match next {
            Some(m) => message = m,
            None => return,
        }
    }
}

/// Waits for Kafka's acknowledgement of every record emitted for one input.
async fn deliveries(pending: Vec<(String, rdkafka::producer::DeliveryFuture)>) -> Result<(), StageError> {
    for (topic, delivery) in pending {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(StageError::retryable("delivery", format!("{topic}: {e}"))),
            Err(_) => return Err(StageError::retryable("delivery", format!("{topic}: delivery cancelled"))),
        }
    }
    Ok(())
}

/// The code of the error that ends a task whose transaction was broken (the runner restarts).
const TXN_BROKEN: &str = "txn_broken";

impl<S: Stage> Worker<S> {
    /// Processes one message to completion: success, or dead-lettered. Only a fatal error comes back. In
    /// exactly-once mode, returns the gate permit held since before the first emit: the caller records the
    /// offset, then drops it.
    async fn handle(&self, message: &OwnedMessage) -> Result<Option<OwnedRwLockReadGuard<()>>, StageError> {
        let stage = self.cfg.stage;
        metrics::counter!("turnpike_stage_messages_in_total", "stage" => stage).increment(1);
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            let permit = match &self.txn {
                Some(txn) => Some(txn.gate.clone().read_owned().await),
                None => None,
            };
            let (mut ids, mut emitted) = (None, 0);
            let result = self.try_once(message, &mut ids, &mut emitted).await;
            let Err(e) = result else {
                metrics::histogram!("turnpike_stage_processing_seconds", "stage" => stage)
                    .record(started.elapsed().as_secs_f64());
                return Ok(permit);
            };
            metrics::counter!("turnpike_stage_errors_total", "stage" => stage, "error_type" => e.class().as_str(), "error_code" => e.code())
                .increment(1);
            if let (Some(txn), true) = (&self.txn, emitted > 0 && e.class() != ErrorClass::Fatal) {
                // Part of this record's outputs are in the open transaction: trying again would repeat them.
                txn.break_with("a record failed after emitting");
                return Err(StageError::retryable(TXN_BROKEN, e.to_string()));
            }
            match e.class() {
                ErrorClass::Retryable => {
                    drop(permit);
                    let backoff = self.cfg.retry_min.saturating_mul(1u32 << attempt.min(16)).min(self.cfg.retry_max);
                    tracing::warn!(stage, code = e.code(), error = %e, attempt, backoff_ms = backoff.as_millis() as u64,
                        partition = message.partition(), offset = message.offset(), "Retryable error; backing off.");
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(backoff).await;
                }
                ErrorClass::Poison => {
                    self.dead_letter(message, &e, ids).await?;
                    return Ok(permit);
                }
                ErrorClass::Fatal => return Err(e),
            }
        }
    }

    async fn try_once(
        &self,
        message: &OwnedMessage,
        ids: &mut Option<(String, String, String)>,
        emitted: &mut usize,
    ) -> Result<(), StageError> {
        let Some(key) = message.key() else {
            return Err(StageError::poison(
                "missing_key",
                "record has no key; every Turnpike topic is keyed by session id",
            ));
        };
        let Some(payload) = message.payload() else {
            return Err(StageError::poison("empty_payload", "record has no value"));
        };
        let input: S::In = self.routes.codec.decode(payload).await.map_err(StageError::from_classified)?;
        *ids = Some((input.tenant_id().to_string(), input.session_id().to_string(), input.turn_id().to_string()));
        if input.session_id().as_bytes() != key {
            return Err(StageError::poison(
                "key_mismatch",
                "record key differs from its session_id: the record would break per-session ordering",
            ));
        }
        let source =
            Source { topic: message.topic().to_string(), partition: message.partition(), offset: message.offset() };
        // The turn's trace goes on: the input's `traceparent` (or a new trace) and a span of this stage.
        let parent = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key.eq_ignore_ascii_case(trace::TRACEPARENT)))
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(trace::TraceContext::parse);
        let ctx = trace::TraceContext::child_of(parent.as_ref());
        let (tenant, mut turn_id) = (turnpike_core::tenant_label(input.tenant_id()), input.turn_id().to_string());
        let span =
            tracing::info_span!("turn", stage = self.cfg.stage, turn_id = %turn_id, trace_id = %ctx.trace_id_hex());
        let started = std::time::SystemTime::now();
        let mut out = Emitter::new(self.routes.clone(), key.to_vec(), source.clone(), ctx);
        let result = self.stage.process(input, &mut out).instrument(span.clone()).await;
        let pending = out.take_pending();
        *emitted = pending.len();
        if turn_id.is_empty() {
            turn_id = out.emitted_turn().unwrap_or_default();
        }
        let result = match result {
            Ok(()) => deliveries(pending).await,
            Err(e) => Err(e),
        };
        span.in_scope(|| match &result {
            Ok(()) => tracing::debug!(turn_id = %turn_id, emitted = *emitted, "Record processed."),
            Err(e) => tracing::debug!(turn_id = %turn_id, code = e.code(), "Record failed."),
        });
        if trace::enabled() {
            trace::record(trace::SpanRecord {
                ctx,
                parent: parent.map(|p| p.span_id),
                stage: self.cfg.stage,
                turn_id,
                tenant,
                topic: source.topic,
                partition: source.partition,
                offset: source.offset,
                start: started,
                end: std::time::SystemTime::now(),
                error: result.as_ref().err().map(|e| e.code()),
            });
        }
        result
    }

    /// Writes a dead letter and waits for its acknowledgement; retries until it is written (a dead letter
    /// that is lost would lose the message). Fails only when the dead-letter rate cap is exceeded.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        error: &StageError,
        ids: Option<(String, String, String)>,
    ) -> Result<(), StageError> {
        let stage = self.cfg.stage;
        if error.is_rejected() {
            metrics::counter!("turnpike_stage_rejected_total", "stage" => stage, "error_code" => error.code())
                .increment(1);
        } else {
            self.check_dlq_rate(ids.as_ref().map(|(tenant, _, _)| tenant.as_str()))?;
        }
        let mut original_headers = std::collections::HashMap::new();
        if let Some(h) = message.headers() {
            for header in h.iter() {
                if let Some(v) = header.value {
                    original_headers.insert(header.key.to_string(), String::from_utf8_lossy(v).into_owned());
                }
            }
        }
        let (tenant_id, session_id, turn_id) = ids.unwrap_or_else(|| {
            (
                String::new(),
                message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
                String::new(),
            )
        });
        let letter = DeadLetter {
            tenant_id,
            session_id,
            turn_id,
            stage: stage.to_string(),
            error_code: error.code().to_string(),
            error_class: error.class().as_str().to_string(),
            reason: error.to_string(),
            source_topic: message.topic().to_string(),
            source_partition: message.partition(),
            source_offset: message.offset(),
            original_key: message.key().map(<[u8]>::to_vec),
            original_value: message.payload().map(<[u8]>::to_vec),
            original_headers,
            failed_at_ms: now_ms(),
        };
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut attempt = 0u32;
        loop {
            match self.write_dead_letter(&letter, message.key().unwrap_or_default(), &partition, &offset).await {
                Ok(()) => break,
                Err(e) => {
                    let backoff = self.cfg.retry_min.saturating_mul(1u32 << attempt.min(16)).min(self.cfg.retry_max);
                    tracing::warn!(stage, error = %e, "Cannot write dead letter yet; retrying.");
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(backoff).await;
                }
            }
        }
        metrics::counter!("turnpike_stage_dead_letters_total", "stage" => stage, "error_code" => error.code())
            .increment(1);
        tracing::warn!(
            stage,
            code = error.code(),
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            "Message dead-lettered."
        );
        Ok(())
    }

    async fn write_dead_letter(
        &self,
        letter: &DeadLetter,
        key: &[u8],
        partition: &str,
        offset: &str,
    ) -> Result<(), String> {
        let payload = self.routes.codec.encode(&self.cfg.dlq_topic, letter).await.map_err(|e| e.to_string())?;
        let headers = OwnedHeaders::new()
            .insert(Header { key: "turnpike-dlq-stage", value: Some(self.cfg.stage) })
            .insert(Header { key: "turnpike-dlq-error-code", value: Some(letter.error_code.as_str()) })
            .insert(Header { key: "turnpike-dlq-error-class", value: Some(letter.error_class.as_str()) })
            .insert(Header { key: "turnpike-dlq-source-topic", value: Some(letter.source_topic.as_str()) })
            .insert(Header { key: "turnpike-dlq-source-partition", value: Some(partition) })
            .insert(Header { key: "turnpike-dlq-source-offset", value: Some(offset) });
        let delivery = send_with_backpressure(&self.routes.producer, &self.cfg.dlq_topic, key, &payload, headers)
            .await
            .map_err(|e| e.to_string())?;
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(e.to_string()),
            Err(_) => Err("delivery cancelled".into()),
        }
    }

    /// Counts a dead letter of `tenant` against the per-tenant cap; fails only when enough tenants are
    /// past it that the stage itself must be failing.
    fn check_dlq_rate(&self, tenant: Option<&str>) -> Result<(), StageError> {
        let stage = self.cfg.stage;
        let verdict = self.dlq_cap.lock().unwrap_or_else(|p| p.into_inner()).count(tenant, Instant::now());
        match verdict {
            Cap::Within => Ok(()),
            Cap::TenantOver { first } => {
                metrics::counter!("turnpike_stage_dead_letters_over_cap_total", "stage" => stage).increment(1);
                if first {
                    tracing::warn!(stage, tenant = tenant.unwrap_or("(unattributed)"), max = self.cfg.dlq_max_per_minute,
                        "A tenant is past the dead-letter cap; its poison is still dead-lettered, other tenants go on.");
                }
                Ok(())
            }
            Cap::Stop { tenants } => Err(StageError::fatal(
                "dlq_rate_exceeded",
                format!(
                    "{tenants} tenants past {} dead letters within a minute: stopping instead of dead-lettering everything",
                    self.cfg.dlq_max_per_minute
                ),
            )),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The record type check the compiler cannot do across the topology: a stage's input topic must carry the
/// stage's input schema.
pub fn check_input_schema<S: Stage>(topology: &turnpike_topology::Topology, cfg: &RunnerConfig) -> Result<(), String> {
    let topic =
        topology.topic(&cfg.input_topic).ok_or_else(|| format!("input topic {} not declared", cfg.input_topic))?;
    if topic.schema != <S::In as Record>::SCHEMA_NAME {
        return Err(format!(
            "stage {} reads {} records but topic {} carries {}",
            cfg.stage,
            <S::In as Record>::SCHEMA_NAME,
            topic.name,
            topic.schema
        ));
    }
    Ok(())
}
