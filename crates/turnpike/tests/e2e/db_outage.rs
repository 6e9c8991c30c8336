//! A Cassandra outage delays turns but never stops the pipeline (issue 21: `turnpike run` exited with code 2
//! when Cassandra was SIGKILLed and started again). The shared Cassandra is used by every other test, so the
//! outage is a TCP proxy in front of it that this test switches off and on: to the driver that is the node
//! going away (every pooled connection broken, new ones closed at once) and coming back.

use crate::common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use turnpike_core::{Classify, Endpoints, ErrorClass};
use turnpike_llm::mock::MockConfig;
use turnpike_schemas::{DeadLetter, OutboundKind, OutboundReply};
use turnpike_store::TranscriptStore;

/// Every stage that writes to Cassandra, whose dead-letter topics must stay empty through the outage.
const CQL_STAGES: [&str; 3] = ["ingest", "guard-in", "deliver"];

/// The stack's endpoints, the same with Cassandra reached through a [`switchable_proxy`] (starting off), and
/// the proxy's switch.
async fn cassandra_behind_proxy() -> (Endpoints, Endpoints, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let real = Endpoints::from_env();
    let (proxy_addr, up) = switchable_proxy(real.cql_nodes[0].clone()).await;
    let mut via_proxy = real.clone();
    via_proxy.cql_nodes = vec![proxy_addr];
    (real, via_proxy, up)
}

async fn finals(p: &Pipeline, want: usize, timeout: Duration) -> Vec<i64> {
    let outbound = p.topic("turnpike.replies.outbound");
    read_until::<OutboundReply>(&p.endpoints, &p.codec, &outbound, 6, timeout, |rs| {
        rs.iter().filter(|r| r.kind == OutboundKind::Final).count() >= want
    })
    .await
    .into_iter()
    .filter(|(_, r)| r.kind == OutboundKind::Final)
    .map(|(_, r)| r.seq)
    .collect()
}

async fn dead_letters(p: &Pipeline) -> Vec<DeadLetter> {
    let mut all = Vec::new();
    for stage in CQL_STAGES {
        let dlq = p.topic(&format!("turnpike.dlq.{stage}"));
        let letters =
            read_until::<DeadLetter>(&p.endpoints, &p.codec, &dlq, 1, Duration::from_secs(1), |_| false).await;
        all.extend(letters.into_iter().map(|(_, l)| l));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stages_wait_through_a_cassandra_outage() {
    // Cassandra answers at start here; waiting for it at start is the next test's.
    let (real, via_proxy, up) = cassandra_behind_proxy().await;
    up.store(true, Ordering::SeqCst);
    let p =
        Pipeline::start_custom(&turnpike_topology::STAGE_NAMES, MockConfig::instant(), via_proxy, Default::default())
            .await;

    let session = format!("db1:{}", unique("c"));
    p.send_turn(&turn("acme", &session, "m1", "Hello before the outage")).await;
    assert_eq!(finals(&p, 1, Duration::from_secs(60)).await, vec![1], "turn 1 answered before the outage");

    // The outage: the turns sent now cannot be recorded, so none may be answered, dead-lettered or stop a stage.
    up.store(false, Ordering::SeqCst);
    p.send_turn(&turn("acme", &session, "m2", "Hello during the outage")).await;
    p.send_turn(&turn("acme", &session, "m3", "And once more")).await;
    assert_eq!(finals(&p, 2, Duration::from_secs(8)).await, vec![1], "a turn was answered without Cassandra");
    assert!(!p.task.as_ref().unwrap().is_finished(), "the pipeline stopped during a database outage");
    let letters = dead_letters(&p).await;
    assert!(letters.is_empty(), "the outage dead-lettered {letters:?}");

    // Cassandra back: the waiting turns complete, in order, each once, on the same (reconnected) session.
    let back = Instant::now();
    up.store(true, Ordering::SeqCst);
    assert_eq!(finals(&p, 3, Duration::from_secs(90)).await, vec![1, 2, 3], "turns after the outage answered in order");
    eprintln!("turns answered {:.1} s after Cassandra came back", back.elapsed().as_secs_f64());
    assert!(dead_letters(&p).await.is_empty());

    let cql = std::sync::Arc::new(turnpike_store::connect_cql(&real).await.expect(HINT));
    let transcript = TranscriptStore::new(cql, &real.keyspace).await.expect(HINT);
    let rows = transcript.read("acme", &session).await.unwrap();
    let got: Vec<(i64, &str)> = rows.iter().map(|r| (r.seq, r.role.as_str())).collect();
    assert_eq!(
        got,
        vec![(1, "assistant"), (1, "user"), (2, "assistant"), (2, "user"), (3, "assistant"), (3, "user")],
        "the transcript is complete after the outage"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_waits_for_cassandra_within_a_bound_and_not_on_fatal_errors() {
    // A Cassandra that answers only 3 s after the stage started: the stores connect once it does.
    let (real, late, up) = cassandra_behind_proxy().await;
    let t0 = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        up.store(true, Ordering::SeqCst);
    });
    let deps = turnpike_stages::Deps::connect_within(&late, Duration::from_secs(60)).await;
    assert!(deps.is_ok(), "no connection once Cassandra answered: {:?}", deps.err());
    assert!(t0.elapsed() >= Duration::from_secs(3), "the stores connected while Cassandra was unreachable");

    // A Cassandra that never comes: the wait ends at its bound with a retryable error, not before.
    let (_, unreachable, _never_up) = cassandra_behind_proxy().await;
    let t0 = Instant::now();
    let e = turnpike_stages::Deps::connect_within(&unreachable, Duration::from_secs(2)).await.err().expect("connected");
    assert_eq!(e.class(), ErrorClass::Retryable, "{e}");
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(20), "waited {took:?}");

    // A keyspace that was never migrated is refused by the database: no amount of waiting helps, so the
    // start fails at once, fatally (`turnpike migrate` is the remedy).
    let mut unmigrated = real.clone();
    unmigrated.keyspace = "turnpike_never_migrated".into();
    let t0 = Instant::now();
    let e = turnpike_stages::Deps::connect_within(&unmigrated, Duration::from_secs(60)).await.err().expect("connected");
    assert_eq!(e.class(), ErrorClass::Fatal, "{e}");
    assert!(e.to_string().contains("turnpike_never_migrated"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(20), "a fatal error was retried for {:?}", t0.elapsed());

    // A password the cluster refuses is configuration too: reported at once, as a login error.
    let mut wrong_login = real.clone();
    wrong_login.cql_credentials = Some(("turnpike".into(), "not-the-password".into()));
    let t0 = Instant::now();
    let e =
        turnpike_stages::Deps::connect_within(&wrong_login, Duration::from_secs(60)).await.err().expect("connected");
    assert_eq!((e.class(), e.code()), (ErrorClass::Fatal, "cql_login"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(20), "a refused login was retried for {:?}", t0.elapsed());
}
