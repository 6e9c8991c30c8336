//! The agent's replies at the customer's WebSocket, through a real `turnpike-gateway` process: the customer
//! talks to the bot, asks for a human, and reads the agent's messages (sent through the fake Zendesk's
//! signed webhook) on the same socket, in order with the conversation. The gateway is SIGKILLed while the
//! agent keeps writing and started again; the customer reconnects and resumes from the last event id they
//! got, and reads every agent message they had not seen, once, and then the return to the bot.
//!
//! The gateway binary is the workspace's `target/debug/turnpike-gateway` (`deploy/local/test.sh` builds it
//! with the test binaries), started on the pipeline's topic prefix with an API key of the tenant.

use crate::common::*;
use crate::desk::Desk;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::Digest;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const API_KEY: &str = "tp-desk-gateway-test-key";

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One `turnpike-gateway` process on the pipeline's topics, always on the same address and instance id (a
/// restart is the same instance coming back).
struct Gateway {
    addr: SocketAddr,
    config: std::path::PathBuf,
    tenants: std::path::PathBuf,
    prefix: String,
    instance: String,
    log: std::path::PathBuf,
}

impl Gateway {
    fn new(dir: &Path, prefix: &str) -> Gateway {
        // A free port now, reused by every start (the client reconnects where it was).
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let config = dir.join("gateway.toml");
        let hash = format!("{:x}", sha2::Sha256::digest(API_KEY.as_bytes()));
        std::fs::write(
            &config,
            format!(
                "listen = \"{addr}\"\nmetrics_listen = \"127.0.0.1:0\"\n\n[[auth.api_keys]]\ntenant = \"acme\"\n\
                 name = \"desk-test\"\nsha256 = \"{hash}\"\n"
            ),
        )
        .unwrap();
        Gateway {
            addr,
            config,
            tenants: dir.join("tenants.toml"),
            prefix: prefix.into(),
            instance: unique("gw"),
            log: dir.join("gateway.log"),
        }
    }

    /// Starts the process and waits until it answers `/healthz`.
    async fn start(&self) -> KillOnDrop {
        let bin = root().join("target/debug/turnpike-gateway");
        assert!(bin.exists(), "{} is missing: `cargo build -p turnpike-gateway`", bin.display());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = KillOnDrop::spawn(
            std::process::Command::new(bin)
                .arg("--topic-prefix")
                .arg(&self.prefix)
                .arg("--topology")
                .arg(root().join("topology/turnpike.toml"))
                .arg("--instance-id")
                .arg(&self.instance)
                .env("TURNPIKE_GATEWAY_CONFIG", &self.config)
                .env("TURNPIKE_TENANTS_CONFIG", &self.tenants)
                .env("RUST_LOG", "info,rdkafka=warn")
                .env("NO_COLOR", "1")
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http.get(format!("http://{}/healthz", self.addr)).send().await.is_ok_and(|r| r.status() == 200) {
            assert!(Instant::now() < deadline, "the gateway did not come up: {}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        child
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A customer's socket: the tenant's API key acting for `user`.
    async fn connect(&self, user: &str) -> Socket {
        let mut req = format!("ws://{}/v1/ws", self.addr).into_client_request().unwrap();
        req.headers_mut().insert("x-api-key", API_KEY.parse().unwrap());
        req.headers_mut().insert("x-turnpike-user", user.parse().unwrap());
        tokio_tungstenite::connect_async(req).await.expect("the gateway refused the socket").0
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// Frames until one satisfies `done` (included); panics at the deadline or when the socket ends.
async fn until(socket: &mut Socket, deadline: Instant, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, socket.next()).await;
        let frame = match next {
            Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("no frame satisfying the condition ({other:?}); got {frames:?}"),
        };
        let stop = done(&frame);
        frames.push(frame);
        if stop {
            return frames;
        }
    }
}

/// What the customer reads, in order: `status:X`, `final:REASON:TEXT` for agent lines, `final:REASON` else.
fn shown(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == "status" || f["type"] == "final")
        .map(|f| match (f["type"].as_str(), f["finish_reason"].as_str()) {
            (Some("status"), _) => format!("status:{}", f["status"].as_str().unwrap_or("")),
            (_, Some("agent")) => format!("final:agent:{}", f["text"].as_str().unwrap_or("")),
            (_, reason) => format!("final:{}", reason.unwrap_or("")),
        })
        .collect()
}

fn is_agent(text: &'static str) -> impl Fn(&Value) -> bool {
    move |f| f["finish_reason"] == "agent" && f["text"] == text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_replies_reach_the_websocket_in_order_and_survive_a_gateway_restart_and_resume_once_each() {
    let d = Desk::start(600).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tenants.toml"), "").unwrap();
    let gw = Gateway::new(dir.path(), &d.p.prefix);
    let mut process = gw.start().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let user = unique("cust");
    let session = format!("{user}:c1");

    let mut ws = gw.connect(&user).await;
    send(
        &mut ws,
        json!({"type": "message", "conversation_id": "c1", "message_id": "m1", "text": "My parcel never came."}),
    )
    .await;
    let mut before = until(&mut ws, deadline, |f| f["type"] == "final").await;
    send(
        &mut ws,
        json!({"type": "message", "conversation_id": "c1", "message_id": "m2", "text": "I want to talk to a human"}),
    )
    .await;
    before.extend(until(&mut ws, deadline, |f| f["status"] == "handed_off").await);
    let ticket = d.ticket().await;
    d.ticket_recorded(&session).await;

    const FIRST: &str = "Hi, I'm Sam. Let me check your parcel.";
    const SECOND: &str = "Found it: it left the depot today.";
    const THIRD: &str = "It arrives tomorrow before noon.";
    assert_eq!(d.fake.agent_reply("zendesk", ticket, FIRST).await, Ok(200));
    before.extend(until(&mut ws, deadline, is_agent(FIRST)).await);
    let last_id = before.last().unwrap()["id"].as_str().unwrap().to_string();

    // The gateway dies without a goodbye; the agent keeps writing meanwhile.
    process.kill().expect("SIGKILL");
    process.wait().unwrap();
    assert_eq!(d.fake.agent_reply("zendesk", ticket, SECOND).await, Ok(200));
    assert_eq!(d.fake.agent_reply("zendesk", ticket, THIRD).await, Ok(200));
    let _process = gw.start().await;

    // The customer reconnects and resumes where they were; then the agent solves the ticket.
    let mut ws = gw.connect(&user).await;
    send(&mut ws, json!({"type": "resume", "conversation_id": "c1", "last_event_id": last_id})).await;
    let mut after = until(&mut ws, deadline, is_agent(THIRD)).await;
    assert_eq!(after[0], json!({"type": "resumed", "conversation_id": "c1", "last_event_id": last_id}));
    assert_eq!(d.fake.agent_solve("zendesk", ticket).await, Ok(200));
    after.extend(until(&mut ws, deadline, |f| f["status"] == "bot_resumed").await);
    // Anything repeated would come right behind: give it a moment.
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
        if let Message::Text(t) = m {
            after.push(serde_json::from_str(t.as_str()).unwrap());
        }
    }

    let all: Vec<Value> = before.into_iter().chain(after).collect();
    assert_eq!(
        shown(&all),
        [
            "final:stop",
            "final:handoff",
            "status:handed_off",
            "status:agent_joined",
            &format!("final:agent:{FIRST}"),
            &format!("final:agent:{SECOND}"),
            &format!("final:agent:{THIRD}"),
            "status:bot_resumed",
        ],
        "{all:#?}"
    );
    let ids: Vec<(u64, u64)> = all
        .iter()
        .filter_map(|f| f["id"].as_str())
        .map(|id| {
            let (a, b) = id.split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "event ids strictly increase, nothing twice: {ids:?}");
    d.stop().await;
}
