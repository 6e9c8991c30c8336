//! The spine end to end: all eight stages on the real stack, driven through Kafka like a client would.

use crate::common;

use common::*;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use turnpike_schemas::{DeadLetter, OutboundKind, OutboundReply};
use turnpike_store::TranscriptStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_sessions_of_five_turns_arrive_complete_and_in_order() {
    const SESSIONS: usize = 200;
    const TURNS: usize = 5;
    let p = Pipeline::start().await;
    let tenant = "acme";
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("user{i}:{}", unique("c"))).collect();
    // Every session's five turns are produced back to back, all sessions at once: the pipeline must keep
    // each session's order while working on sessions concurrently.
    let sends = sessions.iter().map(|s| {
        let p = &p;
        async move {
            for t in 1..=TURNS {
                p.send_turn(&turn(tenant, s, &format!("m{t}"), &format!("Question {t} about my order"))).await;
            }
        }
    });
    futures::future::join_all(sends).await;

    let outbound = p.topic("turnpike.replies.outbound");
    let replies = read_until::<OutboundReply>(&p.endpoints, &p.codec, &outbound, 6, Duration::from_secs(180), |rs| {
        rs.iter().filter(|r| r.kind == OutboundKind::Final).count() >= SESSIONS * TURNS
    })
    .await;

    let mut by_session: HashMap<&str, Vec<&OutboundReply>> = HashMap::new();
    for (_, r) in &replies {
        by_session.entry(r.session_id.as_str()).or_default().push(r);
    }
    for s in &sessions {
        let rs = by_session.get(s.as_str()).unwrap_or_else(|| panic!("no reply at all for {s}"));
        let finals: Vec<i64> = rs.iter().filter(|r| r.kind == OutboundKind::Final).map(|r| r.seq).collect();
        assert_eq!(finals, (1..=TURNS as i64).collect::<Vec<_>>(), "turns of {s} out of order or missing");
        // Within a turn, chunks are numbered 0.. in order and the FINAL comes last.
        let mut next: BTreeMap<i64, i32> = BTreeMap::new();
        for r in rs {
            let n = next.entry(r.seq).or_insert(0);
            assert_eq!(r.chunk_index, *n, "chunk out of order in {s} turn {}", r.seq);
            *n += 1;
        }
    }
    assert_eq!(
        replies.iter().filter(|(_, r)| r.kind == OutboundKind::Final).count(),
        SESSIONS * TURNS,
        "a FINAL was duplicated"
    );

    // The transcript holds every user message and every reply, in order, with the streamed text.
    let cql = std::sync::Arc::new(turnpike_store::connect_cql(&p.endpoints).await.unwrap());
    let store = TranscriptStore::new(cql, &p.endpoints.keyspace).await.unwrap();
    for s in sessions.iter().take(50) {
        let rows = store.read(tenant, s).await.unwrap();
        let got: Vec<(i64, &str)> = rows.iter().map(|r| (r.seq, r.role.as_str())).collect();
        let want: Vec<(i64, &str)> = (1..=TURNS as i64).flat_map(|t| [(t, "assistant"), (t, "user")]).collect();
        assert_eq!(got, want, "transcript of {s}");
        let streamed: String = by_session[s.as_str()]
            .iter()
            .filter(|r| r.seq == 1 && r.kind != OutboundKind::Status)
            .map(|r| r.text.as_str())
            .collect();
        assert_eq!(rows[0].content, streamed, "stored reply differs from the streamed one");
        assert_eq!(rows[1].content, "Question 1 about my order");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_are_dead_lettered_and_the_session_moves_on() {
    let p = Pipeline::start().await;
    let session = format!("u1:{}", unique("c"));
    let inbound = p.topic("turnpike.turns.inbound");
    let garbage = b"{\"this\": \"is JSON, not Avro\"}".to_vec();
    p.send_raw(&inbound, session.as_bytes(), &garbage).await;
    p.send_turn(&turn("acme", &session, "m1", "   ")).await; // empty text: invalid
    p.send_turn(&turn("acme", &session, "m2", "Is my parcel on its way?")).await;

    let replies = read_until::<OutboundReply>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.replies.outbound"),
        6,
        Duration::from_secs(60),
        |rs| rs.iter().any(|r| r.kind == OutboundKind::Final),
    )
    .await;
    let fin = replies.iter().find(|(_, r)| r.kind == OutboundKind::Final).expect("the valid turn got no reply");
    assert_eq!((fin.1.session_id.as_str(), fin.1.seq), (session.as_str(), 1), "the valid turn is the session's first");

    let letters = read_until::<DeadLetter>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.dlq.ingest"),
        1,
        Duration::from_secs(30),
        |ls| ls.len() >= 2,
    )
    .await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let (raw, first) = &letters[0];
    assert_eq!(first.error_code, "bad_framing");
    assert_eq!(first.stage, "ingest");
    assert_eq!(first.original_value.as_deref(), Some(&garbage[..]), "original bytes kept");
    assert_eq!(first.original_key.as_deref(), Some(session.as_bytes()));
    assert_eq!(first.source_topic, inbound);
    use rdkafka::message::{Headers, Message};
    let headers: HashMap<String, String> = raw
        .headers()
        .unwrap()
        .iter()
        .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
        .collect();
    assert_eq!(headers["turnpike-dlq-error-code"], "bad_framing");
    assert_eq!(headers["turnpike-dlq-source-offset"], first.source_offset.to_string());
    let second = &letters[1].1;
    assert_eq!((second.error_code.as_str(), second.tenant_id.as_str()), ("invalid_turn", "acme"));
    assert!(second.reason.contains("text is empty"), "{}", second.reason);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn asking_for_a_human_opens_one_ticket_and_later_turns_go_to_it() {
    use turnpike_schemas::{TicketEvent, TicketEventKind};
    let p = Pipeline::start().await;
    let session = format!("h1:{}", unique("c"));
    p.send_turn(&turn("acme", &session, "m1", "My order never came")).await;
    p.send_turn(&turn("acme", &session, "m2", "This is useless, I want to talk to a human")).await;
    let events = read_until::<TicketEvent>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.handoff.events"),
        6,
        Duration::from_secs(60),
        |es| !es.is_empty(),
    )
    .await;
    let opened = &events.first().expect("no ticket opened").1;
    assert_eq!(opened.kind, TicketEventKind::Opened);
    assert!(opened.ticket_id.starts_with("T-"));
    // The warm handoff carries the conversation so far.
    assert!(opened.text.contains("My order never came"), "summary: {}", opened.text);

    // Now the session belongs to a human: the bot stays silent and the message goes to the ticket.
    p.send_turn(&turn("acme", &session, "m3", "Hello? Anyone there?")).await;
    let events = read_until::<TicketEvent>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.handoff.events"),
        6,
        Duration::from_secs(60),
        |es| es.len() >= 2,
    )
    .await;
    assert_eq!(events.len(), 2, "exactly one ticket and one forwarded message: {events:?}");
    assert_eq!(
        (events[1].1.kind, events[1].1.ticket_id.as_str()),
        (TicketEventKind::UserMessage, opened.ticket_id.as_str())
    );
    assert_eq!(events[1].1.text, "Hello? Anyone there?");

    let replies = read_until::<OutboundReply>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.replies.outbound"),
        6,
        Duration::from_secs(30),
        |rs| rs.iter().any(|r| r.seq == 3),
    )
    .await;
    let by_seq = |seq: i64| replies.iter().filter(move |(_, r)| r.seq == seq).map(|(_, r)| r).collect::<Vec<_>>();
    assert!(by_seq(1).iter().any(|r| r.kind == OutboundKind::Final && r.finish_reason.as_deref() == Some("stop")));
    let second = by_seq(2);
    assert_eq!(second.len(), 2, "the handoff turn is answered with one canned FINAL, no LLM text, then handed_off");
    assert!(second[0].text.contains("connecting you with a member of our support team"));
    assert_eq!((second[1].kind, second[1].status.as_deref()), (OutboundKind::Status, Some("handed_off")));
    assert!(second[1].chunk_index > second[0].chunk_index, "after the FINAL, as the gateway's ids need");
    let third = by_seq(3);
    assert_eq!(third.len(), 1);
    assert_eq!((third[0].kind, third[0].status.as_deref()), (OutboundKind::Status, Some("forwarded_to_agent")));
    // One reply from the model in all (only the first turn reached it), and one note for the agent.
    let stats = p.mock.stats();
    assert_eq!((stats.requests - stats.summaries, stats.summaries), (1, 1));
    p.stop().await;
}
