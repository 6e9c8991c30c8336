//! How many idle WebSocket connections a gateway holds, and what each costs it in memory.
//!
//! Opens N authenticated connections (each subscribed to a conversation, as the web page is), spread over
//! several loopback source addresses, holds them past the gateway's ping interval while answering its
//! pings, and reads the gateway's resident memory (/proc/<pid>/status, VmRSS) before and after.
//!
//! Run with a gateway already listening (its `TURNPIKE_JWT_SECRET` HS256 key in this environment too, and
//! `ulimit -n` raised for the gateway as well):
//!   cargo run --release -p turnpike-loadtest --bin ws_idle -- \
//!       --gateway 127.0.0.1:8080 --gateway-pid $(pgrep -n turnpike-gatewa) --connections 10000
//! Target (issue 7): at least 10,000 connections at under 20 KiB each.

#[path = "../ws_client.rs"]
mod ws_client;

use anyhow::Context;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[derive(Parser)]
#[command(about = "Hold N idle WebSocket connections to a Turnpike gateway and report its memory per connection")]
struct Args {
    /// The gateway's client listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: SocketAddr,
    /// The gateway's process id (its RSS is read from /proc).
    #[arg(long)]
    gateway_pid: u32,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Loopback source addresses to spread connections over (127.0.0.1 … 127.0.0.N).
    #[arg(long, default_value_t = 4)]
    source_ips: u8,
    /// Environment variable holding the gateway's HS256 secret.
    #[arg(long, default_value = "TURNPIKE_JWT_SECRET")]
    secret_env: String,
    /// Tenant of every token.
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Distinct users the connections belong to (round robin).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to hold every connection once all are open (the gateway pings every 20 s).
    #[arg(long, default_value_t = 45)]
    hold_secs: u64,
}

#[derive(Default)]
struct Tally {
    alive: AtomicUsize,
    pings: AtomicUsize,
    closed_by: Mutex<BTreeMap<String, usize>>,
}

/// Connects, subscribes to one conversation and waits for `resumed`.
async fn open(args: &Args, secret: &[u8], i: usize) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let sources = ws_client::loopback_sources(args.source_ips);
    let user = format!("idle-{}", i % args.users.max(1));
    let token = ws_client::mint_token(secret, &args.tenant, &user, 3600)?;
    let mut ws = ws_client::connect(args.gateway, "/v1/ws", &token, Some(sources[i % sources.len()])).await?;
    let resume = serde_json::json!({"type": "resume", "conversation_id": format!("idle-{i}")});
    ws.send(Message::text(resume.to_string())).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.context("no `resumed` within 30 s")?;
        match frame.context("closed before `resumed`")?? {
            Message::Text(t) if t.contains("\"resumed\"") => return Ok(ws),
            Message::Text(t) => anyhow::bail!("unexpected answer to resume: {t}"),
            _ => {}
        }
    }
}

/// Reads until the connection ends (tungstenite answers pings while reading) and records why it ended.
async fn hold(mut ws: WebSocketStream<TcpStream>, tally: Arc<Tally>, stop: tokio_util::sync::CancellationToken) {
    let reason = loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = ws.close(None).await;
                break None;
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Ping(_))) => { tally.pings.fetch_add(1, Ordering::Relaxed); }
                Some(Ok(Message::Close(frame))) => {
                    break Some(frame.map_or("close without code".into(), |f| format!("close {} {}", f.code, f.reason)));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(format!("error: {e}")),
                None => break Some("end of stream".into()),
            }
        }
    };
    tally.alive.fetch_sub(1, Ordering::Relaxed);
    if let Some(reason) = reason {
        *tally.closed_by.lock().unwrap().entry(reason).or_default() += 1;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let secret: Arc<[u8]> = ws_client::secret_from_env(&args.secret_env)?.into();
    let limit = ws_client::raise_fd_limit(args.connections as libc::rlim_t + 1024)?;
    println!("machine: {}; open-file limit of this process: {limit}", ws_client::machine_load());

    // Warm-up: the gateway's one-time allocations (key parsing, pools, thread caches) are not per connection.
    let warm = args.connections.min(100);
    let warmed: Vec<_> = futures::stream::iter(0..warm)
        .map(|i| {
            let (args, secret) = (args.clone(), secret.clone());
            async move { open(&args, &secret, args.connections + i).await }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    for ws in warmed {
        ws.context("warm-up connection failed")?.close(None).await.ok();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pid = args.gateway_pid;
    let (rss_before, fds_before) = (ws_client::rss_kib(pid)?, ws_client::open_fds(pid));
    let tally = Arc::new(Tally::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut results = futures::stream::iter(0..args.connections)
        .map(|i| {
            let (args, secret) = (args.clone(), secret.clone());
            async move { open(&args, &secret, i).await }
        })
        .buffer_unordered(args.concurrency);
    while let Some(result) = results.next().await {
        match result {
            Ok(ws) => {
                tally.alive.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(hold(ws, tally.clone(), stop.clone()));
            }
            Err(e) => *failures.entry(format!("{e:#}")).or_default() += 1,
        }
    }
    let opened = tally.alive.load(Ordering::Relaxed);
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = ws_client::rss_kib(pid)?;
    println!(
        "opened {opened} of {} connections in {open_secs:.1} s; gateway fds {fds_before} -> {}",
        args.connections,
        ws_client::open_fds(pid)
    );
    for (error, n) in &failures {
        println!("  failed {n}x: {error}");
    }

    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let rss_held = ws_client::rss_kib(pid)?;
    let alive = tally.alive.load(Ordering::Relaxed);
    let per = |rss: u64| if opened == 0 { f64::NAN } else { (rss as f64 - rss_before as f64) / opened as f64 };
    println!(
        "held {alive} connections for {} s; pings answered: {}",
        args.hold_secs,
        tally.pings.load(Ordering::Relaxed)
    );
    for (reason, n) in tally.closed_by.lock().unwrap().iter() {
        println!("  closed by the gateway {n}x: {reason}");
    }
    println!("gateway RSS: {rss_before} KiB before, {rss_open} KiB with all open, {rss_held} KiB after holding");
    println!(
        "memory per connection: {:.1} KiB once open, {:.1} KiB after holding {} s (target < 20 KiB, >= 10,000 held)",
        per(rss_open),
        per(rss_held),
        args.hold_secs
    );
    println!("machine after: {}", ws_client::machine_load());
    stop.cancel();
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}
