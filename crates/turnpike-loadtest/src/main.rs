//! Load test of the whole pipeline on this machine: all eight stages in this process on fresh prefixed
//! topics of the real stack, the project's mock LLM, an open-loop producer at a fixed rate, and a consumer
//! of the outbound topic timing every turn.
//!
//! Run with (stack started and set up):
//!   cargo run --release -p turnpike-loadtest -- --rate 58 --turns 3000            # latency at 1M conv/day
//!   cargo run --release -p turnpike-loadtest -- --rate 0 --turns 20000           # max throughput
//! Latency is measured from the moment the inbound record is handed to the producer to the arrival of the
//! turn's first chunk (and FINAL) on the outbound topic; the mock's own time to first token is subtracted.
//! At a fixed rate, a warm-up phase on sessions of its own comes first and is reported apart (`--warmup-secs`).

use anyhow::Context;
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use turnpike::pipeline::{self, LlmSettings, Tuning};
use turnpike_core::Endpoints;
use turnpike_schemas::{Codec, InboundTurn, OutboundKind, OutboundReply};
use turnpike_topology::Topology;

// The same allocator as the `turnpike` binary, so the in-process pipeline is measured as it runs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Load-test the whole Turnpike pipeline on the local stack")]
struct Args {
    /// Turns per second to offer (0 = as fast as the producer goes).
    #[arg(long, default_value_t = 58.0)]
    rate: f64,
    /// Turns in total.
    #[arg(long, default_value_t = 3000)]
    turns: usize,
    /// Turns per session (sessions are interleaved).
    #[arg(long, default_value_t = 5)]
    turns_per_session: usize,
    /// Mock LLM time to first token in ms (subtracted from the reported latency).
    #[arg(long, default_value_t = 0)]
    mock_ttft_ms: u64,
    /// Mock LLM tokens per second (0 = instant).
    #[arg(long, default_value_t = 0)]
    mock_tokens_per_sec: u32,
    /// Mock LLM reply length in tokens.
    #[arg(long, default_value_t = 40)]
    reply_tokens: usize,
    /// An OpenAI-compatible server to use instead of the in-process mock (e.g. `turnpike-mock-llm` started
    /// apart, so this process's CPU time is the pipeline's alone). The `--mock-*` flags then only say what
    /// TTFT to subtract.
    #[arg(long)]
    llm_url: Option<String>,
    /// Topology file.
    #[arg(long, default_value = "topology/turnpike.toml")]
    topology: std::path::PathBuf,
    /// Also measure raw Kafka produce→consume of the same number of records of the same size.
    #[arg(long)]
    kafka_baseline: bool,
    /// Serve the stages' Prometheus metrics here while the test runs (e.g. 127.0.0.1:9464), to see
    /// which stage holds the work (`turnpike_stage_in_flight`, `turnpike_stage_processing_seconds`).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// librdkafka setting for the stages' clients, `key=value`, repeatable (e.g. `linger.ms=0`).
    #[arg(long = "kafka-set", value_parser = turnpike::pipeline::parse_kafka_setting)]
    kafka_set: Vec<(String, String)>,
    /// One producer per stage instead of one shared by all stages (for comparison).
    #[arg(long)]
    producer_per_stage: bool,
    /// Write `sent_ms,first_chunk_ms,final_ms` per turn (send time from the start of the run) to this file.
    #[arg(long)]
    latency_csv: Option<std::path::PathBuf>,
    /// Seconds to wait for the last replies.
    #[arg(long, default_value_t = 120)]
    drain_secs: u64,
    /// Seconds of load offered at the same rate, on sessions of their own, before the measured turns; their
    /// figures are printed apart. A fresh pipeline on fresh topics spends its first seconds joining groups,
    /// looking up schemas and preparing statements: that is start-up, not the steady state asked about.
    /// 0 = none. Ignored with `--rate 0`.
    #[arg(long, default_value_t = 5.0)]
    warmup_secs: f64,
}

/// What both phases of a run need to offer turns.
struct Offer<'a> {
    producer: &'a FutureProducer,
    codec: &'a Codec,
    inbound: &'a str,
    prefix: &'a str,
    rate: f64,
    turns_per_session: usize,
}

impl Offer<'_> {
    /// Offers `turns` turns on sessions named `{label}{n}`, at the rate (open loop), recording each send
    /// time in `sent` (`warm_sent` for the warm-up). Returns when every record is acknowledged, with the
    /// record size.
    async fn run(
        &self,
        label: &str,
        turns: usize,
        timing: &Mutex<Timing>,
        warm: bool,
    ) -> anyhow::Result<(Instant, Duration, usize)> {
        let sessions = turns.div_ceil(self.turns_per_session).max(1);
        let started = Instant::now();
        let mut sends = futures::stream::FuturesUnordered::new();
        let mut payload_len = 0;
        for i in 0..turns {
            if self.rate > 0.0 {
                let due = started + Duration::from_secs_f64(i as f64 / self.rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let (s, t) = (i % sessions, i / sessions + 1);
            let session_id = format!("{label}{s}:{}", self.prefix);
            let message_id = format!("m{t}");
            let turn = InboundTurn {
                tenant_id: "loadtest".into(),
                session_id: session_id.clone(),
                user_id: format!("{label}{s}"),
                message_id: message_id.clone(),
                text: format!("Hello, this is question {t}: where is my order and when will it arrive?"),
                channel: "loadtest".into(),
                sent_at_ms: turnpike_runner::now_ms(),
                ..Default::default()
            };
            let bytes = self.codec.encode(self.inbound, &turn).await?;
            payload_len = bytes.len();
            let turn_id = turnpike_stages::ingest::turn_id("loadtest", &session_id, &message_id);
            // The clock starts when the record is handed to the producer: the inbound hop counts too, and no
            // polling delay of this loop can shorten the measured latency.
            {
                let mut t = timing.lock().unwrap_or_else(|p| p.into_inner());
                let sent = if warm { &mut t.warm_sent } else { &mut t.sent };
                sent.insert(turn_id, Instant::now());
            }
            let (producer, inbound) = (self.producer.clone(), self.inbound.to_string());
            sends.push(async move {
                let _ = producer
                    .send(FutureRecord::to(&inbound).key(&session_id).payload(&bytes), Duration::from_secs(30))
                    .await;
            });
            // Keep the number of outstanding sends bounded without blocking the schedule.
            while sends.len() > 10_000 {
                futures::StreamExt::next(&mut sends).await;
            }
            if self.rate > 0.0 {
                while let Some(Some(())) = futures::FutureExt::now_or_never(futures::StreamExt::next(&mut sends)) {}
            }
        }
        while futures::StreamExt::next(&mut sends).await.is_some() {}
        Ok((started, started.elapsed(), payload_len))
    }
}

/// Waits until `n` FINALs arrived in all or `limit` passed.
async fn wait_finals(finals: &std::sync::atomic::AtomicUsize, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while finals.load(std::sync::atomic::Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Default)]
struct Timing {
    /// Send times of the warm-up phase's turns (reported apart).
    warm_sent: HashMap<String, Instant>,
    sent: HashMap<String, Instant>,
    first: HashMap<String, Instant>,
    last: HashMap<String, Instant>,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let args = Args::parse();
    if let Some(addr) = args.metrics_addr {
        turnpike_runner::metrics_exporter::install(addr).map_err(anyhow::Error::msg)?;
    }
    let ep = Endpoints::from_env();
    let base = Topology::load(&args.topology)?;
    base.validate(&args.topology.parent().unwrap_or(std::path::Path::new(".")).join("../schemas"))?;
    let prefix = format!("lt{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let topo = Arc::new(base.prefixed(&prefix));
    turnpike_topology::apply::apply(&topo, &ep.kafka_properties(), Duration::from_secs(30)).await?;
    let inbound = topo.topic_named("turnpike.turns.inbound").context("inbound")?.name.clone();
    let outbound = topo.topic_named("turnpike.replies.outbound").context("outbound")?;
    let (outbound_name, partitions) = (outbound.name.clone(), outbound.partitions);

    let mut _mock = None;
    let base_url = match &args.llm_url {
        Some(url) => url.clone(),
        None => {
            let mock = turnpike_llm::mock::spawn(turnpike_llm::mock::MockConfig {
                ttft: Duration::from_millis(args.mock_ttft_ms),
                tokens_per_sec: args.mock_tokens_per_sec,
                reply_tokens: args.reply_tokens,
                ..Default::default()
            })
            .await?;
            let url = mock.base_url();
            _mock = Some(mock);
            url
        }
    };
    let deps = turnpike_stages::Deps::connect(&ep).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let shutdown = CancellationToken::new();
    let llm = LlmSettings { base_url, api_key: None };
    let tuning = Tuning {
        kafka_overrides: args.kafka_set.clone(),
        share_producer: !args.producer_per_stage,
        ..Tuning::default()
    };
    let pipe = tokio::spawn(pipeline::run_all(topo.clone(), ep.clone(), deps, llm, tuning, shutdown.clone()));
    // An error below returns early: stop the stages then too, or the runtime waits forever on their poll
    // threads when it shuts down and the error is never printed (seen once: a hung run with no output).
    let _stop_stages = shutdown.clone().drop_guard();

    let codec = Codec::for_endpoints(&ep, Duration::from_secs(5))?;
    let timing = Arc::new(Mutex::new(Timing::default()));
    let finals = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Consumer first, at the end of the (new, empty) outbound topic.
    let consumer: StreamConsumer = ep
        .kafka_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .set("group.id", format!("{prefix}-meter"))
        // deliver writes in transactions: only committed replies, each once.
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&outbound_name, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let meter = {
        let (timing, finals, codec) = (timing.clone(), finals.clone(), codec.clone());
        tokio::spawn(async move {
            loop {
                let Ok(m) = consumer.recv().await else { continue };
                let now = Instant::now();
                let Some(bytes) = m.payload() else { continue };
                let Ok(r) = codec.decode::<OutboundReply>(bytes).await else { continue };
                let mut t = timing.lock().unwrap_or_else(|p| p.into_inner());
                t.first.entry(r.turn_id.clone()).or_insert(now);
                if r.kind == OutboundKind::Final {
                    t.last.insert(r.turn_id, now);
                    finals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    // Let the stages join their groups before the clock starts.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let producer: FutureProducer = ep
        .kafka_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", if args.rate == 0.0 { "5" } else { "0" })
        .create()?;
    let offer = Offer {
        producer: &producer,
        codec: &codec,
        inbound: &inbound,
        prefix: &prefix,
        rate: args.rate,
        turns_per_session: args.turns_per_session,
    };
    let warm_turns = if args.rate > 0.0 { (args.rate * args.warmup_secs).round() as usize } else { 0 };
    if warm_turns > 0 {
        offer.run("warm", warm_turns, &timing, true).await?;
        wait_finals(&finals, warm_turns, Duration::from_secs(args.drain_secs)).await;
    }
    let sessions = args.turns.div_ceil(args.turns_per_session);
    let (started, produced_in, payload_len) = offer.run("user", args.turns, &timing, false).await?;
    wait_finals(&finals, warm_turns + args.turns, Duration::from_secs(args.drain_secs)).await;
    let total = started.elapsed();
    meter.abort();
    shutdown.cancel();
    let _ = pipe.await;
    let records = records_per_topic(&topo, &ep.kafka_properties(), &prefix);
    // Leftover topics pile up on the broker run after run (thousands of partitions slow it down and were
    // seen to exhaust its heap): the test's own topics go when it ends.
    if let Err(e) =
        turnpike_topology::apply::delete_topics(&topo, &ep.kafka_properties(), Duration::from_secs(30)).await
    {
        eprintln!("warning: could not delete the test's topics (prefix {prefix}): {e}");
    }

    let ttft = args.mock_ttft_ms as f64;
    let (mut first_ms, mut final_ms) = (Vec::new(), Vec::new());
    let (mut warm_first, mut warm_done) = (Vec::new(), 0);
    // First-chunk latency per tenth of the run (by send time), to tell a warm-up tail from a steady one.
    let mut by_tenth: Vec<Vec<f64>> = vec![Vec::new(); 10];
    let mut csv = String::from("sent_ms,first_chunk_ms,final_ms\n");
    let (done, last_final) = {
        let t = timing.lock().unwrap_or_else(|p| p.into_inner());
        for (id, sent) in &t.warm_sent {
            if let Some(f) = t.first.get(id) {
                warm_first.push(f.duration_since(*sent).as_secs_f64() * 1000.0 - ttft);
            }
            warm_done += usize::from(t.last.contains_key(id));
        }
        for (id, sent) in &t.sent {
            if let Some(f) = t.first.get(id) {
                let ms = f.duration_since(*sent).as_secs_f64() * 1000.0 - ttft;
                first_ms.push(ms);
                let tenth = (sent.duration_since(started).as_secs_f64() / produced_in.as_secs_f64() * 10.0) as usize;
                by_tenth[tenth.min(9)].push(ms);
                let fin = t.last.get(id).map(|l| l.duration_since(*sent).as_secs_f64() * 1000.0).unwrap_or(f64::NAN);
                let at = sent.duration_since(started).as_secs_f64() * 1000.0;
                csv.push_str(&format!("{at:.1},{ms:.2},{fin:.2}\n"));
            }
            if let Some(l) = t.last.get(id) {
                final_ms.push(l.duration_since(*sent).as_secs_f64() * 1000.0);
            }
        }
        let measured = t.sent.keys().filter_map(|id| t.last.get(id));
        (final_ms.len(), measured.max().copied().unwrap_or(started))
    };
    if !warm_first.is_empty() {
        println!(
            "warm-up (not in the figures below): {} turns in {} s at the same rate, {warm_done} complete; first \
             chunk p50 {:.1} ms, p99 {:.1} ms",
            warm_first.len(),
            args.warmup_secs,
            pct(&mut warm_first, 0.50),
            pct(&mut warm_first, 0.99)
        );
    }
    println!(
        "turns offered: {} at {} turns/s ({} sessions x {}); {} tokio worker thread(s) (TOKIO_WORKER_THREADS)",
        args.turns,
        args.rate,
        sessions,
        args.turns_per_session,
        tokio::runtime::Handle::current().metrics().num_workers()
    );
    println!("inbound record size: {payload_len} bytes; produced in {:.2} s", produced_in.as_secs_f64());
    println!("replies complete: {done} of {} in {:.2} s", args.turns, total.as_secs_f64());
    println!(
        "sustained throughput: {:.0} turns/s (all eight stages)",
        done as f64 / last_final.duration_since(started).as_secs_f64()
    );
    println!(
        "first chunk latency minus mock TTFT ({ttft} ms): p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut first_ms, 0.50),
        pct(&mut first_ms, 0.99)
    );
    if let Some(path) = &args.latency_csv {
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    let tenths: Vec<String> = by_tenth.iter_mut().map(|v| format!("{:.0}", pct(v, 0.99))).collect();
    println!("first chunk p99 per tenth of the run (ms): {}", tenths.join(" "));
    println!("final reply latency: p50 {:.1} ms, p99 {:.1} ms", pct(&mut final_ms, 0.50), pct(&mut final_ms, 0.99));
    let all_turns = (warm_turns + args.turns) as f64;
    let per_turn: Vec<String> =
        records.iter().filter(|(_, n)| *n > 0).map(|(t, n)| format!("{t} {:.2}", *n as f64 / all_turns)).collect();
    let total: i64 = records.iter().map(|(_, n)| n).sum();
    println!("Kafka records per turn: {:.2} ({})", total as f64 / all_turns, per_turn.join(", "));
    if args.kafka_baseline {
        let rate = kafka_baseline(&ep, &format!("{prefix}.baseline"), args.turns, payload_len).await?;
        println!("raw Kafka produce->consume of {} records of {payload_len} bytes: {rate:.0} records/s", args.turns);
    }
    Ok(())
}

/// Records written to each of the run's topics (high watermarks; the topics are fresh), by topic name
/// without the prefix. Empty when the broker cannot be asked.
fn records_per_topic(topo: &Topology, kafka: &[(String, String)], prefix: &str) -> Vec<(String, i64)> {
    let Ok(client) = kafka.iter().cloned().collect::<ClientConfig>().create::<BaseConsumer>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in &topo.topics {
        let n: i64 = (0..t.partitions)
            .filter_map(|p| client.fetch_watermarks(&t.name, p, Duration::from_secs(5)).ok())
            .map(|(low, high)| high - low)
            .sum();
        out.push((t.name.trim_start_matches(&format!("{prefix}.")).trim_start_matches("turnpike.").to_string(), n));
    }
    out
}

/// Produce `n` records of `size` bytes to a fresh topic and consume them back, timing both together.
async fn kafka_baseline(ep: &Endpoints, topic: &str, n: usize, size: usize) -> anyhow::Result<f64> {
    let t = Topology::parse(&format!(
        "version = 1\nname = \"b\"\n[[topic]]\nname = \"{topic}\"\nrole = \"source\"\nschema = \"inbound_turn\"\npartitions = 6\n"
    ))?;
    turnpike_topology::apply::apply(&t, &ep.kafka_properties(), Duration::from_secs(30)).await?;
    let consumer: StreamConsumer = ep
        .kafka_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .set("group.id", format!("{topic}-g"))
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let producer: FutureProducer = ep
        .kafka_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let payload = vec![7u8; size];
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            if consumer.recv().await.is_ok() {
                got += 1;
            }
        }
    });
    let mut sends = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        let key = format!("k{i}");
        let (producer, payload, topic) = (producer.clone(), payload.clone(), topic.to_string());
        sends.push(async move {
            let _ = producer.send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(30)).await;
        });
    }
    while futures::StreamExt::next(&mut sends).await.is_some() {}
    tokio::time::timeout(Duration::from_secs(120), reader).await??;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    turnpike_topology::apply::delete_topics(&t, &ep.kafka_properties(), Duration::from_secs(30)).await?;
    Ok(rate)
}
