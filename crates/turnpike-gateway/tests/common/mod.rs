//! Test harness: the whole pipeline on its own prefixed topics (in-process mock LLM), and two gateway
//! instances in this process, each with its own listener, pub/sub connection and outbound consumer (one group
//! on the same prefixed topology). Plus small real clients: WebSocket (tokio-tungstenite), SSE and POST
//! (reqwest).
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use turnpike::pipeline::{LlmSettings, Tuning};
use turnpike_core::{Endpoints, PerTenant};
use turnpike_gateway::auth::api_key_hash;
use turnpike_gateway::config::{ApiKeyConfig, GatewayConfig, JwtKeyConfig, TenantLimits};
use turnpike_topology::Topology;

pub const HINT: &str = "is the local stack running? `deploy/local/stack.sh start && cargo run -p turnpike -- setup`";
pub const ISSUER: &str = "turnpike-tests";
pub const AUDIENCE: &str = "turnpike";
/// Signs for any tenant.
pub const SECRET: &str = "gateway-tests-shared-secret-0123456789";
/// Signs for tenant A only (kid `a-only`).
pub const SECRET_A_ONLY: &str = "gateway-tests-tenant-a-secret-0123456789";
pub const API_KEY_B: &str = "tp-test-api-key-tenant-b";
/// How long any reply may take on this shared machine before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(90);

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

/// The gateway configuration of every test instance: HS256 (any tenant, and one key for tenant A only),
/// RS256, and an API key of tenant B.
pub fn gateway_config(tenant_a: &str, tenant_b: &str) -> GatewayConfig {
    let hs = |kid: &str, secret: &str, tenants: Vec<String>| JwtKeyConfig {
        alg: "HS256".into(),
        kid: Some(kid.into()),
        secret: Some(secret.into()),
        secret_env: None,
        public_key_pem: None,
        public_key_pem_file: None,
        tenants,
    };
    let mut cfg = GatewayConfig::default();
    cfg.auth.jwt.issuer = Some(ISSUER.into());
    cfg.auth.jwt.audience = Some(AUDIENCE.into());
    cfg.auth.jwt.keys = vec![
        hs("any", SECRET, vec![]),
        hs("a-only", SECRET_A_ONLY, vec![tenant_a.to_string()]),
        JwtKeyConfig {
            alg: "RS256".into(),
            kid: Some("rsa".into()),
            secret: None,
            secret_env: None,
            public_key_pem: None,
            public_key_pem_file: Some(keys_dir().join("rs256-test-public.pem")),
            tenants: vec![],
        },
    ];
    cfg.auth.api_keys =
        vec![ApiKeyConfig { tenant: tenant_b.into(), name: "b-backend".into(), sha256: api_key_hash(API_KEY_B) }];
    cfg
}

fn claims(tenant: &str, user: &str, exp_offset_secs: i64) -> Value {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    json!({"sub": user, "tenant": tenant, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + exp_offset_secs})
}

/// An HS256 token signed with `secret` under key id `kid`.
pub fn hs256(kid: &str, secret: &str, tenant: &str, user: &str, exp_offset_secs: i64) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    encode(&header, &claims(tenant, user, exp_offset_secs), &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// A valid HS256 token good for an hour.
pub fn token(tenant: &str, user: &str) -> String {
    hs256("any", SECRET, tenant, user, 3600)
}

/// A valid RS256 token signed with the test key pair.
pub fn rs256(tenant: &str, user: &str) -> String {
    let pem = std::fs::read(keys_dir().join("rs256-test-private.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa".into());
    encode(&header, &claims(tenant, user, 3600), &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

/// The pipeline and two gateway instances.
pub struct Stack {
    pub topo: Arc<Topology>,
    pub endpoints: Endpoints,
    pub tenant_a: String,
    pub tenant_b: String,
    pub gateways: Vec<turnpike_gateway::Running>,
    pub shutdown: CancellationToken,
    pipeline: Option<tokio::task::JoinHandle<Result<(), turnpike_runner::RunnerError>>>,
    pub mock: turnpike_llm::mock::MockServer,
}

impl Drop for Stack {
    /// A failed test never reaches `stop`: stop everything anyway, or the consumers' poll threads keep the
    /// test process alive forever.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Stack {
    /// All eight stages plus two gateways, with `limits` as every tenant's quotas.
    pub async fn start(limits: TenantLimits) -> Stack {
        Self::start_with(limits, [true, true]).await
    }

    /// Like [`Stack::start`]; `consume[i]` says whether instance i runs the outbound consumer.
    pub async fn start_with(limits: TenantLimits, consume: [bool; 2]) -> Stack {
        Self::start_custom(limits, consume, |_| {}).await
    }

    /// Like [`Stack::start_with`], with the instances' configuration adjusted by `configure`.
    pub async fn start_custom(limits: TenantLimits, consume: [bool; 2], configure: fn(&mut GatewayConfig)) -> Stack {
        let base = Topology::load(&root().join("topology/turnpike.toml")).unwrap();
        base.validate(&root().join("schemas")).unwrap();
        let topo = Arc::new(base.prefixed(&unique("gw")));
        let endpoints = Endpoints::from_env();
        // A loaded broker can report a topic it just created without partitions yet; applying again (it is
        // idempotent) checks the topics once their metadata is there.
        let mut applied = Err(None);
        for _ in 0..3 {
            match turnpike_topology::apply::apply(&topo, &endpoints.kafka_properties(), Duration::from_secs(30)).await {
                Ok(_) => {
                    applied = Ok(());
                    break;
                }
                Err(e) => applied = Err(Some(e)),
            }
        }
        applied.map_err(|e| e.map(|e| e.to_string())).expect(HINT);
        let mock = turnpike_llm::mock::spawn(turnpike_llm::mock::MockConfig::instant()).await.unwrap();
        let deps = turnpike_stages::Deps::connect(&endpoints).await.expect(HINT);
        let shutdown = CancellationToken::new();
        let llm = LlmSettings { base_url: mock.base_url(), api_key: None };
        let pipeline = tokio::spawn(turnpike::pipeline::run_stages(
            &turnpike_topology::STAGE_NAMES,
            topo.clone(),
            endpoints.clone(),
            deps,
            llm,
            Tuning::default(),
            shutdown.clone(),
        ));
        let (tenant_a, tenant_b) = (unique("a"), unique("b"));
        let mut gateways = Vec::new();
        for (i, consume_outbound) in consume.into_iter().enumerate() {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
            let mut config = gateway_config(&tenant_a, &tenant_b);
            configure(&mut config);
            let settings = turnpike_gateway::Settings {
                config,
                limits: PerTenant::uniform(limits.clone()),
                topology: topo.clone(),
                endpoints: endpoints.clone(),
                instance_id: Some(format!("{}-{i}", unique("gw"))),
                consume_outbound,
            };
            gateways.push(turnpike_gateway::start(settings, listener, shutdown.clone()).await.expect(HINT));
        }
        Stack { topo, endpoints, tenant_a, tenant_b, gateways, shutdown, pipeline: Some(pipeline), mock }
    }

    pub fn addr(&self, instance: usize) -> SocketAddr {
        self.gateways[instance].addr
    }

    /// Stops gateways and pipeline and checks both stopped cleanly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for g in std::mem::take(&mut self.gateways) {
            tokio::time::timeout(Duration::from_secs(30), g.task)
                .await
                .expect("gateway did not stop")
                .unwrap()
                .expect("gateway stopped with an error");
        }
        let pipeline = self.pipeline.take().expect("stopped twice");
        tokio::time::timeout(Duration::from_secs(60), pipeline)
            .await
            .expect("pipeline did not stop")
            .unwrap()
            .expect("pipeline stopped with an error");
        // Many tests × 20 topics would otherwise pile up partitions on the one local broker.
        let kafka = self.endpoints.kafka_properties();
        if let Err(e) = turnpike_topology::apply::delete_topics(&self.topo, &kafka, Duration::from_secs(30)).await {
            eprintln!("could not delete the test topics: {e}");
        }
    }
}

// ------------------------------------------------------------------------------------------ WebSocket

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/v1/ws` with these extra headers and query; `Err((status, body))` when the upgrade is refused.
pub async fn ws_connect_with(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Result<Socket, (u16, Value)> {
    let mut req = format!("ws://{addr}/v1/ws{query}").into_client_request().unwrap();
    for (k, v) in headers {
        let name = axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().map(|b| serde_json::from_slice(b).unwrap_or(Value::Null));
            Err((resp.status().as_u16(), body.unwrap_or(Value::Null)))
        }
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Opens `/v1/ws` with a bearer token.
pub async fn ws_connect(addr: SocketAddr, token: &str) -> Socket {
    let bearer = format!("Bearer {token}");
    ws_connect_with(addr, "", &[("authorization", &bearer)]).await.expect("upgrade refused")
}

pub async fn ws_send(socket: &mut Socket, frame: Value) {
    socket.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// The next JSON text frame (pings and pongs skipped), or `None` at the deadline or when the socket ends.
pub async fn ws_next(socket: &mut Socket, deadline: Instant) -> Option<Value> {
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, socket.next()).await.ok()?? {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

/// Frames until one satisfies `done` (included), panicking at the deadline.
pub async fn ws_until(socket: &mut Socket, deadline: Instant, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let f = ws_next(socket, deadline)
            .await
            .unwrap_or_else(|| panic!("no frame satisfying the condition; got {frames:?}"));
        let stop = done(&f);
        frames.push(f);
        if stop {
            return frames;
        }
    }
}

// ---------------------------------------------------------------------------------------------- HTTP

/// `POST /v1/messages`: (status, Retry-After header, body).
pub async fn post_message(addr: SocketAddr, headers: &[(&str, &str)], body: Value) -> (u16, Option<String>, Value) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut req = client.post(format!("http://{addr}/v1/messages")).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect(HINT);
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

/// One Server-Sent Event.
#[derive(Clone, Debug, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// An open event stream.
pub struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

/// `GET /v1/sessions/{conversation}/events`; `Err((status, body))` when refused.
pub async fn sse_connect(addr: SocketAddr, conversation: &str, headers: &[(&str, &str)]) -> Result<Sse, (u16, Value)> {
    let mut req = reqwest::Client::new().get(format!("http://{addr}/v1/sessions/{conversation}/events"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect(HINT);
    if resp.status().as_u16() != 200 {
        let status = resp.status().as_u16();
        return Err((status, resp.json().await.unwrap_or(Value::Null)));
    }
    Ok(Sse { body: Box::pin(resp.bytes_stream()), buf: String::new() })
}

impl Sse {
    /// The next event (comments skipped), or `None` at the deadline or end of stream.
    pub async fn next(&mut self, deadline: Instant) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent::default();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                ev.data = serde_json::from_str(&data).unwrap();
                return Some(ev);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let chunk = tokio::time::timeout(left, self.body.next()).await.ok()??.ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until one satisfies `done` (included), panicking at the deadline.
    pub async fn until(&mut self, deadline: Instant, done: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            let e = self
                .next(deadline)
                .await
                .unwrap_or_else(|| panic!("no event satisfying the condition; got {events:?}"));
            let stop = done(&e);
            events.push(e);
            if stop {
                return events;
            }
        }
    }
}

/// The reply text of a turn: its deltas in chunk order, then the final's own text.
pub fn reply_text(events: &[Value], turn_id: &str) -> String {
    let of_turn = |t: &'static str| events.iter().filter(move |e| e["turn_id"] == turn_id && e["type"] == t);
    let mut deltas: Vec<&Value> = of_turn("delta").collect();
    deltas.sort_by_key(|e| e["chunk_index"].as_i64());
    let mut text: String = deltas.iter().map(|e| e["text"].as_str().unwrap_or_default()).collect();
    text.extend(of_turn("final").map(|e| e["text"].as_str().unwrap_or_default().to_string()));
    text
}
