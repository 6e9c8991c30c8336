//! Handoff triggers as a per-tenant policy: when the bot hands a conversation to a human, and with what
//! reason, evidence, priority and tags.
//!
//! Guarantee: six triggers, each on/off with its thresholds per tenant (section `guard.handoff` of the
//! tenants file, see [`HandoffTriggers`]), each decision a pure function of the turn's signals, the
//! session's recorded history and the policy, so a redelivered turn decides the same way. Every decision
//! names one reason (the first that fired, in the order of [`reason::ALL`]), the evidence of every trigger
//! that fired (masked text and scores only, never raw PII), a priority and ticket tags.
//!
//! | reason | where | fires when |
//! |---|---|---|
//! | `user_asked` | guard-in | a handoff phrase or the `handoff_request` head (the `handoff_request` check) |
//! | `sensitive_topic` | guard-in | the message is close to a tenant topic's examples (model) or names a keyword |
//! | `sentiment` | guard-in | `turns` negative turns in a row (the model's `sentiment` score, else [`frustration`]) |
//! | `loop` | guard-in, guard-out | the same question the third time (`repetition`), or the bot's reply repeats an earlier one |
//! | `vip` | guard-in | a VIP / listed tier: immediately, or a trigger that fired only at the VIP's lower threshold |
//! | `low_confidence` | guard-out | the reply says it cannot help, hedges, or makes unsupported claims |
//!
//! Layout: this file holds the policy and its validation; [`input`] decides on a user turn, [`reply`] on a
//! finished bot reply, [`frustration`] scores a message without the model.

pub mod frustration;
pub mod input;
pub mod reply;

use crate::policy::PolicyError;
use crate::words::WordList;
use serde::{Deserialize, Serialize};

/// The reasons a handoff request carries (`HandoffRequest.reason`, the `reason` label of
/// `turnpike_handoff_triggers_total`).
pub mod reason {
    pub const USER_ASKED: &str = "user_asked";
    pub const SENSITIVE_TOPIC: &str = "sensitive_topic";
    pub const SENTIMENT: &str = "sentiment";
    pub const LOOP: &str = "loop";
    pub const VIP: &str = "vip";
    pub const LOW_CONFIDENCE: &str = "low_confidence";
    /// In precedence order: when several fire on one turn, the first names the handoff.
    pub const ALL: [&str; 6] = [USER_ASKED, SENSITIVE_TOPIC, SENTIMENT, LOOP, VIP, LOW_CONFIDENCE];
}

/// A ticket's urgency (shared with the helpdesk connectors, which map it to their own scale).
pub use turnpike_core::Priority;

/// What a trigger decided: enough to write a `HandoffRequest`.
#[derive(Clone, Debug, PartialEq)]
pub struct HandoffDecision {
    /// One of [`reason::ALL`].
    pub reason: &'static str,
    /// Every trigger that fired, `reason: what` joined by `; ` (masked text and numbers only).
    pub evidence: String,
    pub priority: Priority,
    /// `handoff:<reason>` for every trigger that fired, plus `topic:<name>`, `tier:<tier>`, `vip`.
    pub tags: Vec<String>,
    /// The turn's frustration score, when it was scored.
    pub frustration: Option<f32>,
}

/// Section `guard.handoff` of the tenants file. Every field has a default, so a tenant names only what it
/// changes (`[tenants.acme.guard.handoff.sentiment] turns = 3`). The explicit request's phrases and head
/// threshold stay where they were: `guard.handoff_phrases` and `guard.model.handoff_threshold`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandoffTriggers {
    pub explicit: ExplicitTrigger,
    pub sentiment: SentimentTrigger,
    #[serde(rename = "loop")]
    pub repeat: LoopTrigger,
    pub sensitive: SensitiveTrigger,
    pub vip: VipTrigger,
    pub low_confidence: LowConfidenceTrigger,
}

/// The customer asks for a person (phrase or head, see the module table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplicitTrigger {
    pub enabled: bool,
    pub priority: Priority,
}

impl Default for ExplicitTrigger {
    fn default() -> Self {
        ExplicitTrigger { enabled: true, priority: Priority::Normal }
    }
}

/// Negative sentiment sustained over `turns` consecutive user turns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SentimentTrigger {
    pub enabled: bool,
    /// Consecutive negative turns (this one included) that hand off; at least 1.
    pub turns: usize,
    /// A turn the sentiment head scored is negative at this score or above; unset: the head's own verdict
    /// (its trigger's `flag`).
    pub model_threshold: Option<f32>,
    /// A turn scored by the lexical fallback ([`frustration::lexical`]) is negative at this score or above.
    pub lexical_threshold: f32,
    pub priority: Priority,
}

impl Default for SentimentTrigger {
    fn default() -> Self {
        SentimentTrigger {
            enabled: true,
            turns: 2,
            model_threshold: None,
            lexical_threshold: 0.5,
            priority: Priority::High,
        }
    }
}

/// A conversation going round in circles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopTrigger {
    pub enabled: bool,
    /// Earlier messages asking the same question (guard-in's repetition signal, model checks only) that
    /// hand off: 2 = asked for the third time. 0 turns this half off.
    pub question_repeats: usize,
    /// A reply this similar (Jaccard of word pairs, [`reply::similarity`]) to one of the session's earlier
    /// replies is the bot repeating itself. Above 1.0 turns this half off.
    pub answer_similarity: f32,
    /// Replies shorter than this many words are never compared ("You're welcome!" may repeat).
    pub answer_min_words: usize,
    pub priority: Priority,
}

impl Default for LoopTrigger {
    fn default() -> Self {
        LoopTrigger {
            enabled: true,
            question_repeats: 2,
            answer_similarity: 0.75,
            answer_min_words: 8,
            priority: Priority::Normal,
        }
    }
}

/// Topics a human should handle. Semantic with the model (the message against each topic's description
/// and examples), keywords without it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveTrigger {
    pub enabled: bool,
    /// Cosine similarity at or above which a message matches a topic's description or example. MiniLM,
    /// measured on the default topics: threats, disputed charges and hazards written in other words 0.42-0.68
    /// (two of seven below 0.45), ordinary support questions and near misses ("the lawyer in that film was
    /// funny", "my agent number is 5") 0.15-0.37.
    pub similarity: f32,
    pub priority: Priority,
    /// Replaces the default list as a whole (arrays are not merged).
    pub topics: Vec<SensitiveTopic>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensitiveTopic {
    /// Short label, also the ticket tag `topic:<name>`.
    pub name: String,
    /// What the topic is, in a sentence; embedded like an example.
    #[serde(default)]
    pub description: String,
    /// Messages a customer might write on this topic (questions work better than labels).
    #[serde(default)]
    pub examples: Vec<String>,
    /// Whole words or phrases that name the topic: the fallback without the model, and always checked.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Overrides the trigger's priority for this topic.
    #[serde(default)]
    pub priority: Option<Priority>,
}

impl Default for SensitiveTrigger {
    /// On, with no topics: which subjects go to a person is the tenant's call (a routing rule may want a
    /// "charged twice" complaint answered by the capable model instead). [`SensitiveTrigger::suggested`]
    /// has a starting set, also in the README.
    fn default() -> Self {
        SensitiveTrigger { enabled: true, similarity: 0.45, priority: Priority::High, topics: vec![] }
    }
}

impl SensitiveTrigger {
    /// Legal threats, billing disputes and safety matters, with descriptions, examples and keywords.
    pub fn suggested() -> Self {
        let topic = |name: &str, description: &str, examples: &[&str], keywords: &[&str], priority| SensitiveTopic {
            name: name.into(),
            description: description.into(),
            examples: examples.iter().map(|s| s.to_string()).collect(),
            keywords: keywords.iter().map(|s| s.to_string()).collect(),
            priority,
        };
        SensitiveTrigger {
            topics: vec![
                topic(
                    "legal",
                    "The customer threatens legal action or mentions lawyers, lawsuits or court.",
                    &["I am going to sue you", "My lawyer will be in touch", "I will take you to court over this"],
                    &["lawsuit", "sue you", "my lawyer", "my attorney", "legal action", "take you to court"],
                    None,
                ),
                topic(
                    "billing_dispute",
                    "The customer disputes a charge or says they were billed wrongly.",
                    &["I was charged twice for the same order", "I'm disputing this charge with my bank"],
                    &["chargeback", "charged twice", "double charged", "dispute the charge", "unauthorized charge"],
                    None,
                ),
                topic(
                    "safety",
                    "Someone was hurt, or a product is dangerous: injury, fire, medical emergency.",
                    &["The charger caught fire and burned my hand", "My child had an allergic reaction to it"],
                    &["caught fire", "injured", "allergic reaction", "electric shock", "emergency room"],
                    Some(Priority::Urgent),
                ),
            ],
            ..SensitiveTrigger::default()
        }
    }
}

/// High-value customers, recognised from the turn's attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VipTrigger {
    pub enabled: bool,
    /// The attribute holding the customer's tier, and the tiers that count as VIP (case-insensitive).
    pub tier_attribute: String,
    pub tiers: Vec<String>,
    /// An attribute that marks a VIP by itself when `true`, `yes` or `1`.
    pub flag_attribute: String,
    /// Hand every VIP turn to a human at once, without waiting for another trigger.
    pub immediate: bool,
    /// The lower thresholds for VIPs: negative turns in a row, and repeats of a question.
    pub sentiment_turns: usize,
    pub question_repeats: usize,
    /// The least priority of any VIP handoff.
    pub priority: Priority,
    /// A CRM endpoint asked for the customer's attributes when the turn's own do not make them a VIP
    /// (`GET {crm_url}?user_id=…`, a JSON object back; empty: no lookup). See `turnpike_stages::crm`.
    pub crm_url: String,
    /// How long the lookup may take before the turn goes on without it.
    pub crm_timeout_ms: u64,
}

impl Default for VipTrigger {
    fn default() -> Self {
        VipTrigger {
            enabled: true,
            tier_attribute: "tier".into(),
            tiers: vec!["vip".into(), "platinum".into()],
            flag_attribute: "vip".into(),
            immediate: false,
            sentiment_turns: 1,
            question_repeats: 1,
            priority: Priority::High,
            crm_url: String::new(),
            crm_timeout_ms: 300,
        }
    }
}

/// The bot's reply shows it cannot answer well.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LowConfidenceTrigger {
    pub enabled: bool,
    /// Phrases of a reply that gives up ("I can't help with that").
    pub cannot_help_phrases: Vec<String>,
    /// Phrases of a reply that hedges ("I'm not sure"); empty turns hedging off.
    pub hedge_phrases: Vec<String>,
    /// The tiers whose hedging hands off. Default `capable` only: a cheap-tier hedge already sends the
    /// session's next turn to the capable tier (route's `previous_low_confidence` rule), so only a hedge
    /// from the capable model, with nothing left to escalate to, goes to a person.
    pub hedge_tiers: Vec<String>,
    /// Sentences the grounding check flags (numbers or policy names the turn's sources do not hold) that
    /// make a reply unsupported; counted only on turns that had sources. 0 turns this off.
    pub unsupported_sentences: usize,
    pub priority: Priority,
}

impl Default for LowConfidenceTrigger {
    fn default() -> Self {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        LowConfidenceTrigger {
            enabled: true,
            cannot_help_phrases: list(&[
                "i can't help with",
                "i cannot help with",
                "i'm not able to help",
                "i am not able to help",
                "i'm unable to help",
                "i am unable to help",
                "i'm unable to assist",
                "i can't assist with",
                "i cannot assist with",
                "that's beyond what i can do",
            ]),
            hedge_phrases: list(&["i'm not sure", "i am not sure", "i don't know", "i do not know", "i'm not certain"]),
            hedge_tiers: list(&["capable"]),
            unsupported_sentences: 2,
            priority: Priority::Normal,
        }
    }
}

/// The policy with its phrase lists compiled (built once per tenant, inside the guard's `CompiledPolicy`).
pub struct CompiledTriggers {
    pub triggers: HandoffTriggers,
    pub(crate) topic_keywords: Vec<WordList>,
    pub(crate) cannot_help: WordList,
    pub(crate) hedges: WordList,
}

impl CompiledTriggers {
    /// Validates (every error names the key, under `guard.handoff`) and compiles.
    pub fn compile(t: &HandoffTriggers) -> Result<Self, PolicyError> {
        let bad = |key: &str, why: &str| Err(PolicyError::Invalid(format!("guard.handoff.{key} {why}")));
        for (key, v) in [
            ("sentiment.lexical_threshold", Some(t.sentiment.lexical_threshold)),
            ("sentiment.model_threshold", t.sentiment.model_threshold),
            ("sensitive.similarity", Some(t.sensitive.similarity)),
        ] {
            if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                return bad(key, "must be within [0, 1]");
            }
        }
        if !(0.0..=1.01).contains(&t.repeat.answer_similarity) {
            return bad("loop.answer_similarity", "must be within [0, 1] (or just above 1 to turn it off)");
        }
        if t.sentiment.turns == 0 || t.vip.sentiment_turns == 0 {
            return bad("sentiment.turns and vip.sentiment_turns", "must be at least 1");
        }
        if t.vip.sentiment_turns > t.sentiment.turns {
            return bad("vip.sentiment_turns", "must not exceed sentiment.turns (it is the VIPs' lower threshold)");
        }
        if t.repeat.question_repeats > 0
            && (t.vip.question_repeats == 0 || t.vip.question_repeats > t.repeat.question_repeats)
        {
            return bad("vip.question_repeats", "must be within 1..=loop.question_repeats");
        }
        if t.vip.enabled && t.vip.tiers.is_empty() && t.vip.flag_attribute.trim().is_empty() {
            return bad("vip", "needs tiers or a flag_attribute when enabled");
        }
        let mut names = std::collections::HashSet::new();
        for (i, topic) in t.sensitive.topics.iter().enumerate() {
            let at = format!("sensitive.topics[{i}]");
            if topic.name.trim().is_empty() {
                return bad(&at, "needs a name");
            }
            if !names.insert(topic.name.as_str()) {
                return bad(&at, &format!("repeats the name `{}`", topic.name));
            }
            if topic.keywords.is_empty() && topic.examples.is_empty() && topic.description.trim().is_empty() {
                return bad(&at, &format!("(`{}`) needs a description, examples or keywords", topic.name));
            }
        }
        Ok(CompiledTriggers {
            topic_keywords: t.sensitive.topics.iter().map(|x| WordList::new(&x.keywords)).collect::<Result<_, _>>()?,
            cannot_help: WordList::new(&t.low_confidence.cannot_help_phrases)?,
            hedges: WordList::new(&t.low_confidence.hedge_phrases)?,
            triggers: t.clone(),
        })
    }

    /// Every text the sentiment-topic check embeds (descriptions and examples), to prepare ahead.
    pub fn topic_texts(&self) -> impl Iterator<Item = &str> {
        self.triggers.sensitive.topics.iter().flat_map(|t| {
            std::iter::once(t.description.as_str())
                .filter(|d| !d.trim().is_empty())
                .chain(t.examples.iter().map(String::as_str))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_toml(doc: &str) -> Result<CompiledTriggers, PolicyError> {
        let t: HandoffTriggers = toml::from_str(doc).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        CompiledTriggers::compile(&t)
    }

    #[test]
    fn defaults_turn_every_trigger_on_with_the_documented_thresholds() {
        let t = compile_toml("").unwrap().triggers;
        assert!(t.explicit.enabled && t.sentiment.enabled && t.repeat.enabled);
        assert!(t.sensitive.enabled && t.vip.enabled && t.low_confidence.enabled);
        assert_eq!((t.sentiment.turns, t.repeat.question_repeats, t.vip.sentiment_turns), (2, 2, 1));
        assert!(t.sensitive.topics.is_empty(), "topics are the tenant's to name");
        let names: Vec<String> = SensitiveTrigger::suggested().topics.into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["legal", "billing_dispute", "safety"]);
        let suggested = HandoffTriggers { sensitive: SensitiveTrigger::suggested(), ..Default::default() };
        assert!(CompiledTriggers::compile(&suggested).is_ok());
        assert_eq!(Priority::default().as_str(), "normal");
    }

    #[test]
    fn a_tenant_changes_one_threshold_and_keeps_the_rest() {
        let t = compile_toml("[sentiment]\nturns = 3\n[loop]\nenabled = false\n").unwrap().triggers;
        assert_eq!(t.sentiment.turns, 3);
        assert!(!t.repeat.enabled);
        assert_eq!(t.sentiment.lexical_threshold, SentimentTrigger::default().lexical_threshold);
    }

    #[test]
    fn invalid_settings_fail_with_the_key_named() {
        let err = |doc: &str| compile_toml(doc).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("[sentiment]\ntruns = 3\n").contains("truns"), "typos are rejected");
        assert!(err("[sentiment]\nlexical_threshold = 1.5\n").contains("guard.handoff.sentiment.lexical_threshold"));
        assert!(err("[sentiment]\nturns = 0\n").contains("at least 1"));
        assert!(err("[vip]\nsentiment_turns = 3\n").contains("guard.handoff.vip.sentiment_turns"));
        assert!(err("[loop]\nanswer_similarity = 2.0\n").contains("loop.answer_similarity"));
        assert!(err("[vip]\ntiers = []\nflag_attribute = \"\"\n").contains("guard.handoff.vip"));
        assert!(err("[sentiment]\npriority = \"asap\"\n").contains("asap"));
        let dup = "[[sensitive.topics]]\nname = \"a\"\nkeywords = [\"x\"]\n[[sensitive.topics]]\nname = \"a\"\nkeywords = [\"y\"]\n";
        assert!(err(dup).contains("repeats the name `a`"), "{}", err(dup));
        assert!(err("[[sensitive.topics]]\nname = \"empty\"\n").contains("needs a description, examples or keywords"));
    }
}
