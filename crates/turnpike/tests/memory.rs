//! Session memory and context assembly on the real stack: a 60-turn conversation stays within its budget
//! on every turn (recounted with the tokenizer) and still answers about a commitment made in turn 3 after
//! several rounds of summarisation; a session whose Redis state is deleted between turns is rebuilt from
//! Cassandra (summary and recent history) for the next prompt.
//!
//! The conversation's tenant flags commitments instead of replacing them (guard section of the tenants
//! file, the seed's "flag for review"): with the default guard policy a commitment never reaches the user,
//! so there would be nothing to remember.

mod common;

use common::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use turnpike_schemas::{AssembledPrompt, OutboundKind, OutboundReply, Role};
use turnpike_stages::tokens::TokenCounter;

const FLAGGING_TENANT: &str = "mem-acme";
const BUDGET: usize = 3000;
const COMMITMENT: &str = "We will refund within 3 days of receiving your order.";

/// Points every stage of this test binary at one tenants file (set once, before any pipeline starts).
fn tenants_file() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let path = std::env::temp_dir().join(format!("turnpike-memory-tenants-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "[tenants.{FLAGGING_TENANT}.guard.output]\ncommitment_action = \"flag\"\n\
                 [tenants.{FLAGGING_TENANT}.context]\nbudget_tokens = {BUDGET}\nsummary_after_tokens = 2500\n"
            ),
        )
        .unwrap();
        std::env::set_var("TURNPIKE_TENANTS_CONFIG", &path);
    });
}

/// Reads the outbound topic once, from the beginning, and hands out each turn's full reply text.
struct Replies {
    consumer: StreamConsumer,
    codec: turnpike_schemas::Codec,
    /// (session, seq) → chunk index → text; FINAL seen.
    parts: BTreeMap<(String, i64), (BTreeMap<i32, String>, bool)>,
}

impl Replies {
    fn new(p: &Pipeline) -> Replies {
        let consumer: StreamConsumer = p
            .endpoints
            .kafka_properties()
            .into_iter()
            .collect::<rdkafka::ClientConfig>()
            .set("group.id", unique("it-mem-reader"))
            // deliver writes in transactions: only committed replies, each once.
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for part in 0..6 {
            tpl.add_partition_offset(&p.topic("turnpike.replies.outbound"), part, Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();
        Replies { consumer, codec: p.codec.clone(), parts: BTreeMap::new() }
    }

    /// The whole reply of `session`'s turn `seq` (deltas and FINAL in chunk order), once its FINAL arrived.
    async fn wait(&mut self, session: &str, seq: i64, timeout: Duration) -> String {
        let key = (session.to_string(), seq);
        let deadline = Instant::now() + timeout;
        while !self.parts.get(&key).is_some_and(|(_, fin)| *fin) {
            assert!(Instant::now() < deadline, "no FINAL for turn {seq} of {session}");
            let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), self.consumer.recv()).await else {
                continue;
            };
            let r: OutboundReply = self.codec.decode(m.payload().unwrap()).await.unwrap();
            let slot = self.parts.entry((r.session_id.clone(), r.seq)).or_default();
            slot.0.insert(r.chunk_index, r.text.clone());
            slot.1 |= r.kind == OutboundKind::Final;
        }
        self.parts[&key].0.values().cloned().collect()
    }
}

async fn prompts_of(p: &Pipeline, session: &str, n: usize) -> Vec<AssembledPrompt> {
    let mut prompts: Vec<AssembledPrompt> = read_until::<AssembledPrompt>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.prompts.assembled"),
        6,
        Duration::from_secs(60),
        |rs| rs.iter().filter(|r| r.session_id == session).count() >= n,
    )
    .await
    .into_iter()
    .map(|(_, r)| r)
    .filter(|r| r.session_id == session)
    .collect();
    prompts.sort_by_key(|r| r.seq);
    prompts
}

/// The last turn the prompt's summary covers (0 without a summary), from its header.
fn covered_of(prompt: &AssembledPrompt) -> i64 {
    prompt
        .messages
        .iter()
        .find_map(|m| m.content.strip_prefix("Summary of the earlier conversation (turns 1 to "))
        .and_then(|rest| rest.split(')').next())
        .map_or(0, |n| n.parse().unwrap())
}

fn recount(counter: &TokenCounter, prompt: &AssembledPrompt) -> usize {
    let messages: Vec<turnpike_schemas::ChatMessage> = prompt.messages.clone();
    turnpike_stages::assemble::prompt_tokens(counter, &messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commitment_from_turn_3_survives_sixty_turns_within_budget() {
    tenants_file();
    let p = Pipeline::start().await;
    let mut replies = Replies::new(&p);
    let session = format!("{}:{}", unique("ana"), unique("c"));
    for i in 1..=60i64 {
        let text = match i {
            1 => "Hi, my name is Ana and the parcel of my order 4421 never arrived. [[mock:tokens=600]]".to_string(),
            3 => format!(
                "Can you sort it out for me? [[mock:reply=Thanks for waiting, Ana. {COMMITMENT} Anything else?]]"
            ),
            60 => "What did you promise about my refund? [[mock:recall=refund]]".to_string(),
            _ => format!("Follow-up number {i} about the delivery of the parcel. [[mock:tokens=600]]"),
        };
        p.send_turn(&turn(FLAGGING_TENANT, &session, &format!("m{i}"), &text)).await;
        let reply = replies.wait(&session, i, Duration::from_secs(90)).await;
        if i == 3 {
            assert!(reply.contains(COMMITMENT), "the commitment reached the user: {reply}");
        }
        if i == 60 {
            assert!(reply.contains("refund within 3 days"), "turn 60 answered from memory: {reply}");
        }
    }

    let counter = TokenCounter::for_model("gpt-4o-mini").unwrap();
    let prompts = prompts_of(&p, &session, 60).await;
    assert_eq!(prompts.len(), 60);
    let mut dropped = 0;
    for prompt in &prompts {
        let tokens = recount(&counter, prompt);
        assert_eq!(tokens, prompt.prompt_tokens as usize, "turn {}: the recorded count is the real one", prompt.seq);
        assert!(tokens <= BUDGET, "turn {}: {tokens} tokens > {BUDGET}", prompt.seq);
        assert_eq!(prompt.budget_tokens as usize, BUDGET);
        // Every earlier turn after the summary is remembered; those missing were dropped by the budget.
        let remembered = 2 * (prompt.seq - 1 - covered_of(prompt)) as usize;
        let verbatim = prompt.messages.iter().filter(|m| m.role != Role::System).count() - 1;
        assert!(verbatim <= remembered, "turn {}", prompt.seq);
        dropped += remembered - verbatim;
    }
    assert!(dropped > 0, "the budget made the stage drop older history on some turns");

    // Turn 60 read the commitment from the summary, not from verbatim history.
    let last = prompts.last().unwrap();
    let summary = last
        .messages
        .iter()
        .find(|m| m.role == Role::System && m.content.starts_with("Summary of the earlier conversation"))
        .expect("turn 60 carries the running summary");
    assert!(summary.content.contains(&format!("Commitments:\n- {COMMITMENT}")), "{}", summary.content);
    assert!(
        last.messages.iter().filter(|m| m.role != Role::System).all(|m| !m.content.contains(COMMITMENT)),
        "turn 3 is no longer verbatim in the prompt"
    );

    // Several rounds of summarisation, each carrying the commitment forward.
    let deps = turnpike_stages::Deps::connect(&p.endpoints).await.expect(HINT);
    let rounds = deps.summaries.history(FLAGGING_TENANT, &session).await.unwrap();
    let after_turn_3: Vec<_> = rounds.iter().filter(|r| r.covered_seq >= 3).collect();
    assert!(after_turn_3.len() >= 3, "summaries: {:?}", rounds.iter().map(|r| r.covered_seq).collect::<Vec<_>>());
    for r in after_turn_3 {
        assert!(
            r.commitments.as_deref().unwrap_or_default().iter().any(|c| c == COMMITMENT),
            "summary up to turn {} lost the commitment",
            r.covered_seq
        );
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_deleted_from_redis_is_rebuilt_from_cassandra() {
    tenants_file();
    let p = Pipeline::start().await;
    let mut replies = Replies::new(&p);
    let tenant = "mem-rebuild";
    let session = format!("{}:{}", unique("bo"), unique("c"));
    let deps = turnpike_stages::Deps::connect(&p.endpoints).await.expect(HINT);
    for i in 1..=16i64 {
        let text = match i {
            16 => "By the way, I live next to the old lighthouse.".to_string(),
            _ => format!("Question {i} about my subscription. [[mock:tokens=20]]"),
        };
        p.send_turn(&turn(tenant, &session, &format!("m{i}"), &text)).await;
        replies.wait(&session, i, Duration::from_secs(60)).await;
    }
    // Summaries are made in the background (due at turns 8 and 13 with the defaults); wait for the second,
    // after which none is due before turn 18.
    let deadline = Instant::now() + Duration::from_secs(60);
    while deps.summaries.latest(tenant, &session).await.unwrap().is_none_or(|s| s.covered_seq < 10) {
        assert!(Instant::now() < deadline, "no summary was made");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let key = turnpike_stages::memory::key(tenant, &session);
    let mut redis = deps.pool.clone();
    let deleted: i64 = redis::cmd("DEL").arg(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(deleted, 1, "the session's memory was in Redis");

    p.send_turn(&turn(tenant, &session, "m17", "Where do I live? [[mock:recall=lighthouse]]")).await;
    let reply = replies.wait(&session, 17, Duration::from_secs(60)).await;
    assert_eq!(reply, "By the way, I live next to the old lighthouse.", "history came back from Cassandra");

    let prompts = prompts_of(&p, &session, 17).await;
    let rebuilt = prompts.iter().find(|r| r.seq == 17).unwrap();
    let covered = covered_of(rebuilt);
    assert!(covered >= 10, "the summary came back from Cassandra: {:?}", rebuilt.messages);
    let rounds = deps.summaries.history(tenant, &session).await.unwrap();
    assert!(rounds.iter().any(|r| r.covered_seq == covered), "the prompt's summary is the stored one");
    let verbatim: Vec<&str> =
        rebuilt.messages.iter().filter(|m| m.role == Role::User).map(|m| m.content.as_str()).collect();
    let expected_first = format!("Question {} about my subscription. [[mock:tokens=20]]", covered + 1);
    assert_eq!(verbatim.first().copied(), Some(expected_first.as_str()), "history resumes right after the summary");
    assert_eq!(verbatim.len() as i64, 17 - covered, "every later turn, then the question");
    let marker: Option<String> = redis::cmd("HGET").arg(&key).arg("v").query_async(&mut redis).await.unwrap();
    assert_eq!(marker.as_deref(), Some("1"), "Redis holds the rebuilt memory again");
    p.stop().await;
}
