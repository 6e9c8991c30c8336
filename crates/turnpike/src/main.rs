//! The `turnpike` binary: administration commands (topology, schemas, migrations) and, as the pipeline
//! grows, one subcommand per stage.

mod admin;
mod chat;
mod guard_check;
mod knowledge;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use turnpike_core::Endpoints;

// Many small, short-lived allocations per record (Avro values, chunks, futures): mimalloc serves them with
// far less contention than glibc's malloc across the runtime's and librdkafka's threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turnpike: a production chatbot pipeline on Kafka.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Topology file.
    #[arg(long, global = true, env = "TURNPIKE_TOPOLOGY", default_value = "topology/turnpike.toml")]
    topology: PathBuf,
    /// Prefix for every topic and consumer group (`<prefix>.<topic>`): several pipelines on one cluster.
    #[arg(long, global = true, env = "TURNPIKE_TOPIC_PREFIX")]
    topic_prefix: Option<String>,
    /// Folder of the Avro schemas (default: `schemas/` beside the topology folder).
    #[arg(long, global = true, env = "TURNPIKE_SCHEMAS")]
    schemas: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check or create the topics of the topology.
    Topology {
        #[command(subcommand)]
        action: TopologyAction,
    },
    /// Register every topic's value schema in the schema registry (BACKWARD compatibility).
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
    /// Create the CQL keyspace and apply pending migrations.
    Migrate {
        /// CQL replication map for a new keyspace.
        #[arg(
            long,
            env = "TURNPIKE_CQL_REPLICATION",
            default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )]
        replication: String,
    },
    /// Run one stage of the pipeline (one process per stage in production).
    Stage {
        /// ingest, guard-in, assemble, route, generate, guard-out, deliver or handoff.
        name: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run every stage: all in this process (local use, demos, load tests), or with --processes each as a
    /// process of its own, as production runs them.
    Run {
        #[command(flatten)]
        run: RunArgs,
        /// Every stage as a child process (`turnpike stage NAME`, stable instance ids `<--instance-id or
        /// local>-N`, metrics on consecutive ports from 9601), restarted when it dies; one mock LLM for all
        /// when no provider is configured.
        #[arg(long)]
        processes: bool,
        /// With --processes: instances of a stage, `stage=N`, repeatable (default generate=2, guard-out=2,
        /// the others 1).
        #[arg(long = "instances", value_parser = turnpike::processes::parse_instances, requires = "processes")]
        instances: Vec<(String, usize)>,
    },
    /// A terminal chat: type a message, see the reply stream in.
    Chat {
        /// Tenant to chat as.
        #[arg(long, default_value = "demo")]
        tenant: String,
        /// User id (the session id is `<user>:<conversation>`).
        #[arg(long, default_value = "you")]
        user: String,
    },
    /// A tenant's knowledge base: ingest help pages, try searches, remove pages.
    Knowledge {
        #[command(subcommand)]
        action: knowledge::KnowledgeAction,
    },
    /// guard-in's input checks outside the pipeline.
    Guard {
        #[command(subcommand)]
        action: GuardAction,
    },
    /// The helpdesk webhook endpoint (`POST /v1/helpdesk/{vendor}/{tenant}`) and the queue timer: helpdesk
    /// events onto the desk topic, for the desk stage.
    HelpdeskHooks {
        /// Listen address (put it behind the TLS proxy the helpdesks call).
        #[arg(long, env = "TURNPIKE_HELPDESK_HOOKS_ADDR", default_value = "127.0.0.1:8088")]
        addr: std::net::SocketAddr,
    },
    /// Everything a fresh cluster needs: validate, create topics, register schemas, migrate.
    Setup {
        /// CQL replication map for a new keyspace.
        #[arg(
            long,
            env = "TURNPIKE_CQL_REPLICATION",
            default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )]
        replication: String,
    },
}

/// Options shared by `stage` and `run`.
#[derive(clap::Args, Clone)]
struct RunArgs {
    /// OpenAI-compatible base URL of the LLM provider. Without it (and without OPENAI_API_KEY), the
    /// project's mock LLM is started in-process.
    #[arg(long, env = "TURNPIKE_LLM_BASE_URL")]
    llm_base_url: Option<String>,
    /// Prometheus metrics listen address. Default: 127.0.0.1:9600 for `run`; for `stage`, a port of its own
    /// per stage, 9601 (ingest) to 9608 (handoff) in topology order.
    #[arg(long, env = "TURNPIKE_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Mock LLM time to first token, when the mock is used.
    #[arg(long, default_value_t = 200)]
    mock_ttft_ms: u64,
    /// Mock LLM tokens per second (0 = instant), when the mock is used.
    #[arg(long, default_value_t = 50)]
    mock_tokens_per_sec: u32,
    /// Static consumer-group member id (Kafka `group.instance.id`, suffixed with the stage name): a restart
    /// with the same id resumes its partitions at once.
    #[arg(long, env = "TURNPIKE_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Records in flight per partition before it is paused.
    #[arg(long, default_value_t = 512)]
    max_in_flight_per_partition: usize,
    /// Root of the per-tenant knowledge indexes (`turnpike knowledge ingest`): assemble retrieves from it.
    /// Without it, prompts carry no knowledge.
    #[arg(long, env = "TURNPIKE_KNOWLEDGE_DIR")]
    knowledge_dir: Option<PathBuf>,
    /// librdkafka setting for every stage's consumer and producer, `key=value`, repeatable (tuning such as
    /// `batch.size=65536`; the settings the delivery guarantees rest on are refused at start-up).
    #[arg(long = "kafka-set", value_parser = turnpike::pipeline::parse_kafka_setting)]
    kafka_set: Vec<(String, String)>,
}

#[derive(Subcommand)]
enum GuardAction {
    /// JSON lines `{"text": ..., "session": optional}` on stdin → one JSON line per input on stdout: the
    /// action, every trigger (check, verdict, detail, score), the masked text and the PII spans
    /// `[start, end, KIND]` in character offsets, with the tenant's policy (TURNPIKE_TENANTS_CONFIG) and the
    /// model checks when TURNPIKE_MODEL_DIR is set.
    Check {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

#[derive(Subcommand)]
enum TopologyAction {
    /// Validate the topology file against the rules and the schemas folder.
    Validate,
    /// Create missing topics (idempotent) and check partition counts.
    Apply,
}

#[derive(Subcommand)]
enum SchemasAction {
    /// Register all schemas.
    Register,
}

impl Cli {
    fn schemas_dir(&self) -> PathBuf {
        self.schemas.clone().unwrap_or_else(|| {
            let dir = self.topology.parent().unwrap_or(std::path::Path::new("."));
            dir.join("..").join("schemas")
        })
    }
}

/// Cancels the token on SIGINT or SIGTERM, so stages drain and commit before the process exits.
fn shutdown_on_signals() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term => {},
        }
        tracing::info!("Shutdown requested; draining.");
        t.cancel();
        // The drain itself is bounded (10 s), but librdkafka's final commit and group leave can block for
        // long when the brokers are gone — inside drops on the async workers, so the watchdog is an OS
        // thread. Nothing more can be committed then anyway: what was not is redelivered to the next owner.
        std::thread::spawn(|| {
            std::thread::sleep(SHUTDOWN_GRACE);
            tracing::error!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "Shutdown did not finish in time; exiting without a clean close."
            );
            std::process::exit(3);
        });
    });
    token
}

/// Longest time from SIGTERM to exit: the drain timeout plus room for commit, flush and close.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(25);

/// `turnpike run --processes`: the stage processes' own flags.
struct Processes<'a> {
    instances: &'a [(String, usize)],
}

async fn serve(
    cli: &Cli,
    stage: Option<&str>,
    run: &RunArgs,
    processes: Option<Processes<'_>>,
    endpoints: &Endpoints,
) -> anyhow::Result<()> {
    let topology =
        std::sync::Arc::new(admin::load_valid(&cli.topology, &cli.schemas_dir(), cli.topic_prefix.as_deref())?);
    if let Some(processes) = processes {
        let shutdown = shutdown_on_signals();
        let (llm, _mock) = llm_settings(run).await?;
        return supervise_stages(cli, run, &llm, processes, shutdown).await;
    }
    let metrics_addr = run.metrics_addr.unwrap_or_else(|| {
        let index =
            stage.and_then(|s| turnpike_topology::STAGE_NAMES.iter().position(|n| *n == s)).map_or(0, |i| i + 1);
        std::net::SocketAddr::from(([127, 0, 0, 1], 9600 + index as u16))
    });
    turnpike_runner::metrics_exporter::install(metrics_addr).map_err(anyhow::Error::msg)?;
    // The `tenant` label's rule, now: a bad `[metrics]` table stops start-up instead of a first turn.
    let labels = turnpike_core::metric_labels::init_from_env()?;
    tracing::info!(tenants = ?labels.labelled(), "Metrics label these tenants by name; the rest as `other`.");
    let shutdown = shutdown_on_signals();
    let (llm, _mock) = llm_settings(run).await?;
    let deps = turnpike_stages::Deps::connect(endpoints).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let tuning = turnpike::pipeline::Tuning {
        max_in_flight_per_partition: run.max_in_flight_per_partition,
        instance_id: run.instance_id.clone(),
        dlq_max_per_minute: None,
        knowledge_dir: run.knowledge_dir.clone(),
        kafka_overrides: run.kafka_set.clone(),
        share_producer: true,
        producer: None,
    };
    match stage {
        Some(name) => {
            turnpike::pipeline::run_stage(name, topology, endpoints.clone(), deps, llm, tuning, shutdown).await?
        }
        None => turnpike::pipeline::run_all(topology, endpoints.clone(), deps, llm, tuning, shutdown).await?,
    }
    Ok(())
}

/// Every stage as a child process with the flags this process was given (see `turnpike::processes`).
async fn supervise_stages(
    cli: &Cli,
    run: &RunArgs,
    llm: &turnpike::pipeline::LlmSettings,
    processes: Processes<'_>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use std::ffi::OsString;
    let mut common: Vec<OsString> = vec!["--topology".into(), cli.topology.clone().into()];
    if let Some(prefix) = &cli.topic_prefix {
        common.extend(["--topic-prefix".into(), prefix.into()]);
    }
    if let Some(schemas) = &cli.schemas {
        common.extend(["--schemas".into(), schemas.clone().into()]);
    }
    if !llm.base_url.is_empty() {
        common.extend(["--llm-base-url".into(), llm.base_url.clone().into()]);
    }
    common.extend(["--max-in-flight-per-partition".into(), run.max_in_flight_per_partition.to_string().into()]);
    if let Some(dir) = &run.knowledge_dir {
        common.extend(["--knowledge-dir".into(), dir.clone().into()]);
    }
    for (k, v) in &run.kafka_set {
        common.extend(["--kafka-set".into(), format!("{k}={v}").into()]);
    }
    let base_id = run.instance_id.clone().unwrap_or_else(|| "local".into());
    let metrics_port = run.metrics_addr.map_or(9601, |a| a.port());
    let plan = turnpike::processes::plan(&base_id, processes.instances, &common, metrics_port);
    let exe = std::env::current_exe()?;
    turnpike::processes::supervise(&exe, plan, shutdown).await
}

/// Where the LLM is: the flags and keys given, else (with no tiers file) the mock LLM served by this process,
/// kept alive by the returned handle.
async fn llm_settings(
    run: &RunArgs,
) -> anyhow::Result<(turnpike::pipeline::LlmSettings, Option<turnpike_llm::mock::MockServer>)> {
    // Without any provider, every process serves the mock LLM itself, whichever stage it runs: one code path
    // with `turnpike run` (assemble summarises, generate answers, handoff writes the agent's note; deciding
    // per stage which ones call the LLM is how `turnpike stage assemble` once failed to start). A tiers file
    // (`TURNPIKE_LLM_CONFIG`) names its own servers.
    let tiers_file = std::env::var_os("TURNPIKE_LLM_CONFIG").is_some_and(|p| !p.is_empty());
    let mut _mock = None;
    let llm = match (&run.llm_base_url, std::env::var("OPENAI_API_KEY").ok().filter(|k| !k.is_empty())) {
        (Some(url), key) => turnpike::pipeline::LlmSettings {
            base_url: url.clone(),
            api_key: key.or_else(|| std::env::var("TURNPIKE_LLM_API_KEY").ok()),
        },
        (None, Some(key)) => {
            turnpike::pipeline::LlmSettings { base_url: "https://api.openai.com/v1".into(), api_key: Some(key) }
        }
        (None, None) if !tiers_file => {
            let cfg = turnpike_llm::mock::MockConfig {
                ttft: std::time::Duration::from_millis(run.mock_ttft_ms),
                tokens_per_sec: run.mock_tokens_per_sec,
                ..Default::default()
            };
            let mock = turnpike_llm::mock::spawn(cfg).await?;
            tracing::info!(url = %mock.base_url(), "No LLM provider configured; using the mock LLM.");
            let settings = turnpike::pipeline::LlmSettings { base_url: mock.base_url(), api_key: None };
            _mock = Some(mock);
            settings
        }
        (None, None) => turnpike::pipeline::LlmSettings { base_url: String::new(), api_key: None },
    };
    Ok((llm, _mock))
}

fn main() -> ExitCode {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr);
    // JSON lines for log collectors: each line inside a record's processing carries the `turn` span's
    // stage, turn_id and trace_id (the runner's), so logs join traces.
    if std::env::var("TURNPIKE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let endpoints = Endpoints::from_env();
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Topology { action: TopologyAction::Validate } => {
                admin::validate(&cli.topology, &cli.schemas_dir(), cli.topic_prefix.as_deref())
            }
            Command::Topology { action: TopologyAction::Apply } => {
                admin::apply(&cli.topology, &cli.schemas_dir(), cli.topic_prefix.as_deref(), &endpoints).await
            }
            Command::Schemas { action: SchemasAction::Register } => {
                admin::register(&cli.topology, &cli.schemas_dir(), cli.topic_prefix.as_deref(), &endpoints).await
            }
            Command::Migrate { replication } => admin::migrate(&endpoints, replication).await,
            Command::Stage { name, run } => serve(&cli, Some(name.as_str()), run, None, &endpoints).await,
            Command::Run { run, processes, instances } => {
                let processes = processes.then_some(Processes { instances });
                serve(&cli, None, run, processes, &endpoints).await
            }
            Command::Chat { tenant, user } => {
                chat::chat(&cli.topology, &cli.schemas_dir(), cli.topic_prefix.as_deref(), &endpoints, tenant, user)
                    .await
            }
            Command::Knowledge { action } => knowledge::run(action),
            Command::HelpdeskHooks { addr } => {
                let topology = admin::load_valid(&cli.topology, &cli.schemas_dir(), cli.topic_prefix.as_deref())?;
                let hooks = std::sync::Arc::new(turnpike::desk_hooks::Hooks::connect(&topology, &endpoints).await?);
                let listener = tokio::net::TcpListener::bind(addr).await?;
                tracing::info!(addr = %listener.local_addr()?, "Helpdesk webhooks listening.");
                turnpike::desk_hooks::serve(listener, hooks, shutdown_on_signals()).await?;
                Ok(())
            }
            Command::Guard { action: GuardAction::Check { tenant } } => guard_check::run(tenant),
            Command::Setup { replication } => {
                admin::apply(&cli.topology, &cli.schemas_dir(), cli.topic_prefix.as_deref(), &endpoints).await?;
                admin::register(&cli.topology, &cli.schemas_dir(), cli.topic_prefix.as_deref(), &endpoints).await?;
                admin::migrate(&endpoints, replication).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
