//! Assemble latency with a 50-turn history against the real Redis (and Cassandra for the deps), and the
//! token-count cost per message.
//!
//! Run with: `eval "$(deploy/local/stack.sh env)" && cargo bench -p turnpike-stages --bench assemble`
//!
//! Measures what the stage does per turn besides Kafka: read the session's memory from Redis (one
//! HGETALL + EXPIRE round trip), count every remembered message with the tokenizer, build the budgeted
//! prompt, write the pending user message. Two memory shapes after 50 turns:
//! - steady state: a ~500-token summary plus the 14 unsummarised messages the default policy allows at most;
//! - no summaries: all 100 messages of the 50 turns still in Redis (summaries failing for a long time).
//!
//! - steady state with knowledge: the same, plus retrieval (on the blocking pool, as the stage does it) from
//!   a 1,000-document knowledge base (`turnpike_knowledge::synthetic`, ~5,200 chunks) and its passages in
//!   the prompt, for questions from `turnpike_knowledge::synthetic::QUESTIONS`.
//!
//! Replies are ~300 tokens, user messages ~30.

use std::time::{Duration, Instant};

use turnpike_core::Endpoints;
use turnpike_stages::assemble::{build_counted, pending_user_key, ContextPolicy};
use turnpike_stages::memory::{self, Summary};
use turnpike_stages::retrieve::Knowledge;
use turnpike_stages::tokens::TokenCounter;
use turnpike_stages::Deps;

const ROUNDS: usize = 2000;

fn reply(i: usize) -> String {
    let words = ["the", "order", "parcel", "arrives", "tomorrow", "and", "we", "check", "tracking", "details"];
    (0..230).map(|j| words[(i * 7 + j * 3) % words.len()]).collect::<Vec<_>>().join(" ") + "."
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn measure(
    deps: &Deps,
    tenant: &str,
    session: &str,
    policy: &ContextPolicy,
    knowledge: Option<&Knowledge>,
) -> (Vec<Duration>, usize) {
    let counter = policy.counter().unwrap();
    let mut times = Vec::with_capacity(ROUNDS);
    let mut tokens = 0;
    for i in 0..ROUNDS {
        let question = turnpike_knowledge::synthetic::QUESTIONS[i % turnpike_knowledge::synthetic::QUESTIONS.len()];
        let started = Instant::now();
        let mem = memory::load(deps, tenant, session, i64::MAX).await.unwrap();
        let passages = match knowledge {
            Some(k) => k.for_turn(tenant, question, None).await.passages,
            None => Vec::new(),
        };
        let history: Vec<_> = mem.messages.iter().map(|m| (m.chat(), counter.message(&m.content))).collect();
        let a = build_counted(&counter, policy, mem.summary.as_ref(), &passages, &history, question);
        let mut redis = deps.pool.clone();
        let _: () = redis::cmd("SET")
            .arg(pending_user_key(tenant, session, "bench-turn"))
            .arg("Where is my parcel now?")
            .arg("EX")
            .arg(60)
            .query_async(&mut redis)
            .await
            .unwrap();
        times.push(started.elapsed());
        tokens = a.tokens;
    }
    times.sort();
    (times, tokens)
}

#[tokio::main]
async fn main() {
    let deps = Deps::connect(&Endpoints::from_env()).await.expect("is the local stack running?");
    let policy = ContextPolicy::default();
    let counter = TokenCounter::for_model(&policy.model).unwrap();
    let tenant = "bench-assemble";

    let steady = format!("steady-{}", uuid::Uuid::new_v4().simple());
    let summary =
        Summary { text: reply(0), commitments: vec!["We will refund within 3 days.".into()], covered_seq: 43 };
    memory::apply_summary(&deps, tenant, &steady, &summary).await.unwrap();
    for seq in 44..=50 {
        memory::append_turn(
            &deps,
            tenant,
            &steady,
            seq,
            "Where is my parcel? It was due last week.",
            &reply(seq as usize),
        )
        .await
        .unwrap();
    }
    let full = format!("full-{}", uuid::Uuid::new_v4().simple());
    for seq in 1..=50 {
        memory::append_turn(
            &deps,
            tenant,
            &full,
            seq,
            "Where is my parcel? It was due last week.",
            &reply(seq as usize),
        )
        .await
        .unwrap();
    }
    // The first load of each rebuilds from Cassandra (nothing there: the memory is marked complete as is).
    for s in [&steady, &full] {
        memory::load(&deps, tenant, s, i64::MAX).await.unwrap();
    }

    let kb_dir = tempfile::tempdir().unwrap();
    let knowledge = Knowledge::load(kb_dir.path()).unwrap();
    let report = knowledge.base.ingest(tenant, &turnpike_knowledge::synthetic::help_centre(1000), false).unwrap();
    println!("knowledge base: {} documents, {} chunks", report.documents, report.chunks);
    let cases = [
        ("steady state (summary + 14 messages)", &steady, None),
        ("no summaries (100 messages)", &full, None),
        ("steady state + retrieval from 1,000 documents", &steady, Some(&knowledge)),
    ];
    for (name, session, kb) in cases {
        let (times, tokens) = measure(&deps, tenant, session, &policy, kb).await;
        println!(
            "assemble, 50-turn history, {name}: p50 {:.3} ms, p99 {:.3} ms over {ROUNDS} turns; prompt {tokens} tokens",
            pct(&times, 0.5),
            pct(&times, 0.99)
        );
    }

    let message = reply(1);
    let n = 20_000;
    let started = Instant::now();
    let mut total = 0;
    for _ in 0..n {
        total += counter.count(std::hint::black_box(&message));
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "token count ({:?}): {:.2} µs per message of {} tokens ({} bytes)",
        counter.family(),
        per,
        total / n,
        message.len()
    );
    let mut redis = deps.pool.clone();
    let _: () = redis::cmd("DEL")
        .arg(memory::key(tenant, &steady))
        .arg(memory::key(tenant, &full))
        .query_async(&mut redis)
        .await
        .unwrap();
}
