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
    /// Log-normal sigma of each request's time to first token and token rate around the values above (e.g.
    /// 0.5: the slowest percent ~3x the median); 0 = every request alike.
    #[arg(long, env = "TURNPIKE_MOCK_LLM_TIMING_SPREAD", default_value_t = 0.0)]
    timing_spread: f64,
    /// Log-normal sigma of each reply's length around --reply-tokens.
    #[arg(long, env = "TURNPIKE_MOCK_LLM_LENGTH_SPREAD", default_value_t = 0.0)]
    length_spread: f64,
    /// Share of requests answered 429 (e.g. 0.01).
    #[arg(long, env = "TURNPIKE_MOCK_LLM_RATE_LIMITED", default_value_t = 0.0)]
    rate_limited: f64,
    /// Share of requests answered 503.
    #[arg(long, env = "TURNPIKE_MOCK_LLM_UNAVAILABLE", default_value_t = 0.0)]
    unavailable: f64,
    /// Share of streams that stall after two chunks.
    #[arg(long, env = "TURNPIKE_MOCK_LLM_STALLS", default_value_t = 0.0)]
    stalls: f64,
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
        variation: mock::vary::Variation {
            timing_sigma_milli: milli(args.timing_spread),
            length_sigma_milli: milli(args.length_spread),
            rate_limited_ppm: ppm(args.rate_limited),
            unavailable_ppm: ppm(args.unavailable),
            stalled_ppm: ppm(args.stalls),
        },
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

fn milli(x: f64) -> u32 {
    (x.clamp(0.0, 10.0) * 1000.0).round() as u32
}

fn ppm(share: f64) -> u32 {
    (share.clamp(0.0, 1.0) * 1_000_000.0).round() as u32
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
