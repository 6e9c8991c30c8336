//! Replies resumed instead of apologised for, on the real stack: generate SIGKILLed mid-reply and restarted,
//! and a provider stream cut after the first words. The mock is deterministic, so every reply, read as
//! the Kafka contract assembles it (DELTAs in index order, then the FINAL's text), must equal byte for
//! byte the reply the mock writes for that question uninterrupted.

use crate::common;
use crate::failures::{
    assert_complete_and_unique, count_finals, send_sessions, slow_mock, until_streaming, ALL_BUT_GENERATE,
};

use common::*;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use turnpike_llm::mock::{self, MockConfig};
use turnpike_schemas::{OutboundKind, OutboundReply, TicketEvent};

/// One turn as a contract-following consumer reads it: DELTA texts by index, the FINAL's text and reason.
#[derive(Default)]
struct Turn<'a> {
    deltas: BTreeMap<i32, &'a str>,
    fin: String,
    finish: Option<String>,
}

/// Each turn's reply as a contract-following consumer assembles it (DELTAs in index order, then the FINAL's
/// text), and its FINAL's finish reason. A chunk index published twice fails the test: deliver publishes
/// each index once.
fn assemble(replies: &[OutboundReply]) -> HashMap<String, (String, Option<String>)> {
    let mut turns: HashMap<&str, Turn> = HashMap::new();
    for r in replies {
        let turn = turns.entry(r.turn_id.as_str()).or_default();
        match r.kind {
            OutboundKind::Delta => {
                assert!(turn.deltas.insert(r.chunk_index, r.text.as_str()).is_none(), "DELTA published twice: {r:?}")
            }
            OutboundKind::Final => (turn.fin, turn.finish) = (r.text.clone(), r.finish_reason.clone()),
            OutboundKind::Status => {}
        }
    }
    let text = |t: Turn| t.deltas.into_values().collect::<String>() + &t.fin;
    turns
        .into_iter()
        .map(|(id, t)| (id.to_owned(), (t.finish.clone(), t)))
        .map(|(id, (finish, t))| (id, (text(t), finish)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generate_killed_mid_reply_resumes_every_reply_by_continuation() {
    const SESSIONS: usize = 24;
    const TURNS: usize = 2;
    let mock_cfg = slow_mock();
    let p = Pipeline::start_stages(ALL_BUT_GENERATE, mock_cfg.clone()).await;
    let instance = unique("gen");
    let dir = std::env::temp_dir();
    let (first_log, second_log) = (dir.join(format!("{instance}-1.log")), dir.join(format!("{instance}-2.log")));
    // The harness mock runs in this test process, so the child is told that its server continues (vLLM's way).
    let env: &[(&str, &std::path::Path)] = &[("TURNPIKE_LLM_CONTINUATION", std::path::Path::new("vllm"))];
    let mut child = p.spawn_stage_with_env("generate", &instance, &first_log, env);
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("rs{i}:{}", unique("c"))).collect();
    send_sessions(&p, &sessions, TURNS).await;

    // Kill it while replies are visibly streaming (text out, no FINAL yet), as in failures.rs.
    count_finals(&p, SESSIONS / 2, Duration::from_secs(90)).await;
    let cut = until_streaming(&p).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    assert!(!cut.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut restarted = p.spawn_stage_with_env("generate", &instance, &second_log, env);

    count_finals(&p, SESSIONS * TURNS, Duration::from_secs(120)).await;
    // A little longer, to catch a late duplicate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replies = count_finals(&p, usize::MAX, Duration::from_secs(5)).await;
    assert_complete_and_unique(&p, &sessions, TURNS, &replies).await;
    let turns = assemble(&replies);
    assert_eq!(turns.len(), SESSIONS * TURNS);
    // Every reply whole, whether it was cut by the kill or not: no apology, no handoff, no text doubled.
    let seq_of: HashMap<&str, i64> = replies.iter().map(|r| (r.turn_id.as_str(), r.seq)).collect();
    for (turn, (text, finish)) in &turns {
        let question = format!("Question {}", seq_of[turn.as_str()]);
        let want = mock::text::generate(mock_cfg.seed, &question, mock_cfg.reply_tokens).concat();
        assert_eq!(
            (text, finish.as_deref()),
            (&want, Some("stop")),
            "turn {turn} (cut by the kill: {})",
            cut.contains(turn)
        );
    }
    let log = std::fs::read_to_string(&second_log).unwrap();
    let resumed = log.matches("Continuing a reply").count();
    eprintln!("generate killed with {} replies streaming; {resumed} continued after the restart", cut.len());
    assert!(resumed >= 1, "no reply was continued: {log}");
    let tickets = read_until::<TicketEvent>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.handoff.events"),
        6,
        Duration::from_secs(3),
        |_| false,
    )
    .await;
    assert!(tickets.is_empty(), "a reply was handed off: {tickets:?}");

    restarted.kill().ok();
    restarted.wait().ok();
    let _ = (std::fs::remove_file(&first_log), std::fs::remove_file(&second_log));
    p.stop().await;
}

/// A stream cut after its first words (`fault=cut_once`) is continued on the same server by the in-process
/// generate, whose mock client continues: one whole reply, no notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_cut_mid_reply_is_continued_and_reads_as_one_reply() {
    let p = Pipeline::start().await;
    let session = format!("cc:{}", unique("c"));
    let question = "Where is my parcel? [[mock:fault=cut_once]]";
    p.send_turn(&turn("acme", &session, "m1", question)).await;
    let replies = count_finals(&p, 1, Duration::from_secs(60)).await;
    let (text, finish) = &assemble(&replies).into_values().next().unwrap();
    let want = mock::text::generate(MockConfig::default().seed, question, 40).concat();
    assert_eq!((text, finish.as_deref()), (&want, Some("stop")));
    assert_eq!(p.mock.stats().requests, 2, "the cut reply and its continuation");
    p.stop().await;
}

/// A server that cuts every stream, continuations too (`fault=cut`): generate continues at most twice, then
/// ends the reply with the notice and a handoff; what was shown is the reply's start, nothing repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continuations_are_bounded_and_then_the_reply_ends_incomplete() {
    let p = Pipeline::start().await;
    let session = format!("cb:{}", unique("c"));
    let question = "Where is my parcel? [[mock:fault=cut]]";
    p.send_turn(&turn("acme", &session, "m1", question)).await;
    let replies = count_finals(&p, 1, Duration::from_secs(60)).await;
    let fin = replies.iter().find(|r| r.kind == OutboundKind::Final).unwrap();
    assert_eq!(fin.finish_reason.as_deref(), Some("incomplete"), "{replies:?}");
    let shown: String = {
        let mut deltas: Vec<&OutboundReply> = replies.iter().filter(|r| r.kind == OutboundKind::Delta).collect();
        deltas.sort_by_key(|r| r.chunk_index);
        deltas.iter().map(|r| r.text.as_str()).collect()
    };
    let full = mock::text::generate(MockConfig::default().seed, question, 40).concat();
    // Three words from the first call and from each of the two continuations.
    assert_eq!(shown.split_whitespace().count(), 9, "{shown:?}");
    assert!(full.starts_with(&shown), "{shown:?} is not the start of {full:?}");
    // The reply's three calls; the incomplete reply's handoff may add a note for the agent (a summary).
    let stats = p.mock.stats();
    assert_eq!(stats.requests - stats.summaries, 3);
    p.stop().await;
}
