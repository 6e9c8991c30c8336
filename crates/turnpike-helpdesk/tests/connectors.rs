//! The connectors against the fake helpdesk: request shapes and authentication each vendor accepts, one
//! ticket per handoff when a create is repeated after its answer was lost, Retry-After honoured, priority and
//! tags mapped, customer messages on the ticket, and the fake's signed webhooks verifiable by our checks.

use axum::body::Bytes;
use axum::http::HeaderMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use turnpike_core::{Classify, ErrorClass};
use turnpike_helpdesk::fake::{FakeConfig, FakeHelpdesk};
use turnpike_helpdesk::{signature, Connector, HelpdeskConfig, HelpdeskError, Kind, NewTicket, Priority, Secret};

fn ticket(id: &str) -> NewTicket {
    NewTicket {
        ticket_id: id.into(),
        tenant_id: "acme".into(),
        session_id: "u1:c1".into(),
        subject: "Handoff: refund".into(),
        summary: "Customer wants a refund for order 1234 <b>now</b>".into(),
        first_message: "I want a refund".into(),
        customer_id: "u1".into(),
        customer_name: Some("Jane Doe".into()),
        customer_email: Some("jane@example.com".into()),
        priority: Priority::High,
        tags: vec!["turnpike".into(), "handoff".into()],
    }
}

fn connector(fake: &FakeHelpdesk, kind: Kind) -> Connector {
    let c = fake.config();
    let token = match kind {
        Kind::Zendesk => &c.zendesk_token,
        Kind::Freshdesk => &c.freshdesk_api_key,
        _ => &c.intercom_token,
    };
    let cfg = HelpdeskConfig {
        kind,
        base_url: fake.url(),
        email: c.zendesk_email.clone(),
        token: Secret::new(token.clone()),
        admin_id: "991".into(),
        max_backoff_ms: 3000,
        ..Default::default()
    };
    Connector::new(cfg.resolve().unwrap(), reqwest::Client::new())
}

#[tokio::test]
async fn zendesk_ticket_is_created_once_with_priority_tags_and_idempotency_key() {
    let fake = FakeHelpdesk::spawn(FakeConfig::default()).await.unwrap();
    let zd = connector(&fake, Kind::Zendesk);
    let first = zd.open_ticket(&ticket("T-a1")).await.unwrap();
    assert!(!first.existed);
    let again = zd.open_ticket(&ticket("T-a1")).await.unwrap();
    assert_eq!((again.existed, &again.external_id), (true, &first.external_id));
    let tickets = fake.tickets();
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    let t = &tickets[0];
    assert_eq!((t.external_id.as_deref(), t.priority.as_str()), (Some("T-a1"), Some("high")));
    assert_eq!(t.tags, vec!["turnpike", "handoff"]);
    assert!(t.description.contains("order 1234 &lt;b&gt;now&lt;/b&gt;"), "summary escaped as HTML: {}", t.description);
    let creates: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(creates[0].idempotency_key.as_deref(), Some("tp-T-a1"));

    zd.add_customer_message(&ticket("T-a1"), &first, "Still waiting?", "turn-9").await.unwrap();
    let t = &fake.tickets()[0];
    assert_eq!(t.comments.len(), 1);
    assert_eq!((t.comments[0].author.as_str(), t.comments[0].public), ("customer", true));
    assert!(t.comments[0].body.contains("Still waiting?") && t.comments[0].body.contains("[tp:turn-9]"));
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_not_repeated() {
    let fake = FakeHelpdesk::spawn(FakeConfig::default()).await.unwrap();
    let mut cfg = connector(&fake, Kind::Zendesk).config().clone();
    cfg.timeout_ms = 150;
    cfg.max_attempts = 1;
    let zd = Connector::new(cfg, reqwest::Client::new());
    // The helpdesk creates the ticket, then the answer comes too late: the caller sees a failure.
    fake.delay_next("POST", "/api/v2/tickets", 1, Duration::from_millis(600));
    let lost = zd.open_ticket(&ticket("T-lost")).await.unwrap_err();
    assert_eq!(lost.class(), ErrorClass::Retryable, "{lost}");
    assert_eq!(fake.tickets().len(), 1, "the helpdesk did create it");
    let found = zd.open_ticket(&ticket("T-lost")).await.unwrap();
    assert!(found.existed, "the retry finds the ticket the lost answer created");
    assert_eq!(fake.tickets().len(), 1);
}

#[tokio::test]
async fn rate_limits_are_waited_out_with_retry_after() {
    let fake = FakeHelpdesk::spawn(FakeConfig::default()).await.unwrap();
    let zd = connector(&fake, Kind::Zendesk);
    fake.inject_fault(429, 2, Some("/api/v2/tickets"));
    let started = Instant::now();
    zd.open_ticket(&ticket("T-rl")).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "two 429s with Retry-After: 1 each, waited {waited:?}");
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 200, 201]);
}

#[tokio::test]
async fn wrong_credentials_are_refused_and_retryable_not_dead_lettered() {
    let fake = FakeHelpdesk::spawn(FakeConfig::default()).await.unwrap();
    let mut cfg = connector(&fake, Kind::Zendesk).config().clone();
    cfg.token = Secret::new("wrong");
    let err = Connector::new(cfg, reqwest::Client::new()).open_ticket(&ticket("T-x")).await.unwrap_err();
    assert!(matches!(err, HelpdeskError::Refused { status: 401, .. }), "{err}");
    assert_eq!((err.class(), err.code()), (ErrorClass::Retryable, "helpdesk_auth"));
    assert!(fake.tickets().is_empty());
}

#[tokio::test]
async fn freshdesk_ticket_note_and_lookup() {
    let fake = FakeHelpdesk::spawn(FakeConfig::default()).await.unwrap();
    let fd = connector(&fake, Kind::Freshdesk);
    let mut t = ticket("T-fd");
    t.customer_email = None;
    let opened = fd.open_ticket(&t).await.unwrap();
    assert!(fd.open_ticket(&t).await.unwrap().existed);
    fd.add_customer_message(&t, &opened, "Any news?", "turn-2").await.unwrap();
    let tickets = fake.tickets();
    assert_eq!(tickets.len(), 1);
    assert_eq!((tickets[0].priority.as_u64(), tickets[0].external_id.as_deref()), (Some(3), Some("T-fd")));
    assert_eq!(tickets[0].comments[0].author, "customer");
}

#[tokio::test]
async fn intercom_conversation_with_contact_summary_note_and_reply() {
    let fake = FakeHelpdesk::spawn(FakeConfig::default()).await.unwrap();
    let ic = connector(&fake, Kind::Intercom);
    let opened = ic.open_ticket(&ticket("T-ic")).await.unwrap();
    let again = ic.open_ticket(&ticket("T-ic")).await.unwrap();
    assert_eq!((again.existed, &again.external_id), (true, &opened.external_id));
    ic.add_customer_message(&ticket("T-ic"), &opened, "Hello?", "turn-3").await.unwrap();
    let tickets = fake.tickets();
    assert_eq!(tickets.len(), 1);
    let parts: Vec<(&str, bool)> = tickets[0].comments.iter().map(|c| (c.author.as_str(), c.public)).collect();
    assert_eq!(parts, vec![("bot", false), ("customer", true)], "summary as a note, then the customer's reply");
    assert!(tickets[0].comments[0].body.contains("order 1234"));
}

/// A receiver that records what it got, to check the fake's webhooks and the generic connector.
async fn receiver() -> (String, Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/{*rest}",
        axum::routing::post(move |h: HeaderMap, b: Bytes| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push((h, b));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn the_fakes_webhooks_are_signed_in_each_vendors_scheme() {
    let fake = FakeHelpdesk::spawn(FakeConfig::default()).await.unwrap();
    let (url, got) = receiver().await;
    for v in ["zendesk", "freshdesk", "intercom"] {
        fake.set_webhook(v, &format!("{url}/{v}"));
    }
    let zd = connector(&fake, Kind::Zendesk).open_ticket(&ticket("T-w1")).await.unwrap();
    let fd = connector(&fake, Kind::Freshdesk).open_ticket(&ticket("T-w2")).await.unwrap();
    let ic = connector(&fake, Kind::Intercom).open_ticket(&ticket("T-w3")).await.unwrap();
    for (v, id) in [("zendesk", &zd), ("freshdesk", &fd), ("intercom", &ic)] {
        assert_eq!(fake.agent_reply(v, id.external_id.parse().unwrap(), "Hi, I'm Sam").await, Ok(200));
    }
    let got = got.lock().unwrap();
    let cfg = fake.config();
    let h = |i: usize, k: &str| got[i].0.get(k).unwrap().to_str().unwrap().to_string();
    assert!(signature::zendesk_verify(
        &cfg.zendesk_signing_secret,
        &h(0, signature::ZENDESK_TIMESTAMP_HEADER),
        &got[0].1,
        &h(0, signature::ZENDESK_SIGNATURE_HEADER)
    ));
    assert!(signature::token_verify(&cfg.freshdesk_webhook_token, &h(1, signature::FRESHDESK_TOKEN_HEADER)));
    assert!(signature::intercom_verify(
        &cfg.intercom_client_secret,
        &got[2].1,
        &h(2, signature::INTERCOM_SIGNATURE_HEADER)
    ));
    let envelope: serde_json::Value = serde_json::from_slice(&got[2].1).unwrap();
    assert_eq!(envelope["topic"], "conversation.admin.replied");
    assert_eq!(envelope["data"]["item"]["conversation_parts"]["conversation_parts"][0]["body"], "Hi, I'm Sam");
    let zd_body: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!((zd_body["external_id"].as_str(), zd_body["event"].as_str()), (Some("T-w1"), Some("reply")));
}

#[tokio::test]
async fn the_generic_webhook_is_signed_and_carries_the_ticket() {
    let (url, got) = receiver().await;
    let cfg = HelpdeskConfig {
        kind: Kind::Webhook,
        base_url: format!("{url}/tickets"),
        webhook_secret: Secret::new("gen-secret"),
        ..Default::default()
    };
    let hook = Connector::new(cfg.resolve().unwrap(), reqwest::Client::new());
    let opened = hook.open_ticket(&ticket("T-gen")).await.unwrap();
    assert_eq!(opened.external_id, "T-gen");
    let got = got.lock().unwrap();
    let sig = got[0].0.get(signature::GENERIC_SIGNATURE_HEADER).unwrap().to_str().unwrap();
    assert!(signature::generic_verify("gen-secret", &got[0].1, sig).is_some());
    assert!(signature::generic_verify("other", &got[0].1, sig).is_none());
    let body: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!((body["event"].as_str(), body["priority"].as_str()), (Some("ticket.created"), Some("high")));
}
