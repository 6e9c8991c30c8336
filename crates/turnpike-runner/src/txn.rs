//! Exactly-once mode: Kafka transactions around the runner's consume-transform-produce, for a stage
//! declared `exactly_once` in the topology (deliver).
//!
//! Guarantee: a record the stage emitted becomes visible to `read_committed` consumers only together with
//! the input offsets of the records that emitted it, in one transaction. A crash, a lost broker or a failed
//! commit aborts the open transaction, and the inputs it covered are processed again from the last
//! committed offsets, so each output is seen once. Side effects outside Kafka (Redis, Cassandra) are not in
//! the transaction: they stay idempotent, as under at-least-once.
//!
//! How: a partition's records are processed one at a time in offset order (partitions concurrently): a
//! transaction can only commit a partition's offsets as one position, so a record finished past a pending
//! one would have its outputs committed without its offset. Each task holds a read permit of `gate`
//! from before its first emit until its input's offset is recorded; a commit takes the write permit, so a
//! transaction never holds part of one input's outputs. It sends the recorded offsets with the consumer's
//! group metadata (the broker fences a zombie of an older group generation), commits, and begins the next
//! transaction. The committer commits as soon as an offset is recorded and the previous commit is done,
//! so a record waits for at most the commit in progress plus its own. Revoke and shutdown commit
//! synchronously before the partitions go. A transaction that cannot commit (an abortable error, or work
//! abandoned mid-emit at a drain deadline) is aborted and the runner restarts with a new consumer and
//! producer: `init_transactions` under the same `transactional.id` fences any zombie, and the new consumer
//! resumes from the committed offsets.

use crate::consumer::{RunnerConsumer, Shared};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one transactional call may block before it is retried or given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Retriable failures of one call retried before the transaction is aborted.
const MAX_RETRIES: u32 = 20;

/// Why a transaction ended without committing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TxnError {
    /// Aborted: the runner restarts from the committed offsets.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The producer cannot go on (fenced by a newer instance with the same transactional id, or fatal).
    #[error("transactional producer failed: {0}")]
    Fatal(String),
}

struct State {
    /// A transaction is open (begun and neither committed nor aborted).
    open: bool,
    /// Why the open transaction must be aborted instead of committed.
    broken: Option<String>,
}

/// The transactional producer and the gate between emitting and committing.
pub(crate) struct Txn {
    pub producer: FutureProducer,
    pub gate: Arc<tokio::sync::RwLock<()>>,
    /// Signalled when a session task recorded an offset: there is something to commit.
    pub recorded: tokio::sync::Notify,
    state: Mutex<State>,
    /// Cancelled when the transaction is aborted, to stop this run of the runner (it then restarts).
    pub stop: CancellationToken,
    /// The first failure, which decides how this run of the runner ends.
    failure: Mutex<Option<TxnError>>,
}

enum Step {
    Retry,
    Abort,
    Fatal,
}

fn step(e: &KafkaError) -> Step {
    match e {
        KafkaError::Transaction(r) if r.is_fatal() => Step::Fatal,
        KafkaError::Transaction(r) if r.txn_requires_abort() => Step::Abort,
        KafkaError::Transaction(r) if r.is_retriable() => Step::Retry,
        _ => Step::Abort,
    }
}

impl Txn {
    /// Initialises transactions (fencing any earlier producer with the same id, aborting its open
    /// transaction) and begins the first. Blocking.
    pub fn start(producer: FutureProducer, stop: CancellationToken) -> Result<Txn, TxnError> {
        let mut attempt = 0;
        loop {
            match producer.init_transactions(CALL_TIMEOUT) {
                Ok(()) => break,
                Err(e) if matches!(step(&e), Step::Retry) && attempt < MAX_RETRIES && !stop.is_cancelled() => {
                    tracing::warn!(error = %e, attempt, "Cannot initialise transactions yet; retrying.");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(TxnError::Fatal(format!("init_transactions: {e}"))),
            }
        }
        producer.begin_transaction().map_err(|e| TxnError::Fatal(format!("begin_transaction: {e}")))?;
        Ok(Txn {
            producer,
            gate: Arc::new(tokio::sync::RwLock::new(())),
            recorded: tokio::sync::Notify::new(),
            state: Mutex::new(State { open: true, broken: None }),
            stop,
            failure: Mutex::new(None),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the open transaction for abort (its outputs cannot be matched with offsets any more) and stops
    /// this run of the runner.
    pub fn break_with(&self, why: &str) {
        let mut st = self.state();
        if st.broken.is_none() {
            tracing::warn!(reason = why, "Transaction will be aborted; restarting from the committed offsets.");
            st.broken = Some(why.to_string());
        }
        drop(st);
        self.stop.cancel();
    }

    /// Whether the open transaction is to be aborted (this run of the runner is ending).
    pub fn is_broken(&self) -> bool {
        self.state().broken.is_some()
    }

    /// Records the first failure and stops this run of the runner.
    fn fail(&self, e: TxnError) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(e);
        }
        drop(f);
        self.stop.cancel();
    }

    /// How this run of the runner ends: `None` when no transaction failed; a broken transaction that was
    /// aborted without another failure ends as [`TxnError::Aborted`].
    pub fn outcome(&self) -> Option<TxnError> {
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner()).take();
        failure.or_else(|| self.state().broken.clone().map(TxnError::Aborted))
    }

    /// Commits the open transaction with the offsets recorded since the last commit and begins the next;
    /// aborts it instead when it was broken. Blocking: call from the poll thread or `spawn_blocking`.
    pub fn commit(&self, consumer: &RunnerConsumer, shared: &Shared) -> Result<(), TxnError> {
        // A broken transaction is aborted at once: abandoned work may still hold the gate.
        let broken = self.state().broken.clone();
        if let Some(why) = broken {
            self.abort();
            return Err(TxnError::Aborted(why));
        }
        // No session task is between its first emit and its offset while this is held.
        let _gate = self.gate.blocking_write();
        let broken = self.state().broken.clone();
        if let Some(why) = broken {
            self.abort();
            return Err(TxnError::Aborted(why));
        }
        let mut tpl = TopicPartitionList::new();
        {
            let mut st = shared.lock();
            for (p, a) in st.partitions.iter_mut() {
                if let Some(next) = a.txn_next.take() {
                    let _ = tpl.add_partition_offset(&shared.topic, *p, Offset::Offset(next));
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let result = match consumer.group_metadata() {
            Some(metadata) => self.retrying("send_offsets_to_transaction", || {
                self.producer.send_offsets_to_transaction(&tpl, &metadata, CALL_TIMEOUT)
            }),
            None => Err(TxnError::Aborted("the consumer has no group metadata".into())),
        };
        let result = result
            .and_then(|()| self.retrying("commit_transaction", || self.producer.commit_transaction(CALL_TIMEOUT)));
        if let Err(e) = result {
            if matches!(e, TxnError::Aborted(_)) {
                self.state().broken = Some(e.to_string());
                self.abort();
            }
            self.fail(e);
            return Err(TxnError::Aborted("see the first failure".into()));
        }
        metrics::histogram!("turnpike_txn_commit_seconds", "stage" => shared.stage)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("turnpike_txn_commits_total", "stage" => shared.stage).increment(1);
        self.producer.begin_transaction().map_err(|e| TxnError::Fatal(format!("begin_transaction: {e}")))?;
        Ok(())
    }

    /// Runs a transactional call, retrying what librdkafka calls retriable.
    fn retrying(&self, what: &str, call: impl Fn() -> Result<(), KafkaError>) -> Result<(), TxnError> {
        let mut attempt = 0;
        loop {
            let Err(e) = call() else { return Ok(()) };
            match step(&e) {
                Step::Retry if attempt < MAX_RETRIES => {
                    tracing::warn!(call = what, error = %e, attempt, "Transactional call failed; retrying.");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Step::Fatal => return Err(TxnError::Fatal(format!("{what}: {e}"))),
                _ => return Err(TxnError::Aborted(format!("{what}: {e}"))),
            }
        }
    }

    /// Aborts the open transaction, once. A failed abort leaves the broker to abort it at the transaction
    /// timeout, or the next producer with this id to do so at `init_transactions`.
    fn abort(&self) {
        let mut st = self.state();
        if !st.open {
            return;
        }
        st.open = false;
        drop(st);
        metrics::counter!("turnpike_txn_aborts_total").increment(1);
        if let Err(e) = self.producer.abort_transaction(CALL_TIMEOUT) {
            tracing::warn!(error = %e, "Cannot abort the transaction; the next producer with this id will.");
        }
    }
}

/// Commits whenever an offset was recorded, until `stop`; a failed commit ends this run of the runner
/// (the failure is kept in the `Txn`).
pub(crate) async fn committer(
    txn: Arc<Txn>,
    consumer: Arc<RunnerConsumer>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = txn.recorded.notified() => {}
        }
        let (t, c, s) = (txn.clone(), consumer.clone(), shared.clone());
        match tokio::task::spawn_blocking(move || t.commit(&c, &s)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(stage = shared.stage, error = %e, "Transaction not committed.");
                return;
            }
            Err(e) => {
                txn.fail(TxnError::Fatal(format!("commit task: {e}")));
                return;
            }
        }
    }
}
