//! A stage whose consumer hits a fatal error recovers on its own. The fatal error here is the one a broker
//! restart produced in the chaos runs: `FENCED_INSTANCE_ID`, raised by librdkafka when the coordinator
//! gave the stage's static membership (`group.instance.id`) to another member. Here another consumer with
//! the same instance id joins the group, which fences the stage's consumer deterministically. Before the
//! runner checked for fatal errors, the stage went on polling a consumer that would never deliver again:
//! no turn after the fencing got a reply.

use crate::common;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use turnpike_llm::mock::MockConfig;
use turnpike_schemas::{OutboundKind, OutboundReply};

// guard-out, an at-least-once stage: deliver's transactions notice a fencing on their own (the broker
// refuses its offsets), an at-least-once consumer only through librdkafka's fatal error.
const OTHERS: &[&str] = &["ingest", "guard-in", "assemble", "route", "generate", "deliver", "handoff"];

/// FINALs on the outbound topic (read_committed), by turn id, waiting until `want` turns have one.
async fn finals(p: &Pipeline, want: usize, timeout: Duration) -> Vec<String> {
    let outbound = p.topic("turnpike.replies.outbound");
    read_until::<OutboundReply>(&p.endpoints, &p.codec, &outbound, 6, timeout, |rs| {
        rs.iter().filter(|r| r.kind == OutboundKind::Final).map(|r| &r.turn_id).collect::<HashSet<_>>().len() >= want
    })
    .await
    .into_iter()
    .filter(|(_, r)| r.kind == OutboundKind::Final)
    .map(|(_, r)| r.turn_id)
    .collect()
}

/// Takes `instance`'s static membership in `group` away from whoever holds it, and returns once this
/// consumer has been assigned partitions (the holder is fenced by then).
fn steal_membership(p: &Pipeline, group: &str, instance: &str, input: &str) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    for (k, v) in p.endpoints.kafka_properties() {
        cfg.set(k, v);
    }
    let thief: BaseConsumer = cfg
        .set("group.id", group)
        .set("group.instance.id", instance)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    thief.subscribe(&[p.topic(input).as_str()]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    while thief.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the second member with instance id {instance} was never assigned");
        // Never processes what it fetches, and never commits: it only holds the membership.
        let _ = thief.poll(Duration::from_millis(100));
    }
    thief
}

/// Whether `group` has committed every partition of `topic` up to its end. Asks as a consumer that never
/// joins the group (no subscribe), so asking does not disturb it.
fn caught_up(p: &Pipeline, group: &str, topic: &str) -> bool {
    let mut cfg = ClientConfig::new();
    for (k, v) in p.endpoints.kafka_properties() {
        cfg.set(k, v);
    }
    let probe: BaseConsumer = cfg.set("group.id", group).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for partition in 0..6 {
        tpl.add_partition(topic, partition);
    }
    let Ok(committed) = probe.committed_offsets(tpl, Duration::from_secs(10)) else { return false };
    committed.elements().iter().all(|e| {
        let (_, high) = probe.fetch_watermarks(topic, e.partition(), Duration::from_secs(10)).expect("watermarks");
        high == 0 || e.offset() == Offset::Offset(high)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stage_fenced_out_of_its_group_starts_a_new_consumer_and_answers_again() {
    let p = Pipeline::start_stages(OTHERS, MockConfig::default()).await;
    let instance = unique("guard-out-");
    let log = std::env::temp_dir().join(format!("{instance}.log"));
    let mut child = p.spawn_stage_logging("guard-out", &instance, &log, "info");
    let sessions: Vec<String> = (0..6).map(|i| format!("f{i}:{}", unique("c"))).collect();
    for s in &sessions {
        p.send_turn(&turn("acme", s, "m1", "Where is my parcel?")).await;
    }
    let before = finals(&p, sessions.len(), Duration::from_secs(120)).await;
    assert_eq!(before.len(), sessions.len(), "every first turn answered before the fencing");

    let group = p.topo.stage("guard-out").expect("guard-out in the topology").group.clone();
    // `turnpike stage guard-out --instance-id X` is the static member `X-guard-out`.
    let thief = steal_membership(&p, &group, &format!("{instance}-guard-out"), "turnpike.replies.chunks");
    // The stage notices its consumer's fatal error within a second, then (after a one-second pause) joins
    // again under the same instance id, taking the membership back; the thief is fenced in turn.
    drop(tokio::task::spawn_blocking(move || {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let _ = thief.poll(Duration::from_millis(100));
        }
    }));
    // The stage's consumer learns of the fencing at its next heartbeat or commit (every 3 s and 1 s): only
    // turns sent after that show whether it recovers (until then it still fetches and answers).
    tokio::time::sleep(Duration::from_secs(10)).await;
    for s in &sessions {
        p.send_turn(&turn("acme", s, "m2", "And when will it arrive?")).await;
    }
    let after = finals(&p, 2 * sessions.len(), Duration::from_secs(180)).await;
    // A fenced consumer may go on fetching (and so answering) for a while, but it can no longer commit: the
    // committed offsets show whether the stage's progress counts again, so a restart would not redo it.
    let input = p.topic("turnpike.replies.chunks");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut committed = caught_up(&p, &group, &input);
    while !committed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        committed = caught_up(&p, &group, &input);
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let exited = child.try_wait().expect("child status");
    child.kill().ok();
    child.wait().ok();
    assert!(exited.is_none(), "the stage process exited instead of recovering; its log:\n{log_text}");
    assert!(committed, "guard-out's group never committed its input up to the end again; its log:\n{log_text}");
    assert_eq!(
        after.len(),
        2 * sessions.len(),
        "every turn answered once, the second turns after the fencing too; the stage's log:\n{log_text}"
    );
    assert_eq!(after.iter().collect::<HashSet<_>>().len(), after.len(), "a FINAL twice: {after:?}");
    assert!(
        log_text.contains("Kafka client fatal error; restarting"),
        "the stage did not report the fatal error it recovered from; its log:\n{log_text}"
    );
    p.stop().await;
    let _ = std::fs::remove_file(log);
}
