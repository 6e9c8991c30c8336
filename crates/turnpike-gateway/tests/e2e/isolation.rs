//! Tenant isolation at the gateway (issue 20): a user of another tenant who knows, or guesses, a session's
//! user id and conversation id reads nothing of it, over SSE or WebSocket, from the oldest event kept.

use crate::common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use turnpike_gateway::config::TenantLimits;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_tenants_user_with_the_same_ids_reads_nothing_of_a_session() {
    let s = Stack::start(TenantLimits::default()).await;
    let deadline = Instant::now() + PATIENCE;
    let a_auth = format!("Bearer {}", token(&s.tenant_a, "u1"));
    let mut a = sse_connect(s.addr(0), "c1", &[("authorization", &a_auth)]).await.unwrap();
    a.until(deadline, |e| e.event == "ready").await;
    let text = "Where is my parcel? [[mock:reply=tenant A's secret reply]]";
    let (status, _, accepted) =
        post_message(s.addr(0), &[("authorization", &a_auth)], json!({"conversation_id": "c1", "text": text})).await;
    assert_eq!(status, 202, "{accepted}");
    let a_events = a.until(deadline, |e| e.event == "final").await;
    assert!(a_events.iter().any(|e| e.data.to_string().contains("secret reply")), "A reads its own reply");

    // Tenant B's user u1 (an API key naming the user) asks for conversation c1 from the start.
    let b_sse = [("x-api-key", API_KEY_B), ("x-turnpike-user", "u1"), ("last-event-id", "0")];
    let mut b = sse_connect(s.addr(1), "c1", &b_sse).await.unwrap();
    let mut seen = Vec::new();
    let quiet = Instant::now() + Duration::from_secs(3);
    while let Some(e) = b.next(quiet).await {
        seen.push(e);
    }
    assert!(seen.iter().all(|e| e.event == "ready"), "B read events of A's session: {seen:?}");
    assert!(!seen.iter().any(|e| e.data.to_string().contains("secret")));

    // The same over WebSocket with a token of tenant B for user u1.
    let mut ws = ws_connect(s.addr(0), &token(&s.tenant_b, "u1")).await;
    ws_send(&mut ws, json!({"type": "resume", "conversation_id": "c1", "last_event_id": "0"})).await;
    let mut frames = Vec::new();
    let quiet = Instant::now() + Duration::from_secs(3);
    while let Some(f) = ws_next(&mut ws, quiet).await {
        frames.push(f);
    }
    assert_eq!(frames.first().map(|f| f["type"].clone()), Some(json!("resumed")), "{frames:?}");
    assert_eq!(frames.len(), 1, "B's resume replayed events of A's session: {frames:?}");
    s.stop().await;
}
