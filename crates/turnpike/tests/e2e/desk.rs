//! The way back from the helpdesk, on the real stack with the fake Zendesk: an agent's replies sent through
//! Zendesk's signed webhook reach the customer on the outbound topic in order with the conversation, once
//! each; solving the ticket gives the conversation back to the bot; a forged or unsigned webhook is refused;
//! and with no agent within the tenant's queue timeout the customer gets the tenant's message and the bot
//! answers again.

use crate::common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use turnpike::desk_hooks::{self, Hooks};
use turnpike_helpdesk::fake::{self, FakeConfig, FakeHelpdesk};
use turnpike_helpdesk::signature;
use turnpike_llm::mock::MockConfig;
use turnpike_schemas::{DeskEvent, OutboundKind, OutboundReply, TicketEvent};

/// In-process: every stage but handoff (a child process with the tenants file, so it calls the fake).
const IN_PROCESS: &[&str] = &["ingest", "guard-in", "assemble", "route", "generate", "guard-out", "deliver", "desk"];

/// The pipeline with the fake Zendesk as tenant `acme`'s helpdesk and the webhook endpoint in-process.
pub(crate) struct Desk {
    pub(crate) p: Pipeline,
    pub(crate) fake: FakeHelpdesk,
    hooks_url: String,
    handoff: KillOnDrop,
    stop_hooks: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Desk {
    pub(crate) async fn start(queue_timeout_secs: u64) -> Desk {
        Self::start_for("zendesk", queue_timeout_secs).await
    }

    /// With `vendor` (`zendesk`, `freshdesk` or `intercom`) of the fake as tenant `acme`'s helpdesk.
    pub(crate) async fn start_for(vendor: &str, queue_timeout_secs: u64) -> Desk {
        let fake = FakeHelpdesk::spawn(FakeConfig::default()).await.unwrap();
        let c = fake.config();
        let dir = tempfile::tempdir().unwrap();
        let tenants = dir.path().join("tenants.toml");
        let credentials = match vendor {
            "zendesk" => format!(
                "email = \"{}\"\ntoken = \"{}\"\nwebhook_secret = \"{}\"\n",
                c.zendesk_email, c.zendesk_token, c.zendesk_signing_secret
            ),
            "freshdesk" => {
                format!("token = \"{}\"\nwebhook_secret = \"{}\"\n", c.freshdesk_api_key, c.freshdesk_webhook_token)
            }
            "intercom" => format!(
                "token = \"{}\"\nwebhook_secret = \"{}\"\nadmin_id = \"1\"\n",
                c.intercom_token, c.intercom_client_secret
            ),
            other => panic!("no fake {other}"),
        };
        std::fs::write(
            &tenants,
            format!(
                "[tenants.acme.helpdesk]\nkind = \"{vendor}\"\nbase_url = \"{}\"\n{credentials}\
                 queue_timeout_secs = {queue_timeout_secs}\n\
                 queue_timeout_message = \"No agent is free right now; I'm back to help.\"\n",
                fake.url(),
            ),
        )
        .unwrap();
        let p = Pipeline::start_stages(IN_PROCESS, MockConfig::instant()).await;
        let handoff = p.spawn_stage_with_env(
            "handoff",
            &unique("handoff"),
            &dir.path().join("handoff.log"),
            &[("TURNPIKE_TENANTS_CONFIG", &tenants)],
        );
        // The webhook endpoint and queue timer in-process, with the same tenants file.
        let desks =
            turnpike_stages::handoff::desks_from(&turnpike_core::TenantsConfig::load(&tenants).unwrap()).unwrap();
        let producer = producer(&p.endpoints);
        let codec = turnpike_schemas::Codec::for_endpoints(&p.endpoints, Duration::from_secs(5)).unwrap();
        let deps = turnpike_stages::Deps::connect(&p.endpoints).await.unwrap();
        let hooks = Arc::new(Hooks { producer, codec, topic: p.topic("turnpike.handoff.desk"), deps, desks });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hooks_url = format!("http://{}", listener.local_addr().unwrap());
        let stop_hooks = CancellationToken::new();
        tokio::spawn(desk_hooks::serve(listener, hooks, stop_hooks.clone()));
        fake.set_webhook(vendor, &format!("{hooks_url}/v1/helpdesk/{vendor}/acme"));
        Desk { p, fake, hooks_url, handoff, stop_hooks, _dir: dir }
    }

    /// The session's outbound records in partition order, once `done` holds.
    pub(crate) async fn outbound(&self, session: &str, done: impl Fn(&[&OutboundReply]) -> bool) -> Vec<OutboundReply> {
        let s = session.to_string();
        read_until::<OutboundReply>(
            &self.p.endpoints,
            &self.p.codec,
            &self.p.topic("turnpike.replies.outbound"),
            6,
            Duration::from_secs(90),
            |rs| done(&rs.iter().filter(|r| r.session_id == s).collect::<Vec<_>>()),
        )
        .await
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.session_id == session)
        .collect()
    }

    pub(crate) fn hooks_url(&self) -> &str {
        &self.hooks_url
    }

    pub(crate) async fn ticket(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(t) = self.fake.tickets().first() {
                return t.id;
            }
            assert!(Instant::now() < deadline, "no ticket at the helpdesk");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for Turnpike to have recorded `session`'s ticket (its ticket event): the webhook of an agent
    /// answering earlier gets a 503.
    pub(crate) async fn ticket_recorded(&self, session: &str) {
        let events = self.p.topic("turnpike.handoff.events");
        read_until::<TicketEvent>(&self.p.endpoints, &self.p.codec, &events, 6, Duration::from_secs(60), |es| {
            es.iter().any(|e| e.session_id == session)
        })
        .await;
    }

    pub(crate) async fn stop(mut self) {
        self.stop_hooks.cancel();
        self.handoff.kill().ok();
        self.handoff.wait().ok();
        self.p.stop().await;
    }
}

/// The session's records by kind (DELTAs left out: how a reply is cut into them is the mock's business).
pub(crate) fn statuses(rs: &[OutboundReply]) -> Vec<String> {
    rs.iter()
        .filter(|r| r.kind != OutboundKind::Delta)
        .map(|r| match r.kind {
            OutboundKind::Status => format!("status:{}", r.status.as_deref().unwrap_or("")),
            OutboundKind::Final => format!("final:{}", r.finish_reason.as_deref().unwrap_or("")),
            OutboundKind::Delta => "delta".into(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_replies_through_zendesks_webhook_reach_the_customer_in_order_once_and_solving_returns_to_the_bot() {
    let d = Desk::start(600).await;
    let session = format!("dk1:{}", unique("c"));
    d.p.send_turn(&turn("acme", &session, "m1", "My parcel never came.")).await;
    d.p.send_turn(&turn("acme", &session, "m2", "I want to talk to a human")).await;
    let ticket = d.ticket().await;
    d.outbound(&session, |rs| rs.iter().any(|r| r.status.as_deref() == Some("handed_off"))).await;
    d.ticket_recorded(&session).await;

    assert_eq!(d.fake.agent_reply("zendesk", ticket, "Hi, I'm Sam. Let me check your parcel.").await, Ok(200));
    assert_eq!(d.fake.agent_reply("zendesk", ticket, "Found it: it arrives tomorrow.").await, Ok(200));
    let agent = |rs: &[&OutboundReply]| rs.iter().filter(|r| r.finish_reason.as_deref() == Some("agent")).count();
    d.outbound(&session, |rs| agent(rs) >= 2).await;
    // The second webhook read both comments back; the first must not reach the customer again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rs = d.outbound(&session, |rs| agent(rs) >= 2).await;
    let texts: Vec<&str> =
        rs.iter().filter(|r| r.finish_reason.as_deref() == Some("agent")).map(|r| r.text.as_str()).collect();
    assert_eq!(texts, vec!["Hi, I'm Sam. Let me check your parcel.", "Found it: it arrives tomorrow."]);
    assert_eq!(
        statuses(&rs),
        vec!["final:stop", "final:handoff", "status:handed_off", "status:agent_joined", "final:agent", "final:agent"],
        "{rs:?}"
    );
    let seqs: Vec<i64> = rs.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "numbers follow the conversation: {seqs:?}");
    assert!(rs.iter().all(|r| r.channel == "test"), "replies go back to the customer's channel");

    // Solved: the customer is told, and the bot answers the next message.
    assert_eq!(d.fake.agent_solve("zendesk", ticket).await, Ok(200));
    d.outbound(&session, |rs| rs.iter().any(|r| r.status.as_deref() == Some("bot_resumed"))).await;
    d.p.send_turn(&turn("acme", &session, "m3", "Thanks! And where is my other order?")).await;
    let rs = d
        .outbound(&session, |rs| {
            rs.last().is_some_and(|r| {
                r.kind == OutboundKind::Final && r.finish_reason.as_deref() == Some("stop") && r.seq > 2
            })
        })
        .await;
    let tail = statuses(&rs);
    assert_eq!(&tail[tail.len() - 2..], ["status:bot_resumed", "final:stop"], "{tail:?}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_or_unsigned_webhook_is_refused_and_reaches_nobody() {
    let d = Desk::start(600).await;
    let session = format!("dk2:{}", unique("c"));
    d.p.send_turn(&turn("acme", &session, "m1", "I want to talk to a human")).await;
    let ticket = d.ticket().await;
    let url = format!("{}/v1/helpdesk/zendesk/acme", d.hooks_url);
    let body = format!(r#"{{"ticket_id":"{ticket}","event":"reply","status":"open"}}"#);
    let http = reqwest::Client::new();
    let post = |sig: Option<(String, String)>| {
        let mut r = http.post(&url).header("content-type", "application/json").body(body.clone());
        if let Some((s, ts)) = sig {
            r = r.header(signature::ZENDESK_SIGNATURE_HEADER, s).header(signature::ZENDESK_TIMESTAMP_HEADER, ts);
        }
        r.send()
    };
    let unsigned = post(None).await.unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(unsigned.json::<serde_json::Value>().await.unwrap()["error"], "missing_signature");
    let ts = fake::iso8601_now();
    let forged =
        post(Some((signature::zendesk_sign("not-the-secret", &ts, body.as_bytes()), ts.clone()))).await.unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(forged.json::<serde_json::Value>().await.unwrap()["error"], "bad_signature");
    let old = fake::iso8601(fake::parse_iso8601(&ts).unwrap() - 3600);
    let replayed =
        post(Some((signature::zendesk_sign(&d.fake.config().zendesk_signing_secret, &old, body.as_bytes()), old)))
            .await
            .unwrap();
    assert_eq!(replayed.status(), 401, "a correctly signed but hour-old request is a replay");
    let other_vendor =
        http.post(format!("{}/v1/helpdesk/intercom/acme", d.hooks_url)).body(body.clone()).send().await.unwrap();
    assert_eq!(other_vendor.status(), 404);
    // A correctly signed one is accepted (the agent wrote nothing yet: no event).
    let good = post(Some((signature::zendesk_sign(&d.fake.config().zendesk_signing_secret, &ts, body.as_bytes()), ts)))
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let events = read_until::<DeskEvent>(
        &d.p.endpoints,
        &d.p.codec,
        &d.p.topic("turnpike.handoff.desk"),
        6,
        Duration::from_secs(3),
        |_| false,
    )
    .await;
    assert!(events.is_empty(), "nothing refused reached Kafka: {events:?}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_agent_within_the_queue_timeout_returns_the_conversation_to_the_bot_with_a_message() {
    // Long enough for the handoff turn's own reply to be out first on this loaded machine.
    let d = Desk::start(8).await;
    let session = format!("dk3:{}", unique("c"));
    d.p.send_turn(&turn("acme", &session, "m1", "I want to talk to a human")).await;
    d.ticket().await;
    let rs = d.outbound(&session, |rs| rs.iter().any(|r| r.status.as_deref() == Some("bot_resumed"))).await;
    let line = rs.iter().find(|r| r.finish_reason.as_deref() == Some("queue_timeout")).expect("the tenant's message");
    assert_eq!(line.text, "No agent is free right now; I'm back to help.");
    assert_eq!(statuses(&rs), vec!["final:handoff", "status:handed_off", "final:queue_timeout", "status:bot_resumed"]);
    d.p.send_turn(&turn("acme", &session, "m2", "OK, where is my parcel then?")).await;
    let rs = d.outbound(&session, |rs| rs.last().is_some_and(|r| r.finish_reason.as_deref() == Some("stop"))).await;
    assert_eq!(statuses(&rs).last().map(String::as_str), Some("final:stop"), "the bot answers again");
    assert!(d.fake.tickets()[0].comments.is_empty(), "the customer's new message went to the bot, not the ticket");
    d.stop().await;
}
