//! Per-tenant policy: which checks run, thresholds, actions, word lists, competitor names.
//!
//! Guarantee: a policy either deserialises exactly (unknown fields are rejected, so a typo never silently
//! disables a check) and compiles, or fails with a [`PolicyError`] naming the problem; every field has a
//! safe default, so an empty document is the strict default policy.

use crate::topic::KeywordSet;
use crate::words::WordList;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid pattern: {0}")]
    Pattern(String),
    #[error("invalid policy: {0}")]
    Invalid(String),
}

/// What guard-in does with a turn that a check stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopAction {
    Refuse,
    Handoff,
}

/// What guard-out does with a sentence a check objects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SentenceAction {
    /// Release unchanged, but record a trigger for review.
    Flag,
    /// Replace the matched words with `[redacted]`.
    Redact,
    /// Replace the whole sentence with the policy's replacement line.
    Replace,
    /// Replace with the hand-off line and release nothing more this turn.
    BlockAndHandoff,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantPolicy {
    pub injection: InjectionPolicy,
    pub pii: PiiPolicy,
    pub topics: TopicPolicy,
    pub limits: LimitPolicy,
    /// Phrases meaning "let me talk to a person"; a match hands the session off.
    pub handoff_phrases: Vec<String>,
    pub refusal_line: String,
    pub handoff_line: String,
    pub output: OutputPolicy,
    /// The checks on the sentence embedding (when the encoder is loaded; see `semantic`).
    pub model: ModelPolicy,
    /// When to hand a conversation to a person, per trigger (see `handoff`).
    pub handoff: crate::handoff::HandoffTriggers,
}

/// The model checks' thresholds and actions. A threshold left out uses the head's trained one (in
/// `semantic_heads.txt`); 1.0 turns that check off. Model verdicts add to the pattern checks: a turn is
/// stopped when either stops it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPolicy {
    pub enabled: bool,
    pub injection_threshold: Option<f32>,
    pub handoff_threshold: Option<f32>,
    pub abuse_threshold: Option<f32>,
    /// Sentiment score (the `sentiment` head's probability that a message is negative or frustrated) at or
    /// above which a turn counts as negative: its `sentiment` trigger has verdict `flag` (else `score`) and
    /// it extends the session's `negative_run` (see `semantic::SentimentTrend`). No action by itself.
    pub sentiment_threshold: Option<f32>,
    /// What a message that abuses the assistant gets (its own line, `abuse_line`, on refuse).
    pub abuse_action: StopAction,
    pub abuse_line: String,
    /// Cosine similarity at or above which an earlier user message of the session counts as the same
    /// question (MiniLM: 0.77-0.83 for "where is my order?" reworded, 0.16-0.48 for other questions).
    pub repeat_similarity: f32,
    /// A `repetition` trigger (verdict `flag`, no action) once this many earlier messages are the same
    /// question: 2 means "asked for the third time". 0 turns it off.
    pub repeat_flag_after: usize,
    /// Semantic topic boundary: example messages of topics the tenant does not serve (questions work
    /// better than labels). A message at least `topic_similarity` to one of them, and closer to it than to
    /// every `allowed_examples` message, is a `topic` trigger with `topics.action` and `topics.refusal_line`.
    pub denied_examples: Vec<String>,
    pub allowed_examples: Vec<String>,
    /// MiniLM, measured: "what stocks should I buy" 0.63 and "Is ethereum a good investment right now?" 0.60
    /// to the example "investment advice"; support questions 0.0-0.21 to it.
    pub topic_similarity: f32,
}

impl Default for ModelPolicy {
    fn default() -> Self {
        ModelPolicy {
            enabled: true,
            injection_threshold: None,
            handoff_threshold: None,
            abuse_threshold: None,
            sentiment_threshold: None,
            abuse_action: StopAction::Refuse,
            repeat_similarity: 0.7,
            repeat_flag_after: 2,
            denied_examples: vec![],
            allowed_examples: vec![],
            topic_similarity: 0.45,
            abuse_line: "I'm here to help with your questions, and I'd like to keep this conversation respectful. \
                         What can I do for you?"
                .into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InjectionPolicy {
    pub enabled: bool,
    /// Score in [0, 1] at or above which the turn is stopped.
    pub threshold: f32,
    pub action: StopAction,
    /// Tenant-specific phrases, each a strong signal on its own (matched on normalised text).
    pub extra_phrases: Vec<String>,
    /// The injection classifier (a small model shipped in the crate, see `injection_model`) adds strong
    /// `classifier` evidence when its probability is at or above this (enough to stop the turn on its own at
    /// the default `threshold`) on a message of at least `injection_model::MIN_WORDS` words. In [0, 1]; 1.0
    /// turns it off. The default, 0.8, was chosen by 5-fold cross-validation on the training data (dev half
    /// of the attack sets; `turnpike-guard-eval train-injection`): out of fold it adds every catch 0.75 adds
    /// and flags no benign training message that the pattern families do not already flag.
    pub classifier_threshold: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiiPolicy {
    pub enabled: bool,
    /// Kinds to mask; empty means all kinds.
    pub kinds: Vec<crate::PiiKind>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicPolicy {
    /// Keywords (whole words or phrases) of the topics the bot serves.
    pub allowed: Vec<String>,
    /// Keywords of topics the bot must not discuss; any match stops the turn.
    pub denied: Vec<String>,
    /// When true, a message of at least `min_words_for_allowed` words that names no allowed keyword stops.
    pub require_allowed: bool,
    pub min_words_for_allowed: usize,
    pub action: StopAction,
    pub refusal_line: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitPolicy {
    pub max_chars: usize,
    pub max_tokens: usize,
    /// ISO 639-3 codes (`eng`, `deu`, …); empty allows every language.
    pub languages: Vec<String>,
    pub reject_garbage: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputPolicy {
    /// Extra profanity/toxicity/harassment words on top of the built-in list.
    pub extra_unsafe_words: Vec<String>,
    pub content_action: SentenceAction,
    /// The harm classifier (a small model shipped in the crate, see `output::harm`) flags a sentence window
    /// for content safety when its probability is at or above this, with `content_action` (a `redact` action
    /// becomes `replace`, since a statistical hit has no words to redact). In [0, 1]; 1.0 turns it off. The
    /// default, 0.9, was chosen on the PyRIT dev half for a low false-positive rate on harmless replies.
    pub harm_threshold: f32,
    pub competitors: Vec<String>,
    pub competitor_action: SentenceAction,
    /// Words that are off-brand in this tenant's voice.
    pub off_brand_words: Vec<String>,
    pub off_brand_action: SentenceAction,
    pub commitment_action: SentenceAction,
    /// Secret markers planted in the system prompt; seeing one in the output means the prompt leaked.
    pub canaries: Vec<String>,
    /// Flag sentences whose numbers or policy names the turn's sources do not contain.
    pub grounding: bool,
    pub grounding_action: SentenceAction,
    pub replacement_line: String,
    /// Longest unfinished sentence held back before it is checked and released anyway.
    pub max_sentence_chars: usize,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            injection: InjectionPolicy::default(),
            pii: PiiPolicy { enabled: true, kinds: vec![] },
            topics: TopicPolicy::default(),
            limits: LimitPolicy::default(),
            handoff_phrases: [
                "talk to a human",
                "speak to a human",
                "human agent",
                "real person",
                "talk to an agent",
                "speak to an agent",
                "speak to a representative",
                "talk to a representative",
            ]
            .map(String::from)
            .to_vec(),
            refusal_line: "I'm sorry, I can't help with that request. Is there something else I can do for you?".into(),
            handoff_line: "I'm connecting you with a member of our support team. They will see this conversation, \
                           so you won't need to repeat yourself."
                .into(),
            output: OutputPolicy::default(),
            model: ModelPolicy::default(),
            handoff: crate::handoff::HandoffTriggers::default(),
        }
    }
}

/// See [`InjectionPolicy::classifier_threshold`].
pub const DEFAULT_CLASSIFIER_THRESHOLD: f32 = 0.8;

impl Default for InjectionPolicy {
    fn default() -> Self {
        InjectionPolicy {
            enabled: true,
            threshold: 0.5,
            action: StopAction::Refuse,
            extra_phrases: vec![],
            classifier_threshold: DEFAULT_CLASSIFIER_THRESHOLD,
        }
    }
}

impl Default for PiiPolicy {
    fn default() -> Self {
        PiiPolicy { enabled: true, kinds: vec![] }
    }
}

impl Default for TopicPolicy {
    fn default() -> Self {
        TopicPolicy {
            allowed: vec![],
            denied: vec![],
            require_allowed: false,
            min_words_for_allowed: 6,
            action: StopAction::Refuse,
            refusal_line: "I can only help with questions about our products and services.".into(),
        }
    }
}

impl Default for LimitPolicy {
    fn default() -> Self {
        LimitPolicy { max_chars: 4000, max_tokens: 1000, languages: vec![], reject_garbage: true }
    }
}

impl Default for OutputPolicy {
    fn default() -> Self {
        OutputPolicy {
            extra_unsafe_words: vec![],
            content_action: SentenceAction::BlockAndHandoff,
            harm_threshold: 0.9,
            competitors: vec![],
            competitor_action: SentenceAction::Redact,
            off_brand_words: vec![],
            off_brand_action: SentenceAction::Replace,
            commitment_action: SentenceAction::Replace,
            canaries: vec![],
            grounding: true,
            grounding_action: SentenceAction::Flag,
            replacement_line: "I want to make sure I give you the right answer, so let me connect you with a \
                               specialist for that."
                .into(),
            max_sentence_chars: 600,
        }
    }
}

/// A policy with its word lists compiled into automata; build once per tenant and share.
pub struct CompiledPolicy {
    pub policy: TenantPolicy,
    pub(crate) injection_extra: WordList,
    pub(crate) pii_kinds: Vec<crate::PiiKind>,
    pub(crate) topics: KeywordSet,
    pub(crate) handoff: WordList,
    pub(crate) unsafe_words: WordList,
    pub(crate) competitors: WordList,
    pub(crate) off_brand: WordList,
    /// The handoff triggers with their phrase lists compiled.
    pub triggers: crate::handoff::CompiledTriggers,
}

impl CompiledPolicy {
    pub fn compile(policy: TenantPolicy) -> Result<Self, PolicyError> {
        if !(0.0..=1.0).contains(&policy.injection.threshold) {
            return Err(PolicyError::Invalid("injection.threshold must be within [0, 1]".into()));
        }
        if !(0.0..=1.0).contains(&policy.injection.classifier_threshold) {
            return Err(PolicyError::Invalid("injection.classifier_threshold must be within [0, 1]".into()));
        }
        if !(0.0..=1.0).contains(&policy.output.harm_threshold) {
            return Err(PolicyError::Invalid("output.harm_threshold must be within [0, 1]".into()));
        }
        for (name, t) in [
            ("model.injection_threshold", policy.model.injection_threshold),
            ("model.handoff_threshold", policy.model.handoff_threshold),
            ("model.abuse_threshold", policy.model.abuse_threshold),
            ("model.repeat_similarity", Some(policy.model.repeat_similarity)),
            ("model.topic_similarity", Some(policy.model.topic_similarity)),
        ] {
            if t.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
                return Err(PolicyError::Invalid(format!("{name} must be within [0, 1]")));
            }
        }
        if policy.limits.max_chars == 0 || policy.output.max_sentence_chars < 40 {
            return Err(PolicyError::Invalid("limits.max_chars > 0 and output.max_sentence_chars >= 40".into()));
        }
        let pii_kinds =
            if policy.pii.kinds.is_empty() { crate::PiiKind::ALL.to_vec() } else { policy.pii.kinds.clone() };
        let mut unsafe_words: Vec<String> = crate::words::UNSAFE_WORDS.iter().map(|s| s.to_string()).collect();
        unsafe_words.extend(policy.output.extra_unsafe_words.iter().cloned());
        Ok(CompiledPolicy {
            injection_extra: WordList::new(&policy.injection.extra_phrases)?,
            pii_kinds,
            topics: KeywordSet::new(&policy.topics.allowed, &policy.topics.denied)?,
            handoff: WordList::new(&policy.handoff_phrases)?,
            unsafe_words: WordList::new(&unsafe_words)?,
            competitors: WordList::new(&policy.output.competitors)?,
            off_brand: WordList::new(&policy.output.off_brand_words)?,
            triggers: crate::handoff::CompiledTriggers::compile(&policy.handoff)?,
            policy,
        })
    }

    /// Parses a JSON policy document (TOML callers deserialise [`TenantPolicy`] themselves).
    pub fn from_json(doc: &str) -> Result<Self, PolicyError> {
        let policy: TenantPolicy = serde_json::from_str(doc).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        Self::compile(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_is_the_default_policy() {
        let p: TenantPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, TenantPolicy::default());
        assert!(p.injection.enabled && p.pii.enabled);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = CompiledPolicy::from_json(r#"{"injection": {"treshold": 0.3}}"#).err().unwrap();
        assert!(err.to_string().contains("treshold"), "{err}");
    }

    #[test]
    fn out_of_range_threshold_is_rejected() {
        assert!(CompiledPolicy::from_json(r#"{"injection": {"threshold": 1.5}}"#).is_err());
    }

    #[test]
    fn classifier_threshold_has_a_default_and_is_validated() {
        assert_eq!(InjectionPolicy::default().classifier_threshold, DEFAULT_CLASSIFIER_THRESHOLD);
        assert!(CompiledPolicy::from_json(r#"{"injection": {"classifier_threshold": 1.01}}"#).is_err());
        assert!(CompiledPolicy::from_json(r#"{"injection": {"classifier_threshold": -0.5}}"#).is_err());
        let p = CompiledPolicy::from_json(r#"{"injection": {"classifier_threshold": 0.95}}"#).unwrap();
        assert_eq!(p.policy.injection.classifier_threshold, 0.95);
    }

    #[test]
    fn harm_threshold_has_a_safe_default_and_is_validated() {
        assert_eq!(OutputPolicy::default().harm_threshold, 0.9);
        assert!(CompiledPolicy::from_json(r#"{"output": {"harm_threshold": 1.2}}"#).is_err());
        assert!(CompiledPolicy::from_json(r#"{"output": {"harm_threshold": -0.1}}"#).is_err());
        let p = CompiledPolicy::from_json(r#"{"output": {"harm_threshold": 0.75}}"#).unwrap();
        assert_eq!(p.policy.output.harm_threshold, 0.75);
    }

    #[test]
    fn toml_policy_round_trips() {
        let doc = r#"
            handoff_phrases = ["operator"]
            [topics]
            denied = ["crypto"]
            action = "handoff"
            [output]
            competitors = ["Acme Air"]
            commitment_action = "flag"
        "#;
        let p: TenantPolicy = toml::from_str(doc).unwrap();
        assert_eq!(p.topics.action, StopAction::Handoff);
        assert_eq!(p.output.commitment_action, SentenceAction::Flag);
        assert!(CompiledPolicy::compile(p).is_ok());
    }
}
