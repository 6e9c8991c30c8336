//! `turnpike-fake-helpdesk`: the local fake of Zendesk, Freshdesk and Intercom (see `turnpike_helpdesk::fake`)
//! as a standalone server, for local runs and load tests. Runs until Ctrl-C / SIGTERM.
//!
//! Run with `turnpike-fake-helpdesk --addr 127.0.0.1:8091 --latency-ms 300`, then point a tenant's
//! `helpdesk.base_url` at it and set the webhook targets with
//! `curl -d '{"zendesk":"http://127.0.0.1:8088/v1/helpdesk/zendesk/acme"}' -H 'content-type: application/json' 127.0.0.1:8091/fake/webhooks`.

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use turnpike_helpdesk::fake::{self, FakeConfig};

/// Fake Zendesk, Freshdesk and Intercom APIs with signed webhooks, rate limits, latency and faults.
#[derive(Debug, Parser)]
#[command(name = "turnpike-fake-helpdesk", version)]
struct Args {
    #[arg(long, env = "TURNPIKE_FAKE_HELPDESK_ADDR", default_value = "127.0.0.1:8091")]
    addr: SocketAddr,
    /// Milliseconds added to every API answer (a hosted helpdesk answers in a few hundred).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// API requests per minute per vendor before 429 + Retry-After (0: unlimited).
    #[arg(long, default_value_t = 0)]
    rate_limit_per_min: u32,
    #[arg(long, default_value = "bot@fake.example")]
    zendesk_email: String,
    #[arg(long, env = "FAKE_ZENDESK_TOKEN", default_value = "zendesk-token")]
    zendesk_token: String,
    #[arg(long, env = "FAKE_FRESHDESK_API_KEY", default_value = "freshdesk-key")]
    freshdesk_api_key: String,
    #[arg(long, env = "FAKE_INTERCOM_TOKEN", default_value = "intercom-token")]
    intercom_token: String,
    #[arg(long, env = "FAKE_ZENDESK_SIGNING_SECRET", default_value = "zendesk-signing-secret")]
    zendesk_signing_secret: String,
    #[arg(long, env = "FAKE_INTERCOM_CLIENT_SECRET", default_value = "intercom-client-secret")]
    intercom_client_secret: String,
    #[arg(long, env = "FAKE_FRESHDESK_WEBHOOK_TOKEN", default_value = "freshdesk-webhook-token")]
    freshdesk_webhook_token: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let a = Args::parse();
    let cfg = FakeConfig {
        latency: Duration::from_millis(a.latency_ms),
        rate_limit_per_min: a.rate_limit_per_min,
        zendesk_email: a.zendesk_email,
        zendesk_token: a.zendesk_token,
        freshdesk_api_key: a.freshdesk_api_key,
        intercom_token: a.intercom_token,
        zendesk_signing_secret: a.zendesk_signing_secret,
        intercom_client_secret: a.intercom_client_secret,
        freshdesk_webhook_token: a.freshdesk_webhook_token,
    };
    let listener = TcpListener::bind(a.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, latency_ms = a.latency_ms, "Fake helpdesk listening.");
    tokio::select! {
        served = fake::serve(listener, cfg) => served,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
