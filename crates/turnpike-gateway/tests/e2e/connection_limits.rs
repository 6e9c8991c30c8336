//! Per-connection limits on the real stack: message size and rate, idle clients, and resuming from events
//! the gateway no longer keeps.

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turnpike_gateway::config::{GatewayConfig, TenantLimits};

fn small_and_slow(cfg: &mut GatewayConfig) {
    cfg.limits.max_message_bytes = 200;
    // Two messages, then one per 100 s: the third is refused whatever the machine's speed.
    cfg.limits.burst = 2;
    cfg.limits.messages_per_second = 0.01;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_and_too_fast_messages_get_error_frames_and_the_connection_stays_usable() {
    let s = Stack::start_custom(TenantLimits::default(), [true, true], small_and_slow).await;
    let deadline = Instant::now() + PATIENCE;
    let mut ws = ws_connect(s.addr(0), &token(&s.tenant_a, "u1")).await;
    let msg =
        |id: &str, text: String| json!({"type": "message", "conversation_id": "c1", "message_id": id, "text": text});
    let reply_to = |frames: &[Value], id: &str| -> Value {
        frames.iter().find(|f| f["message_id"] == id).cloned().unwrap_or(Value::Null)
    };
    let answered = |id: &'static str| move |f: &Value| f["message_id"] == id;

    ws_send(&mut ws, msg("m1", "Is my parcel on its way?".into())).await;
    let frames = ws_until(&mut ws, deadline, answered("m1")).await;
    assert_eq!(reply_to(&frames, "m1")["type"], "accepted");

    ws_send(&mut ws, msg("m2", "x".repeat(201))).await;
    let frames = ws_until(&mut ws, deadline, answered("m2")).await;
    let e = reply_to(&frames, "m2");
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("message_too_large")), "{e}");

    ws_send(&mut ws, msg("m3", "And my refund?".into())).await;
    let frames = ws_until(&mut ws, deadline, answered("m3")).await;
    let e = reply_to(&frames, "m3");
    assert_eq!(e["code"], "too_many_messages", "{e}");
    assert!(e["retry_after_ms"].as_u64().unwrap() > 0);

    // Still usable: a resume is answered.
    ws_send(&mut ws, json!({"type": "resume", "conversation_id": "c2"})).await;
    ws_until(&mut ws, deadline, |f| f["type"] == "resumed").await;
    // And a frame that is not part of the protocol gets an error, not a closed socket.
    ws_send(&mut ws, json!({"type": "nonsense"})).await;
    let frames = ws_until(&mut ws, deadline, |f| f["type"] == "error").await;
    assert_eq!(frames.last().unwrap()["code"], "invalid_request");
    s.stop().await;
}

fn quick_pings(cfg: &mut GatewayConfig) {
    cfg.limits.ping_interval_secs = 1;
    cfg.limits.idle_timeout_secs = 2;
}

/// Reads one server frame (servers do not mask): (opcode, payload).
async fn read_frame(tcp: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            tcp.read_exact(&mut ext).await.unwrap();
            u16::from_be_bytes(ext) as usize
        }
        127 => panic!("unexpectedly large frame"),
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x0f, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_answers_pings_is_closed_with_idle_timeout() {
    let s = Stack::start_custom(TenantLimits::default(), [true, true], quick_pings).await;
    // A raw socket: it completes the upgrade, then reads without ever answering (a vanished peer).
    let mut tcp = tokio::net::TcpStream::connect(s.addr(0)).await.unwrap();
    let request = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {}\r\n\r\n",
        s.addr(0),
        token(&s.tenant_a, "u1")
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));

    let (pings, close) = tokio::time::timeout(PATIENCE, async {
        let mut pings = 0;
        loop {
            match read_frame(&mut tcp).await {
                (0x9, _) => pings += 1,
                (0x8, payload) => return (pings, payload),
                (op, p) => panic!("unexpected frame {op}: {p:?}"),
            }
        }
    })
    .await
    .expect("the idle connection was never closed");
    assert!(pings >= 1, "the server pinged before giving up");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 4000);
    assert_eq!(&close[2..], b"idle_timeout");
    s.stop().await;
}

fn short_streams(cfg: &mut GatewayConfig) {
    cfg.events.max_len = 4;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_from_before_the_kept_events_says_so_and_continues_from_the_oldest_kept() {
    let s = Stack::start_custom(TenantLimits::default(), [true, true], short_streams).await;
    let deadline = Instant::now() + PATIENCE;
    let mut ws = ws_connect(s.addr(0), &token(&s.tenant_a, "u1")).await;
    // Streamed at 100 tokens/s, so the reply leaves sentence by sentence (many events); an instant reply
    // may be cut into as few as three.
    let text = "Please explain the whole delivery process in detail. [[mock:tokens=150]] [[mock:tps=100]]";
    ws_send(&mut ws, json!({"type": "message", "conversation_id": "c1", "text": text})).await;
    let frames = ws_until(&mut ws, deadline, |f| f["type"] == "final").await;
    let ids: Vec<&str> = frames.iter().filter_map(|f| f["id"].as_str()).collect();
    assert!(ids.len() > 4, "the reply has more events than are kept: {ids:?}");

    let mut again = ws_connect(s.addr(1), &token(&s.tenant_a, "u1")).await;
    ws_send(&mut again, json!({"type": "resume", "conversation_id": "c1", "last_event_id": ids[0]})).await;
    let replay = ws_until(&mut again, Instant::now() + Duration::from_secs(30), |f| f["type"] == "final").await;
    assert_eq!(replay[0]["type"], "resumed");
    assert_eq!((replay[1]["type"].as_str(), replay[1]["code"].as_str()), (Some("error"), Some("events_expired")));
    let replayed: Vec<&str> = replay.iter().filter_map(|f| f["id"].as_str()).collect();
    assert_eq!(replayed, ids[ids.len() - 4..], "the newest kept events, each once");
    s.stop().await;
}
