//! Every reply whole and once while a stage is SIGKILLed over and over: guard-out (whose re-releases must be
//! byte-for-byte its first releases) and deliver (exactly once on the outbound topic, for a `read_committed`
//! reader). Replies are assembled as docs/kafka-contract.md tells a consumer to, and compared byte for byte
//! with the text generate produced (generate is not killed here, so its chunks are the truth).

use crate::common;

use common::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use turnpike_llm::mock::MockConfig;
use turnpike_schemas::{ChunkKind, OutboundKind, OutboundReply, ReplyChunk};

const SESSIONS: usize = 24;
const TURNS: usize = 4;
const KILLS: usize = 5;

/// Replies of several sentences streamed over ~1.5 s, so a session's turns keep the pipeline busy for
/// several seconds and every kill lands in the middle of streams.
fn streaming_mock() -> MockConfig {
    MockConfig { ttft: Duration::from_millis(20), tokens_per_sec: 30, reply_tokens: 45, ..MockConfig::default() }
}

/// Runs every stage but `victim` in-process, `victim` as a child process killed `KILLS` times while turns
/// stream (restarted at once with the same instance id), and returns every outbound record and every reply
/// chunk generate wrote, once all turns have their FINAL.
async fn run_with_kills(
    victim: &'static str,
    others: &'static [&'static str],
) -> (Pipeline, Vec<String>, Vec<OutboundReply>, Vec<ReplyChunk>) {
    let p = Pipeline::start_stages(others, streaming_mock()).await;
    let instance = unique(victim);
    let mut child = p.spawn_stage(victim, &instance);
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("x{i}:{}", unique("c"))).collect();
    let sends = sessions.iter().map(|s| {
        let p = &p;
        async move {
            for t in 1..=TURNS {
                p.send_turn(&turn("acme", s, &format!("m{t}"), &format!("Tell me about parcel {t}, please."))).await;
            }
        }
    });
    futures::future::join_all(sends).await;

    let outbound = p.topic("turnpike.replies.outbound");
    let started = Instant::now();
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        eprintln!("{victim}: kill {} at {:?}", kill + 1, started.elapsed());
        child = p.spawn_stage(victim, &instance);
    }
    let all = SESSIONS * TURNS;
    read_until::<OutboundReply>(&p.endpoints, &p.codec, &outbound, 6, Duration::from_secs(240), |rs| {
        rs.iter().filter(|r| r.kind == OutboundKind::Final).map(|r| &r.turn_id).collect::<HashSet<_>>().len() >= all
    })
    .await;
    // A little longer, to catch a late duplicate, then everything again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let replies: Vec<OutboundReply> =
        read_until::<OutboundReply>(&p.endpoints, &p.codec, &outbound, 6, Duration::from_secs(5), |_| false)
            .await
            .into_iter()
            .map(|(_, r)| r)
            .collect();
    let chunks: Vec<ReplyChunk> = read_until::<ReplyChunk>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.replies.chunks"),
        6,
        Duration::from_secs(5),
        |_| false,
    )
    .await
    .into_iter()
    .map(|(_, c)| c)
    .collect();
    child.kill().ok();
    child.wait().ok();
    (p, sessions, replies, chunks)
}

/// The reply generate wrote for each turn: its chunks' model text in index order (one copy of each index).
fn generated(chunks: &[ReplyChunk]) -> HashMap<String, String> {
    let mut by_turn: HashMap<String, BTreeMap<i32, String>> = HashMap::new();
    for c in chunks.iter().filter(|c| c.kind == ChunkKind::Delta || c.generated) {
        by_turn.entry(c.turn_id.clone()).or_default().insert(c.chunk_index, c.text.clone());
    }
    by_turn.into_iter().map(|(t, parts)| (t, parts.into_values().collect())).collect()
}

/// What a reader of the outbound topic sees, checked record by record: per session, turns in order; per
/// turn, DELTAs in rising index order, then one FINAL numbered after them, nothing after it, no index twice.
/// Returns each turn's reply as the contract assembles it (DELTAs in index order + the FINAL's text).
fn assemble(sessions: &[String], replies: &[OutboundReply]) -> HashMap<String, String> {
    let mut texts = HashMap::new();
    for s in sessions {
        let mut seqs: Vec<i64> = Vec::new();
        let mut open: HashMap<&str, (i32, String)> = HashMap::new();
        let mut done: HashSet<&str> = HashSet::new();
        for r in replies.iter().filter(|r| &r.session_id == s) {
            assert!(!done.contains(r.turn_id.as_str()), "a record after its turn's FINAL: {r:?}");
            if seqs.last() != Some(&r.seq) {
                assert!(seqs.last().is_none_or(|l| *l < r.seq), "turns out of order in {s}: {seqs:?} then {}", r.seq);
                seqs.push(r.seq);
            }
            let (next, text) = open.entry(r.turn_id.as_str()).or_insert((0, String::new()));
            assert!(r.chunk_index >= *next, "chunk index repeated or out of order: {r:?} after {next}");
            *next = r.chunk_index + 1;
            text.push_str(&r.text);
            if r.kind == OutboundKind::Final {
                done.insert(r.turn_id.as_str());
            }
        }
        assert_eq!(seqs, (1..=TURNS as i64).collect::<Vec<_>>(), "turns of {s}");
        assert_eq!(done.len(), TURNS, "FINALs of {s}");
        texts.extend(open.into_iter().map(|(t, (_, text))| (t.to_string(), text)));
    }
    texts
}

fn assert_whole_and_once(sessions: &[String], replies: &[OutboundReply], chunks: &[ReplyChunk]) {
    let finals = replies.iter().filter(|r| r.kind == OutboundKind::Final).count();
    assert_eq!(finals, SESSIONS * TURNS, "one FINAL per turn on a read_committed reader");
    let got = assemble(sessions, replies);
    let want = generated(chunks);
    let mut garbled = Vec::new();
    for (turn, text) in &got {
        let expected = want.get(turn).unwrap_or_else(|| panic!("no generated text for {turn}"));
        if text != expected {
            garbled.push(format!("{turn}:\n  got  {text:?}\n  want {expected:?}"));
        }
    }
    assert!(garbled.is_empty(), "{} of {} replies garbled:\n{}", garbled.len(), got.len(), garbled.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guard_out_killed_repeatedly_mid_stream_releases_every_reply_byte_for_byte() {
    const OTHERS: &[&str] = &["ingest", "guard-in", "assemble", "route", "generate", "deliver", "handoff"];
    let (p, sessions, replies, chunks) = run_with_kills("guard-out", OTHERS).await;
    assert_whole_and_once(&sessions, &replies, &chunks);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliver_killed_repeatedly_publishes_every_record_once_to_read_committed_readers() {
    const OTHERS: &[&str] = &["ingest", "guard-in", "assemble", "route", "generate", "guard-out", "handoff"];
    let (p, sessions, replies, chunks) = run_with_kills("deliver", OTHERS).await;
    let mut seen = HashSet::new();
    for r in &replies {
        assert!(
            seen.insert((r.turn_id.clone(), r.chunk_index, r.kind == OutboundKind::Final)),
            "published twice: {r:?}"
        );
    }
    assert_whole_and_once(&sessions, &replies, &chunks);
    p.stop().await;
}
