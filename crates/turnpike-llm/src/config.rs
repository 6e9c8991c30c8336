//! [`LlmConfig`] → [`LlmRouter`]: tiers, their deployment chains, retry/breaker tuning, prices and budgets
//! from one TOML file (`TURNPIKE_LLM_CONFIG=/path/llm.toml`).
//!
//! Guarantees: a configuration is validated completely before anything runs (unknown fields, unknown
//! providers, a chain naming a missing deployment, an empty chain, an unset key variable are all
//! [`LlmError::Config`], which is fatal); API keys are read from the environment variable a deployment
//! names (`api_key_env`) or inline (`api_key`), and are held only in [`ApiKey`], never printed; a
//! deployment listed in several tiers is one deployment with one breaker.
//!
//! ```toml
//! default_tier = "cheap"          # used for a tier the file does not list (default: the first tier)
//! max_output_tokens = 1024        # cap per reply; also what makes budget reservations an upper bound
//!
//! [[deployments]]
//! name = "openai-mini"            # metrics label
//! provider = "openai"             # openai (any OpenAI-compatible server) | anthropic | gemini
//! base_url = "https://api.openai.com/v1"   # optional: each provider's public endpoint by default
//! model = "gpt-4o-mini"           # optional: omitted = the model the route stage chose
//! api_key_env = "OPENAI_API_KEY"
//! ttft_timeout_ms = 20000         # optional, also connect_timeout_ms, idle_timeout_ms
//!
//! [[deployments]]
//! name = "vllm-local"
//! provider = "openai"
//! base_url = "http://127.0.0.1:8000/v1"
//! continuation = "vllm"           # openai only: how it continues a cut reply: "vllm" (continue_final_message),
//!                                 # "prefix" (DeepSeek/Mistral `prefix: true`) or "none" (default: it cannot;
//!                                 # Anthropic and Gemini always can)
//!
//! [[deployments]]
//! name = "gemini-flash"
//! provider = "gemini"
//! model = "gemini-2.0-flash"
//! api_key_env = "GEMINI_API_KEY"
//!
//! [tiers.cheap]
//! chain = ["openai-mini", "gemini-flash"]   # tried in this order
//! max_attempts = 4                # optional: per-turn retry budget (see RetryPolicy)
//! time_budget_ms = 10000
//! ttft_timeout_ms = 8000
//!
//! [breaker]                       # optional, applies to every deployment
//! window_ms = 60000
//! min_requests = 4
//! failure_rate = 0.5
//! cool_down_ms = 5000
//!
//! [[prices]]                      # optional: added to / overriding the February 2026 defaults
//! model = "my-finetune"           # dollars per million tokens
//! input = 0.3
//! output = 1.2
//! cached_input = 0.15
//!
//! max_tool_rounds = 3             # model calls per turn when tools are configured
//!
//! [[tools]]                       # optional: HTTP tools the model may call
//! name = "lookup_order"
//! description = "Status of an order by its number."
//! url = "https://orders.internal/lookup"
//! method = "POST"                 # POST: arguments as JSON body; GET: as query parameters
//! parameters = { type = "object", properties = { order = { type = "string" } }, required = ["order"] }
//! timeout_ms = 3000
//! max_result_bytes = 4096
//!
//! [budget]                        # optional: spend per UTC day, in micro-dollars, either or both
//! tenant_daily_limit_micros = 5000000
//! user_daily_limit_micros = 200000
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::cost::{default_prices, Price, Pricing};
use crate::router::{Chain, Deployment, RetryPolicy};
use crate::tools::{HttpToolConfig, ToolRunner};
use crate::{
    AnthropicClient, ApiKey, ClientConfig, ContinuationStyle, GeminiClient, LlmError, LlmProvider, OpenAiClient,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Gemini,
}

impl ProviderKind {
    fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "https://api.openai.com/v1",
            ProviderKind::Anthropic => "https://api.anthropic.com",
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub name: String,
    pub provider: ProviderKind,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub api_key: Option<ApiKey>,
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    #[serde(default)]
    pub ttft_timeout_ms: Option<u64>,
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// How an OpenAI-compatible server continues a reply; see [`crate::continuation`].
    #[serde(default)]
    pub continuation: Option<ContinuationStyle>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    pub chain: Vec<String>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub time_budget_ms: Option<u64>,
    #[serde(default)]
    pub ttft_timeout_ms: Option<u64>,
    #[serde(default)]
    pub backoff_base_ms: Option<u64>,
    #[serde(default)]
    pub backoff_max_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    #[serde(default)]
    pub window_ms: Option<u64>,
    #[serde(default)]
    pub min_requests: Option<u32>,
    #[serde(default)]
    pub failure_rate: Option<f64>,
    #[serde(default)]
    pub cool_down_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    #[serde(default)]
    pub tenant_daily_limit_micros: Option<i64>,
    #[serde(default)]
    pub user_daily_limit_micros: Option<i64>,
}

fn default_max_output_tokens() -> u32 {
    1024
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    #[serde(default)]
    pub default_tier: Option<String>,
    #[serde(default = "default_max_output_tokens")]
    pub max_output_tokens: u32,
    #[serde(default)]
    pub deployments: Vec<DeploymentConfig>,
    #[serde(default)]
    pub tiers: BTreeMap<String, TierConfig>,
    #[serde(default)]
    pub breaker: BreakerSettings,
    #[serde(default)]
    pub prices: Vec<Price>,
    #[serde(default)]
    pub budget: Option<BudgetSettings>,
    #[serde(default)]
    pub tools: Vec<HttpToolConfig>,
    /// Model calls per turn when tools are configured (the last one's tool calls end as `tool_limit`).
    #[serde(default = "default_max_tool_rounds")]
    pub max_tool_rounds: u32,
}

fn default_max_tool_rounds() -> u32 {
    3
}

fn ms(value: Option<u64>, default: Duration) -> Duration {
    value.map_or(default, Duration::from_millis)
}

impl LlmConfig {
    pub fn from_toml(text: &str) -> Result<Self, LlmError> {
        toml::from_str(text).map_err(|e| LlmError::Config(format!("LLM configuration: {e}")))
    }

    pub fn load(path: &std::path::Path) -> Result<Self, LlmError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LlmError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text)
    }

    fn breaker(&self) -> Result<BreakerConfig, LlmError> {
        let d = BreakerConfig::default();
        let b = &self.breaker;
        let failure_rate = b.failure_rate.unwrap_or(d.failure_rate);
        if !(0.0..=1.0).contains(&failure_rate) {
            return Err(LlmError::Config(format!("breaker.failure_rate {failure_rate} is not in 0..=1")));
        }
        Ok(BreakerConfig {
            window: ms(b.window_ms, d.window),
            min_requests: b.min_requests.unwrap_or(d.min_requests),
            failure_rate,
            cool_down: ms(b.cool_down_ms, d.cool_down),
        })
    }

    fn client(d: &DeploymentConfig) -> Result<LlmProvider, LlmError> {
        let defaults = ClientConfig::new("");
        let api_key = match (&d.api_key, &d.api_key_env) {
            (Some(key), _) => Some(key.clone()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(ApiKey::new(key)),
                _ => {
                    return Err(LlmError::Config(format!(
                        "deployment {}: environment variable {var} is not set",
                        d.name
                    )))
                }
            },
            (None, None) => None,
        };
        let cfg = ClientConfig {
            base_url: d.base_url.clone().unwrap_or_else(|| d.provider.default_base_url().to_owned()),
            api_key,
            connect_timeout: ms(d.connect_timeout_ms, defaults.connect_timeout),
            ttft_timeout: ms(d.ttft_timeout_ms, defaults.ttft_timeout),
            idle_timeout: ms(d.idle_timeout_ms, defaults.idle_timeout),
        };
        if d.continuation.is_some() && d.provider != ProviderKind::OpenAi {
            // Anthropic and Gemini continue natively: an option there would be a misunderstanding.
            return Err(LlmError::Config(format!("deployment {}: continuation is an openai option", d.name)));
        }
        let continuation = d.continuation.unwrap_or_default();
        Ok(match d.provider {
            ProviderKind::OpenAi => LlmProvider::OpenAi(OpenAiClient::new(cfg)?.with_continuation(continuation)),
            ProviderKind::Anthropic => LlmProvider::Anthropic(AnthropicClient::new(cfg)?),
            ProviderKind::Gemini => LlmProvider::Gemini(GeminiClient::new(cfg)?),
        })
    }

    /// Builds every client and chain, or says exactly what is wrong.
    pub fn build(&self) -> Result<LlmRouter, LlmError> {
        let breaker = self.breaker()?;
        let mut deployments = BTreeMap::new();
        for d in &self.deployments {
            let provider = Self::client(d)?;
            let dep = match &d.model {
                Some(model) => Deployment::new(&d.name, model, provider, breaker.clone()),
                None => Deployment::passthrough(&d.name, provider, breaker.clone()),
            };
            if deployments.insert(d.name.clone(), Arc::new(dep)).is_some() {
                return Err(LlmError::Config(format!("deployment {} is defined twice", d.name)));
            }
        }
        let d = RetryPolicy::default();
        let mut tiers = BTreeMap::new();
        for (tier, t) in &self.tiers {
            if t.chain.is_empty() {
                return Err(LlmError::Config(format!("tier {tier}: empty chain")));
            }
            let chain = t
                .chain
                .iter()
                .map(|name| {
                    deployments
                        .get(name)
                        .cloned()
                        .ok_or_else(|| LlmError::Config(format!("tier {tier}: no deployment named {name}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let policy = RetryPolicy {
                max_attempts: t.max_attempts.unwrap_or(d.max_attempts).max(1),
                time_budget: ms(t.time_budget_ms, d.time_budget),
                ttft_timeout: ms(t.ttft_timeout_ms, d.ttft_timeout),
                backoff_base: ms(t.backoff_base_ms, d.backoff_base),
                backoff_max: ms(t.backoff_max_ms, d.backoff_max),
            };
            tiers.insert(tier.clone(), Arc::new(Chain::shared(tier, chain, policy)));
        }
        let default_name = match &self.default_tier {
            Some(name) => name.clone(),
            None => tiers.keys().next().cloned().ok_or_else(|| LlmError::Config("no tiers configured".into()))?,
        };
        let default = tiers
            .get(&default_name)
            .cloned()
            .ok_or_else(|| LlmError::Config(format!("default_tier {default_name} is not a configured tier")))?;
        let mut prices = default_prices();
        for price in &self.prices {
            prices.retain(|p| p.model != price.model);
            prices.push(price.clone());
        }
        let tools = match self.tools.is_empty() {
            true => None,
            false => Some(Arc::new(ToolRunner::new(self.tools.clone(), self.max_tool_rounds)?)),
        };
        Ok(LlmRouter {
            tiers,
            default,
            pricing: Pricing::new(prices),
            budget: self.budget.clone(),
            max_output_tokens: self.max_output_tokens,
            tools,
        })
    }
}

/// Everything generate needs to call an LLM: a chain per tier, prices, budget and output cap.
#[derive(Debug)]
pub struct LlmRouter {
    tiers: BTreeMap<String, Arc<Chain>>,
    default: Arc<Chain>,
    pub pricing: Pricing,
    pub budget: Option<BudgetSettings>,
    pub max_output_tokens: u32,
    /// HTTP tools offered to the model, with the loop's round limit; `None`: no tools.
    pub tools: Option<Arc<ToolRunner>>,
}

impl LlmRouter {
    /// One provider for every tier, serving whichever model the request names: the configuration when
    /// only `TURNPIKE_LLM_BASE_URL` (or the in-process mock) is given.
    pub fn single(name: &str, provider: LlmProvider) -> Self {
        let dep = Arc::new(Deployment::passthrough(name, provider, BreakerConfig::default()));
        let default = Arc::new(Chain::shared("default", vec![dep], RetryPolicy::default()));
        LlmRouter {
            tiers: BTreeMap::new(),
            default,
            pricing: Pricing::default(),
            budget: None,
            max_output_tokens: default_max_output_tokens(),
            tools: None,
        }
    }

    /// The chain for `tier`, or the default tier's.
    pub fn chain(&self, tier: &str) -> &Arc<Chain> {
        self.tiers.get(tier).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
default_tier = "cheap"
max_output_tokens = 512
max_tool_rounds = 2

[[tools]]
name = "lookup_order"
description = "Order status"
url = "http://127.0.0.1:9/lookup"
parameters = { type = "object", required = ["order"] }

[[deployments]]
name = "openai-mini"
provider = "openai"
model = "gpt-4o-mini"
api_key_env = "TURNPIKE_TEST_CONFIG_KEY"

[[deployments]]
name = "claude"
provider = "anthropic"
base_url = "http://127.0.0.1:9"
model = "claude-sonnet-4"
api_key = "sk-ant-inline-secret"

[tiers.cheap]
chain = ["openai-mini", "claude"]
max_attempts = 3

[tiers.capable]
chain = ["claude"]

[breaker]
cool_down_ms = 1000

[[prices]]
model = "gpt-4o-mini"
input = 1.0
output = 2.0
cached_input = 0.5

[budget]
tenant_daily_limit_micros = 5000000
"#;

    #[test]
    fn builds_tiers_chains_prices_and_budget() {
        std::env::set_var("TURNPIKE_TEST_CONFIG_KEY", "sk-from-env");
        let cfg = LlmConfig::from_toml(EXAMPLE).unwrap();
        assert!(!format!("{cfg:?}").contains("inline-secret"), "keys never print");
        let router = cfg.build().unwrap();
        let cheap = router.chain("cheap");
        let names: Vec<_> = cheap.deployments.iter().map(|d| (d.name.as_str(), d.provider.name())).collect();
        assert_eq!(names, [("openai-mini", "openai"), ("claude", "anthropic")]);
        assert_eq!(cheap.policy.max_attempts, 3);
        assert_eq!(router.chain("unknown-tier").tier, "cheap");
        assert!(Arc::ptr_eq(&router.chain("capable").deployments[0], &cheap.deployments[1]), "one breaker");
        assert_eq!(router.pricing.price("gpt-4o-mini").map(|p| p.input), Some(1.0));
        assert_eq!(router.pricing.price("gpt-4o").map(|p| p.input), Some(2.5), "defaults kept");
        assert_eq!(
            router.budget,
            Some(BudgetSettings { tenant_daily_limit_micros: Some(5_000_000), user_daily_limit_micros: None })
        );
        assert_eq!(router.max_output_tokens, 512);
        let tools = router.tools.as_ref().unwrap();
        assert_eq!((tools.specs()[0].name.as_str(), tools.max_rounds), ("lookup_order", 2));
    }

    #[test]
    fn refuses_incomplete_configurations() {
        let bad = |text: &str| match LlmConfig::from_toml(text).and_then(|c| c.build()) {
            Err(LlmError::Config(message)) => message,
            other => panic!("accepted {text:?}: {other:?}"),
        };
        assert!(bad("[tiers.cheap]\nchain = [\"nope\"]").contains("no deployment named nope"));
        assert!(bad("[[deployments]]\nname = \"x\"\nprovider = \"cohere\"").contains("unknown variant"));
        assert!(bad("[[deployments]]\nname = \"x\"\nprovider = \"openai\"\napi_key_env = \"TURNPIKE_UNSET_VAR_FOR_TEST\"\n[tiers.t]\nchain = [\"x\"]")
            .contains("TURNPIKE_UNSET_VAR_FOR_TEST is not set"));
        assert!(bad("").contains("no tiers"));
        assert!(bad("colour = 1").contains("unknown field"));
    }

    #[test]
    fn openai_deployments_say_how_they_continue() {
        let toml = |style: &str, provider: &str| {
            format!("[[deployments]]\nname = \"d\"\nprovider = \"{provider}\"\n{style}\n[tiers.t]\nchain = [\"d\"]\n")
        };
        let can = |style: &str, provider: &str| {
            LlmConfig::from_toml(&toml(style, provider)).and_then(|c| c.build()).map(|r| r.chain("t").can_continue())
        };
        assert_eq!(can("", "openai"), Ok(false), "OpenAI itself cannot");
        assert_eq!(can("continuation = \"vllm\"", "openai"), Ok(true));
        assert_eq!(can("continuation = \"prefix\"", "openai"), Ok(true));
        assert_eq!(can("continuation = \"none\"", "openai"), Ok(false));
        assert_eq!(can("", "anthropic"), Ok(true));
        assert_eq!(can("", "gemini"), Ok(true));
        assert!(
            matches!(can("continuation = \"vllm\"", "anthropic"), Err(LlmError::Config(m)) if m.contains("openai option"))
        );
        assert!(
            matches!(can("continuation = \"maybe\"", "openai"), Err(LlmError::Config(m)) if m.contains("unknown variant"))
        );
    }
}
