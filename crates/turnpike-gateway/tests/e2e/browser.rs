//! The web chat page in a real browser, against the real stack: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) opens the page served by a gateway in front of a whole pipeline (all eight stages on
//! their own prefixed topics, the project's mock LLM), a person's question is typed and sent, and the page
//! must show the reply as it streams in, then whole and exactly once — also across a gateway restart in the
//! middle of a reply, which the page survives by reconnecting and resuming from the last event it received.
//!
//! And the way back from a person: the agent joining, their message and the return to the bot, as the page
//! shows them.
//!
//! Needs the local stack (`deploy/local/stack.sh start && cargo run -p turnpike -- setup`) and Chromium; a
//! missing browser fails the test with the `apt-get install` line.

use crate::chromium;
use crate::common;

use common::{gateway_config, token, unique, Stack, HINT};
use fantoccini::{Client, Locator};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use std::time::{Duration, Instant};
use turnpike_core::PerTenant;
use turnpike_gateway::config::TenantLimits;
use turnpike_schemas::{Codec, DeskEvent, DeskEventKind};

/// Every user may spend 1,000 tokens a minute: plenty for a chat, and a few long messages use it up.
fn limits() -> TenantLimits {
    TenantLimits { user_tokens_per_minute: 1000, ..TenantLimits::default() }
}

/// The page of gateway instance `i`, signed in as `user` of `tenant` (the JWT in the fragment, as a customer's
/// site would open it). A query unique per user: a new fragment alone would not reload the page.
fn page_url(s: &Stack, i: usize, tenant: &str, user: &str) -> String {
    format!("http://{}/?u={user}#token={}", s.addr(i), token(tenant, user))
}

/// Stops gateway instance `i` as SIGTERM does (its sockets closed with 1001), then starts a new instance on
/// the same address: the page's origin does not change, the instance behind it does.
async fn restart_instance(s: &mut Stack, i: usize) {
    let old = s.gateways.remove(i);
    let addr = old.addr;
    old.app.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), old.task)
        .await
        .expect("gateway did not stop")
        .unwrap()
        .expect("gateway stopped with an error");
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let settings = turnpike_gateway::Settings {
        config: gateway_config(&s.tenant_a, &s.tenant_b),
        limits: PerTenant::uniform(limits()),
        topology: s.topo.clone(),
        endpoints: s.endpoints.clone(),
        instance_id: Some(unique("gw-restarted")),
        consume_outbound: true,
    };
    s.gateways.insert(i, turnpike_gateway::start(settings, listener, s.shutdown.clone()).await.expect(HINT));
}

/// Evaluates `js` (a function body ending in `return`) in the page.
async fn eval(page: &Client, js: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(30), page.execute(js, vec![]))
        .await
        .unwrap_or_else(|_| panic!("the browser did not answer within 30 s:\n{js}"))
        .unwrap_or_else(|e| panic!("script failed: {e}\n{js}"))
}

/// What the page shows, for failure messages.
async fn screen(page: &Client) -> Value {
    eval(
        page,
        "return {connection: document.getElementById('connection').textContent,
                 error: document.getElementById('error').textContent,
                 activity: document.getElementById('activity').textContent,
                 messages: [...document.querySelectorAll('#messages > li')].map(li => li.textContent)};",
    )
    .await
}

/// Saves a screenshot of the page as `{name}.png` in `TURNPIKE_BROWSER_SCREENSHOTS` (default: the temp
/// folder) and returns its path: what a person would have seen, for a failure or a look at the page.
async fn snapshot(page: &Client, name: &str) -> String {
    let dir = std::env::var_os("TURNPIKE_BROWSER_SCREENSHOTS").map_or_else(std::env::temp_dir, Into::into);
    let path = dir.join(format!("turnpike-browser-{name}.png"));
    match page.screenshot().await {
        Ok(png) if std::fs::write(&path, &png).is_ok() => path.display().to_string(),
        _ => "none".into(),
    }
}

/// Polls `js` until it returns something other than null/false, up to 90 s (a first turn on fresh topics
/// waits for consumer groups to form).
async fn wait_for(page: &Client, what: &str, js: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = eval(page, js).await;
        if !v.is_null() && v != Value::Bool(false) {
            return v;
        }
        if Instant::now() >= deadline {
            let shot = snapshot(page, "timeout").await;
            panic!("timed out waiting for {what}; the page shows {} (screenshot: {shot})", screen(page).await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records, in the page, every text the newest assistant reply takes and every activity and connection line
/// shown.
const RECORDER: &str = "window.__texts = []; window.__activity = []; window.__connection = [];
    new MutationObserver(() => {
        const replies = document.querySelectorAll('#messages li.bot .text');
        const text = replies.length ? replies[replies.length - 1].textContent : '';
        if (text && window.__texts[window.__texts.length - 1] !== text) window.__texts.push(text);
        for (const [id, seen] of [['activity', window.__activity], ['connection', window.__connection]]) {
            const shown = document.getElementById(id).textContent;
            if (shown && !seen.includes(shown)) seen.push(shown);
        }
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
    return true;";

/// Types `text` into the message box and presses Send, as a person would.
async fn send(page: &Client, text: &str) {
    let input = page.find(Locator::Css("textarea#input")).await.unwrap();
    input.send_keys(text).await.unwrap();
    page.find(Locator::Css("button#send")).await.unwrap().click().await.unwrap();
}

/// Waits for the `n`-th (1-based) assistant reply to be complete and returns its text.
async fn finished_reply(page: &Client, n: usize) -> String {
    let js = format!(
        "const r = document.querySelectorAll('#messages li.bot')[{}];
         return r && r.getAttribute('aria-busy') === 'false' ? r.querySelector('.text').textContent : null;",
        n - 1
    );
    wait_for(page, &format!("reply {n} to finish"), &js).await.as_str().unwrap().to_owned()
}

async fn online(page: &Client) {
    wait_for(page, "the page to connect", "return document.getElementById('connection').dataset.state === 'online';")
        .await;
}

const REPLY: &str = "Your parcel is on its way. It left the depot this morning with the other parcels for your town. \
                     You can follow it on the orders page.";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_sees_the_reply_stream_in_and_is_told_of_expired_sign_in_handoff_and_quota() {
    let browser = chromium::start().await;
    let stack = Stack::start(limits()).await;
    let page = &browser.client;

    // An expired sign-in: the refused upgrade is explained, not retried forever.
    let expired = common::hs256("any", common::SECRET, &stack.tenant_a, "ada", -3600);
    page.goto(&format!("http://{}/?u=expired#token={expired}", stack.addr(0))).await.unwrap();
    let refusal = wait_for(
        page,
        "the expired sign-in to be explained",
        "const e = document.getElementById('error');
         return !e.hidden ? [e.textContent, document.getElementById('connection').textContent] : null;",
    )
    .await;
    assert!(refusal[0].as_str().unwrap().contains("sign-in has expired"), "{refusal}");
    assert_eq!(refusal[1], "Not signed in", "{refusal}");

    page.goto(&page_url(&stack, 0, &stack.tenant_a, "ada")).await.unwrap();
    let url = page.current_url().await.unwrap();
    assert_eq!(url.fragment(), None, "the token stays in the address bar: {url}");
    online(page).await;
    let label = eval(page, "return document.querySelector('label[for=input]').textContent;").await;
    assert_eq!(label, "Your message");
    eval(page, RECORDER).await;

    let question = format!("Where is my parcel? [[mock:reply={REPLY}]] [[mock:tps=12]]");
    send(page, &question).await;
    let text = finished_reply(page, 1).await;
    assert_eq!(text, REPLY, "the reply on the page is the model's text, whole and once");
    let mine = eval(page, "return document.querySelector('#messages li.user .text').textContent;").await;
    assert_eq!(mine, question.as_str());
    // Streamed: the reply grew through partial texts, each a prefix of the whole, before it was complete.
    let texts: Vec<String> = serde_json::from_value(eval(page, "return window.__texts;").await).unwrap();
    assert!(texts.len() >= 2, "the reply appeared at once, not streamed: {texts:?}");
    assert!(texts.iter().all(|t| REPLY.starts_with(t.as_str())), "a partial text that is not a prefix: {texts:?}");
    assert!(texts[0].len() < REPLY.len(), "{texts:?}");
    // While the reply was on its way the page said so; once complete it says nothing.
    let activity: Vec<String> = serde_json::from_value(eval(page, "return window.__activity;").await).unwrap();
    assert!(!activity.is_empty(), "no waiting/typing status was shown");
    assert_eq!(eval(page, "return document.getElementById('activity').textContent;").await, "");
    let busy = eval(page, "return document.querySelector('#messages li.bot').getAttribute('aria-busy');").await;
    assert_eq!(busy, "false", "screen readers are told the reply is complete");
    snapshot(page, "reply").await;

    // Asking for a person: the page says the conversation is handed over.
    send(page, "I want to talk to a human, please.").await;
    finished_reply(page, 2).await;
    snapshot(page, "handoff").await;
    let caption = eval(
        page,
        "const r = document.querySelectorAll('#messages li.bot')[1];
         return [r.dataset.finish, r.querySelector('.caption') && r.querySelector('.caption').textContent];",
    )
    .await;
    assert_eq!(caption[0], "handoff", "{caption}");
    assert!(caption[1].as_str().unwrap_or("").contains("handed over to a person"), "{caption}");

    // Another user spends most of the 1,000 tokens a minute on one long message (425 tokens); the next (600)
    // is refused with a countdown, marked as not sent, and may be sent again.
    page.goto(&page_url(&stack, 0, &stack.tenant_a, "bea")).await.unwrap();
    online(page).await;
    page.find(Locator::Css("button#new-conversation")).await.unwrap().click().await.unwrap();
    online(page).await;
    assert_eq!(eval(page, "return document.querySelectorAll('#messages > li').length;").await, 0);
    send(page, &format!("{:.<1700}", "Here is the whole story of my order.")).await;
    wait_for(
        page,
        "the first message to be accepted",
        "return document.querySelector('#messages li.user').dataset.state === 'sent';",
    )
    .await;
    send(page, &format!("{:.<2400}", "And here is the rest of it.")).await;
    let refused = wait_for(
        page,
        "the quota refusal",
        "const e = document.getElementById('error');
         const mine = document.querySelectorAll('#messages li.user')[1];
         return !e.hidden && mine.dataset.state === 'failed'
             ? [e.textContent, document.getElementById('send').disabled, !!mine.querySelector('button.again')] : null;",
    )
    .await;
    let message = refused[0].as_str().unwrap();
    assert!(message.contains("allowance") && message.contains("Try again in"), "{refused}");
    assert_eq!(refused[1], true, "Send stays disabled until the quota allows again: {refused}");
    assert_eq!(refused[2], true, "the refused message can be sent again: {refused}");
    snapshot(page, "quota").await;

    browser.close().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_resumes_a_reply_across_a_gateway_restart_without_loss_or_repetition() {
    let browser = chromium::start().await;
    let mut stack = Stack::start(limits()).await;
    let page = &browser.client;
    page.goto(&page_url(&stack, 0, &stack.tenant_a, "cyd")).await.unwrap();
    online(page).await;
    eval(page, RECORDER).await;

    // Slow enough (about 8 s of text) that the restart falls in the middle of the reply.
    send(page, &format!("Where is my parcel? [[mock:reply={REPLY}]] [[mock:tps=3]]")).await;
    let first = wait_for(page, "the first part of the reply", "return window.__texts[0] || null;").await;
    // Not asserted (it depends on speed), but worth knowing when reading a run: how much had arrived.
    println!("restarting the gateway with {} of {} characters shown", first.as_str().unwrap().len(), REPLY.len());
    restart_instance(&mut stack, 0).await;
    let text = finished_reply(page, 1).await;
    assert_eq!(text, REPLY, "the reply after the restart is whole, with nothing lost or shown twice");
    let texts: Vec<String> = serde_json::from_value(eval(page, "return window.__texts;").await).unwrap();
    assert!(texts.iter().all(|t| REPLY.starts_with(t.as_str())), "a repeated or garbled part: {texts:?}");
    // The page noticed the drop, reconnected and is connected again.
    let shown: Vec<String> = serde_json::from_value(eval(page, "return window.__connection;").await).unwrap();
    assert!(shown.iter().any(|s| s.contains("Reconnecting")), "the drop went unnoticed: {shown:?}");
    online(page).await;
    let replies = eval(page, "return document.querySelectorAll('#messages li.bot').length;").await;
    assert_eq!(replies, 1, "one reply, not a second copy of it");

    browser.close().await;
    stack.stop().await;
}

/// The records the helpdesk webhook endpoint (`turnpike helpdesk-hooks`) writes for the agent's actions,
/// written here directly: the webhooks themselves are the stack tests' (`crates/turnpike/tests/e2e/desk*.rs`);
/// this test is about what the page shows for them.
async fn agent_acts(stack: &Stack, tenant: &str, session: &str, ticket: &str, event: &str, kind: DeskEventKind) {
    let topic = stack.topo.topic_named("turnpike.handoff.desk").unwrap().name.clone();
    let codec = Codec::for_endpoints(&stack.endpoints, Duration::from_secs(5)).unwrap();
    let e = DeskEvent {
        tenant_id: tenant.into(),
        session_id: session.into(),
        ticket_id: ticket.into(),
        helpdesk: "none".into(),
        kind,
        event_id: event.into(),
        text: if kind == DeskEventKind::AgentMessage { AGENT_LINE.into() } else { String::new() },
        author: "Sam".into(),
        at_ms: turnpike_runner::now_ms(),
        ..Default::default()
    };
    let payload = codec.encode(&topic, &e).await.expect(HINT);
    let producer: FutureProducer =
        stack.endpoints.kafka_properties().into_iter().collect::<ClientConfig>().create().unwrap();
    producer
        .send(FutureRecord::to(&topic).key(session.as_bytes()).payload(&payload), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect(HINT);
}

const AGENT_LINE: &str = "Hi, I'm Sam from support. Your parcel arrives tomorrow.";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_sees_the_agent_join_their_message_and_the_return_to_the_bot() {
    let browser = chromium::start().await;
    let stack = Stack::start(limits()).await;
    let page = &browser.client;
    let tenant = stack.tenant_a.clone();
    page.goto(&page_url(&stack, 0, &tenant, "eve")).await.unwrap();
    online(page).await;
    send(page, "I want to talk to a human, please.").await;
    finished_reply(page, 1).await;

    // The handoff stage made the conversation the helpdesk's (the tenant has no helpdesk configured: the
    // ticket is Turnpike's own), under the ticket the agent's events name.
    let conversation = eval(page, "return sessionStorage.getItem('turnpike.conversation');").await;
    let session = format!("eve:{}", conversation.as_str().unwrap());
    let deps = turnpike_stages::Deps::connect(&stack.endpoints).await.expect(HINT);
    let deadline = Instant::now() + Duration::from_secs(90);
    let ticket = loop {
        if let Some(("human", Some(t))) =
            deps.sessions.owner(&tenant, &session).await.unwrap().as_ref().map(|(o, t)| (o.as_str(), t.clone()))
        {
            break t;
        }
        assert!(Instant::now() < deadline, "the conversation was never handed off");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    agent_acts(&stack, &tenant, &session, &ticket, "none:1:m1", DeskEventKind::AgentMessage).await;
    let agent = wait_for(
        page,
        "the agent's message",
        "const a = document.querySelector('#messages li.agent');
         return a && a.getAttribute('aria-busy') === 'false'
             ? [a.querySelector('.who').textContent, a.querySelector('.text').textContent] : null;",
    )
    .await;
    assert_eq!(agent, serde_json::json!(["Support agent", AGENT_LINE]));
    snapshot(page, "agent").await;

    agent_acts(&stack, &tenant, &session, &ticket, "none:1:closed", DeskEventKind::Closed).await;
    wait_for(
        page,
        "the return to the bot",
        "return [...document.querySelectorAll('#messages li.note')].some(n => n.textContent.includes('back with the assistant'));",
    )
    .await;
    // In order: the handoff reply, then the agent joining, their message, and the bot taking over again.
    let shown = eval(
        page,
        "return [...document.querySelectorAll('#messages > li')].map(li =>
             li.classList.contains('note') ? 'note: ' + li.textContent
             : (li.querySelector('.who') ? li.querySelector('.who').textContent : '') + ': '
               + li.querySelector('.text').textContent);",
    )
    .await;
    let shown: Vec<String> = serde_json::from_value(shown).unwrap();
    let at =
        |needle: &str| shown.iter().position(|s| s.contains(needle)).unwrap_or_else(|| panic!("{needle}: {shown:?}"));
    let (handed, joined, line, back) =
        (at("handed over"), at("joined the conversation"), at(AGENT_LINE), at("back with the assistant"));
    assert!(handed < joined && joined < line && line < back, "{shown:#?}");
    assert_eq!(shown.iter().filter(|s| s.contains(AGENT_LINE)).count(), 1, "the agent's message once: {shown:#?}");
    assert!(shown[line].starts_with("Support agent: "), "{shown:#?}");

    // The bot answers the next message again.
    send(page, &format!("Thanks! Anything else? [[mock:reply={REPLY}]]")).await;
    let bots = wait_for(
        page,
        "the bot's answer",
        "const b = [...document.querySelectorAll('#messages li.bot:not(.agent)')];
         const last = b[b.length - 1];
         return b.length === 2 && last.getAttribute('aria-busy') === 'false'
             ? [last.querySelector('.who').textContent, last.querySelector('.text').textContent] : null;",
    )
    .await;
    assert_eq!(bots, serde_json::json!(["Assistant", REPLY]));
    snapshot(page, "bot-resumed").await;

    browser.close().await;
    stack.stop().await;
}
