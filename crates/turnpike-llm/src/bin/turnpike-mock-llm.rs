//! `turnpike-mock-llm`: the scriptable mock LLM (OpenAI, Anthropic and Gemini wire formats) as a standalone server, for local runs and
//! load tests. Runs until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use turnpike_llm::mock::{self, MockConfig};

/// Scriptable mock LLM speaking OpenAI, Anthropic and Gemini (see `[[mock:...]]` directives in the crate docs).
#[derive(Debug, Parser)]
#[command(name = "turnpike-mock-llm", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TURNPIKE_MOCK_LLM_ADDR", default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    /// Milliseconds before the first token (0 = instant).
    #[arg(long, env = "TURNPIKE_MOCK_LLM_TTFT_MS", default_value_t = 200)]
    ttft_ms: u64,
    /// Tokens per second after the first (0 = as fast as the client reads).
    #[arg(long, env = "TURNPIKE_MOCK_LLM_TOKENS_PER_SEC", default_value_t = 50)]
    tokens_per_sec: u32,
    /// Seed mixed with the last user message to pick the reply's words.
    #[arg(long, env = "TURNPIKE_MOCK_LLM_SEED", default_value_t = 7)]
    seed: u64,
    /// Length of generated replies, in tokens.
    #[arg(long, env = "TURNPIKE_MOCK_LLM_REPLY_TOKENS", default_value_t = 40)]
    reply_tokens: usize,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let cfg = MockConfig {
        ttft: Duration::from_millis(args.ttft_ms),
        tokens_per_sec: args.tokens_per_sec,
        seed: args.seed,
        reply_tokens: args.reply_tokens,
    };
    let listener = TcpListener::bind(args.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, ?cfg, "turnpike-mock-llm listening");
    tokio::select! {
        served = mock::serve(listener, cfg) => served,
        _ = shutdown_signal() => {
            tracing::info!("turnpike-mock-llm stopping");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
