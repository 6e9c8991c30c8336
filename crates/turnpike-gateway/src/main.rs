//! `turnpike-gateway`: one gateway instance (run as many as needed; they share Redis and one consumer group).
//!
//! Run with: `TURNPIKE_GATEWAY_CONFIG=gateway.toml turnpike-gateway` (the format is in `src/config.rs`;
//! per-tenant quotas in `TURNPIKE_TENANTS_CONFIG`, section `gateway`). SIGTERM/SIGINT drain: stop accepting,
//! close sockets with 1001, commit the outbound consumer, exit.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use turnpike_core::{Endpoints, TenantsConfig};
use turnpike_gateway::config::{GatewayConfig, TenantLimits};
use turnpike_topology::Topology;

/// The Turnpike WebSocket/SSE gateway.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Gateway configuration file (default: no credentials configured, every request refused).
    #[arg(long, env = "TURNPIKE_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Topology file.
    #[arg(long, env = "TURNPIKE_TOPOLOGY", default_value = "topology/turnpike.toml")]
    topology: PathBuf,
    /// Prefix of every topic and consumer group, as for the pipeline.
    #[arg(long, env = "TURNPIKE_TOPIC_PREFIX")]
    topic_prefix: Option<String>,
    /// Folder of the Avro schemas (default: `schemas/` beside the topology folder).
    #[arg(long, env = "TURNPIKE_SCHEMAS")]
    schemas: Option<PathBuf>,
    /// Overrides `listen` of the configuration file.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Overrides `metrics_listen` of the configuration file.
    #[arg(long, env = "TURNPIKE_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Static consumer-group member id of this instance's outbound consumer.
    #[arg(long, env = "TURNPIKE_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Do not run the outbound consumer here (other instances' consumers serve this one's clients too).
    #[arg(long)]
    no_outbound_consumer: bool,
}

/// Longest time from SIGTERM to exit: the consumer's drain plus room for commit and close.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(25);

fn shutdown_on_signals() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("Shutdown requested; closing connections and draining.");
        t.cancel();
        // librdkafka's final commit can block when the brokers are gone; an OS thread bounds the wait.
        std::thread::spawn(|| {
            std::thread::sleep(SHUTDOWN_GRACE);
            tracing::error!("Shutdown did not finish in time; exiting without a clean close.");
            std::process::exit(3);
        });
    });
    token
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let mut config = match &cli.config {
        Some(path) => GatewayConfig::load(path)?,
        None => GatewayConfig::from_env()?,
    };
    if let Some(addr) = cli.listen {
        config.listen = addr;
    }
    if let Some(addr) = cli.metrics_addr {
        config.metrics_listen = addr;
    }
    let schemas = cli
        .schemas
        .clone()
        .unwrap_or_else(|| cli.topology.parent().unwrap_or(std::path::Path::new(".")).join("..").join("schemas"));
    let topology = Topology::load(&cli.topology)?;
    topology.validate(&schemas)?;
    let topology = match cli.topic_prefix.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => topology.prefixed(p),
        None => topology,
    };
    let limits = TenantsConfig::from_env()?.section::<TenantLimits>("gateway")?;
    turnpike_runner::metrics_exporter::install(config.metrics_listen).map_err(anyhow::Error::msg)?;
    turnpike_core::metric_labels::init_from_env()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let shutdown = shutdown_on_signals();
    let settings = turnpike_gateway::Settings {
        config,
        limits,
        topology: Arc::new(topology),
        endpoints: Endpoints::from_env(),
        instance_id: cli.instance_id,
        consume_outbound: !cli.no_outbound_consumer,
    };
    let running = turnpike_gateway::start(settings, listener, shutdown).await?;
    running.task.await??;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if let Err(e) = serve(Cli::parse()).await {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
