//! Builds and runs stages: one per process (`turnpike stage NAME`) or all of them in one (`turnpike run`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use turnpike_core::Endpoints;
use turnpike_llm::{ContinuationStyle, LlmConfig, LlmError, LlmRouter, OpenAiClient, OpenAiConfig};
use turnpike_runner::{check_input_schema, run_with, RunnerConfig, RunnerError, SharedProducer, Stage};
use turnpike_stages::{assemble, deliver, desk, generate, guard_in, guard_out, handoff, ingest, route, Deps};
use turnpike_topology::Topology;

/// Where generate sends its requests.
#[derive(Clone, Debug)]
pub struct LlmSettings {
    /// OpenAI-compatible base URL (e.g. `https://api.openai.com/v1` or the mock's `http://127.0.0.1:8090/v1`).
    pub base_url: String,
    /// API key; `None` for servers that need none (the mock, local vLLM or Ollama).
    pub api_key: Option<String>,
}

/// The generate stage's LLM router: the tiers and failover chains of the TOML file named by
/// `TURNPIKE_LLM_CONFIG` (format in `turnpike_llm::config`), else one OpenAI-compatible server at
/// `settings.base_url` (the in-process mock when nothing is configured) for every tier.
fn llm_router(settings: &LlmSettings) -> Result<LlmRouter, LlmError> {
    if let Some(path) = std::env::var_os("TURNPIKE_LLM_CONFIG").filter(|p| !p.is_empty()) {
        let router = LlmConfig::load(std::path::Path::new(&path))?.build()?;
        tracing::info!(config = %std::path::Path::new(&path).display(), "LLM tiers loaded.");
        return Ok(router);
    }
    let mut cfg = OpenAiConfig::new(&settings.base_url);
    if let Some(k) = &settings.api_key {
        cfg = cfg.with_api_key(turnpike_llm::ApiKey::new(k.clone()));
    }
    cfg.ttft_timeout = Duration::from_secs(20);
    let client = OpenAiClient::new(cfg)?.with_continuation(single_server_continuation(&settings.base_url)?);
    Ok(LlmRouter::single("openai-compatible", client.into()))
}

/// How the one OpenAI-compatible server continues a cut reply (see `turnpike_llm::continuation`):
/// `TURNPIKE_LLM_CONTINUATION` (`vllm`, `prefix` or `none`), else `vllm` for the mock this process serves
/// (so the default pipeline resumes replies), else none (generate then ends a cut reply with its apology).
fn single_server_continuation(base_url: &str) -> Result<ContinuationStyle, LlmError> {
    match std::env::var("TURNPIKE_LLM_CONTINUATION") {
        Ok(style) if !style.is_empty() => style.parse(),
        _ if turnpike_llm::mock::serves_in_process(base_url) => Ok(ContinuationStyle::Vllm),
        _ => Ok(ContinuationStyle::None),
    }
}

/// Summaries made at once per assemble process, at most (more due ones wait for a later turn).
const MAX_CONCURRENT_SUMMARIES: usize = 4;

/// The assemble stage: per-tenant context policies (section `context` of `TURNPIKE_TENANTS_CONFIG`), a
/// summarizer calling the same LLM tiers as generate, and retrieval from the knowledge indexes under
/// `knowledge_dir` (section `knowledge`), when there is one.
fn assemble_stage(
    deps: Deps,
    llm: &LlmSettings,
    knowledge_dir: Option<&std::path::Path>,
) -> Result<assemble::Assemble, turnpike_runner::StageError> {
    use turnpike_runner::StageError;
    let fatal = |code: &'static str| move |e: String| StageError::fatal(code, e);
    let policies = turnpike_core::TenantsConfig::from_env()
        .and_then(|c| c.section::<assemble::ContextPolicy>("context"))
        .map_err(|e| fatal("context_policy")(e.to_string()))?;
    let router = llm_router(llm).map_err(|e| fatal("llm_config")(e.to_string()))?;
    let summarizer = turnpike_stages::summarize::Summarizer::new(deps.clone(), router, MAX_CONCURRENT_SUMMARIES)
        .map_err(fatal("summarizer"))?;
    let stage = assemble::Assemble::new(deps, policies, Some(Arc::new(summarizer)))?;
    Ok(match knowledge_dir {
        Some(dir) => stage.with_knowledge(turnpike_stages::retrieve::Knowledge::load(dir)?),
        None => stage,
    })
}

/// Parses a `key=value` librdkafka setting (the `--kafka-set` flag).
pub fn parse_kafka_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("`{s}` is not a librdkafka setting of the form key=value")),
    }
}

/// Runtime knobs that are not topology.
#[derive(Clone, Debug)]
pub struct Tuning {
    pub max_in_flight_per_partition: usize,
    /// Static group membership id: a restarted instance with the same id takes its partitions back at once,
    /// instead of waiting a session timeout for the group to notice the old one is gone.
    pub instance_id: Option<String>,
    /// Dead letters per minute before a stage stops (default: the runner's).
    pub dlq_max_per_minute: Option<u32>,
    /// Root of the per-tenant knowledge indexes (`turnpike knowledge ingest`); `None`: no retrieval.
    pub knowledge_dir: Option<std::path::PathBuf>,
    /// librdkafka settings for every stage's clients (tuning only: the runner refuses the protected ones).
    pub kafka_overrides: Vec<(String, String)>,
    /// Whether the stages of one process share one producer (default; see [`SharedProducer`]).
    pub share_producer: bool,
    /// The producer the stages of this process share; [`run_stages`] makes one when it runs several.
    pub producer: Option<SharedProducer>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            max_in_flight_per_partition: 512,
            instance_id: None,
            dlq_max_per_minute: None,
            knowledge_dir: None,
            kafka_overrides: Vec::new(),
            share_producer: true,
            producer: None,
        }
    }
}

async fn run_one<S: Stage>(
    stage: S,
    topology: &Topology,
    name: &str,
    endpoints: &Endpoints,
    tuning: &Tuning,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let mut cfg = RunnerConfig::from_topology(topology, name, endpoints)?;
    cfg.max_in_flight_per_partition = tuning.max_in_flight_per_partition;
    cfg.kafka_overrides = tuning.kafka_overrides.clone();
    if let Some(max) = tuning.dlq_max_per_minute {
        cfg.dlq_max_per_minute = max;
    }
    if let Some(id) = &tuning.instance_id {
        cfg.instance_id = Some(format!("{id}-{name}"));
    }
    check_input_schema::<S>(topology, &cfg).map_err(|message| RunnerError::Fatal {
        stage: cfg.stage,
        code: "topology",
        message,
    })?;
    run_with(stage, cfg, tuning.producer.clone(), shutdown).await
}

/// Runs the stage called `name` until `shutdown` is cancelled.
pub async fn run_stage(
    name: &str,
    topology: Arc<Topology>,
    endpoints: Endpoints,
    deps: Deps,
    llm: LlmSettings,
    tuning: Tuning,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let (t, e, u, s) = (&*topology, &endpoints, &tuning, shutdown);
    match name {
        "ingest" => run_one(ingest::Ingest { deps, limits: Default::default() }, t, name, e, u, s).await,
        "guard-in" => {
            let policies = turnpike_stages::audit::load_policies()
                .map_err(|error| RunnerError::Start { stage: "guard-in", error })?;
            let stage = guard_in::GuardIn::new(deps, &e.redis_url, policies)
                .await
                .map_err(|error| RunnerError::Start { stage: "guard-in", error })?;
            run_one(stage, t, name, e, u, s).await
        }
        "assemble" => {
            let stage = assemble_stage(deps, &llm, u.knowledge_dir.as_deref())
                .map_err(|error| RunnerError::Start { stage: "assemble", error })?;
            run_one(stage, t, name, e, u, s).await
        }
        "route" => {
            let policies = route::load_policies().map_err(|error| RunnerError::Start { stage: "route", error })?;
            run_one(route::Route { deps, policies }, t, name, e, u, s).await
        }
        "generate" => {
            let router = llm_router(&llm).map_err(|e| RunnerError::Fatal {
                stage: "generate",
                code: "llm_config",
                message: e.to_string(),
            })?;
            let mut stage = generate::Generate::new(deps, router);
            // The tenants' escalation settings and capable models.
            stage.routes = route::load_policies().map_err(|error| RunnerError::Start { stage: "generate", error })?;
            run_one(stage, t, name, e, u, s).await
        }
        "guard-out" => {
            let start = |error| RunnerError::Start { stage: "guard-out", error };
            let stage = guard_out::GuardOut::new(deps, turnpike_stages::audit::load_policies().map_err(start)?)
                .map_err(start)?;
            run_one(stage, t, name, e, u, s).await
        }
        "deliver" => run_one(deliver::Deliver::new(deps), t, name, e, u, s).await,
        "handoff" => {
            // The agent's note is written by the cheap tier; without a router the note is the extract.
            let router = llm_router(&llm)
                .map_err(|e| tracing::warn!(error = %e, "No LLM for handoff summaries; agents get the extract."))
                .ok();
            let stage = handoff::Handoff::new(deps, router, &e.redis_url)
                .await
                .map_err(|error| RunnerError::Start { stage: "handoff", error })?;
            run_one(stage, t, name, e, u, s).await
        }
        "desk" => {
            let desks = handoff::load_desks().map_err(|error| RunnerError::Start { stage: "desk", error })?;
            run_one(desk::Desk { deps, desks }, t, name, e, u, s).await
        }
        other => Err(RunnerError::Fatal {
            stage: "pipeline",
            code: "unknown_stage",
            message: format!("no stage named {other}"),
        }),
    }
}

/// Runs every stage of the topology in this process; the first to fail stops the others.
pub async fn run_all(
    topology: Arc<Topology>,
    endpoints: Endpoints,
    deps: Deps,
    llm: LlmSettings,
    tuning: Tuning,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    run_stages(&turnpike_topology::STAGE_NAMES, topology, endpoints, deps, llm, tuning, shutdown).await
}

/// Runs the named stages in this process; the first to fail stops the others.
pub async fn run_stages(
    stages: &[&'static str],
    topology: Arc<Topology>,
    endpoints: Endpoints,
    deps: Deps,
    llm: LlmSettings,
    mut tuning: Tuning,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    if stages.len() > 1 && tuning.share_producer && tuning.producer.is_none() {
        let mut cfg = RunnerConfig::from_topology(&topology, stages[0], &endpoints)?;
        cfg.kafka_overrides = tuning.kafka_overrides.clone();
        tuning.producer = Some(SharedProducer::new(&cfg)?);
    }
    let mut set = tokio::task::JoinSet::new();
    let stop = shutdown.child_token();
    for &stage in stages {
        let (t, e, d, l, u, s) =
            (topology.clone(), endpoints.clone(), deps.clone(), llm.clone(), tuning.clone(), stop.clone());
        set.spawn(async move { run_stage(stage, t, e, d, l, u, s).await });
    }
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        let result = joined.map_err(|e| RunnerError::Thread(e.to_string())).and_then(|r| r);
        if let Err(e) = result {
            tracing::error!(error = %e, "A stage failed; stopping the pipeline.");
            stop.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
