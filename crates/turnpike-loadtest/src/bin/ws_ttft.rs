//! Time to first token as a WebSocket client of the gateway sees it, at a fixed rate of turns.
//!
//! Opens `--connections` WebSocket connections (one user each), subscribes each to its share of
//! `--conversations` conversations, then sends turns open-loop at `--rate` per second, round robin over the
//! conversations, and times each turn from the moment its frame is handed to the socket to: `accepted`, the
//! first `delta` with text (time to first token), and the `final`. The mock LLM's configured time to first
//! token is subtracted to show what Turnpike itself adds.
//!
//! Run with the stack up, a mock LLM, the pipeline and a gateway (commands in the final report of issue 7;
//! the gateway's HS256 secret in `TURNPIKE_JWT_SECRET`):
//!   turnpike-mock-llm --addr 127.0.0.1:8090 --ttft-ms 200 --tokens-per-sec 50 &
//!   turnpike run --llm-base-url http://127.0.0.1:8090/v1 --topic-prefix ttft &
//!   turnpike-gateway &   # on the same topic prefix
//!   cargo run --release -p turnpike-loadtest --bin ws_ttft -- --rate 58 --turns 3000 --mock-ttft-ms 200

#[path = "../ws_client.rs"]
mod ws_client;

use anyhow::Context;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Drive a Turnpike gateway over WebSocket at a fixed rate and report client-side time to first token")]
struct Args {
    /// The gateway's client listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: SocketAddr,
    /// Turns per second to offer.
    #[arg(long, default_value_t = 58.0)]
    rate: f64,
    /// Turns in total.
    #[arg(long, default_value_t = 3000)]
    turns: usize,
    /// Conversations the turns are spread over (round robin).
    #[arg(long, default_value_t = 600)]
    conversations: usize,
    /// WebSocket connections, one user each (at most 16 conversations per connection).
    #[arg(long, default_value_t = 60)]
    connections: usize,
    /// Tenants the users belong to (comma-separated, round robin over connections).
    #[arg(long, default_value = "demo", value_delimiter = ',')]
    tenants: Vec<String>,
    /// Environment variable holding the gateway's HS256 secret.
    #[arg(long, default_value = "TURNPIKE_JWT_SECRET")]
    secret_env: String,
    /// The mock LLM's configured time to first token (subtracted in the report).
    #[arg(long, default_value_t = 0)]
    mock_ttft_ms: u64,
    /// Seconds to wait for the last replies after the last turn was sent.
    #[arg(long, default_value_t = 60)]
    drain_secs: u64,
}

/// One turn's moments, keyed by message id until `accepted` names its turn.
#[derive(Default)]
struct Turn {
    sent: Option<Instant>,
    accepted: Option<Instant>,
    first_text: Option<Instant>,
    finished: Option<Instant>,
}

#[derive(Default)]
struct Book {
    turns: HashMap<String, Turn>,
    /// turn_id -> message_id.
    by_turn: HashMap<String, String>,
    /// Reply events that came before their `accepted` (turn_id -> first text / final moment).
    early: HashMap<String, (Option<Instant>, Option<Instant>)>,
    errors: BTreeMap<String, usize>,
    closes: BTreeMap<String, usize>,
}

impl Book {
    fn event(&mut self, at: Instant, frame: &serde_json::Value) {
        let kind = frame["type"].as_str().unwrap_or("");
        let turn_id = frame["turn_id"].as_str().unwrap_or("").to_owned();
        match kind {
            "accepted" => {
                let message_id = frame["message_id"].as_str().unwrap_or("").to_owned();
                let early = self.early.remove(&turn_id).unwrap_or_default();
                let turn = self.turns.entry(message_id.clone()).or_default();
                turn.accepted.get_or_insert(at);
                turn.first_text = turn.first_text.or(early.0);
                turn.finished = turn.finished.or(early.1);
                self.by_turn.insert(turn_id, message_id);
            }
            "delta" | "final" => {
                let has_text = !frame["text"].as_str().unwrap_or("").is_empty();
                let (first, done) = match self.by_turn.get(&turn_id).and_then(|m| self.turns.get_mut(m)) {
                    Some(turn) => (&mut turn.first_text, &mut turn.finished),
                    None => {
                        let e = self.early.entry(turn_id).or_default();
                        (&mut e.0, &mut e.1)
                    }
                };
                if has_text {
                    first.get_or_insert(at);
                }
                if kind == "final" {
                    done.get_or_insert(at);
                }
            }
            "error" => *self.errors.entry(frame["code"].as_str().unwrap_or("?").to_owned()).or_default() += 1,
            _ => {}
        }
    }
}

/// Opens one connection, subscribes it to `conversations`, and returns a sender of frames to it.
async fn open(
    args: &Args,
    secret: &[u8],
    i: usize,
    conversations: Vec<String>,
    book: Arc<Mutex<Book>>,
) -> anyhow::Result<mpsc::UnboundedSender<String>> {
    let tenant = &args.tenants[i % args.tenants.len()];
    let token = ws_client::mint_token(secret, tenant, &format!("ttft-{i}"), 3600)?;
    let ws = ws_client::connect(args.gateway, "/v1/ws", &token, None).await?;
    let (mut sink, mut stream) = ws.split();
    for conversation in &conversations {
        let resume = serde_json::json!({"type": "resume", "conversation_id": conversation});
        sink.send(Message::text(resume.to_string())).await?;
    }
    let mut resumed = 0;
    while resumed < conversations.len() {
        let frame = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.context("no `resumed`")?;
        if let Some(Ok(Message::Text(t))) = frame {
            resumed += usize::from(t.contains("\"resumed\""));
        } else {
            anyhow::bail!("connection {i} ended while subscribing: {frame:?}");
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    // The clock starts here, just before the frame goes to the socket.
                    Some(frame) => {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&frame) {
                            let id = v["message_id"].as_str().unwrap_or("").to_owned();
                            book.lock().unwrap().turns.entry(id).or_default().sent = Some(Instant::now());
                        }
                        if sink.send(Message::text(frame)).await.is_err() { break; }
                    }
                    None => { let _ = sink.close().await; break; }
                },
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        let at = Instant::now();
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                            book.lock().unwrap().event(at, &v);
                        }
                    }
                    Some(Ok(Message::Close(f))) => {
                        let why = f.map_or("no code".into(), |f| format!("{} {}", f.code, f.reason));
                        *book.lock().unwrap().closes.entry(why).or_default() += 1;
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => { *book.lock().unwrap().closes.entry(format!("error: {e}")).or_default() += 1; break; }
                    None => break,
                },
            }
        }
    });
    Ok(tx)
}

fn millis(from: Option<Instant>, to: Option<Instant>) -> Option<f64> {
    Some(to?.checked_duration_since(from?)?.as_secs_f64() * 1000.0)
}

fn line(name: &str, mut v: Vec<f64>, minus: f64) -> String {
    let n = v.len();
    let q = |v: &mut [f64], p| ws_client::quantile(v, p) - minus;
    format!(
        "{name:<34} n={n:<6} p50 {:>7.1} ms  p95 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        q(&mut v, 0.5),
        q(&mut v, 0.95),
        q(&mut v, 0.99),
        q(&mut v, 1.0)
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(!args.tenants.is_empty() && args.connections > 0 && args.rate > 0.0, "bad arguments");
    anyhow::ensure!(args.conversations <= args.connections * 16, "at most 16 conversations per connection");
    let secret = ws_client::secret_from_env(&args.secret_env)?;
    ws_client::raise_fd_limit(args.connections as libc::rlim_t + 1024)?;
    println!("machine before: {}", ws_client::machine_load());

    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let conversation = |c: usize| format!("ttft-{run}-{c}");
    let book = Arc::new(Mutex::new(Book::default()));
    let mut senders = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let mine = (0..args.conversations).filter(|c| c % args.connections == i).map(conversation).collect();
        senders.push(open(&args, &secret, i, mine, book.clone()).await.with_context(|| format!("connection {i}"))?);
    }

    let start = tokio::time::Instant::now();
    for n in 0..args.turns {
        tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / args.rate)).await;
        let c = n % args.conversations;
        let frame = serde_json::json!({
            "type": "message",
            "conversation_id": conversation(c),
            "message_id": format!("m-{run}-{n}"),
            "text": format!("Hello, could you tell me when the shop opens on day {}?", n % 7 + 1),
        });
        let _ = senders[c % args.connections].send(frame.to_string());
    }
    let offered_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    while Instant::now() < deadline {
        let done = book.lock().unwrap().turns.values().filter(|t| t.finished.is_some()).count();
        let refused: usize = book.lock().unwrap().errors.values().sum();
        if done + refused >= args.turns {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(senders);

    let book = book.lock().unwrap();
    let turns: Vec<&Turn> = book.turns.values().filter(|t| t.sent.is_some()).collect();
    let collect = |f: &dyn Fn(&Turn) -> Option<f64>| turns.iter().filter_map(|t| f(t)).collect::<Vec<_>>();
    let accepted = collect(&|t| millis(t.sent, t.accepted));
    let ttft = collect(&|t| millis(t.sent, t.first_text));
    let whole = collect(&|t| millis(t.sent, t.finished));
    println!(
        "offered {} turns at {:.1}/s over {} conversations on {} connections ({} tenants) in {offered_secs:.1} s",
        args.turns,
        args.rate,
        args.conversations,
        args.connections,
        args.tenants.len()
    );
    println!(
        "sent {}, accepted {}, first text {}, final {}, errors {:?}, closes {:?}",
        turns.len(),
        accepted.len(),
        ttft.len(),
        whole.len(),
        book.errors,
        book.closes
    );
    println!("{}", line("send -> accepted", accepted, 0.0));
    println!("{}", line("send -> first token (client TTFT)", ttft.clone(), 0.0));
    let minus = args.mock_ttft_ms as f64;
    println!("{}", line(&format!("  minus the mock's TTFT ({minus} ms)"), ttft, minus));
    println!("{}", line("send -> final", whole, 0.0));
    println!("machine after: {}", ws_client::machine_load());
    Ok(())
}
