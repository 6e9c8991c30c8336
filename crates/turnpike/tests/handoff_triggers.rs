//! The six handoff triggers on the real stack, as a scripted mix: each scripted session either must hand
//! off for one reason (and from the right stage) or must not hand off at all (the trigger's hard
//! negatives). The test prints the handoff rate per trigger and fails on any session that went the wrong way.
//!
//! Its own test binary (like `memory.rs`): it points the process's `TURNPIKE_TENANTS_CONFIG` at a file of
//! its own, and loads the encoder (deploy/local/models.sh's files; the test fails without them) so guard-in
//! runs its model checks. Run:
//! `cargo test -p turnpike --test handoff_triggers -- --nocapture` (with the stack's env, see test.sh).

mod common;

use common::*;
use rdkafka::consumer::StreamConsumer;
use rdkafka::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use turnpike_schemas::{HandoffKind, HandoffRequest, OutboundKind, OutboundReply};

/// Model checks on, the suggested sensitive topics (two of them).
const MODEL: &str = "trig-model";
/// Model checks off: patterns, keywords and the lexical frustration fallback only.
const PATTERNS: &str = "trig-patterns";
/// VIPs are handed to a person at once.
const VIP_NOW: &str = "trig-vip-now";

const TOPICS: &str = r#"
[[topics]]
name = "legal"
description = "The customer threatens legal action or mentions lawyers, lawsuits or court."
examples = ["I am going to sue you", "My lawyer will be in touch", "I will take you to court over this"]
keywords = ["lawsuit", "sue you", "my lawyer", "legal action", "take you to court"]
[[topics]]
name = "billing_dispute"
description = "The customer disputes a charge or says they were billed wrongly."
examples = ["I was charged twice for the same order", "I'm disputing this charge with my bank"]
keywords = ["chargeback", "charged twice", "double charged", "dispute the charge"]
"#;

/// Points every stage of this binary at one tenants file and at the encoder (once, before any pipeline).
fn environment() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let topics = |tenant: &str| TOPICS.replace("[[topics]]", &format!("[[tenants.{tenant}.guard.handoff.sensitive.topics]]"));
        let config = format!(
            "{}{}[tenants.{PATTERNS}.guard.model]\nenabled = false\n[tenants.{VIP_NOW}.guard.handoff.vip]\nimmediate = true\n",
            topics(MODEL),
            topics(PATTERNS)
        );
        let path = std::env::temp_dir().join(format!("turnpike-handoff-triggers-{}.toml", std::process::id()));
        std::fs::write(&path, config).unwrap();
        std::env::set_var("TURNPIKE_TENANTS_CONFIG", &path);
        let cfg = turnpike_guard::EncoderConfig::from_env_or_local_cache().expect("model config");
        let dylib = cfg.ort_dylib.clone().expect("ORT_DYLIB_PATH or the models.sh cache (deploy/local/models.sh)");
        std::env::set_var("TURNPIKE_MODEL_DIR", &cfg.model_dir);
        std::env::set_var("ORT_DYLIB_PATH", dylib);
    });
}

/// One scripted session: its turns are sent one at a time, each after the previous one's reply.
struct Case {
    /// The trigger it exercises.
    trigger: &'static str,
    tenant: &'static str,
    tier: Option<&'static str>,
    turns: &'static [&'static str],
    /// The reason it must hand off for (on its last turn, from `stage`), or `None`: it must not.
    expect: Option<(&'static str, &'static str)>,
}

const fn case(
    trigger: &'static str,
    tenant: &'static str,
    turns: &'static [&'static str],
    expect: Option<(&'static str, &'static str)>,
) -> Case {
    Case { trigger, tenant, tier: None, turns, expect }
}

const IN: &str = "guard-in";
const OUT: &str = "guard-out";

const STREAMED_GIVE_UP: &str = "Can you fix my router? [[mock:tps=40]][[mock:reply=I'm sorry, I can't help with \
    router settings. Please check the manual that came with it. It has a whole section on the blinking lights.]]";

fn mix() -> Vec<Case> {
    vec![
        // Explicit request: a phrase, or the head on other words; a mention of a person is not a request.
        case("user_asked", PATTERNS, &["Can I talk to a human please?"], Some(("user_asked", IN))),
        case("user_asked", MODEL, &["I want to speak to a representative about my order."], Some(("user_asked", IN))),
        case("user_asked", MODEL, &["is there any way I could chat with one of your staff members?"], Some(("user_asked", IN))),
        case("user_asked", PATTERNS, &["my agent number is 5"], None),
        case("user_asked", MODEL, &["the person at the store was nice"], None),
        case("user_asked", MODEL, &["The agent who delivered my parcel was rude."], None),
        // Sustained frustration: two negative turns in a row; one annoyed turn, or an annoyed turn followed
        // by a calm one, is not.
        case("sentiment", PATTERNS, &["This is ridiculous, my parcel is a week late.", "Still nothing. This is useless."], Some(("sentiment", IN))),
        case("sentiment", MODEL, &["I'm fed up with waiting for this refund.", "Seriously, this is unacceptable."], Some(("sentiment", IN))),
        case("sentiment", MODEL, &["This is ridiculous, where is my parcel?"], None),
        case("sentiment", PATTERNS, &["This is ridiculous, where is my parcel?", "Thanks, can you check the tracking number?"], None),
        // A loop: the same question the third time (model: repetition), or the bot's same answer again.
        case("loop", MODEL, &[
            "Where is my order? It should have arrived on Monday.",
            "where's my order?? it was due monday",
            "My order hasn't arrived yet. Where is it?",
        ], Some(("loop", IN))),
        case("loop", MODEL, &["Where is my order? It should have arrived on Monday.", "where's my order?? it was due monday"], None),
        case("loop", PATTERNS, &[
            "Where is my parcel? [[mock:reply=Your parcel left our warehouse on Monday and should reach you within three working days.]]",
            "Has it shipped yet? [[mock:reply=Your parcel left our warehouse on Monday and should reach you within three working days.]]",
        ], Some(("loop", OUT))),
        case("loop", PATTERNS, &["Thanks! [[mock:reply=You're welcome!]]", "Thanks again! [[mock:reply=You're welcome!]]"], None),
        // Sensitive topics: by meaning (model) or keyword (patterns); a near miss is not.
        case("sensitive_topic", MODEL, &["I'll see you in court"], Some(("sensitive_topic", IN))),
        case("sensitive_topic", MODEL, &["There's a charge on my statement I never made"], Some(("sensitive_topic", IN))),
        case("sensitive_topic", PATTERNS, &["If this isn't fixed this week I will take legal action."], Some(("sensitive_topic", IN))),
        case("sensitive_topic", MODEL, &["the lawyer in that film was funny. Where is my order?"], None),
        case("sensitive_topic", PATTERNS, &["Can I change the card I'm charged on?"], None),
        // Low confidence (guard-out): the model says it cannot help; a cheap-tier hedge escalates instead.
        case("low_confidence", PATTERNS, &["Can you fix my router? [[mock:reply=I'm sorry, I can't help with router settings.]]"], Some(("low_confidence", OUT))),
        // Streamed (paced tokens): the first sentence gives up, then two more arrive in later records; the
        // check must see the whole reply, not the FINAL's part.
        case("low_confidence", PATTERNS, &[STREAMED_GIVE_UP], Some(("low_confidence", OUT))),
        case("low_confidence", PATTERNS, &["Can I pay with a gift card? [[mock:reply=I'm not sure whether gift cards work for this order.]]"], None),
        case("low_confidence", PATTERNS, &["What are your opening hours?"], None),
    ]
}

/// The VIP cases: the same annoyed turn hands a platinum customer to a person and not a gold one; a tenant
/// with `immediate` hands any VIP over on the first turn.
fn vip_mix() -> Vec<Case> {
    let annoyed: &'static [&'static str] = &["This is ridiculous, my parcel is a week late."];
    vec![
        Case { tier: Some("platinum"), ..case("vip", PATTERNS, annoyed, Some(("vip", IN))) },
        Case { tier: Some("vip"), ..case("vip", VIP_NOW, &["What are your opening hours?"], Some(("vip", IN))) },
        Case { tier: Some("gold"), ..case("vip", PATTERNS, annoyed, None) },
        Case { tier: Some("gold"), ..case("vip", VIP_NOW, &["What are your opening hours?"], None) },
    ]
}

/// Reads the outbound topic once from the beginning and counts each session's FINALs.
struct Finals {
    consumer: StreamConsumer,
    codec: turnpike_schemas::Codec,
    seen: HashMap<String, usize>,
    /// DELTA records per session.
    deltas: HashMap<String, usize>,
}

impl Finals {
    fn new(p: &Pipeline) -> Finals {
        let consumer = reader_from_start(&p.endpoints, &p.topic("turnpike.replies.outbound"), 6);
        Finals { consumer, codec: p.codec.clone(), seen: HashMap::new(), deltas: HashMap::new() }
    }

    /// Waits until every session in `want` has at least its count of FINALs.
    async fn wait(&mut self, want: &HashMap<String, usize>) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while want.iter().any(|(s, n)| self.seen.get(s).copied().unwrap_or(0) < *n) {
            assert!(Instant::now() < deadline, "replies missing: want {want:?}, seen {:?}", self.seen);
            let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), self.consumer.recv()).await else {
                continue;
            };
            let r: OutboundReply = self.codec.decode(m.payload().unwrap()).await.unwrap();
            match r.kind {
                OutboundKind::Final => *self.seen.entry(r.session_id).or_default() += 1,
                OutboundKind::Delta => *self.deltas.entry(r.session_id).or_default() += 1,
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_trigger_hands_off_for_its_reason_and_not_on_its_hard_negatives() {
    environment();
    let p = Pipeline::start().await;
    let cases: Vec<Case> = mix().into_iter().chain(vip_mix()).collect();
    let sessions: Vec<String> = (0..cases.len()).map(|i| format!("t{i}:{}", unique("c"))).collect();
    // Round r sends every session's turn r, then waits for those replies: a session's turns go one at a
    // time (route and the loop check read what the previous turn left), sessions run side by side.
    let mut finals = Finals::new(&p);
    let rounds = cases.iter().map(|c| c.turns.len()).max().unwrap_or(0);
    for r in 0..rounds {
        let mut want = HashMap::new();
        for (c, s) in cases.iter().zip(&sessions).filter(|(c, _)| c.turns.len() > r) {
            let mut t = turn(c.tenant, s, &format!("m{r}"), c.turns[r]);
            if let Some(tier) = c.tier {
                t.attributes.insert("tier".into(), tier.into());
            }
            p.send_turn(&t).await;
            want.insert(s.clone(), r + 1);
        }
        finals.wait(&want).await;
    }
    // Every session has its replies, so every request a trigger wrote is on the topic.
    let requests: Vec<HandoffRequest> = read_until::<HandoffRequest>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.handoff.requests"),
        6,
        Duration::from_secs(10),
        |_| false,
    )
    .await
    .into_iter()
    .map(|(_, r)| r)
    .filter(|r| r.kind == HandoffKind::Request)
    .collect();

    let mut wrong = Vec::new();
    // trigger → (positives, handed off for the right reason, negatives, negatives handed off)
    let mut table: BTreeMap<&str, (usize, usize, usize, usize)> = BTreeMap::new();
    for (c, s) in cases.iter().zip(&sessions) {
        let got: Vec<&HandoffRequest> = requests.iter().filter(|r| &r.session_id == s).collect();
        let row = table.entry(c.trigger).or_default();
        match c.expect {
            Some((reason, stage)) => {
                row.0 += 1;
                let last = c.turns.len() as i64;
                let ok = got.len() == 1
                    && got[0].reason == reason
                    && got[0].source_stage == stage
                    && got[0].seq == last
                    && !got[0].evidence.is_empty()
                    && got[0].tags.contains(&format!("handoff:{reason}"));
                if ok {
                    row.1 += 1;
                } else {
                    wrong.push(format!("{:?} expected {reason} from {stage} on turn {last}, got {got:?}", c.turns));
                }
            }
            None => {
                row.2 += 1;
                if !got.is_empty() {
                    row.3 += 1;
                    wrong.push(format!("{:?} must not hand off, got {got:?}", c.turns));
                }
            }
        }
    }
    println!("trigger          positives  handed off (right reason)  hard negatives  handed off");
    for (t, (pos, hit, neg, fp)) in &table {
        println!("{t:<16} {pos:>9}  {hit:>25}  {neg:>14}  {fp:>10}");
    }
    let total: HashSet<&str> = requests.iter().map(|r| r.session_id.as_str()).collect();
    println!("{} sessions, {} handed off", cases.len(), total.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Priority and tags come from the trigger: the VIP's handoff is at least high and says whose it is.
    let vip = requests.iter().find(|r| r.reason == "vip" && r.tags.contains(&"tier:platinum".to_string()));
    let vip = vip.expect("the platinum customer's handoff");
    assert_eq!(vip.priority, "high", "{vip:?}");
    assert!(vip.evidence.contains("1 turns") && vip.frustration.is_some_and(|f| f >= 0.5), "{vip:?}");
    let streamed = cases.iter().zip(&sessions).find(|(c, _)| c.turns == [STREAMED_GIVE_UP]).map(|(_, s)| s);
    let deltas = streamed.and_then(|s| finals.deltas.get(s)).copied().unwrap_or(0);
    assert!(deltas >= 2, "the streamed reply left guard-out in {deltas} DELTA records");
    // Frustration is the sentiment head's score where guard-in ran the model, the lexical fallback elsewhere.
    let sentiment: Vec<&str> =
        requests.iter().filter(|r| r.reason == "sentiment").map(|r| r.evidence.as_str()).collect();
    assert!(sentiment.iter().any(|e| e.contains("by the model")), "{sentiment:?}");
    assert!(sentiment.iter().any(|e| e.contains("by the lexical_fallback")), "{sentiment:?}");
    let topic = requests.iter().find(|r| r.reason == "sensitive_topic" && r.tags.contains(&"topic:legal".to_string()));
    assert!(topic.is_some_and(|r| r.priority == "high"), "{requests:?}");
    p.stop().await;
}
