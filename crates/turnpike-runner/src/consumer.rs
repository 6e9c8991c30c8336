//! The consumer side: shared partition state, the rebalance context, and the poll thread.
//!
//! The consumer is polled on a dedicated OS thread, never on the async runtime: rebalance callbacks run
//! inside `poll`, and the revoke callback *blocks* until the revoked partitions' in-flight work has drained
//! (or the drain deadline passed), then commits synchronously before letting the partitions go. Doing that
//! on a runtime worker would stall the very tasks it waits for.

use crate::tracker::{Admit, PartitionTracker};
use crate::txn::Txn;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::OwnedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One assigned partition.
pub(crate) struct Assigned {
    /// Distinguishes this assignment from a later one of the same partition, so a task finishing after its
    /// partition was revoked (and perhaps re-assigned) never stores an offset.
    pub epoch: u64,
    pub tracker: PartitionTracker<OwnedMessage>,
    pub paused: bool,
    /// Cancels this assignment's tasks once a drain gives up on them.
    pub cancel: CancellationToken,
    /// Exactly-once mode: the next offset to send with the open transaction (see [`crate::txn`]).
    pub txn_next: Option<i64>,
}

#[derive(Default)]
pub(crate) struct State {
    pub partitions: HashMap<i32, Assigned>,
    next_epoch: u64,
}

/// State shared by the poll thread, the rebalance callbacks and the session tasks.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Signalled whenever a message completes, so drains can wake up.
    pub progress: Condvar,
    pub topic: String,
    pub stage: &'static str,
    pub max_in_flight: usize,
    pub drain_timeout: Duration,
    /// Exactly-once mode: offsets go with the transaction instead of the consumer's own commits.
    pub txn: Option<Arc<Txn>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking session task must not take the whole stage down with a poisoned lock; the state it
        // guards stays consistent because every mutation is a single short critical section.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until none of `partitions` has work in flight or the drain deadline passes. Returns how many
    /// messages are still in flight (abandoned: the next owner reprocesses them).
    fn drain(&self, partitions: &[i32]) -> usize {
        let deadline = Instant::now() + self.drain_timeout;
        let mut st = self.lock();
        loop {
            let busy: usize =
                partitions.iter().filter_map(|p| st.partitions.get(p)).map(|a| a.tracker.in_flight()).sum();
            if busy == 0 {
                return 0;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    stage = self.stage,
                    in_flight = busy,
                    "Drain deadline passed; abandoning in-flight work to the next owner."
                );
                return busy;
            }
            st = self
                .progress
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(50)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn knows_any(&self, partitions: &[i32]) -> bool {
        let st = self.lock();
        partitions.iter().any(|p| st.partitions.contains_key(p))
    }

    /// Forgets `partitions`, cancelling whatever still runs for them.
    fn forget(&self, partitions: &[i32]) {
        let mut st = self.lock();
        for p in partitions {
            if let Some(a) = st.partitions.remove(p) {
                a.cancel.cancel();
            }
        }
    }

    /// Lets `partitions` go (revoke, shutdown): drains them, makes their completed offsets durable (a
    /// synchronous consumer commit, or the transaction's commit in exactly-once mode), then forgets them.
    /// In exactly-once mode, abandoned work may have emitted into the open transaction without its offset,
    /// so the transaction is aborted instead (and the runner restarts). Returns the abandoned count.
    pub fn release(&self, consumer: &RunnerConsumer, partitions: &[i32]) -> usize {
        // A broken transaction is aborted whatever finishes: waiting for in-flight work would only delay the
        // restart (its produce calls fail once the transaction is aborted).
        let broken = self.txn.as_ref().is_some_and(|t| t.is_broken());
        let abandoned = if broken { 0 } else { self.drain(partitions) };
        match &self.txn {
            None => {
                commit_sync(consumer, self.stage);
                self.forget(partitions);
            }
            // Nothing of these partitions is known any more (the consumer's close after the runner already
            // released everything, possibly on a runtime thread): nothing to commit, and no gate to wait for.
            Some(_) if !self.knows_any(partitions) => {}
            Some(txn) => {
                if abandoned > 0 {
                    txn.break_with("work abandoned at the drain deadline");
                }
                if let Err(e) = txn.commit(consumer, self) {
                    tracing::warn!(stage = self.stage, error = %e, "Transaction not committed at release.");
                }
                self.forget(partitions);
            }
        }
        abandoned
    }

    /// After a fatal client error: nothing can be committed any more, so in-flight work is cancelled
    /// rather than drained (the next consumer reprocesses it from the committed offsets), and an open
    /// transaction is aborted.
    fn abandon_all(&self, consumer: &RunnerConsumer, error: String) -> PollEnd {
        metrics::counter!("turnpike_kafka_fatal_errors_total", "stage" => self.stage).increment(1);
        tracing::error!(stage = self.stage, error, "Kafka client fatal error; restarting from the committed offsets.");
        let parts: Vec<i32> = self.lock().partitions.keys().copied().collect();
        if let Some(txn) = &self.txn {
            txn.break_with("a Kafka client raised a fatal error");
            let _ = txn.commit(consumer, self);
        }
        self.forget(&parts);
        PollEnd::Fatal(error)
    }

    fn assign(&self, partitions: &[i32]) {
        let mut st = self.lock();
        for p in partitions {
            st.next_epoch += 1;
            let epoch = st.next_epoch;
            st.partitions.insert(
                *p,
                Assigned {
                    epoch,
                    tracker: PartitionTracker::default(),
                    paused: false,
                    cancel: CancellationToken::new(),
                    txn_next: None,
                },
            );
        }
    }
}

/// Commits stored offsets synchronously; "nothing to commit" is success.
pub(crate) fn commit_sync<C: ConsumerContext>(consumer: &BaseConsumer<C>, stage: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            tracing::warn!(stage, error = %e, "Synchronous commit failed; the next owner may reprocess some messages.")
        }
    }
}

/// Client context: logs, statistics (consumer lag) and the rebalance protocol.
pub(crate) struct RunnerContext {
    pub shared: Arc<Shared>,
}

impl ClientContext for RunnerContext {
    fn stats(&self, stats: Statistics) {
        for topic in stats.topics.values() {
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!("turnpike_consumer_lag", "stage" => self.shared.stage, "partition" => id.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        metrics::counter!("turnpike_kafka_client_errors_total", "stage" => self.shared.stage).increment(1);
        tracing::warn!(stage = self.shared.stage, error = %error, reason, "Kafka client error.");
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts = partitions_of(tpl);
                let abandoned = self.shared.release(consumer, &parts);
                metrics::counter!("turnpike_rebalances_total", "stage" => self.shared.stage, "kind" => "revoke")
                    .increment(1);
                tracing::info!(stage = self.shared.stage, partitions = ?parts, abandoned, "Partitions revoked after draining.");
            }
            Rebalance::Assign(tpl) => {
                let parts = partitions_of(tpl);
                self.shared.assign(&parts);
                metrics::counter!("turnpike_rebalances_total", "stage" => self.shared.stage, "kind" => "assign")
                    .increment(1);
                tracing::info!(stage = self.shared.stage, partitions = ?parts, "Partitions assigned.");
            }
            Rebalance::Error(e) => tracing::warn!(stage = self.shared.stage, error = %e, "Rebalance error."),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(stage = self.shared.stage, error = %e, "Offset commit failed."),
        }
    }
}

pub(crate) type RunnerConsumer = BaseConsumer<RunnerContext>;

/// Stores `next` (the next offset to read) for `partition`. Failing with `__STATE` means the partition is no
/// longer assigned: expected during a rebalance, and exactly why the offset must not be stored.
pub(crate) fn store(consumer: &RunnerConsumer, topic: &str, partition: i32, next: i64) {
    let mut tpl = TopicPartitionList::new();
    if tpl.add_partition_offset(topic, partition, Offset::Offset(next)).is_err() {
        return;
    }
    match consumer.store_offsets(&tpl) {
        Ok(()) => {}
        Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
            tracing::debug!(topic, partition, next, "Offset not stored: partition no longer assigned.")
        }
        Err(e) => tracing::warn!(topic, partition, next, error = %e, "Cannot store offset."),
    }
}

/// Work the poll thread hands to the async side.
pub(crate) struct Dispatch {
    pub partition: i32,
    pub epoch: u64,
    pub key: Vec<u8>,
    pub message: OwnedMessage,
    pub cancel: CancellationToken,
}

/// How often the poll loop asks librdkafka whether a client of this run raised a fatal error.
const FATAL_CHECK_EVERY: Duration = Duration::from_millis(500);

/// How a poll loop ended.
pub(crate) enum PollEnd {
    /// `stop` was cancelled: everything in flight was drained and committed.
    Stopped,
    /// A Kafka client of this run raised a fatal error; in-flight work was abandoned uncommitted.
    Fatal(String),
}

/// Polls until `stop` is cancelled, admitting each message to its session (see [`PartitionTracker`]) and
/// handing those that start a session to `spawn`. Pauses a partition that has too much in flight; session
/// tasks resume it. On stop: pauses everything, drains, commits.
///
/// `fatal` reports a fatal error of the run's producer. The consumer's own is checked here: a consumer with
/// a fatal error (e.g. `FENCED_INSTANCE_ID`, which librdkafka raises for a static member whose membership
/// the coordinator replaced while the broker was away) unassigns everything without a rebalance callback
/// and never delivers again, so polling on would stall the stage silently. The loop ends instead; the
/// runner starts a new consumer from the committed offsets.
pub(crate) fn poll_loop(
    consumer: Arc<RunnerConsumer>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    fatal: impl Fn() -> Option<String>,
    spawn: impl Fn(Dispatch),
) -> PollEnd {
    let mut checked = Instant::now();
    while !stop.is_cancelled() {
        if checked.elapsed() >= FATAL_CHECK_EVERY {
            checked = Instant::now();
            let error = consumer.client().fatal_error().map(|(code, m)| format!("consumer: {code:?}: {m}"));
            if let Some(error) = error.or_else(&fatal) {
                return shared.abandon_all(&consumer, error);
            }
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = match result {
            Ok(m) => m.detach(),
            Err(e) => {
                tracing::warn!(stage = shared.stage, error = %e, "Consumer error.");
                continue;
            }
        };
        let partition = message.partition();
        let offset = message.offset();
        // A keyless record still needs an ordering slot: give it one of its own (the stage dead-letters it).
        // In exactly-once mode a partition is one slot: its records complete in offset order, so every record
        // whose outputs a transaction holds is within the offsets it commits. (Sessions completing out of
        // order would leave a finished record past a pending one: its outputs committed, its offset not,
        // and a crash then would publish them again.)
        let key = if shared.txn.is_some() {
            b"\0partition".to_vec()
        } else {
            message.key().map(<[u8]>::to_vec).unwrap_or_else(|| format!("\u{0}offset:{offset}").into_bytes())
        };
        let mut st = shared.lock();
        // Not assigned any more (revoked between fetch and now): the next owner reads it.
        let Some(a) = st.partitions.get_mut(&partition) else { continue };
        let (epoch, cancel) = (a.epoch, a.cancel.clone());
        if let Admit::Start(message) = a.tracker.receive(&key, offset, message) {
            spawn(Dispatch { partition, epoch, key, message, cancel });
        }
        if !a.paused && a.tracker.in_flight() >= shared.max_in_flight {
            set_paused(&consumer, &shared.topic, partition, true);
            a.paused = true;
        }
        let total: usize = st.partitions.values().map(|a| a.tracker.in_flight()).sum();
        metrics::gauge!("turnpike_stage_in_flight", "stage" => shared.stage).set(total as f64);
    }
    // Shutdown: stop fetching, finish what is in flight, commit, and only then let the consumer close.
    let parts: Vec<i32> = shared.lock().partitions.keys().copied().collect();
    for p in &parts {
        set_paused(&consumer, &shared.topic, *p, true);
    }
    let abandoned = shared.release(&consumer, &parts);
    tracing::info!(stage = shared.stage, abandoned, "Consumer drained and committed.");
    PollEnd::Stopped
}

/// Closes the consumer (leaving the group) and serves its last callbacks, as dropping it would; for a
/// runner that starts a new consumer in the same process while this one may still be referenced.
pub(crate) fn close(consumer: &RunnerConsumer) {
    if consumer.close_queue().is_ok() {
        while !consumer.closed() {
            consumer.poll(Duration::from_millis(100));
        }
    }
}

pub(crate) fn set_paused(consumer: &RunnerConsumer, topic: &str, partition: i32, pause: bool) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let result = if pause { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
    if let Err(e) = result {
        tracing::warn!(topic, partition, pause, error = %e, "Cannot pause or resume partition.");
    }
}
