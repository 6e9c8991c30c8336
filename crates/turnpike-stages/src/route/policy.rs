//! The routing policy of one tenant: section `route` of the tenants file (`TURNPIKE_TENANTS_CONFIG`, see
//! [`turnpike_core::tenants`]), every field optional (the defaults below), unknown fields refused.
//!
//! ```toml
//! [defaults.route]
//! cheap_model = "gpt-4o-mini"        # the preferred model of each tier (the LLM layer's chain may fail over)
//! capable_model = "gpt-4o"
//! threshold = 0.45                   # complexity score at or above which a turn goes to the capable tier
//!
//! [defaults.route.weights]           # relative weights of the features (normalised to sum 1)
//! intent = 0.3
//!
//! [tenants.bank.route]
//! force_tier = "capable"             # hard rule: every answered turn of this tenant is capable
//!
//! [tenants.shop.route]
//! capable_customer_tiers = ["enterprise"]
//! [[tenants.shop.route.experiments]]
//! name = "flash-as-cheap"            # sessions are assigned by a stable hash of (name, session id)
//! share = 0.05
//! tier = "cheap"                     # the override applies to turns routed to this tier only
//! model = "gemini-2.0-flash"
//! ```
//!
//! Guarantee: [`RoutePolicy::validate`] rejects at start-up what would make the score or an experiment
//! meaningless (negative or all-zero weights, a threshold or share outside [0, 1], duplicate experiment
//! names, zero scales). Keyword lists replace the defaults wholesale when a tenant sets them (arrays are not
//! merged by the tenants file).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::vocabulary;

/// The two tiers. Their names are the LLM configuration's tier names (`[tiers.cheap]`, `[tiers.capable]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Cheap,
    Capable,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Cheap => "cheap",
            Tier::Capable => "capable",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutePolicy {
    /// Model asked for on the cheap tier.
    pub cheap_model: String,
    /// Model asked for on the capable tier (also the escalation target).
    pub capable_model: String,
    /// Hard rule: every answered turn goes to this tier, whatever the score.
    pub force_tier: Option<Tier>,
    /// Score (in [0, 1]) at or above which a turn goes to the capable tier.
    pub threshold: f64,
    pub weights: Weights,
    pub scales: Scales,
    pub keywords: Keywords,
    /// Value of the turn attribute `customer_tier` → the `customer` feature (unknown values: 0).
    pub customer_tiers: BTreeMap<String, f64>,
    /// Values of `customer_tier` whose turns always go to the capable tier (hard rule).
    pub capable_customer_tiers: Vec<String>,
    /// The turn right after one routed capable on its score or a sensitive topic goes capable too (hard
    /// rule): the follow-up of a complaint is part of the complaint.
    pub follow_up_capable: bool,
    pub escalation: Escalation,
    /// Experiments, each over a stable share of sessions.
    pub experiments: Vec<Experiment>,
}

/// One number per feature (see [`super::decide`]): a policy's weights, or a turn's feature values.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerFeature {
    pub length: f64,
    pub intent: f64,
    pub multi_part: f64,
    pub depth: f64,
    pub failures: f64,
    pub tools: f64,
    pub customer: f64,
}

/// Relative weights of the features; the score is the weighted mean, so only ratios matter.
pub type Weights = PerFeature;

impl PerFeature {
    /// `(name, value)` of every feature, in a fixed order.
    pub fn named(&self) -> [(&'static str, f64); 7] {
        [
            ("length", self.length),
            ("intent", self.intent),
            ("multi_part", self.multi_part),
            ("depth", self.depth),
            ("failures", self.failures),
            ("tools", self.tools),
            ("customer", self.customer),
        ]
    }

    /// Weighted mean of `values` with these weights (which must not sum to zero; see `validate`).
    pub fn mean(&self, values: &PerFeature) -> f64 {
        let (w, v) = (self.named(), values.named());
        w.iter().zip(v).map(|((_, w), (_, v))| w * v).sum::<f64>() / w.iter().map(|(_, w)| w).sum::<f64>()
    }
}

/// Where each feature saturates at 1.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scales {
    /// Estimated tokens of the user's message (4 bytes of UTF-8 per token).
    pub length_tokens: f64,
    /// Complex-intent keyword matches.
    pub intent_matches: f64,
    /// Parts of a multi-part message (questions, list items, "also"-joined requests).
    pub parts: f64,
    /// Turn number in the session.
    pub depth_turns: f64,
    /// Earlier turns of the session that failed (refused, escalated, low confidence, incomplete).
    pub failures: f64,
    /// A greeting longer than this many words is not "just a greeting".
    pub greeting_max_words: usize,
    /// An FAQ question longer than this many words goes to the score.
    pub faq_max_words: usize,
}

/// Phrases, matched as whole words, case-insensitively.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keywords {
    /// A short message made of these is a greeting: always cheap.
    pub greeting: Vec<String>,
    /// A short single question with one of these (and no complex keyword) is an FAQ: always cheap.
    pub faq: Vec<String>,
    /// Complaint, cancellation, dispute vocabulary: raises the `intent` feature.
    pub complex: Vec<String>,
    /// Legal and similar topics: always capable (hard rule).
    pub sensitive: Vec<String>,
    /// Requests that need a lookup tool (orders, accounts, invoices): raises the `tools` feature.
    pub tools: Vec<String>,
}

/// What happens when the cheap tier fails or is unsure (see `generate`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Escalation {
    /// A cheap-tier call that fails, or ends without any text, before anything was shown is retried once
    /// on the capable tier.
    pub on_failure: bool,
    /// The turn after a low-confidence reply goes to the capable tier (hard rule).
    pub next_turn_capable: bool,
    /// Phrases in a reply that mark it low confidence (the model hedging).
    pub low_confidence_phrases: Vec<String>,
    /// A reply cut by the output cap (`finish_reason = length`) is low confidence too.
    pub length_is_low_confidence: bool,
}

/// An experiment: a stable share of the tenant's sessions gets a variant.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Unique per tenant; part of the assignment hash, so renaming an experiment reshuffles it.
    pub name: String,
    /// Share of sessions in the experiment, in [0, 1].
    pub share: f64,
    /// Recorded on every turn of a session in the experiment (default: the name).
    #[serde(default)]
    pub variant: Option<String>,
    /// Model override.
    #[serde(default)]
    pub model: Option<String>,
    /// The model override applies only to turns routed to this tier (default: every turn).
    #[serde(default)]
    pub tier: Option<Tier>,
    /// System prompt override (applied only when it fits the turn's token budget).
    #[serde(default)]
    pub system_prompt: Option<String>,
}

impl Experiment {
    pub fn variant_name(&self) -> &str {
        self.variant.as_deref().unwrap_or(&self.name)
    }
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for RoutePolicy {
    fn default() -> Self {
        RoutePolicy {
            cheap_model: "gpt-4o-mini".into(),
            capable_model: "gpt-4o".into(),
            force_tier: None,
            threshold: 0.45,
            weights: Weights::default(),
            scales: Scales::default(),
            keywords: Keywords::default(),
            customer_tiers: [("enterprise".to_string(), 1.0), ("premium".to_string(), 0.5)].into_iter().collect(),
            capable_customer_tiers: Vec::new(),
            follow_up_capable: true,
            escalation: Escalation::default(),
            experiments: Vec::new(),
        }
    }
}

impl Default for PerFeature {
    /// Intent and structure dominate: a long, multi-part complaint must cross the threshold on its own,
    /// while depth, tools and the customer's tier only tip borderline turns.
    fn default() -> Self {
        Weights { length: 0.2, intent: 0.3, multi_part: 0.2, depth: 0.05, failures: 0.1, tools: 0.05, customer: 0.1 }
    }
}

impl Default for Scales {
    fn default() -> Self {
        Scales {
            length_tokens: 200.0,
            intent_matches: 2.0,
            parts: 3.0,
            depth_turns: 20.0,
            failures: 2.0,
            greeting_max_words: 6,
            faq_max_words: 20,
        }
    }
}

impl Default for Keywords {
    fn default() -> Self {
        Keywords {
            greeting: words(vocabulary::GREETING),
            faq: words(vocabulary::FAQ),
            complex: words(vocabulary::COMPLEX),
            sensitive: words(vocabulary::SENSITIVE),
            tools: words(vocabulary::TOOLS),
        }
    }
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            on_failure: true,
            next_turn_capable: true,
            low_confidence_phrases: words(vocabulary::HEDGES),
            length_is_low_confidence: true,
        }
    }
}

impl RoutePolicy {
    /// Cross-field checks; see the module comment.
    pub fn validate(&self) -> Result<(), String> {
        let all = self.weights.named().map(|(_, w)| w);
        if all.iter().any(|x| !x.is_finite() || *x < 0.0) || all.iter().sum::<f64>() <= 0.0 {
            return Err("route.weights must be non-negative and not all zero".into());
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(format!("route.threshold {} is outside [0, 1]", self.threshold));
        }
        let s = &self.scales;
        if [s.length_tokens, s.intent_matches, s.parts - 1.0, s.depth_turns, s.failures].iter().any(|x| *x <= 0.0) {
            return Err("route.scales must be positive (parts at least 2)".into());
        }
        if self.customer_tiers.values().any(|v| !(0.0..=1.0).contains(v)) {
            return Err("route.customer_tiers values must be in [0, 1]".into());
        }
        if self.cheap_model.is_empty() || self.capable_model.is_empty() {
            return Err("route.cheap_model and route.capable_model must be set".into());
        }
        let mut names = std::collections::HashSet::new();
        for e in &self.experiments {
            if e.name.is_empty() || !names.insert(e.name.as_str()) {
                return Err(format!("route.experiments: empty or duplicate name {:?}", e.name));
            }
            if !(0.0..=1.0).contains(&e.share) {
                return Err(format!("route.experiments.{}: share {} is outside [0, 1]", e.name, e.share));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_core::TenantsConfig;

    #[test]
    fn tenants_file_overrides_merge_with_defaults_and_typos_fail() {
        let cfg = TenantsConfig::parse(
            r#"
            [defaults.route]
            threshold = 0.5
            [tenants.bank.route]
            force_tier = "capable"
            [tenants.shop.route.weights]
            intent = 0.9
            [[tenants.shop.route.experiments]]
            name = "flash"
            share = 0.05
            tier = "cheap"
            model = "gemini-2.0-flash"
            "#,
        )
        .unwrap();
        let section = cfg.section::<RoutePolicy>("route").unwrap();
        assert_eq!(section.get("bank").force_tier, Some(Tier::Capable));
        assert_eq!(section.get("bank").threshold, 0.5, "file default applies to a tenant");
        assert_eq!(section.get("shop").weights.intent, 0.9);
        assert_eq!(section.get("shop").weights.length, Weights::default().length, "other weights kept");
        assert_eq!(section.get("shop").experiments[0].tier, Some(Tier::Cheap));
        assert_eq!(section.get("other").force_tier, None);
        for (_, p) in section.iter() {
            p.validate().unwrap();
        }
        let typo = TenantsConfig::parse("[tenants.x.route]\nthreshhold = 0.2").unwrap();
        assert!(typo.section::<RoutePolicy>("route").is_err());
    }

    #[test]
    fn validation_rejects_meaningless_policies() {
        let bad = |f: fn(&mut RoutePolicy)| {
            let mut p = RoutePolicy::default();
            f(&mut p);
            p.validate().unwrap_err()
        };
        assert!(bad(|p| p.threshold = 1.5).contains("threshold"));
        assert!(bad(|p| p.weights = Weights { length: -1.0, ..Weights::default() }).contains("weights"));
        assert!(bad(|p| p.scales.parts = 1.0).contains("scales"));
        let exp =
            Experiment { name: "a".into(), share: 0.1, variant: None, model: None, tier: None, system_prompt: None };
        let mut p = RoutePolicy { experiments: vec![exp.clone(), exp], ..RoutePolicy::default() };
        assert!(p.validate().unwrap_err().contains("duplicate"));
        p.experiments.truncate(1);
        p.experiments[0].share = 2.0;
        assert!(p.validate().unwrap_err().contains("share"));
    }
}
