//! The gateway on the real stack with a real pipeline: two instances, real WebSocket/SSE/HTTP clients.

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::time::Instant;
use turnpike_gateway::config::TenantLimits;

/// Checks one turn's events as a client received them: ids strictly increasing, deltas numbered 0..n once
/// each, one final after them (numbered n), and returns the reply text.
fn check_turn(events: &[Value], turn_id: &str) -> String {
    let of_turn: Vec<&Value> = events.iter().filter(|e| e["turn_id"] == turn_id && e.get("id").is_some()).collect();
    let ids: Vec<(u64, u64)> = of_turn
        .iter()
        .map(|e| {
            let (a, b) = e["id"].as_str().unwrap().split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "event ids not strictly increasing: {ids:?}");
    let deltas: Vec<i64> =
        of_turn.iter().filter(|e| e["type"] == "delta").map(|e| e["chunk_index"].as_i64().unwrap()).collect();
    let finals: Vec<&&Value> = of_turn.iter().filter(|e| e["type"] == "final").collect();
    assert_eq!(finals.len(), 1, "exactly one final: {of_turn:?}");
    let n = finals[0]["chunk_index"].as_i64().unwrap();
    assert_eq!(deltas, (0..n).collect::<Vec<_>>(), "every delta exactly once, in order");
    reply_text(events, turn_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clients_on_two_instances_each_get_their_own_reply() {
    // Instance 0 runs no outbound consumer: its client's reply can only reach it through instance 1's
    // consumer, Redis and instance 0's subscription.
    let s = Stack::start_with(TenantLimits::default(), [false, true]).await;
    let deadline = Instant::now() + PATIENCE;
    let alice_reply = "Your parcel left the depot this morning. It should arrive tomorrow before noon.";
    let bob_reply = "Your refund was approved yesterday. The money reaches your card within five days.";

    // Alice over WebSocket on instance 0; Bob over SSE on instance 1. Same conversation id, different users:
    // different sessions.
    let mut alice = ws_connect(s.addr(0), &token(&s.tenant_a, "alice")).await;
    let bob_auth = format!("Bearer {}", token(&s.tenant_a, "bob"));
    let mut bob = sse_connect(s.addr(1), "c1", &[("authorization", &bob_auth)]).await.unwrap();
    bob.until(deadline, |e| e.event == "ready").await;

    let text = format!("Where is my parcel? [[mock:reply={alice_reply}]]");
    ws_send(&mut alice, json!({"type": "message", "conversation_id": "c1", "message_id": "m1", "text": text})).await;
    let text = format!("What about my refund? [[mock:reply={bob_reply}]]");
    let (status, _, bob_accepted) =
        post_message(s.addr(1), &[("authorization", &bob_auth)], json!({"conversation_id": "c1", "text": text})).await;
    assert_eq!(status, 202, "{bob_accepted}");
    assert_eq!(bob_accepted["type"], "accepted");

    let alice_frames = ws_until(&mut alice, deadline, |f| f["type"] == "final").await;
    assert_eq!(alice_frames[0]["type"], "accepted", "accepted comes first: {alice_frames:?}");
    assert_eq!(alice_frames[0]["message_id"], "m1");
    let alice_turn = alice_frames[0]["turn_id"].as_str().unwrap().to_string();
    let bob_events: Vec<Value> =
        bob.until(deadline, |e| e.event == "final").await.into_iter().map(|e| e.data).collect();
    let bob_turn = bob_accepted["turn_id"].as_str().unwrap();

    assert_eq!(check_turn(&alice_frames, &alice_turn), alice_reply);
    assert_eq!(check_turn(&bob_events, bob_turn), bob_reply);
    assert!(alice_frames.iter().skip(1).all(|f| f["turn_id"] == alice_turn.as_str()), "alice got another turn's event");
    assert!(bob_events.iter().all(|e| e["turn_id"] == bob_turn), "bob got another turn's event");
    let fin = alice_frames.last().unwrap();
    assert!(fin["usage"]["output_tokens"].as_i64().unwrap() > 0, "final carries usage: {fin}");
    assert_eq!(fin["conversation_id"], "c1");
    s.stop().await;
}

/// A message whose reply streams for a while in many chunks.
fn long_message(conversation: &str, message_id: &str) -> Value {
    let text = "Please explain the whole delivery process in detail. [[mock:tokens=150]][[mock:tps=150]]";
    json!({"type": "message", "conversation_id": conversation, "message_id": message_id, "text": text})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_client_that_drops_mid_reply_resumes_on_the_other_instance_without_loss_or_duplicates() {
    let s = Stack::start(TenantLimits::default()).await;
    let deadline = Instant::now() + PATIENCE;
    let tok = token(&s.tenant_a, "carol");
    let mut first = ws_connect(s.addr(0), &tok).await;
    ws_send(&mut first, long_message("c1", "m1")).await;
    let before = ws_until(&mut first, deadline, |f| f["type"] == "delta" && f["chunk_index"] == 1).await;
    assert_eq!(before[0]["type"], "accepted");
    let turn = before[0]["turn_id"].as_str().unwrap().to_string();
    let last_id = before.last().unwrap()["id"].as_str().unwrap().to_string();
    drop(first); // gone without a goodbye, mid-reply

    let mut second = ws_connect(s.addr(1), &tok).await;
    ws_send(&mut second, json!({"type": "resume", "conversation_id": "c1", "last_event_id": last_id})).await;
    let after = ws_until(&mut second, deadline, |f| f["type"] == "final").await;
    assert_eq!(after[0], json!({"type": "resumed", "conversation_id": "c1", "last_event_id": last_id}));

    let all: Vec<Value> = before.into_iter().chain(after).collect();
    let text = check_turn(&all, &turn);
    assert!(text.split_whitespace().count() >= 100, "the long reply arrived whole: {text}");
    let deltas = all.iter().filter(|f| f["type"] == "delta").count();
    assert!(deltas > 3, "the reply came in several chunks ({deltas})");

    // A resume from the very start replays the whole conversation, same ids, same text.
    ws_send(&mut second, json!({"type": "resume", "conversation_id": "c1", "last_event_id": "0"})).await;
    let replay = ws_until(&mut second, deadline, |f| f["type"] == "final").await;
    assert_eq!(check_turn(&replay, &turn), text);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_sse_client_that_drops_mid_reply_resumes_with_last_event_id_without_loss_or_duplicates() {
    let s = Stack::start(TenantLimits::default()).await;
    let deadline = Instant::now() + PATIENCE;
    let auth = format!("Bearer {}", token(&s.tenant_a, "dave"));
    let headers = [("authorization", auth.as_str())];
    let mut first = sse_connect(s.addr(1), "c7", &headers).await.unwrap();
    first.until(deadline, |e| e.event == "ready").await;
    let mut body = long_message("c7", "m1");
    body.as_object_mut().unwrap().remove("type");
    let (status, _, accepted) = post_message(s.addr(0), &headers, body).await;
    assert_eq!(status, 202, "{accepted}");
    let turn = accepted["turn_id"].as_str().unwrap().to_string();
    let before = first.until(deadline, |e| e.event == "delta" && e.data["chunk_index"] == 1).await;
    let last_id = before.last().unwrap().id.clone().unwrap();
    assert_eq!(before.last().unwrap().data["id"], last_id.as_str(), "SSE id = the event's id");
    drop(first);

    let headers = [("authorization", auth.as_str()), ("last-event-id", last_id.as_str())];
    let mut second = sse_connect(s.addr(0), "c7", &headers).await.unwrap();
    let after = second.until(deadline, |e| e.event == "final").await;
    assert_eq!(after[0].event, "ready");
    let all: Vec<Value> = before.into_iter().chain(after).filter(|e| e.event != "ready").map(|e| e.data).collect();
    let text = check_turn(&all, &turn);
    assert!(text.split_whitespace().count() >= 100, "the long reply arrived whole: {text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_expired_forged_and_wrong_tenant_credentials_are_refused_valid_ones_accepted() {
    let s = Stack::start(TenantLimits::default()).await;
    let (a, b) = (s.tenant_a.clone(), s.tenant_b.clone());
    let addr = s.addr(0);
    let refused = |r: Result<Socket, (u16, Value)>| match r {
        Ok(_) => panic!("the upgrade was accepted"),
        Err((status, body)) => (status, body["code"].as_str().unwrap_or_default().to_string()),
    };
    let bearer = |t: String| format!("Bearer {t}");

    assert_eq!(refused(ws_connect_with(addr, "", &[]).await), (401, "missing_credential".into()));
    let expired = bearer(hs256("any", SECRET, &a, "u1", -3600));
    assert_eq!(
        refused(ws_connect_with(addr, "", &[("authorization", &expired)]).await),
        (401, "expired_credential".into())
    );
    let forged = bearer(hs256("any", "not-the-secret-not-the-secret-not-the-secret", &a, "u1", 3600));
    assert_eq!(
        refused(ws_connect_with(addr, "", &[("authorization", &forged)]).await),
        (401, "invalid_credential".into())
    );
    // Tenant A's token on tenant B's path.
    let a_token = bearer(token(&a, "u1"));
    let on_b = format!("?tenant={b}");
    assert_eq!(
        refused(ws_connect_with(addr, &on_b, &[("authorization", &a_token)]).await),
        (403, "wrong_tenant".into())
    );
    // A key that may only sign for A, used to claim B.
    let a_key_for_b = bearer(hs256("a-only", SECRET_A_ONLY, &b, "u1", 3600));
    assert_eq!(
        refused(ws_connect_with(addr, "", &[("authorization", &a_key_for_b)]).await),
        (403, "wrong_tenant".into())
    );
    let evil = [("authorization", a_token.as_str()), ("origin", "https://evil.example")];
    assert_eq!(refused(ws_connect_with(addr, "", &evil).await), (403, "origin_not_allowed".into()));

    // HTTP: the same rules, JSON errors.
    let msg = json!({"conversation_id": "c1", "text": "Is my parcel on its way?"});
    let (status, _, body) = post_message(addr, &[], msg.clone()).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("missing_credential")));
    let (status, _, body) = post_message(
        addr,
        &[("authorization", &a_token), ("x-api-key", API_KEY_B), ("x-turnpike-user", "u1")],
        msg.clone(),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("wrong_tenant")), "A's token with B's key");
    let (status, _, body) = post_message(addr, &[("x-api-key", API_KEY_B)], msg.clone()).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("missing_credential")), "an API key must name the user");
    match sse_connect(addr, "c1", &[("authorization", &expired)]).await {
        Err((status, body)) => assert_eq!((status, body["code"].as_str()), (401, Some("expired_credential"))),
        Ok(_) => panic!("expired token opened an event stream"),
    }

    // Valid credentials: HS256, RS256 (WebSocket and POST), an API key with its user, a same-origin page.
    let mut hs = ws_connect(addr, &token(&a, "u1")).await;
    let mut rs = ws_connect(s.addr(1), &rs256(&a, "u2")).await;
    let deadline = Instant::now() + PATIENCE;
    for socket in [&mut hs, &mut rs] {
        ws_send(socket, json!({"type": "resume", "conversation_id": "c1"})).await;
        assert_eq!(ws_next(socket, deadline).await.unwrap()["type"], "resumed");
    }
    let rs_auth = bearer(rs256(&a, "u2"));
    let (status, _, body) = post_message(addr, &[("authorization", &rs_auth)], msg.clone()).await;
    assert_eq!(status, 202, "{body}");
    let (status, _, body) = post_message(addr, &[("x-api-key", API_KEY_B), ("x-turnpike-user", "u9")], msg).await;
    assert_eq!(status, 202, "{body}");
    let same_origin = format!("http://{addr}");
    let ok = ws_connect_with(addr, "", &[("authorization", &a_token), ("origin", &same_origin)]).await;
    assert!(ok.is_ok(), "the gateway's own page may connect");

    // Shutdown closes open sockets with 1001.
    s.stop().await;
    let close = loop {
        use futures::StreamExt;
        match hs.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_over_quota_gets_a_clear_error_on_every_instance_while_another_user_is_unaffected() {
    // 100 tokens a day per user (no minute limit, so the test cannot straddle a window boundary mid-way
    // except at midnight UTC); tenant budgets unlimited.
    let limits = TenantLimits {
        user_tokens_per_minute: 0,
        user_tokens_per_day: 100,
        tenant_tokens_per_minute: 0,
        tenant_tokens_per_day: 0,
    };
    let s = Stack::start(limits).await;
    let deadline = Instant::now() + PATIENCE;
    let tenant = s.tenant_a.clone();
    let question = format!("Where is my parcel? {}", "It was ordered last week. ".repeat(11));
    let estimate = question.len().div_ceil(4) as u64; // 77: one fits in 100, two do not
    assert!(estimate <= 100 && 2 * estimate > 100);

    // One message on instance 0: admitted.
    let mut u1 = ws_connect(s.addr(0), &token(&tenant, "u1")).await;
    ws_send(&mut u1, json!({"type": "message", "conversation_id": "c1", "message_id": "m1", "text": question})).await;
    let accepted = ws_next(&mut u1, deadline).await.unwrap();
    assert_eq!((accepted["type"].as_str(), accepted["estimated_tokens"].as_u64()), (Some("accepted"), Some(estimate)));

    // Another on instance 1: the budget spent on instance 0 counts here.
    let u1_auth = format!("Bearer {}", token(&tenant, "u1"));
    let (status, retry_after, body) =
        post_message(s.addr(1), &[("authorization", &u1_auth)], json!({"conversation_id": "c2", "text": question}))
            .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        (body["code"].as_str(), body["scope"].as_str(), body["window"].as_str()),
        (Some("quota_exceeded"), Some("user"), Some("day"))
    );
    let retry_ms = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry_ms > 0 && retry_ms <= 86_400_000, "{retry_ms}");
    assert_eq!(retry_after.map(|r| r.parse::<u64>().unwrap()), Some(retry_ms.div_ceil(1000)));

    // Over WebSocket: an error frame with retry_after_ms, and the connection stays usable.
    ws_send(&mut u1, json!({"type": "message", "conversation_id": "c1", "message_id": "m2", "text": question})).await;
    let frames = ws_until(&mut u1, deadline, |f| f["type"] == "error").await;
    let err = frames.last().unwrap();
    assert_eq!((err["code"].as_str(), err["message_id"].as_str()), (Some("quota_exceeded"), Some("m2")));
    assert!(err["retry_after_ms"].as_u64().unwrap() > 0);
    ws_send(&mut u1, json!({"type": "resume", "conversation_id": "c3"})).await;
    ws_until(&mut u1, deadline, |f| f["type"] == "resumed").await;
    // A retry of the admitted message id is not charged again.
    ws_send(&mut u1, json!({"type": "message", "conversation_id": "c1", "message_id": "m1", "text": question})).await;
    let again = ws_until(&mut u1, deadline, |f| f["type"] == "accepted" || f["type"] == "error").await;
    assert_eq!(
        (again.last().unwrap()["type"].as_str(), again.last().unwrap()["duplicate"].as_bool()),
        (Some("accepted"), Some(true))
    );

    // Another user of the same tenant, on either instance, is unaffected.
    let u2_auth = format!("Bearer {}", token(&tenant, "u2"));
    let (status, _, body) =
        post_message(s.addr(1), &[("authorization", &u2_auth)], json!({"conversation_id": "c1", "text": question}))
            .await;
    assert_eq!(status, 202, "{body}");
    s.stop().await;
}
