//! A local fake of Zendesk, Freshdesk and Intercom, for tests and load runs without the internet.
//!
//! Guarantees: each vendor's request and response shapes and authentication as documented
//! (../shared/notes/integrations.md §1–3) for the calls Turnpike makes; a request with wrong or missing
//! credentials gets 401; Zendesk's `Idempotency-Key` replays the first answer (`x-idempotency-lookup: hit`)
//! and refuses a different body under the same key (400); rate limits per vendor per minute (429 with
//! `Retry-After`); a fixed latency added *after* the work is done (a client that dies while waiting leaves a
//! created ticket behind, as a real helpdesk would); scripted faults; and agent actions (reply, solve) that
//! send signed webhooks in each vendor's scheme to a configured URL. Everything received is recorded for
//! tests (`GET /fake/tickets`, `GET /fake/requests`).
//!
//! Vendor routes: Zendesk `POST /api/v2/tickets[.json]`, `GET /api/v2/tickets[.json]?external_id=`,
//! `PUT /api/v2/tickets/{id}[.json]`, `GET /api/v2/tickets/{id}/comments[.json]`; Freshdesk
//! `POST /api/v2/tickets` (with a JSON body carrying `description`), `GET /api/v2/search/tickets?query=`,
//! `POST /api/v2/tickets/{id}/notes`, `POST /api/v2/tickets/{id}/reply`; Intercom `GET
//! /contacts/find_by_external_id/{id}`, `POST /contacts`, `POST /conversations`, `POST /conversations/search`,
//! `POST /conversations/{id}/reply`. Zendesk and Freshdesk share paths: the credentials decide which one
//! answers (Zendesk's `{email}/token` user, Freshdesk's API key).
//!
//! Control routes: `POST /fake/latency {"ms"}`, `POST /fake/faults {"status", "count", "path_contains", "method", "delay_ms"}`,
//! `POST /fake/webhooks {"zendesk", "freshdesk", "intercom"}` (target URLs), `POST /fake/agent/reply
//! {"vendor", "ticket_id", "body"}`, `POST /fake/agent/solve {"vendor", "ticket_id"}`, `GET /fake/tickets`,
//! `GET /fake/requests`, `GET /healthz`.

mod agent;
mod vendors;

pub use agent::{iso8601, iso8601_now, parse_iso8601, AGENT_ID};

use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Credentials, secrets and behaviour of a fake.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Added to every vendor API answer, after the request's work is done.
    pub latency: Duration,
    /// Vendor API requests per minute per vendor before 429 (0: no limit).
    pub rate_limit_per_min: u32,
    pub zendesk_email: String,
    pub zendesk_token: String,
    pub freshdesk_api_key: String,
    pub intercom_token: String,
    /// Zendesk webhook signing secret (`x-zendesk-webhook-signature`).
    pub zendesk_signing_secret: String,
    /// Intercom app client secret (`X-Hub-Signature`).
    pub intercom_client_secret: String,
    /// Freshdesk automation rule's shared header token.
    pub freshdesk_webhook_token: String,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            latency: Duration::ZERO,
            rate_limit_per_min: 0,
            zendesk_email: "bot@fake.example".into(),
            zendesk_token: "zendesk-token".into(),
            freshdesk_api_key: "freshdesk-key".into(),
            intercom_token: "intercom-token".into(),
            zendesk_signing_secret: "zendesk-signing-secret".into(),
            intercom_client_secret: "intercom-client-secret".into(),
            freshdesk_webhook_token: "freshdesk-webhook-token".into(),
        }
    }
}

/// A ticket (Intercom: a conversation) as the fake holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FakeTicket {
    pub vendor: String,
    pub id: u64,
    /// Zendesk `external_id`, Freshdesk `cf_turnpike_ticket_id`; Intercom: none (the id is in the body).
    pub external_id: Option<String>,
    pub subject: String,
    /// Zendesk first comment, Freshdesk description, Intercom first message.
    pub description: String,
    pub requester_id: u64,
    pub priority: Value,
    pub tags: Vec<String>,
    pub status: String,
    pub comments: Vec<FakeComment>,
}

/// A comment, note or conversation part.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FakeComment {
    pub id: u64,
    /// `customer`, `agent` or `bot` (the API user Turnpike authenticates as).
    pub author: String,
    pub author_id: u64,
    pub body: String,
    pub public: bool,
}

/// One vendor API request, as received.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FakeRequest {
    pub vendor: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub idempotency_key: Option<String>,
}

/// A scripted fault for the next `count` matching requests: answer `status` without doing the work, or
/// with `status` 0, do the work and answer `delay_ms` late (a create whose answer the client never sees).
#[derive(Clone, Debug, Deserialize)]
struct Fault {
    status: u16,
    count: u32,
    #[serde(default)]
    path_contains: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    delay_ms: u64,
}

#[derive(Default)]
struct State {
    /// Ids start at a base of their own per fake, as two real helpdesk accounts never share ticket ids:
    /// fakes of concurrent tests must not either (Turnpike maps a helpdesk's ticket id back to a session).
    first_id: u64,
    next_id: u64,
    tickets: Vec<FakeTicket>,
    requests: Vec<FakeRequest>,
    /// Zendesk idempotency keys: the first request's body and answer.
    idempotency: HashMap<String, (Value, u16, Value)>,
    /// Intercom contacts: external id → contact id.
    contacts: HashMap<String, u64>,
    /// Per vendor: start of the current one-minute window and requests in it.
    windows: HashMap<String, (Instant, u32)>,
    faults: Vec<Fault>,
    webhooks: HashMap<String, String>,
    latency: Option<Duration>,
}

struct Shared {
    cfg: FakeConfig,
    state: Mutex<State>,
    http: reqwest::Client,
}

impl State {
    fn new() -> State {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        State { first_id: 10_000 + (nanos % 1_000_000_000_000) as u64 * 1000, ..State::default() }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panicking handler; the data is still consistent enough for a fake.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn next_id(state: &mut State) -> u64 {
        state.next_id += 1;
        state.first_id + state.next_id
    }
}

/// A fake running in the background of the current runtime.
pub struct FakeHelpdesk {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl FakeHelpdesk {
    /// Binds 127.0.0.1 on a free port and serves.
    pub async fn spawn(cfg: FakeConfig) -> std::io::Result<FakeHelpdesk> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { cfg, state: Mutex::new(State::new()), http: reqwest::Client::new() });
        let app = router(shared.clone());
        let task = tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(FakeHelpdesk { addr, shared, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn config(&self) -> &FakeConfig {
        &self.shared.cfg
    }
    pub fn tickets(&self) -> Vec<FakeTicket> {
        self.shared.lock().tickets.clone()
    }
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.shared.lock().requests.clone()
    }
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = Some(latency);
    }
    /// The next `count` vendor requests whose path contains `path_contains` answer `status`.
    pub fn inject_fault(&self, status: u16, count: u32, path_contains: Option<&str>) {
        let path_contains = path_contains.map(str::to_string);
        self.shared.lock().faults.push(Fault { status, count, path_contains, method: None, delay_ms: 0 });
    }
    /// The next `count` `method` requests whose path contains `path_contains` are done, then answered `delay` late.
    pub fn delay_next(&self, method: &str, path_contains: &str, count: u32, delay: Duration) {
        let f = Fault {
            status: 0,
            count,
            path_contains: Some(path_contains.into()),
            method: Some(method.into()),
            delay_ms: delay.as_millis() as u64,
        };
        self.shared.lock().faults.push(f);
    }
    /// Where agent events of `vendor` are POSTed.
    pub fn set_webhook(&self, vendor: &str, url: &str) {
        self.shared.lock().webhooks.insert(vendor.to_string(), url.to_string());
    }
    /// An agent replies publicly on a ticket; returns the status the webhook target answered.
    pub async fn agent_reply(&self, vendor: &str, ticket_id: u64, body: &str) -> Result<u16, String> {
        agent::act(&self.shared, vendor, ticket_id, agent::Action::Reply(body.to_string())).await
    }
    /// An agent solves (Intercom: closes) a ticket; returns the status the webhook target answered.
    pub async fn agent_solve(&self, vendor: &str, ticket_id: u64) -> Result<u16, String> {
        agent::act(&self.shared, vendor, ticket_id, agent::Action::Solve).await
    }
}

impl Drop for FakeHelpdesk {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves on `listener` until it fails (the binary's entry point).
pub async fn serve(listener: TcpListener, cfg: FakeConfig) -> std::io::Result<()> {
    let shared = Arc::new(Shared { cfg, state: Mutex::new(State::new()), http: reqwest::Client::new() });
    axum::serve(listener, router(shared)).await
}

fn router(shared: Arc<Shared>) -> Router {
    vendors::routes()
        .merge(agent::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/fake/latency", post(control_latency))
        .route("/fake/faults", post(control_faults))
        .route("/fake/webhooks", post(control_webhooks))
        .route(
            "/fake/tickets",
            get(|s: axum::extract::State<Arc<Shared>>| async move { axum::Json(s.lock().tickets.clone()) }),
        )
        .route(
            "/fake/requests",
            get(|s: axum::extract::State<Arc<Shared>>| async move { axum::Json(s.lock().requests.clone()) }),
        )
        .with_state(shared)
}

async fn control_latency(axum::extract::State(s): axum::extract::State<Arc<Shared>>, axum::Json(v): axum::Json<Value>) {
    s.lock().latency = Some(Duration::from_millis(v["ms"].as_u64().unwrap_or(0)));
}

async fn control_faults(axum::extract::State(s): axum::extract::State<Arc<Shared>>, axum::Json(f): axum::Json<Fault>) {
    s.lock().faults.push(f);
}

async fn control_webhooks(
    axum::extract::State(s): axum::extract::State<Arc<Shared>>,
    axum::Json(v): axum::Json<HashMap<String, String>>,
) {
    s.lock().webhooks.extend(v);
}
