//! Turnpike guardrails: the checks guard-in and guard-out call.
//!
//! Guarantee: every check is synchronous and in-process (no model download, no network), so it can run on
//! every turn and on every streamed sentence; nothing returned by a check (verdicts, triggers) carries a raw
//! PII value: raw values live only in [`SessionPii`] and the [`vault`]. The pattern checks are
//! allocation-light; the model checks (with [`Guard::with_encoder`] or [`Guard::from_env`]) cost one
//! embedding per message (1-6 ms of CPU, [`Guard::embed`]) and microseconds per head on it ([`semantic`]).
//!
//! Use: compile a [`TenantPolicy`] once into a [`CompiledPolicy`], keep one [`Guard`] per process, then
//! - input: [`Guard::embed`] the message once, then [`Guard::check_input_with`] → [`InputVerdict`] (masked
//!   text, triggers, action; [`Guard::check_input`] for the patterns alone);
//! - output: [`Guard::output_checker`] → [`OutputChecker`], `push` deltas, `finish` at the end of the turn.

pub mod handoff;
pub mod injection;
pub mod injection_model;
pub mod input;
pub mod linear;
pub mod normalize;
pub mod output;
pub mod pii;
mod pii_name_lists;
mod pii_names;
mod pii_phone;
pub mod policy;
pub mod semantic;
pub mod text;
pub mod topic;
pub mod vault;
mod words;

pub use input::{InputAction, InputVerdict, ModelScores, SessionHistory};
pub use output::{CheckerState, OutputChecker, OutputVerdict, Release};
pub use pii::{PiiKind, PiiMasker, SessionPii};
pub use policy::{CompiledPolicy, PolicyError, TenantPolicy};
pub use turnpike_embed::{EmbedError, Embedding, Encoder, EncoderConfig};
pub use vault::{InMemoryVault, PiiVault, VaultError};

use injection::InjectionDetector;
use pii::PiiDetector;

/// One trigger: which check fired and what it decided. `detail` never holds a raw PII value (PII triggers
/// carry the kind and the token only), so triggers can go to metrics, logs and audit records as they are.
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    /// Stable check name, also the metric label: `injection`, `pii`, `topic`, `length`, `tokens`,
    /// `language`, `garbage`, `handoff_request`, `abuse`, `repetition`, `sentiment`, `content_safety`,
    /// `brand`, `commitment`, `canary`, `grounding`.
    pub check: &'static str,
    /// What the check decided: `refuse`, `handoff`, `mask`, `flag`, `redact`, `replace`, `block`, or
    /// `score` (a measurement only, no finding: the `sentiment` score of a turn that is not negative).
    pub verdict: &'static str,
    /// Short, PII-free explanation (matched pattern family, token, word).
    pub detail: String,
    /// A score where the check has one (injection, the heads, `sentiment`, repetition), else `None`.
    pub score: Option<f32>,
}

impl Trigger {
    pub(crate) fn new(check: &'static str, verdict: &'static str, detail: impl Into<String>) -> Self {
        Trigger { check, verdict, detail: detail.into(), score: None }
    }
}

/// The process-wide detectors (compiled patterns shared by all tenants, and the sentence encoder with its
/// heads when loaded). Cheap to share behind an `Arc`.
pub struct Guard {
    pub(crate) injection: InjectionDetector,
    pub(crate) pii: PiiDetector,
    pub(crate) output: output::OutputPatterns,
    pub(crate) model: Option<Model>,
}

pub(crate) struct Model {
    pub(crate) encoder: Encoder,
    pub(crate) heads: semantic::Heads,
    /// Embeddings of the policies' topic examples, by text (computed once per phrase per process).
    pub(crate) examples: std::sync::Mutex<std::collections::HashMap<String, Vec<f32>>>,
}

impl Guard {
    /// Builds every shared pattern. The patterns are constants, so an error here is a bug in this crate,
    /// reported rather than panicked on.
    pub fn new() -> Result<Self, PolicyError> {
        Ok(Guard {
            injection: InjectionDetector::new()?,
            pii: PiiDetector::new()?,
            output: output::OutputPatterns::new()?,
            model: None,
        })
    }

    /// Adds the model checks: the encoder and the shipped heads (`semantic_heads.txt`).
    pub fn with_encoder(mut self, encoder: Encoder) -> Result<Self, PolicyError> {
        let heads = semantic::Heads::shipped().map_err(PolicyError::Invalid)?;
        self.model = Some(Model { encoder, heads, examples: Default::default() });
        Ok(self)
    }

    /// The guard with the model checks when `TURNPIKE_MODEL_DIR` (and `ORT_DYLIB_PATH`) name usable files,
    /// else with pattern checks only; the second value says which and why, for the caller to log loudly.
    pub fn from_env() -> Result<(Self, Result<String, String>), PolicyError> {
        let guard = Guard::new()?;
        let encoder = EncoderConfig::from_env().and_then(|cfg| Encoder::load(&cfg));
        match encoder {
            Ok(e) => {
                let name = e.name().to_string();
                Ok((guard.with_encoder(e)?, Ok(name)))
            }
            Err(e) => Ok((guard, Err(e.to_string()))),
        }
    }

    /// Embeds a policy's topic examples (and its sensitive topics') ahead of the first turn (else the first
    /// turn that needs them does).
    pub fn prepare(&self, policy: &CompiledPolicy) -> Result<(), EmbedError> {
        let m = &policy.policy.model;
        let sensitive = policy.triggers.topic_texts();
        for t in m
            .denied_examples
            .iter()
            .map(String::as_str)
            .chain(m.allowed_examples.iter().map(String::as_str))
            .chain(sensitive)
        {
            self.example(t)?;
        }
        Ok(())
    }

    /// A topic example's embedding, from the cache or computed now.
    pub(crate) fn example(&self, text: &str) -> Result<Option<Vec<f32>>, EmbedError> {
        let Some(m) = &self.model else { return Ok(None) };
        if let Some(v) = m.examples.lock().ok().and_then(|c| c.get(text).cloned()) {
            return Ok(Some(v));
        }
        let v = m.encoder.embed(text)?.0;
        if let Ok(mut c) = m.examples.lock() {
            c.insert(text.to_string(), v.clone());
        }
        Ok(Some(v))
    }

    pub fn model_loaded(&self) -> bool {
        self.model.is_some()
    }

    /// The message's embedding for [`Guard::check_input_with`]: `Ok(None)` without a model. CPU-bound
    /// (~1-6 ms): async callers run it on a blocking thread.
    pub fn embed(&self, text: &str) -> Result<Option<Embedding>, EmbedError> {
        self.model.as_ref().map(|m| m.encoder.embed(text)).transpose()
    }
}
