//! The model router on the real stack: greetings and FAQ questions are routed to the cheap tier and a long
//! multi-part complaint to the capable tier, each answered by its tier's model (the mock answers with the
//! model it was asked for); a cheap tier that fails before any text is escalated to the capable tier and
//! the escalation is recorded; a hedged reply sends the session's next turn to the capable tier; a tenant's
//! policy (forced tier) and experiments (a model for a stable share of sessions, the variant recorded on every
//! turn) come from the tenants file.

use crate::common;

use common::*;
use redis::AsyncCommands;
use std::time::Duration;
use turnpike_llm::mock::script::Fault;
use turnpike_llm::mock::{self, MockConfig};
use turnpike_schemas::{ChunkKind, OutboundKind, OutboundReply, Record, ReplyChunk, RoutedPrompt};

const COMPLAINT: &str = "I am writing to make a formal complaint. My order arrived damaged, I was charged twice \
    for it, and when I called your support line the agent hung up on me after forty minutes on hold. This is \
    completely unacceptable. Why was I charged twice? When will I get my refund for the second charge? And who \
    is going to pay for the return shipping of a product that was broken when it arrived?";

/// Every record of `sessions` on `topic`, once each session has `turns` records that `counted` accepts.
async fn read_sessions<R: Record>(
    p: &Pipeline,
    topic: &str,
    sessions: &[&str],
    turns: usize,
    counted: impl Fn(&R) -> bool,
) -> Vec<R> {
    let count = |rs: &[R], s: &str| rs.iter().filter(|r| r.session_id() == s && counted(r)).count();
    let done = |rs: &[R]| sessions.iter().all(|s| count(rs, s) >= turns);
    let records = read_until::<R>(&p.endpoints, &p.codec, &p.topic(topic), 6, Duration::from_secs(90), done).await;
    records.into_iter().map(|(_, r)| r).filter(|r| sessions.contains(&r.session_id())).collect()
}

async fn routed(p: &Pipeline, sessions: &[&str], turns: usize) -> Vec<RoutedPrompt> {
    read_sessions(p, "turnpike.prompts.routed", sessions, turns, |_: &RoutedPrompt| true).await
}

/// The outbound FINALs.
async fn finals(p: &Pipeline, sessions: &[&str], turns: usize) -> Vec<OutboundReply> {
    let is_final = |r: &OutboundReply| r.kind == OutboundKind::Final;
    let all = read_sessions(p, "turnpike.replies.outbound", sessions, turns, is_final).await;
    all.into_iter().filter(is_final).collect()
}

fn one<T>(records: &[T], pick: impl Fn(&T) -> bool) -> &T {
    let found: Vec<&T> = records.iter().filter(|r| pick(r)).collect();
    assert_eq!(found.len(), 1, "expected exactly one record");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn greetings_and_faq_go_to_the_cheap_model_and_a_long_complaint_to_the_capable_one() {
    let p = Pipeline::start().await;
    let cases = [
        (format!("r1:{}", unique("c")), "Hello!", "cheap", "greeting", "gpt-4o-mini"),
        (format!("r2:{}", unique("c")), "What are your opening hours?", "cheap", "faq", "gpt-4o-mini"),
        (format!("r3:{}", unique("c")), COMPLAINT, "capable", "score", "gpt-4o"),
    ];
    for (session, text, ..) in &cases {
        p.send_turn(&turn("acme", session, "m1", text)).await;
    }
    let sessions: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    let routed = routed(&p, &sessions, 1).await;
    let finals = finals(&p, &sessions, 1).await;
    for (session, text, tier, rule, model) in &cases {
        let r = one(&routed, |r| &r.session_id == session);
        assert_eq!((r.tier.as_str(), r.model.as_str()), (*tier, *model), "{text}: {}", r.route_reason);
        assert!(r.route_reason.starts_with(&format!("rule={rule} score=")), "{}", r.route_reason);
        assert!(r.route_reason.contains(" intent=") && r.route_reason.contains(" multi_part="), "features recorded");
        assert_eq!(r.attributes.get("route.rule").map(String::as_str), Some(*rule));
        assert_eq!(r.variant, None, "no experiment configured");
        let fin = one(&finals, |f| &f.session_id == session);
        assert_eq!(fin.finish_reason.as_deref(), Some("stop"), "{fin:?}");
        assert_eq!(fin.model.as_deref(), Some(*model), "the reply came from the routed tier's model");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hedged_reply_sends_the_next_turn_to_the_capable_tier() {
    let p = Pipeline::start().await;
    let session = format!("r4:{}", unique("c"));
    // The mock hedges on the first turn (a scripted reply); the second turn is an ordinary question.
    let hedge = "Can I pay with a gift card? [[mock:reply=I'm not sure whether gift cards work for this order.]]";
    p.send_turn(&turn("acme", &session, "m1", hedge)).await;
    let first = finals(&p, &[&session], 1).await;
    assert_eq!(first[0].model.as_deref(), Some("gpt-4o-mini"));
    p.send_turn(&turn("acme", &session, "m2", "And can I use two of them at once?")).await;
    let routed = routed(&p, &[&session], 2).await;
    let second = one(&routed, |r| r.seq == 2);
    assert_eq!(one(&routed, |r| r.seq == 1).tier, "cheap");
    assert_eq!(second.tier, "capable", "{}", second.route_reason);
    assert!(second.route_reason.starts_with("rule=previous_low_confidence"), "{}", second.route_reason);
    assert!(second.route_reason.contains("failures=0.50"), "one earlier failure: {}", second.route_reason);
    let replies = finals(&p, &[&session], 2).await;
    assert_eq!(one(&replies, |f| f.seq == 2).model.as_deref(), Some("gpt-4o"));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cheap_tier_failing_before_any_text_is_answered_by_the_capable_tier_and_recorded() {
    const OTHERS: &[&str] = &["ingest", "guard-in", "assemble", "route", "guard-out", "deliver", "handoff"];
    let p = Pipeline::start_stages(OTHERS, MockConfig::instant()).await;
    // Two providers: the cheap tier's is down for the whole test, the capable tier's is healthy.
    let cheap = mock::spawn(MockConfig::instant()).await.unwrap();
    let capable = mock::spawn(MockConfig::instant()).await.unwrap();
    cheap.set_fault(Some(Fault::Status(500)));
    let config = std::env::temp_dir().join(format!("{}.toml", unique("llm")));
    let toml = format!(
        "[[deployments]]\nname = \"cheap-provider\"\nprovider = \"openai\"\nbase_url = \"{}\"\n\
         [[deployments]]\nname = \"capable-provider\"\nprovider = \"openai\"\nbase_url = \"{}\"\n\
         [tiers.cheap]\nchain = [\"cheap-provider\"]\nmax_attempts = 2\n\
         [tiers.capable]\nchain = [\"capable-provider\"]\n",
        cheap.base_url(),
        capable.base_url()
    );
    std::fs::write(&config, toml).unwrap();
    let log = std::env::temp_dir().join(format!("{}.log", unique("generate")));
    let _generate = p.spawn_stage_with_env("generate", &unique("gen"), &log, &[("TURNPIKE_LLM_CONFIG", &config)]);

    let tenant = unique("t");
    let session = format!("r5:{}", unique("c"));
    p.send_turn(&turn(&tenant, &session, "m1", "Where is my parcel?")).await;
    let first = routed(&p, &[&session], 1).await;
    assert_eq!((first[0].tier.as_str(), first[0].model.as_str()), ("cheap", "gpt-4o-mini"));
    let fin = finals(&p, &[&session], 1).await.remove(0);
    assert_eq!(fin.finish_reason.as_deref(), Some("stop"), "answered, not given up: {fin:?}");
    assert_eq!(fin.model.as_deref(), Some("gpt-4o"), "the capable tier's model answered");
    assert!(cheap.stats().requests >= 1, "the cheap tier was tried first");
    assert_eq!(capable.stats().requests, 1, "one capable call");

    // Recorded on the turn: every chunk says which tier answered (the routed record says cheap) ...
    let final_chunk = |c: &ReplyChunk| c.kind == ChunkKind::Final;
    let mine = read_sessions(&p, "turnpike.replies.chunks", &[&session], 1, final_chunk).await;
    // The text may ride in the FINAL itself (all of it, when the mock's reply arrives at once).
    assert!(mine.iter().any(|c| !c.text.is_empty()) && mine.iter().any(final_chunk), "text and a FINAL: {mine:?}");
    assert!(mine.iter().all(|c| c.tier.as_deref() == Some("capable")), "{mine:?}");
    // ... and in the session's routing signals, which the next turn's decision reads.
    let mut redis = redis::Client::open(p.endpoints.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect(HINT);
    let fields: Vec<String> = redis.hkeys(turnpike_stages::route::signals::hash_key(&tenant, &session)).await.unwrap();
    assert_eq!(fields, vec!["1:escalated".to_string()]);
    p.send_turn(&turn(&tenant, &session, "m2", "Thanks. Can I pick it up instead?")).await;
    let both = routed(&p, &[&session], 2).await;
    let second = one(&both, |r| r.seq == 2);
    assert!(second.route_reason.contains("failures=0.50"), "the escalation counts: {}", second.route_reason);
    assert_eq!(finals(&p, &[&session], 2).await.len(), 2);
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&log);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_policies_and_experiments_apply_per_tenant_and_the_variant_is_on_every_turn() {
    const OTHERS: &[&str] = &["ingest", "guard-in", "assemble", "generate", "guard-out", "deliver", "handoff"];
    let p = Pipeline::start_stages(OTHERS, MockConfig::instant()).await;
    let (bank, shop) = (unique("bank"), unique("shop"));
    // The route stage runs as its own process with a tenants file: the bank forces the capable tier, every
    // shop session is in an experiment that asks for another cheap model, and nobody is in the second one.
    let tenants = std::env::temp_dir().join(format!("{}.toml", unique("tenants")));
    let file = format!(
        "[tenants.{bank}.route]\nforce_tier = \"capable\"\n\
         [[tenants.{shop}.route.experiments]]\nname = \"flash\"\nshare = 1.0\ntier = \"cheap\"\n\
         model = \"gemini-2.0-flash\"\nvariant = \"flash-cheap\"\n\
         [[tenants.{shop}.route.experiments]]\nname = \"nobody\"\nshare = 0.0\nmodel = \"claude-sonnet-4\"\n"
    );
    std::fs::write(&tenants, file).unwrap();
    let log = std::env::temp_dir().join(format!("{}.log", unique("route")));
    let _route = p.spawn_stage_with_env("route", &unique("route"), &log, &[("TURNPIKE_TENANTS_CONFIG", &tenants)]);

    let (b, s) = (format!("r6:{}", unique("c")), format!("r7:{}", unique("c")));
    p.send_turn(&turn(&bank, &b, "m1", "Hello!")).await;
    p.send_turn(&turn(&shop, &s, "m1", "Hello!")).await;
    p.send_turn(&turn(&shop, &s, "m2", COMPLAINT)).await;
    let bank_turns = routed(&p, &[&b], 1).await;
    let shop_turns = routed(&p, &[&s], 2).await;
    let bank_turn = &bank_turns[0];
    assert_eq!(
        (bank_turn.tier.as_str(), bank_turn.model.as_str()),
        ("capable", "gpt-4o"),
        "{}",
        bank_turn.route_reason
    );
    assert!(bank_turn.route_reason.starts_with("rule=forced"), "{}", bank_turn.route_reason);
    assert_eq!(bank_turn.variant, None);
    let greeting = one(&shop_turns, |r| r.seq == 1);
    assert_eq!((greeting.tier.as_str(), greeting.model.as_str()), ("cheap", "gemini-2.0-flash"));
    assert_eq!(greeting.variant.as_deref(), Some("flash-cheap"));
    let complaint = one(&shop_turns, |r| r.seq == 2);
    assert_eq!(
        (complaint.tier.as_str(), complaint.model.as_str()),
        ("capable", "gpt-4o"),
        "override is for cheap turns"
    );
    assert_eq!(complaint.variant.as_deref(), Some("flash-cheap"), "the variant is on every turn of the session");
    let finals = finals(&p, &[&s], 2).await;
    assert_eq!(one(&finals, |f| f.seq == 1).model.as_deref(), Some("gemini-2.0-flash"), "the variant's model answered");
    let _ = std::fs::remove_file(&tenants);
    let _ = std::fs::remove_file(&log);
    p.stop().await;
}
