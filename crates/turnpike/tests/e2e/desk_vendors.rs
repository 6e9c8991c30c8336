//! Freshdesk and Intercom as the tenant's helpdesk, on the real stack with the fake helpdesk speaking their
//! protocols (as `desk.rs` does for Zendesk): one ticket (Intercom: conversation) per handoff, tagged with the
//! trigger; the customer's later message lands on it; the vendor's webhook is checked (Freshdesk: the shared
//! header token, Intercom: `X-Hub-Signature`), an unsigned or forged one refused; and an agent's reply and
//! the close reach the customer in order, once each.

use crate::common::*;
use crate::desk::{statuses, Desk};
use std::time::Duration;
use turnpike_helpdesk::signature;
use turnpike_schemas::OutboundReply;

async fn one_ticket_checked_webhooks_and_the_agent_back(vendor: &str) {
    let d = Desk::start_for(vendor, 600).await;
    let session = format!("dv:{}", unique("c"));
    d.p.send_turn(&turn("acme", &session, "m1", "I want to talk to a human")).await;
    let ticket = d.ticket().await;
    d.ticket_recorded(&session).await;
    d.p.send_turn(&turn("acme", &session, "m2", "My order number is 4471.")).await;

    // Refused before anything is read: no signature, then a wrong one.
    let url = format!("{}/v1/helpdesk/{vendor}/acme", d.hooks_url());
    let body = format!(r#"{{"ticket_id": {ticket}, "status": 2}}"#);
    let http = reqwest::Client::new();
    let unsigned = http.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(unsigned.json::<serde_json::Value>().await.unwrap()["error"], "missing_signature");
    let (header, forged) = match vendor {
        "freshdesk" => (signature::FRESHDESK_TOKEN_HEADER, "not-the-token".to_string()),
        _ => (signature::INTERCOM_SIGNATURE_HEADER, signature::intercom_sign("not-the-secret", body.as_bytes())),
    };
    let forged = http.post(&url).header(header, forged).body(body).send().await.unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(forged.json::<serde_json::Value>().await.unwrap()["error"], "bad_signature");

    // The customer's later message reached the ticket, then the agent answers and closes.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !d.fake.tickets()[0].comments.iter().any(|c| c.author == "customer" && c.body.contains("4471")) {
        assert!(std::time::Instant::now() < deadline, "no customer comment: {:?}", d.fake.tickets());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The agent answers once the customer has read the bot's handoff line and the forwarding notice: an agent
    // within a second of the handoff could overtake them (the bot's line takes the longer way through the
    // stages; known, see the desk stage's module comment).
    let has = |rs: &[&OutboundReply], status: &str| rs.iter().any(|r| r.status.as_deref() == Some(status));
    d.outbound(&session, |rs| has(rs, "handed_off") && has(rs, "forwarded_to_agent")).await;
    assert_eq!(d.fake.agent_reply(vendor, ticket, "Hi, I'm Sam. Order 4471 ships today.").await, Ok(200));
    let agent = |rs: &[&OutboundReply]| rs.iter().any(|r| r.finish_reason.as_deref() == Some("agent"));
    d.outbound(&session, agent).await;
    assert_eq!(d.fake.agent_solve(vendor, ticket).await, Ok(200));
    let resumed = |rs: &[&OutboundReply]| rs.iter().any(|r| r.status.as_deref() == Some("bot_resumed"));
    d.outbound(&session, resumed).await;
    // Anything repeated would arrive right behind.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rs = d.outbound(&session, resumed).await;
    assert_eq!(
        statuses(&rs),
        [
            "final:handoff",
            "status:handed_off",
            "status:forwarded_to_agent",
            "status:agent_joined",
            "final:agent",
            "status:bot_resumed"
        ],
        "{rs:?}"
    );
    let line = rs.iter().find(|r| r.finish_reason.as_deref() == Some("agent")).unwrap();
    assert_eq!(line.text, "Hi, I'm Sam. Order 4471 ships today.");

    let tickets = d.fake.tickets();
    assert_eq!(tickets.len(), 1, "one ticket per handoff: {tickets:?}");
    let t = &tickets[0];
    assert_eq!(t.vendor, vendor);
    if vendor == "freshdesk" {
        // Intercom conversations carry no tags at creation (the fake, as Intercom, keeps them apart).
        assert!(t.tags.iter().any(|g| g == "turnpike") && t.tags.iter().any(|g| g.starts_with("reason_")), "{t:?}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshdesk_one_ticket_per_handoff_token_checked_webhooks_and_the_agent_back_in_order() {
    one_ticket_checked_webhooks_and_the_agent_back("freshdesk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn intercom_one_conversation_per_handoff_signed_webhooks_and_the_agent_back_in_order() {
    one_ticket_checked_webhooks_and_the_agent_back("intercom").await;
}
