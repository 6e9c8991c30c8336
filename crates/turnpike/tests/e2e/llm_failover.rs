//! Failover through the generate stage on the real stack: `turnpike stage generate` runs as its own process
//! with a two-deployment chain (`TURNPIKE_LLM_CONFIG`: an OpenAI-format primary, an Anthropic-format
//! fallback, both mock servers). A primary that is down is invisible to the user; a primary that cuts its
//! stream after the first text has the fallback continue the text already shown (or, when that fails too,
//! the reply ends as `incomplete` with a handoff), never restarted elsewhere;
//! a tenant over its budget is answered without any LLM call; a configured HTTP tool is called by the
//! model once per turn and its result reaches the user; a tool's call carries the real values behind the PII
//! tokens of its arguments, and the model reads its result masked.

use crate::common;

use common::*;
use std::time::Duration;
use turnpike_llm::mock::script::Fault;
use turnpike_llm::mock::{self, MockConfig, MockServer};
use turnpike_schemas::{OutboundKind, OutboundReply, TicketEvent};

const ALL_BUT_GENERATE: &[&str] = &["ingest", "guard-in", "assemble", "route", "guard-out", "deliver", "handoff"];

struct Setup {
    p: Pipeline,
    primary: MockServer,
    fallback: MockServer,
    child: KillOnDrop,
    config: std::path::PathBuf,
}

async fn setup() -> Setup {
    setup_with("").await
}

/// `extra` is appended to the LLM configuration file.
async fn setup_with(extra: &str) -> Setup {
    setup_full("", extra).await
}

/// `head` (top-level keys and tables of its own) goes before the deployments.
async fn setup_with_head(head: &str) -> Setup {
    setup_full(head, "").await
}

async fn setup_full(head: &str, extra: &str) -> Setup {
    let p = Pipeline::start_stages(ALL_BUT_GENERATE, MockConfig::instant()).await;
    let primary = mock::spawn(MockConfig::instant()).await.unwrap();
    let fallback = mock::spawn(MockConfig::instant()).await.unwrap();
    let config = std::env::temp_dir().join(format!("{}.toml", unique("llm")));
    let toml = format!(
        r#"{}
[[deployments]]
name = "primary"
provider = "openai"
base_url = "{}"
model = "gpt-4o-mini"

[[deployments]]
name = "fallback"
provider = "anthropic"
base_url = "{}"
model = "claude-sonnet-4"

[tiers.cheap]
chain = ["primary", "fallback"]
ttft_timeout_ms = 2000

[tiers.capable]
chain = ["primary", "fallback"]
ttft_timeout_ms = 2000
{}
"#,
        head,
        primary.base_url(),
        fallback.root_url(),
        extra
    );
    std::fs::write(&config, toml).unwrap();
    let child = KillOnDrop::spawn(
        p.turnpike_command(&["stage", "generate", "--metrics-addr", "127.0.0.1:0"])
            .env("TURNPIKE_LLM_CONFIG", &config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null()),
    );
    Setup { p, primary, fallback, child, config }
}

impl Setup {
    async fn stop(mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let _ = std::fs::remove_file(&self.config);
        // handoff's note for the agent (a summary request) legitimately uses the pipeline's mock; no reply may.
        let stats = self.p.mock.stats();
        assert_eq!(stats.requests - stats.summaries, 0, "generate used the configured chain, not --llm-base-url");
        self.p.stop().await;
    }

    /// Every outbound record of `session` once its FINAL arrived, in chunk order.
    async fn reply(&self, session: &str) -> Vec<OutboundReply> {
        let mut replies: Vec<OutboundReply> = read_until::<OutboundReply>(
            &self.p.endpoints,
            &self.p.codec,
            &self.p.topic("turnpike.replies.outbound"),
            6,
            Duration::from_secs(90),
            |rs| rs.iter().any(|r| r.session_id == session && r.kind == OutboundKind::Final),
        )
        .await
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.session_id == session)
        .collect();
        replies.sort_by_key(|r| r.chunk_index);
        replies
    }
}

pub(crate) fn text_of(replies: &[OutboundReply], kind: OutboundKind) -> String {
    replies.iter().filter(|r| r.kind == kind).map(|r| r.text.as_str()).collect()
}

/// The reply as the contract defines it: the DELTA texts, then the FINAL's (where the last words may ride).
pub(crate) fn reply_text(replies: &[OutboundReply]) -> String {
    text_of(replies, OutboundKind::Delta) + &text_of(replies, OutboundKind::Final)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_that_is_down_is_invisible_through_generate() {
    let s = setup().await;
    s.primary.set_fault(Some(Fault::Status(503)));
    let down = format!("f1:{}", unique("c"));
    s.p.send_turn(&turn("acme", &down, "m1", "Where is my parcel?")).await;
    let during = s.reply(&down).await;
    let final_during = during.iter().find(|r| r.kind == OutboundKind::Final).unwrap();
    assert_eq!(final_during.finish_reason.as_deref(), Some("stop"), "{during:?}");
    assert_eq!(final_during.model.as_deref(), Some("claude-sonnet-4"), "the fallback answered");
    assert!(s.primary.stats().requests >= 1);

    // The same question with the primary healthy: the user sees exactly the same reply.
    s.primary.set_fault(None);
    let healthy = format!("f2:{}", unique("c"));
    s.p.send_turn(&turn("acme", &healthy, "m1", "Where is my parcel?")).await;
    let after = s.reply(&healthy).await;
    let final_after = after.iter().find(|r| r.kind == OutboundKind::Final).unwrap();
    assert_eq!(final_after.model.as_deref(), Some("gpt-4o-mini"), "the primary answered");
    let text = reply_text(&during);
    assert_eq!(text.split_whitespace().count(), 40);
    assert_eq!(text, reply_text(&after), "no visible difference");
    assert_eq!(s.fallback.stats().requests, 1);
    s.stop().await;
}

/// The primary (OpenAI, not configured to continue) cuts every stream after its first words: the fallback
/// (Anthropic, whose prefill continues natively) is asked to continue the text already shown, and the user
/// reads the reply the primary would have written, whole, with no notice and no handoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_after_the_first_text_is_continued_on_the_fallback_through_generate() {
    let s = setup().await;
    s.primary.set_fault(Some(Fault::Cut));
    let session = format!("f3:{}", unique("c"));
    s.p.send_turn(&turn("acme", &session, "m1", "Tell me a story.")).await;
    let replies = s.reply(&session).await;
    let fin = replies.iter().find(|r| r.kind == OutboundKind::Final).unwrap();
    assert_eq!(fin.finish_reason.as_deref(), Some("stop"), "{replies:?}");
    assert_eq!(fin.model.as_deref(), Some("claude-sonnet-4"), "the fallback finished it");
    let full = mock::text::generate(MockConfig::default().seed, "Tell me a story.", 40).concat();
    assert_eq!(reply_text(&replies), full, "one coherent reply, byte for byte");
    assert_eq!(replies.iter().filter(|r| r.kind == OutboundKind::Final).count(), 1);
    assert_eq!(s.fallback.stats().requests, 1, "one continuation request");
    s.stop().await;
}

/// Neither deployment can finish the reply (the primary cuts, the fallback is down): after text left, the
/// reply ends with the explicit notice and a handoff, never restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_that_cannot_be_continued_ends_incomplete_with_a_handoff_through_generate() {
    let s = setup().await;
    s.primary.set_fault(Some(Fault::Cut));
    s.fallback.set_fault(Some(Fault::Status(503)));
    let session = format!("f4:{}", unique("c"));
    s.p.send_turn(&turn("acme", &session, "m1", "Tell me a story.")).await;
    let replies = s.reply(&session).await;
    let fin = replies.iter().find(|r| r.kind == OutboundKind::Final).unwrap();
    assert_eq!(fin.finish_reason.as_deref(), Some("incomplete"), "{replies:?}");
    assert!(fin.text.contains("couldn't finish"), "explicit notice: {}", fin.text);
    let shown = text_of(&replies, OutboundKind::Delta);
    let full = mock::text::generate(MockConfig::default().seed, "Tell me a story.", 40).concat();
    assert!(!shown.is_empty() && full.starts_with(&shown) && shown.len() < full.len(), "{shown:?}");
    assert_eq!(replies.iter().filter(|r| r.kind == OutboundKind::Final).count(), 1);
    assert!(s.fallback.stats().requests >= 1, "the continuation was tried on the fallback");
    let tickets = read_until::<TicketEvent>(
        &s.p.endpoints,
        &s.p.codec,
        &s.p.topic("turnpike.handoff.events"),
        6,
        Duration::from_secs(60),
        |es| es.iter().any(|e| e.session_id == session),
    )
    .await;
    assert!(tickets.iter().any(|(_, e)| e.session_id == session), "a handoff ticket was opened");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_over_its_budget_is_answered_without_calling_the_llm() {
    // 1 micro-dollar a day: no call can fit. Tenants are unique per run (budgets are per tenant and day).
    let s = setup_with("[budget]\ntenant_daily_limit_micros = 1\n").await;
    let tenant = unique("t");
    let session = format!("b1:{}", unique("c"));
    s.p.send_turn(&turn(&tenant, &session, "m1", "Where is my parcel?")).await;
    let replies = s.reply(&session).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].finish_reason.as_deref(), Some("budget_exceeded"));
    assert_eq!((s.primary.stats().requests, s.fallback.stats().requests), (0, 0));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_configured_tool_is_called_once_and_its_result_answers_the_user() {
    // The harness mock doubles as the HTTP tool (`POST /mock/tool/{name}`); generate does not use it as an LLM.
    let tool_host = mock::spawn(MockConfig::instant()).await.unwrap();
    let tools = format!(
        "max_tool_rounds = 2\n[[tools]]\nname = \"lookup_order\"\ndescription = \"Order status\"\n\
         url = \"{}/mock/tool/lookup_order\"\nparameters = {{ type = \"object\", required = [\"order\"] }}\n",
        tool_host.root_url()
    );
    // Top-level keys must precede the tables: put them first in the file.
    let s = setup_with_head(&tools).await;
    let session = format!("t1:{}", unique("c"));
    let question = r#"Where is order 42? [[mock:tool=lookup_order {"order":"42"}]]"#;
    s.p.send_turn(&turn("acme", &session, "m1", question)).await;
    let replies = s.reply(&session).await;
    let fin = replies.iter().find(|r| r.kind == OutboundKind::Final).unwrap();
    assert_eq!(fin.finish_reason.as_deref(), Some("stop"), "{replies:?}");
    assert_eq!(reply_text(&replies), r#"Tool result: lookup_order: {"order":"42"}"#);
    assert_eq!(tool_host.stats().tool_calls, 1);
    assert_eq!(s.primary.stats().requests, 2, "two model calls: the tool call, then the answer");
    s.stop().await;
}

/// An order lookup as a shop would run it: records each request's JSON body and answers with the order,
/// the email it was asked about and the phone number on file.
async fn order_lookup() -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/orders",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let log = log.clone();
            async move {
                let email = body["email"].clone();
                log.lock().unwrap().push(body);
                axum::Json(serde_json::json!({"order": "42", "email": email, "phone": "+44 20 7946 0958"}))
            }
        }),
    );
    (serve_http(app).await + "/orders", seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tool_gets_the_real_values_behind_pii_tokens_and_the_model_reads_its_result_masked() {
    let (url, seen) = order_lookup().await;
    let tools = format!(
        "max_tool_rounds = 2\n[[tools]]\nname = \"lookup_order\"\ndescription = \"Orders by email\"\n\
         url = \"{url}\"\nparameters = {{ type = \"object\", required = [\"email\"] }}\n"
    );
    let s = setup_with_head(&tools).await;
    let session = format!("t2:{}", unique("c"));
    // guard-in masks the address: the model only ever has [EMAIL_1], and calls the tool with it.
    let question =
        r#"My email is ada@example.com, where is my order? [[mock:tool=lookup_order {"email":"[EMAIL_1]"}]]"#;
    s.p.send_turn(&turn("acme", &session, "m1", question)).await;
    let replies = s.reply(&session).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![serde_json::json!({"email": "ada@example.com"})],
        "the tool's HTTP call carried the real value"
    );
    // The model read the result masked: the same token for the known email, a new one for the phone.
    let text = reply_text(&replies);
    let result: serde_json::Value = serde_json::from_str(text.strip_prefix("Tool result: ").unwrap_or(&text))
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(result, serde_json::json!({"email": "[EMAIL_1]", "order": "42", "phone": "[PHONE_1]"}));
    let vault = turnpike_guard::vault::RedisVault::connect(&s.p.endpoints.redis_url, 60).await.unwrap();
    let phone = turnpike_guard::PiiVault::reveal(&vault, &format!("acme:{session}"), "[PHONE_1]").await.unwrap();
    assert_eq!(phone.as_deref(), Some("+44 20 7946 0958"), "the new token can be revealed (agent, later tools)");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_storm_on_the_primary_is_honoured_and_invisible_through_generate() {
    let s = setup().await;
    // Every primary answer is 429 with `Retry-After: 1`.
    s.primary.set_fault(Some(Fault::Status(429)));
    let sessions: Vec<String> = (0..12).map(|i| format!("rl{i}:{}", unique("c"))).collect();
    let check = |reply: &[OutboundReply]| {
        let fin = reply.iter().find(|r| r.kind == OutboundKind::Final).unwrap();
        assert_eq!(fin.finish_reason.as_deref(), Some("stop"), "{reply:?}");
        assert_eq!(fin.model.as_deref(), Some("claude-sonnet-4"), "the fallback answered during the storm");
        assert!(!reply_text(reply).is_empty());
    };
    // The first turn meets the 429 and fails over; the others arrive inside the Retry-After second.
    s.p.send_turn(&turn("acme", &sessions[0], "m1", "Can I change my delivery address?")).await;
    check(&s.reply(&sessions[0]).await);
    let after_first = s.primary.stats().requests;
    for session in &sessions[1..] {
        s.p.send_turn(&turn("acme", session, "m1", "Can I change my delivery address?")).await;
    }
    for session in &sessions[1..] {
        check(&s.reply(session).await);
    }
    // Retry-After keeps the primary out of use: far fewer calls reached it than there were turns.
    let primary_calls = s.primary.stats().requests;
    assert!(after_first >= 1, "the primary was never tried");
    assert!(primary_calls <= after_first + 2, "primary called {primary_calls} times for {} turns", sessions.len());
    assert_eq!(s.fallback.stats().requests, sessions.len() as u64);
    s.stop().await;
}
