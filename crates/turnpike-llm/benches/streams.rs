//! Streaming client overhead and mock capacity, measured against the `turnpike-mock-llm` binary in its own
//! process (so the client's CPU is not mixed with the server's).
//!
//! Run with: `cargo bench -p turnpike-llm --bench streams` (add `-- --max-streams 8000` to push the mock).
//! 1. Overhead: `--streams` requests, `--concurrency` at a time, against a mock with a fixed time to first
//!    token and instant tokens. Reports the client's CPU per stream (this process's user+system time / streams)
//!    and the latency the client adds beyond the mock's: time to first text minus the mock's TTFT, and time
//!    from first text to the end of the stream.
//! 2. Capacity: ramps concurrent slow streams (2 tokens/s, 20 tokens each, so each stays open ~10 s) and
//!    reports, per step, how many completed, the peak open streams the mock itself counted, and its RSS.

use futures::StreamExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use turnpike_llm::{ChatMessage, ChatRequest, ClientConfig, LlmEvent, OpenAiClient};

struct Mock {
    child: Child,
    base: String,
    root: String,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(18090)
}

async fn start_mock(ttft_ms: u64, tps: u32, tokens: usize) -> Mock {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_turnpike-mock-llm"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--ttft-ms", &ttft_ms.to_string()])
        .args(["--tokens-per-sec", &tps.to_string(), "--reply-tokens", &tokens.to_string()])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("turnpike-mock-llm binary");
    let root = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{root}/healthz")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Mock { child, base: format!("{root}/v1"), root }
}

/// User + system CPU seconds of a process, from /proc (clock ticks of 1/100 s on Linux).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN)
}

fn client(base: &str) -> OpenAiClient {
    let mut cfg = ClientConfig::new(base);
    cfg.ttft_timeout = Duration::from_secs(60);
    cfg.idle_timeout = Duration::from_secs(60);
    OpenAiClient::new(cfg).expect("client")
}

/// One stream: (time to first text, time from first text to the end), or None on failure.
async fn one(c: &OpenAiClient, i: usize) -> Option<(Duration, Duration)> {
    let req = ChatRequest::new("gpt-4o-mini", vec![ChatMessage::user(format!("Where is order {i}?"))]);
    let start = Instant::now();
    let mut s = Box::pin(c.stream(&req).await.ok()?);
    let mut first = None;
    while let Some(ev) = s.next().await {
        match ev.ok()? {
            LlmEvent::TextDelta(_) if first.is_none() => first = Some(start.elapsed()),
            _ => {}
        }
    }
    let first = first?;
    Some((first, start.elapsed() - first))
}

#[tokio::main]
async fn main() {
    let arg = |name: &str, default: usize| {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (streams, concurrency, max_streams) =
        (arg("--streams", 2000), arg("--concurrency", 50), arg("--max-streams", 4000));
    let me = std::process::id().to_string();

    // 1. Overhead.
    const TTFT_MS: u64 = 100;
    let mock = start_mock(TTFT_MS, 0, 40).await;
    let c = Arc::new(client(&mock.base));
    let _ = one(&c, 0).await; // warm the connection pool
    let cpu0 = cpu_seconds(&me);
    let started = Instant::now();
    let results: Vec<Option<(Duration, Duration)>> = futures::stream::iter(0..streams)
        .map(|i| {
            let c = c.clone();
            async move { one(&c, i).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&me) - cpu0;
    let ok: Vec<(Duration, Duration)> = results.into_iter().flatten().collect();
    let mut first: Vec<f64> = ok.iter().map(|(f, _)| f.as_secs_f64() * 1000.0 - TTFT_MS as f64).collect();
    let mut rest: Vec<f64> = ok.iter().map(|(_, r)| r.as_secs_f64() * 1000.0).collect();
    println!("overhead: {} of {streams} streams ok, {concurrency} concurrent, {:.1} s, 40 tokens each", ok.len(), wall);
    println!("  client CPU per stream: {:.3} ms", cpu * 1000.0 / ok.len().max(1) as f64);
    println!(
        "  time to first text beyond the mock's {TTFT_MS} ms: p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut first, 0.5),
        pct(&mut first, 0.99)
    );
    println!(
        "  first text to end of an instant 40-token stream: p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut rest, 0.5),
        pct(&mut rest, 0.99)
    );
    drop(mock);

    // 2. Capacity of the mock.
    let mock = start_mock(0, 2, 20).await;
    let stats_url = format!("{}/mock/stats", mock.root);
    let mut n = 1000;
    while n <= max_streams {
        let c = Arc::new(client(&mock.base));
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = {
            let (peak, url) = (peak.clone(), stats_url.clone());
            tokio::spawn(async move {
                loop {
                    if let Ok(r) = reqwest::get(&url).await {
                        if let Ok(v) = r.json::<serde_json::Value>().await {
                            let open = v["streams_open"].as_u64().unwrap_or(0);
                            peak.fetch_max(open, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        let rss_probe = {
            let pid = mock.child.id();
            tokio::spawn(async move {
                let mut max: f64 = 0.0;
                for _ in 0..80 {
                    max = max.max(rss_mib(pid));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                max
            })
        };
        let started = Instant::now();
        let done = futures::stream::iter(0..n)
            .map(|i| {
                let c = c.clone();
                async move { one(&c, i).await.is_some() }
            })
            .buffer_unordered(n)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await;
        sampler.abort();
        rss_probe.abort();
        let rss = rss_mib(mock.child.id());
        println!(
            "capacity: {n} concurrent 10-second streams: {done} completed in {:.1} s, peak open at the mock {}, mock RSS now {:.0} MiB",
            started.elapsed().as_secs_f64(),
            peak.load(std::sync::atomic::Ordering::Relaxed),
            rss
        );
        if done < n {
            break;
        }
        n *= 2;
    }
}
