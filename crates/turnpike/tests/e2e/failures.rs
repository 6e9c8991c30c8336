//! The spine under failure: a stage process killed with SIGKILL mid-stream, and a rebalance when a second
//! instance joins and leaves. Nothing may be lost, and no turn may get two final replies.

use crate::common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use turnpike_llm::mock::MockConfig;
use turnpike_schemas::{OutboundKind, OutboundReply};
use turnpike_store::TranscriptStore;

pub(crate) const ALL_BUT_GENERATE: &[&str] =
    &["ingest", "guard-in", "assemble", "route", "guard-out", "deliver", "handoff"];

/// Replies slow enough to be cut: 30 tokens at 20 tokens/s after 20 ms, so every turn streams for 1.5 s and
/// a session's turns keep generate busy for several seconds. Faster streams let a loaded machine finish all
/// of them before the test, reading the outbound topic with some lag, gets to kill generate.
pub(crate) fn slow_mock() -> MockConfig {
    MockConfig { ttft: Duration::from_millis(20), tokens_per_sec: 20, reply_tokens: 30, ..MockConfig::default() }
}

pub(crate) async fn send_sessions(p: &Pipeline, sessions: &[String], turns: usize) {
    let sends = sessions.iter().map(|s| async move {
        for t in 1..=turns {
            p.send_turn(&turn("acme", s, &format!("m{t}"), &format!("Question {t}"))).await;
        }
    });
    futures::future::join_all(sends).await;
}

pub(crate) async fn count_finals(p: &Pipeline, at_least: usize, timeout: Duration) -> Vec<OutboundReply> {
    read_until::<OutboundReply>(&p.endpoints, &p.codec, &p.topic("turnpike.replies.outbound"), 6, timeout, |rs| {
        rs.iter().filter(|r| r.kind == OutboundKind::Final).count() >= at_least
    })
    .await
    .into_iter()
    .map(|(_, r)| r)
    .collect()
}

/// The turns whose text is out and whose FINAL is not, once there is one (or after a minute).
pub(crate) async fn until_streaming(p: &Pipeline) -> HashSet<String> {
    let streaming = |rs: &[OutboundReply]| -> HashSet<String> {
        let finished: HashSet<&str> =
            rs.iter().filter(|r| r.kind == OutboundKind::Final).map(|r| r.turn_id.as_str()).collect();
        let out = rs.iter().filter(|r| r.kind == OutboundKind::Delta && !finished.contains(r.turn_id.as_str()));
        out.map(|r| r.turn_id.clone()).collect()
    };
    let topic = p.topic("turnpike.replies.outbound");
    let read = read_until::<OutboundReply>(&p.endpoints, &p.codec, &topic, 6, Duration::from_secs(60), |rs| {
        !streaming(rs).is_empty()
    })
    .await;
    streaming(&read.into_iter().map(|(_, r)| r).collect::<Vec<_>>())
}

/// Every turn has exactly one FINAL, FINALs are in turn order per session, no DELTA is published twice, and
/// the transcript holds both sides of every turn in order.
pub(crate) async fn assert_complete_and_unique(
    p: &Pipeline,
    sessions: &[String],
    turns: usize,
    replies: &[OutboundReply],
) {
    let mut finals: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut deltas = HashSet::new();
    for r in replies {
        match r.kind {
            OutboundKind::Final => finals.entry(r.session_id.as_str()).or_default().push(r.seq),
            OutboundKind::Delta => {
                assert!(deltas.insert((r.turn_id.clone(), r.chunk_index)), "DELTA published twice: {r:?}")
            }
            OutboundKind::Status => {}
        }
    }
    for s in sessions {
        assert_eq!(finals.get(s.as_str()), Some(&(1..=turns as i64).collect::<Vec<_>>()), "finals of {s}");
    }
    let cql = Arc::new(turnpike_store::connect_cql(&p.endpoints).await.unwrap());
    let store = TranscriptStore::new(cql, &p.endpoints.keyspace).await.unwrap();
    for s in sessions {
        let rows = store.read("acme", s).await.unwrap();
        let got: Vec<(i64, &str)> = rows.iter().map(|r| (r.seq, r.role.as_str())).collect();
        let want: Vec<(i64, &str)> = (1..=turns as i64).flat_map(|t| [(t, "assistant"), (t, "user")]).collect();
        assert_eq!(got, want, "transcript of {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generate_killed_mid_stream_and_restarted_loses_and_duplicates_nothing() {
    const SESSIONS: usize = 40;
    const TURNS: usize = 3;
    let p = Pipeline::start_stages(ALL_BUT_GENERATE, slow_mock()).await;
    let instance = unique("gen");
    let mut child = p.spawn_stage("generate", &instance);
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("k{i}:{}", unique("c"))).collect();
    send_sessions(&p, &sessions, TURNS).await;

    // Kill it once a fair share of replies has gone out and some reply is visibly streaming (text out, no
    // FINAL yet): generate releases a reply's first sentence as soon as it is complete, so a kill right
    // after a wave of FINALs could find the next wave's streams before any text left, and cut none.
    count_finals(&p, SESSIONS / 2, Duration::from_secs(90)).await;
    until_streaming(&p).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut restarted = p.spawn_stage("generate", &instance);

    let replies = count_finals(&p, SESSIONS * TURNS, Duration::from_secs(120)).await;
    // A little longer, to catch a late duplicate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replies_after = count_finals(&p, usize::MAX, Duration::from_secs(5)).await;
    assert!(replies_after.len() >= replies.len());
    assert_complete_and_unique(&p, &sessions, TURNS, &replies_after).await;
    // The kill did cut streams: those turns ended with the explicit incomplete notice, not a restart (this
    // generate's server is not configured to continue a reply; `resume.rs` kills one that is).
    let incomplete = replies_after
        .iter()
        .filter(|r| r.kind == OutboundKind::Final && r.finish_reason.as_deref() == Some("incomplete"))
        .count();
    eprintln!("generate killed: {incomplete} of {} turns ended incomplete after the restart", SESSIONS * TURNS);
    assert!(incomplete >= 1, "SIGKILL landed between streams; no stream was cut");

    restarted.kill().ok();
    restarted.wait().ok();
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_instance_joining_and_leaving_loses_and_duplicates_nothing() {
    const SESSIONS: usize = 40;
    const TURNS: usize = 4;
    // generate runs in this process and, for a while, in a second process of the same group.
    let p = Pipeline::start_with(slow_mock()).await;
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("r{i}:{}", unique("c"))).collect();
    let (first, second) = sessions.split_at(SESSIONS / 2);
    send_sessions(&p, first, TURNS).await;
    count_finals(&p, 10, Duration::from_secs(60)).await;

    let mut joiner = p.spawn_stage("generate", &unique("joiner"));
    send_sessions(&p, second, TURNS).await;
    count_finals(&p, SESSIONS * TURNS / 2, Duration::from_secs(90)).await;
    // Leaves cleanly: SIGTERM makes it drain and commit before the group hands its partitions back.
    let pid = joiner.id().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = joiner.wait().unwrap();
    assert!(status.success(), "the leaving instance did not shut down cleanly: {status}");

    let replies = count_finals(&p, SESSIONS * TURNS, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replies_after = count_finals(&p, usize::MAX, Duration::from_secs(5)).await;
    assert!(replies_after.len() >= replies.len());
    assert_complete_and_unique(&p, &sessions, TURNS, &replies_after).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_partitions_resume_and_nothing_is_lost_under_back_pressure() {
    // Two records in flight per partition: partitions pause and resume constantly.
    const SESSIONS: usize = 60;
    const TURNS: usize = 3;
    let tuning = turnpike::pipeline::Tuning { max_in_flight_per_partition: 2, ..Default::default() };
    let p = Pipeline::start_custom(
        &turnpike_topology::STAGE_NAMES,
        MockConfig::instant(),
        turnpike_core::Endpoints::from_env(),
        tuning,
    )
    .await;
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("b{i}:{}", unique("c"))).collect();
    send_sessions(&p, &sessions, TURNS).await;
    let replies = count_finals(&p, SESSIONS * TURNS, Duration::from_secs(120)).await;
    assert_complete_and_unique(&p, &sessions, TURNS, &replies).await;
    p.stop().await;
}

/// Sends acme a valid turn in a fresh session (ingest remembers a session's message ids, so a fixed id would
/// be a duplicate on a rerun) and reads the accepted turns until it is among them.
async fn send_a_good_turn(
    p: &Pipeline,
) -> (String, Vec<(rdkafka::message::OwnedMessage, turnpike_schemas::AcceptedTurn)>) {
    let good = format!("good:{}", unique("c"));
    p.send_turn(&turn("acme", &good, "m1", "Where is my parcel?")).await;
    let accepted = read_until::<turnpike_schemas::AcceptedTurn>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.turns.accepted"),
        6,
        Duration::from_secs(60),
        |rs| rs.iter().any(|t| t.session_id == good),
    )
    .await;
    (good, accepted)
}

/// Ingest's dead letters, read until there are `n`.
async fn ingest_dead_letters(
    p: &Pipeline,
    n: usize,
) -> Vec<(rdkafka::message::OwnedMessage, turnpike_schemas::DeadLetter)> {
    read_until(&p.endpoints, &p.codec, &p.topic("turnpike.dlq.ingest"), 1, Duration::from_secs(30), |rs| rs.len() >= n)
        .await
}

/// Sends `n` turns of `tenant` whose record key differs from their session id: they decode (so the
/// tenant is known) and are poison (`key_mismatch`), as a stage failing on every record would make them.
async fn send_key_mismatched(p: &Pipeline, tenant: &str, n: usize) {
    let inbound = p.topic("turnpike.turns.inbound");
    for i in 0..n {
        let t = turn(tenant, &format!("{tenant}{i}:{}", unique("c")), "m1", "Where is my parcel?");
        let payload = p.codec.encode(&inbound, &t).await.unwrap();
        p.send_raw(&inbound, b"not-the-session", &payload).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stage_poisoning_several_tenants_beyond_the_cap_stops_with_an_error() {
    // Two tenants past a cap of three in one minute: the stage's own code is failing, so it stops.
    let tuning = turnpike::pipeline::Tuning { dlq_max_per_minute: Some(3), ..Default::default() };
    let p =
        Pipeline::start_custom(&["ingest"], MockConfig::instant(), turnpike_core::Endpoints::from_env(), tuning).await;
    send_key_mismatched(&p, "t1", 4).await;
    send_key_mismatched(&p, "t2", 4).await;
    let result = p.join(Duration::from_secs(60)).await;
    match result {
        Err(turnpike_runner::RunnerError::Fatal { code, .. }) => assert_eq!(code, "dlq_rate_exceeded"),
        other => panic!("expected the stage to stop on the dead-letter cap, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tenants_garbage_past_the_cap_does_not_stop_ingest_for_the_others() {
    // Issue 20: a producer flooding the inbound topic used to stop ingest for every tenant through the cap.
    // Under a cap of three: twelve records that are not Avro (unattributed) and twelve poison turns of one
    // tenant, then another tenant's turn, which must be accepted with the stage still running.
    let tuning = turnpike::pipeline::Tuning { dlq_max_per_minute: Some(3), ..Default::default() };
    let p =
        Pipeline::start_custom(&["ingest"], MockConfig::instant(), turnpike_core::Endpoints::from_env(), tuning).await;
    let inbound = p.topic("turnpike.turns.inbound");
    for i in 0..12 {
        p.send_raw(&inbound, format!("g{i}").as_bytes(), b"\x00garbage, not avro").await;
    }
    send_key_mismatched(&p, "noisy", 12).await;
    let (good, accepted) = send_a_good_turn(&p).await;
    assert!(accepted.iter().any(|(_, t)| t.session_id == good), "acme's turn went through the flood");
    let letters = ingest_dead_letters(&p, 24).await;
    assert_eq!(letters.len(), 24, "every poison record is dead-lettered, past the cap too");
    let noisy = letters.iter().filter(|(_, d)| d.tenant_id == "noisy" && d.error_code == "key_mismatch").count();
    assert_eq!(noisy, 12, "the tenant's poison is attributed to it");
    assert_eq!(letters.iter().filter(|(_, d)| d.tenant_id.is_empty()).count(), 12, "garbage is unattributed");
    assert!(!p.task.as_ref().unwrap().is_finished(), "ingest is still running");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_client_input_is_dead_lettered_without_counting_toward_the_cap() {
    // The cap stops a stage whose code poisons everything; a client sending invalid turns must not stop
    // ingest for every tenant. Six rejects under a cap of three, then a valid turn that must go through.
    let tuning = turnpike::pipeline::Tuning { dlq_max_per_minute: Some(3), ..Default::default() };
    let p =
        Pipeline::start_custom(&["ingest"], MockConfig::instant(), turnpike_core::Endpoints::from_env(), tuning).await;
    for i in 0..6 {
        p.send_turn(&turn("acme", &format!("bad{i}:c"), "m1", "   ")).await;
    }
    let (good, accepted) = send_a_good_turn(&p).await;
    assert!(accepted.iter().any(|(_, t)| t.session_id == good), "the valid turn after the rejects went through");
    assert!(accepted.iter().all(|(_, t)| !t.session_id.starts_with("bad")), "a rejected turn was accepted");
    let letters = ingest_dead_letters(&p, 6).await;
    assert_eq!(letters.len(), 6, "every reject is dead-lettered");
    assert!(letters.iter().all(|(_, d)| d.error_code == "invalid_turn" && d.reason.contains("text is empty")));
    p.stop().await;
}

/// A chunk on deliver's input (turn `{session}-t{seq}` of tenant acme), as guard-out would release it.
fn checked_chunk(
    session: &str,
    seq: i64,
    kind: turnpike_schemas::ChunkKind,
    index: i32,
    text: &str,
) -> turnpike_schemas::CheckedReplyChunk {
    turnpike_schemas::CheckedReplyChunk {
        tenant_id: "acme".into(),
        session_id: session.into(),
        turn_id: format!("{session}-t{seq}"),
        seq,
        chunk_index: index,
        kind,
        text: text.into(),
        finish_reason: (kind == turnpike_schemas::ChunkKind::Final).then(|| "stop".into()),
        channel: "test".into(),
        received_at_ms: turnpike_runner::now_ms(),
        ..Default::default()
    }
}

/// A FINAL that reaches deliver again (upstream re-emitted it after a crash) is published once; another
/// turn's FINAL in the same session still goes out, and the markers of one session never hide another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_final_reaching_deliver_twice_is_published_once() {
    use turnpike_schemas::ChunkKind;
    let p = Pipeline::start_stages(&["deliver"], MockConfig::instant()).await;
    let topic = p.topic("turnpike.replies.checked");
    let (a, b) = (format!("fa:{}", unique("c")), format!("fb:{}", unique("c")));
    let chunk = checked_chunk;
    let records = [
        chunk(&a, 1, ChunkKind::Delta, 0, "Your parcel left. "),
        chunk(&a, 1, ChunkKind::Final, 1, "It arrives Monday."),
        chunk(&a, 1, ChunkKind::Final, 1, "It arrives Monday."),
        chunk(&b, 1, ChunkKind::Final, 0, "Hello."),
        chunk(&a, 2, ChunkKind::Final, 0, "Anything else?"),
        chunk(&a, 2, ChunkKind::Final, 0, "Anything else?"),
    ];
    for r in &records {
        let payload = p.codec.encode(&topic, r).await.unwrap();
        p.send_raw(&topic, r.session_id.as_bytes(), &payload).await;
    }
    count_finals(&p, 3, Duration::from_secs(60)).await;
    // A little longer, to catch a late duplicate, then the whole topic again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replies = count_finals(&p, usize::MAX, Duration::from_secs(3)).await;
    let mut finals: Vec<(String, i64, String)> = replies
        .iter()
        .filter(|r| r.kind == OutboundKind::Final)
        .map(|r| (r.session_id.clone(), r.seq, r.text.clone()))
        .collect();
    finals.sort();
    let want = {
        let mut w = vec![
            (a.clone(), 1, "It arrives Monday.".to_string()),
            (a.clone(), 2, "Anything else?".to_string()),
            (b.clone(), 1, "Hello.".to_string()),
        ];
        w.sort();
        w
    };
    assert_eq!(finals, want);
    p.stop().await;
}

/// Redis comes back empty while upstream stages repeat chunks (they retry while it is away): deliver still
/// publishes each chunk index and the FINAL once, from its own record of what it published lately.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunks_repeated_after_redis_lost_delivers_record_are_published_once() {
    use turnpike_schemas::{CheckedReplyChunk, ChunkKind};
    let p = Pipeline::start_stages(&["deliver"], MockConfig::instant()).await;
    let topic = p.topic("turnpike.replies.checked");
    let session = format!("rl:{}", unique("c"));
    let chunk = |kind: ChunkKind, index: i32, text: &str| checked_chunk(&session, 1, kind, index, text);
    let send = |records: Vec<CheckedReplyChunk>| {
        let p = &p;
        let topic = &topic;
        async move {
            for r in records {
                let payload = p.codec.encode(topic, &r).await.unwrap();
                p.send_raw(topic, r.session_id.as_bytes(), &payload).await;
            }
        }
    };
    let outbound = p.topic("turnpike.replies.outbound");
    let read = |at_least: usize, timeout: Duration| {
        read_until::<OutboundReply>(&p.endpoints, &p.codec, &outbound, 6, timeout, move |rs| rs.len() >= at_least)
    };
    send(vec![chunk(ChunkKind::Delta, 0, "Your parcel "), chunk(ChunkKind::Delta, 1, "left Leeds. ")]).await;
    assert_eq!(read(2, Duration::from_secs(60)).await.len(), 2, "both chunks published");
    // Redis loses everything deliver keeps for this turn and session.
    let deps = turnpike_stages::Deps::connect(&p.endpoints).await.expect(HINT);
    let mut redis = deps.redis.clone();
    let keys = [
        turnpike_stages::session::key("acme", &session, &format!("turn:{session}-t1:chunks")),
        turnpike_stages::session::key("acme", &session, "finals"),
    ];
    let _: () = redis::AsyncCommands::del(&mut redis, &keys[..]).await.unwrap();
    // The upstream repeats, then the rest of the reply, its FINAL twice.
    send(vec![
        chunk(ChunkKind::Delta, 0, "Your parcel "),
        chunk(ChunkKind::Delta, 1, "left Leeds. "),
        chunk(ChunkKind::Delta, 2, "It arrives "),
        chunk(ChunkKind::Final, 3, "Monday."),
        chunk(ChunkKind::Final, 3, "Monday."),
    ])
    .await;
    read(4, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // a late duplicate
    let got: Vec<(i32, OutboundKind)> =
        read(usize::MAX, Duration::from_secs(3)).await.into_iter().map(|(_, r)| (r.chunk_index, r.kind)).collect();
    assert_eq!(
        got,
        vec![(0, OutboundKind::Delta), (1, OutboundKind::Delta), (2, OutboundKind::Delta), (3, OutboundKind::Final)],
        "each chunk index and the FINAL once"
    );
    let rows = deps.transcript.read_since("acme", &session, 1).await.unwrap();
    let reply = rows.iter().find(|r| r.role == "assistant").map(|r| r.content.as_str());
    assert_eq!(reply, Some("Your parcel left Leeds. It arrives Monday."), "the transcript has the whole reply");
    p.stop().await;
}

/// A prompt whose reply left as a single FINAL reaches generate again (a crash before its offset was
/// stored): it is answered again, not ended with an incomplete notice and a handoff, and the user still
/// gets one FINAL per turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prompt_answered_in_one_final_and_redelivered_is_answered_again_and_published_once() {
    use rdkafka::Message;
    use turnpike_schemas::{ChunkKind, ReplyChunk, RoutedPrompt};
    const SESSIONS: usize = 8;
    // One short sentence per reply: it arrives whole and leaves as a single FINAL (when the mock's stream
    // reaches generate in pieces it may still leave as a DELTA and a FINAL; such turns are not redelivered).
    let p = Pipeline::start_with(MockConfig { reply_tokens: 5, ..MockConfig::instant() }).await;
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("rg{i}:{}", unique("c"))).collect();
    send_sessions(&p, &sessions, 1).await;
    let first = count_finals(&p, SESSIONS, Duration::from_secs(60)).await;
    let chunks_topic = p.topic("turnpike.replies.chunks");
    let read_chunks = |finals: usize| {
        read_until::<ReplyChunk>(&p.endpoints, &p.codec, &chunks_topic, 6, Duration::from_secs(60), move |rs| {
            rs.iter().filter(|c| c.kind == ChunkKind::Final).count() >= finals
        })
    };
    let of_turn = |chunks: &[(rdkafka::message::OwnedMessage, ReplyChunk)], turn: &str| -> Vec<ReplyChunk> {
        chunks.iter().map(|(_, c)| c.clone()).filter(|c| c.turn_id == turn).collect()
    };
    let before = read_chunks(SESSIONS).await;
    let whole: Vec<String> = first
        .iter()
        .filter(|r| r.kind == OutboundKind::Final)
        .map(|r| r.turn_id.clone())
        .filter(|t| matches!(of_turn(&before, t).as_slice(), [c] if c.chunk_index == 0 && c.generated))
        .collect();
    assert!(!whole.is_empty(), "no reply left as a single FINAL: {before:?}");

    // The redelivery: those turns' routed prompts, their very bytes, again on generate's input.
    let routed = p.topic("turnpike.prompts.routed");
    let prompts = read_until::<RoutedPrompt>(&p.endpoints, &p.codec, &routed, 6, Duration::from_secs(30), |r| {
        r.len() >= SESSIONS
    })
    .await;
    for (raw, _) in prompts.iter().filter(|(_, pr)| whole.contains(&pr.turn_id)) {
        p.send_raw(&routed, raw.key().unwrap(), raw.payload().unwrap()).await;
    }

    // generate answered each of them again, in one FINAL numbered 0 with the model's words.
    let after = read_chunks(SESSIONS + whole.len()).await;
    for t in &whole {
        let finals = of_turn(&after, t);
        assert_eq!(finals.len(), 2, "{finals:?}");
        for c in &finals {
            assert_eq!((c.kind, c.chunk_index, c.generated), (ChunkKind::Final, 0, true), "{c:?}");
            assert_ne!(c.finish_reason.as_deref(), Some("incomplete"), "{c:?}");
        }
    }

    // deliver published one FINAL per turn: the first answer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replies = count_finals(&p, usize::MAX, Duration::from_secs(3)).await;
    let published: Vec<&OutboundReply> = replies.iter().filter(|r| r.kind == OutboundKind::Final).collect();
    assert_eq!(published.len(), SESSIONS, "{published:?}");
    for r in published {
        let answer = first.iter().find(|f| f.kind == OutboundKind::Final && f.turn_id == r.turn_id).unwrap();
        assert_eq!((&r.text, r.finish_reason.as_deref()), (&answer.text, Some("stop")));
    }
    p.stop().await;
}
