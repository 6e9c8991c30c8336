//! The Turnpike gateway: end users' WebSocket and SSE connections in, the pipeline's streamed replies out.
//! The wire protocol is in `PROTOCOL.md`.
//!
//! ```text
//! client ──ws/sse──▶ gateway ──InboundTurn──▶ turns.inbound ──▶ pipeline ──▶ replies.outbound
//!                      ▲                                                        │
//!                      │ notify (pub/sub) + XRANGE              gateway stage ◀─┘ (one group, all instances)
//!                      └────────── Redis stream per session ◀── XADD (idempotent id)
//! ```
//!
//! Any instance may consume any outbound partition; the instance holding the client's socket is subscribed
//! to the session's channel and reads the session's stream from the connection's last sent id — the same
//! path that serves a resume. Credentials decide tenant and user ([`auth`]); token quotas are one Redis
//! script shared by all instances ([`limiter`]).

pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod feed;
pub mod hub;
pub mod ingress;
pub mod limiter;
pub mod replay;
pub mod sse;
pub mod stage;
pub mod web;
pub mod ws;

use axum::routing::{get, post};
use axum::Router;
use config::{GatewayConfig, TenantLimits};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use turnpike_core::{Endpoints, PerTenant};
use turnpike_runner::RunnerConfig;
use turnpike_store::RedisPool;
use turnpike_topology::Topology;

/// The stage name of the gateway's outbound consumer in the topology.
pub const STAGE: &str = "gateway";

/// Shared state of one gateway instance.
pub struct App {
    pub cfg: GatewayConfig,
    pub auth: auth::Authenticator,
    pub limits: PerTenant<TenantLimits>,
    pub limiter: limiter::Limiter,
    pub pool: RedisPool,
    pub hub: hub::Hub,
    pub inbound: ingress::Inbound,
    /// Cancelled on shutdown: stop accepting, close sockets, end event streams.
    pub shutdown: CancellationToken,
    pub ttft: TtftClock,
}

/// Counts a connection as open for as long as it lives.
pub struct ConnectionGauge(&'static str);

impl ConnectionGauge {
    pub fn new(transport: &'static str) -> ConnectionGauge {
        metrics::gauge!("turnpike_gateway_connections_open", "transport" => transport).increment(1.0);
        metrics::counter!("turnpike_gateway_connections_total", "transport" => transport).increment(1);
        ConnectionGauge(transport)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("turnpike_gateway_connections_open", "transport" => self.0).decrement(1.0);
    }
}

/// Time to first token as the client sees it: from `accepted` to the first reply event sent for that turn
/// by this instance. Turns accepted on another instance (an SSE POST elsewhere) are not measured here.
#[derive(Default)]
pub struct TtftClock {
    accepted: Mutex<HashMap<String, Instant>>,
}

/// Turns whose first event never came (refused upstream, client gone) are forgotten after this.
const TTFT_FORGET: Duration = Duration::from_secs(300);
const TTFT_MAX_TRACKED: usize = 100_000;

impl TtftClock {
    pub fn accepted(&self, turn_id: &str) {
        let mut m = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= TTFT_MAX_TRACKED {
            m.retain(|_, at| at.elapsed() < TTFT_FORGET);
            if m.len() >= TTFT_MAX_TRACKED {
                return;
            }
        }
        m.entry(turn_id.to_string()).or_insert_with(Instant::now);
    }

    /// Called for every event sent; records the turn's first reply event.
    pub fn sent(&self, e: &feed::Event, transport: &'static str) {
        metrics::counter!("turnpike_gateway_events_out_total", "transport" => transport).increment(1);
        if e.kind != "delta" && e.kind != "final" {
            return;
        }
        let at = self.accepted.lock().unwrap_or_else(|e| e.into_inner()).remove(&e.turn_id);
        if let Some(at) = at {
            metrics::histogram!("turnpike_gateway_ttft_seconds", "transport" => transport)
                .record(at.elapsed().as_secs_f64());
        }
    }
}

/// The HTTP routes.
pub fn router(app: Arc<App>) -> Router {
    let body_limit = app.cfg.limits.max_message_bytes * 4 + 64 * 1024;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/messages", post(sse::post_message))
        .route("/v1/sessions/{conversation}/events", get(sse::events))
        .merge(web::routes())
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(app)
}

/// Everything one instance needs besides its listener.
pub struct Settings {
    pub config: GatewayConfig,
    pub limits: PerTenant<TenantLimits>,
    /// The (possibly prefixed) topology: the inbound topic and the gateway stage's input, group and DLQ.
    pub topology: Arc<Topology>,
    pub endpoints: Endpoints,
    /// Static group membership id for the outbound consumer.
    pub instance_id: Option<String>,
    /// Run the outbound consumer in this instance (normally yes; a deployment may leave it to some
    /// instances only, since any instance's consumer serves every instance's clients).
    pub consume_outbound: bool,
}

/// Why a gateway cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("redis: {0}")]
    Redis(String),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("topology: {0}")]
    Topology(String),
    #[error(transparent)]
    Runner(#[from] turnpike_runner::RunnerError),
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
}

/// A running instance.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    pub task: tokio::task::JoinHandle<Result<(), GatewayError>>,
}

/// Starts one instance on `listener`: the outbound consumer (the `gateway` stage), the pub/sub hub and the
/// HTTP server. Runs until `shutdown` is cancelled (then drains: stop accepting, close sockets with 1001,
/// commit the consumer) or the consumer fails.
pub async fn start(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, GatewayError> {
    let Settings { config, limits, topology, endpoints, instance_id, consume_outbound } = settings;
    config.check()?;
    let auth = auth::Authenticator::new(&config.auth)?;
    let inbound_topic = topology
        .topic_named("turnpike.turns.inbound")
        .ok_or_else(|| GatewayError::Topology("no inbound topic".into()))?
        .name
        .clone();
    let mut runner_cfg =
        RunnerConfig::from_topology(&topology, STAGE, &endpoints).map_err(|e| GatewayError::Topology(e.to_string()))?;
    runner_cfg.instance_id = instance_id.map(|id| format!("{id}-{STAGE}"));
    turnpike_runner::check_input_schema::<stage::GatewayStage>(&topology, &runner_cfg)
        .map_err(GatewayError::Topology)?;
    let pool = RedisPool::connect(&endpoints.redis_url, 4).await.map_err(|e| GatewayError::Redis(e.to_string()))?;
    // A failing consumer stops the whole instance through `stop`; the caller's token stops it too.
    let stop = shutdown.child_token();
    let hub =
        hub::Hub::start(&endpoints.redis_url, stop.clone()).await.map_err(|e| GatewayError::Redis(e.to_string()))?;
    let inbound = ingress::Inbound::new(&endpoints, inbound_topic).map_err(GatewayError::Kafka)?;
    let app = Arc::new(App {
        limiter: limiter::Limiter::new(pool.clone()),
        cfg: config,
        auth,
        limits,
        pool,
        hub,
        inbound,
        shutdown: stop.clone(),
        ttft: TtftClock::default(),
    });
    let addr = listener.local_addr()?;
    let consumer = {
        let stage = stage::GatewayStage::new(app.pool.clone(), app.cfg.events.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            if !consume_outbound {
                return Ok(());
            }
            let result = turnpike_runner::run(stage, runner_cfg, stop.clone()).await;
            stop.cancel();
            result
        })
    };
    let server = axum::serve(listener, router(app.clone())).with_graceful_shutdown(stop.clone().cancelled_owned());
    tracing::info!(%addr, "Gateway listening.");
    let task = tokio::spawn(async move {
        let served = server.await;
        stop.cancel();
        let consumed = consumer.await.map_err(|e| GatewayError::Topology(format!("consumer task: {e}")))?;
        served?;
        consumed?;
        Ok(())
    });
    Ok(Running { addr, app, task })
}
