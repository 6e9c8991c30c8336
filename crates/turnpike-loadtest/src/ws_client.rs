//! What the gateway load tools (`ws_idle`, `ws_ttft`) share: HS256 tokens minted the way a customer's
//! backend would, WebSocket connections from a chosen local address (one source IP has ~28,000 ephemeral
//! ports towards one gateway address), the process file limit, RSS from /proc, percentiles.
//!
//! Included by each tool with `#[path]`; not every tool uses every item.
#![allow(dead_code)]

use anyhow::Context;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// The JWT claims PROTOCOL.md requires.
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    tenant: &'a str,
    exp: u64,
}

/// An HS256 token for `user` of `tenant`, valid for `ttl_secs`.
pub fn mint_token(secret: &[u8], tenant: &str, user: &str, ttl_secs: u64) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = Claims { sub: user, tenant, exp: now + ttl_secs };
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )?)
}

/// The HS256 secret from the environment variable named `var` (the gateway's `secret_env`).
pub fn secret_from_env(var: &str) -> anyhow::Result<Vec<u8>> {
    let secret = std::env::var(var).with_context(|| format!("set {var} to the gateway's HS256 secret"))?;
    Ok(secret.into_bytes())
}

/// `127.0.0.1` … `127.0.0.N`: loopback addresses to spread connections over (Linux routes all of 127/8).
pub fn loopback_sources(n: u8) -> Vec<IpAddr> {
    (1..=n.max(1)).map(|i| IpAddr::from([127, 0, 0, i])).collect()
}

/// Opens `ws://{addr}{path}?access_token=…` from `source`. The client keeps small buffers: the figure of
/// interest is the gateway's memory, and 10,000 clients must fit beside it.
pub async fn connect(
    addr: SocketAddr,
    path: &str,
    token: &str,
    source: Option<IpAddr>,
) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("cannot bind {ip}"))?;
    }
    let stream = socket.connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}{path}?access_token={token}");
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .with_context(|| format!("WebSocket upgrade refused by {addr}"))?;
    Ok(ws)
}

/// Raises this process's open-file limit to at least `wanted` (root may raise the hard limit too).
pub fn raise_fd_limit(want: libc::rlim_t) -> anyhow::Result<libc::rlim_t> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            anyhow::bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        if lim.rlim_cur >= want {
            return Ok(lim.rlim_cur);
        }
        let raised = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max.max(want) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return Ok(want);
        }
        // Not allowed to raise the hard limit: take what it allows.
        let capped = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &capped) != 0 {
            anyhow::bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
        Ok(lim.rlim_max)
    }
}

/// `VmRSS` of `pid` in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid} (the gateway's pid)"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// Open file descriptors of `pid` (its sockets among them).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// The `p` quantile (0..=1) of `v`, nearest rank; NaN when empty. Sorts `v`.
pub fn quantile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The 1-minute load average and the number of cores: the figures are only comparable on an idle machine.
pub fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("load average {} on {cores} cores", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}
