//! Test harness: a whole pipeline on its own prefixed topics (so tests never see each other's records),
//! against the real local stack, with the project's mock LLM.
#![allow(dead_code)]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use turnpike::pipeline::{self, LlmSettings, Tuning};
use turnpike_core::Endpoints;
use turnpike_schemas::{Codec, InboundTurn, Record};
use turnpike_topology::Topology;

pub const HINT: &str = "is the local stack running? `deploy/local/stack.sh start && cargo run -p turnpike -- setup`";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A prefixed copy of the shipped topology, with its topics created.
pub async fn isolated_topology() -> (Arc<Topology>, String) {
    let base = Topology::load(&root().join("topology/turnpike.toml")).unwrap();
    base.validate(&root().join("schemas")).unwrap();
    let prefix = unique("it");
    let topo = base.prefixed(&prefix);
    turnpike_topology::apply::apply(&topo, &Endpoints::from_env().kafka_properties(), Duration::from_secs(30))
        .await
        .expect(HINT);
    (Arc::new(topo), prefix)
}

pub struct Pipeline {
    pub topo: Arc<Topology>,
    pub prefix: String,
    pub endpoints: Endpoints,
    pub codec: Codec,
    pub producer: FutureProducer,
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<Result<(), turnpike_runner::RunnerError>>>,
    pub mock: turnpike_llm::mock::MockServer,
}

impl Pipeline {
    /// Starts all eight stages in this process on fresh topics, with an instant mock LLM.
    pub async fn start() -> Pipeline {
        Self::start_with(turnpike_llm::mock::MockConfig::instant()).await
    }

    pub async fn start_with(mock_cfg: turnpike_llm::mock::MockConfig) -> Pipeline {
        Self::start_stages(&turnpike_topology::STAGE_NAMES, mock_cfg).await
    }

    /// Starts only `stages` in this process (tests run the others as separate processes).
    pub async fn start_stages(stages: &'static [&'static str], mock_cfg: turnpike_llm::mock::MockConfig) -> Pipeline {
        Self::start_custom(stages, mock_cfg, Endpoints::from_env(), Tuning::default()).await
    }

    /// Starts `stages` with the pipeline talking to `endpoints` (the test's own clients use the real ones).
    pub async fn start_custom(
        stages: &'static [&'static str],
        mock_cfg: turnpike_llm::mock::MockConfig,
        pipeline_endpoints: Endpoints,
        tuning: Tuning,
    ) -> Pipeline {
        let (topo, prefix) = isolated_topology().await;
        let endpoints = Endpoints::from_env();
        let mock = turnpike_llm::mock::spawn(mock_cfg).await.unwrap();
        // The stores too go through the pipeline's endpoints: a test may route them through a proxy.
        let deps = turnpike_stages::Deps::connect(&pipeline_endpoints).await.expect(HINT);
        let shutdown = CancellationToken::new();
        let llm = LlmSettings { base_url: mock.base_url(), api_key: None };
        let task = tokio::spawn(pipeline::run_stages(
            stages,
            topo.clone(),
            pipeline_endpoints,
            deps,
            llm,
            tuning,
            shutdown.clone(),
        ));
        Pipeline {
            codec: Codec::for_endpoints(&endpoints, Duration::from_secs(5)).unwrap(),
            producer: producer(&endpoints),
            topo,
            prefix,
            endpoints,
            shutdown,
            task: Some(task),
            mock,
        }
    }

    pub fn topic(&self, base: &str) -> String {
        format!("{}.{base}", self.prefix)
    }

    /// `turnpike stage NAME` as a child process on this pipeline's topics and mock LLM, not yet spawned.
    fn stage_command(&self, name: &str, instance_id: &str) -> std::process::Command {
        self.turnpike_command(&["stage", name, "--metrics-addr", "127.0.0.1:0", "--instance-id", instance_id])
    }

    /// `turnpike ARGS` on this pipeline's topics, topology and mock LLM, not yet spawned.
    pub fn turnpike_command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_turnpike"));
        cmd.args(args)
            .arg("--topic-prefix")
            .arg(&self.prefix)
            .arg("--topology")
            .arg(root().join("topology/turnpike.toml"))
            .arg("--llm-base-url")
            .arg(self.mock.base_url());
        cmd
    }

    /// Starts `turnpike stage NAME` as a child process.
    pub fn spawn_stage(&self, name: &str, instance_id: &str) -> KillOnDrop {
        KillOnDrop::spawn(
            self.stage_command(name, instance_id).env("RUST_LOG", "warn").stdout(std::process::Stdio::null()),
        )
    }

    /// Like [`Pipeline::spawn_stage`], with the child's whole log output (stdout and stderr) in `log`.
    pub fn spawn_stage_logging(&self, name: &str, instance_id: &str, log: &std::path::Path, level: &str) -> KillOnDrop {
        let file = std::fs::File::create(log).unwrap();
        KillOnDrop::spawn(
            self.stage_command(name, instance_id)
                .env("RUST_LOG", level)
                .env("NO_COLOR", "1")
                .stdout(file.try_clone().unwrap())
                .stderr(file),
        )
    }

    /// Like [`Pipeline::spawn_stage_logging`] at info level, with extra environment variables.
    pub fn spawn_stage_with_env(
        &self,
        name: &str,
        instance_id: &str,
        log: &std::path::Path,
        env: &[(&str, &std::path::Path)],
    ) -> KillOnDrop {
        let file = std::fs::File::create(log).unwrap();
        let mut cmd = self.stage_command(name, instance_id);
        for (k, v) in env {
            cmd.env(k, v);
        }
        KillOnDrop::spawn(
            cmd.env("RUST_LOG", "info").env("NO_COLOR", "1").stdout(file.try_clone().unwrap()).stderr(file),
        )
    }

    pub async fn send_turn(&self, turn: &InboundTurn) {
        let topic = self.topic("turnpike.turns.inbound");
        let payload = self.codec.encode(&topic, turn).await.expect(HINT);
        self.send_raw(&topic, turn.session_id.as_bytes(), &payload).await;
    }

    pub async fn send_raw(&self, topic: &str, key: &[u8], payload: &[u8]) {
        self.producer
            .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect(HINT);
    }

    /// The FINAL records on the outbound topic once there are `n` (or after 90 s).
    pub async fn finals(&self, n: usize) -> Vec<turnpike_schemas::OutboundReply> {
        use turnpike_schemas::{OutboundKind, OutboundReply};
        let is_final = |r: &OutboundReply| r.kind == OutboundKind::Final;
        let topic = self.topic("turnpike.replies.outbound");
        read_until::<OutboundReply>(&self.endpoints, &self.codec, &topic, 6, Duration::from_secs(90), |rs| {
            rs.iter().filter(|r| is_final(r)).count() >= n
        })
        .await
        .into_iter()
        .map(|(_, r)| r)
        .filter(is_final)
        .collect()
    }

    /// The records of topic `base` (this pipeline's copy) once there is at least one, or none after `timeout`.
    pub async fn records<R: Record>(&self, base: &str, timeout: Duration) -> Vec<R> {
        let topic = self.topic(base);
        let read = read_until::<R>(&self.endpoints, &self.codec, &topic, 6, timeout, |rs| !rs.is_empty()).await;
        read.into_iter().map(|(_, r)| r).collect()
    }

    /// Waits for the pipeline to stop by itself and returns its result.
    pub async fn join(mut self, timeout: Duration) -> Result<(), turnpike_runner::RunnerError> {
        let task = self.task.take().expect("pipeline already joined");
        tokio::time::timeout(timeout, task).await.expect("pipeline did not stop").unwrap()
    }

    /// Stops the pipeline and checks it stopped cleanly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().expect("pipeline stopped with an error");
        }
        // Dozens of tests × 22 topics would otherwise pile up partitions on the one local broker.
        let deleted = turnpike_topology::apply::delete_topics(
            &self.topo,
            &self.endpoints.kafka_properties(),
            Duration::from_secs(30),
        )
        .await;
        if let Err(e) = deleted {
            eprintln!("could not delete the test topics of {}: {e}", self.prefix);
        }
    }
}

/// A child process (a stage, a gateway) that is killed and reaped when dropped: a test that panics before
/// its own `kill` leaves no orphan running on the shared machine. Derefs to the `Child` for `kill`/`wait`.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    pub fn spawn(cmd: &mut std::process::Command) -> KillOnDrop {
        KillOnDrop(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program())))
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test that panics drops its pipeline without `stop`: cancel it anyway, or the stages' Kafka poll
/// threads keep the test runtime (and so the test binary) from ever finishing.
impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn producer(ep: &Endpoints) -> FutureProducer {
    ep.kafka_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "2")
        .create()
        .unwrap()
}

pub fn turn(tenant: &str, session: &str, message_id: &str, text: &str) -> InboundTurn {
    InboundTurn {
        tenant_id: tenant.into(),
        session_id: session.into(),
        user_id: session.split(':').next().unwrap_or("u").into(),
        message_id: message_id.into(),
        text: text.into(),
        channel: "test".into(),
        sent_at_ms: turnpike_runner::now_ms(),
        ..Default::default()
    }
}

/// A `read_committed` consumer of every partition of `topic` from the beginning, in a group of its own:
/// for tests that keep reading one topic as a conversation goes on.
pub fn reader_from_start(ep: &Endpoints, topic: &str, partitions: i32) -> StreamConsumer {
    let consumer: StreamConsumer = ep
        .kafka_properties()
        .into_iter()
        .collect::<ClientConfig>()
        .set("group.id", unique("it-reader"))
        // deliver writes in transactions: only committed replies, each once.
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Reads and decodes every record of `topic` from the beginning, in per-partition offset order, until
/// `done` says so or `timeout` passes.
pub async fn read_until<R: Record>(
    ep: &Endpoints,
    codec: &Codec,
    topic: &str,
    partitions: i32,
    timeout: Duration,
    done: impl Fn(&[R]) -> bool,
) -> Vec<(OwnedMessage, R)> {
    let consumer = reader_from_start(ep, topic, partitions);
    let deadline = Instant::now() + timeout;
    let (mut raw, mut records) = (Vec::new(), Vec::new());
    while Instant::now() < deadline && !done(&records) {
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await else { continue };
        let m = m.detach();
        let r: R = codec.decode(m.payload().unwrap()).await.unwrap();
        raw.push(m);
        records.push(r);
    }
    raw.into_iter().zip(records).collect()
}

/// Serves `app` on a free loopback port for the rest of the test process; returns its `http://host:port`.
pub async fn serve_http(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A TCP forwarder to `target` (`host:port`) that starts switched off: while off, it refuses service by
/// closing every connection at once, as a crashed or partitioned server (registry, Cassandra) would look to a
/// client.
pub async fn switchable_proxy(target: String) -> (String, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if !flag.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            let target = target.clone();
            let flag = flag.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                // Pooled connections must die with the outage too, so forward only while up.
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = async { while flag.load(Ordering::SeqCst) { tokio::time::sleep(Duration::from_millis(50)).await } } => {}
                }
            });
        }
    });
    (addr, up)
}
