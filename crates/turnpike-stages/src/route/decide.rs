//! The routing decision for one turn: hard rules first, then a complexity score against the tenant's
//! threshold. Pure (no I/O), so the stage, the tests and the cost report run the very same function.
//!
//! Features, each in [0, 1] (scales and weights in [`RoutePolicy`]):
//! - `length`: the user's message in estimated tokens (4 bytes of UTF-8 each) over `scales.length_tokens`;
//! - `intent`: distinct complaint/cancellation/dispute phrases (`keywords.complex`) over `scales.intent_matches`;
//! - `multi_part`: parts of the message — the most of: question marks (a run of `??` counts once), list
//!   items (lines starting with `1.`, `2)`, `-`, `*`, `•`), and 1 + connectors ("also", "additionally",
//!   "another thing", "secondly", ...) — as `(parts - 1) / (scales.parts - 1)`;
//! - `depth`: `(seq - 1) / scales.depth_turns`, the turn's place in the conversation;
//! - `failures`: earlier turns of the session that were refused, escalated, low confidence or incomplete
//!   (the session's signals in Redis, see [`super::signals`]) over `scales.failures`;
//! - `tools`: 1 when the message asks for something only a lookup can answer (`keywords.tools`);
//! - `customer`: the turn attribute `customer_tier` mapped through `customer_tiers` (enterprise 1, premium 0.5).
//!
//! The score is the weighted mean of the features. Rules, in order (the first that applies decides):
//! `forced` (tenant `force_tier`), `greeting` (a short message of greeting words, no complex or sensitive
//! phrase: cheap), `sensitive` (legal vocabulary: capable), `previous_low_confidence` (the previous turn's
//! reply hedged or was cut: capable), `follow_up` (the previous turn went capable on its score or a
//! sensitive topic: capable, one turn only — a follow-up does not extend itself), `customer_tier`
//! (`capable_customer_tiers`: capable), `faq` (a short single question with an FAQ phrase and no complex
//! phrase: cheap), then `score`. A decision by `score` (capable) or `sensitive` is what the route stage
//! records as the session's `complex` signal for the next turn.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::policy::{PerFeature, RoutePolicy, Tier};
use super::signals::Signals;

/// Feature values of one turn, each in [0, 1].
pub type Features = PerFeature;

/// What the decision looks at.
pub struct TurnInput<'a> {
    /// The user's (masked) message.
    pub text: &'a str,
    /// The turn's sequence number in its session, from 1.
    pub seq: i64,
    pub attributes: &'a HashMap<String, String>,
    pub signals: &'a Signals,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub tier: Tier,
    /// The rule that decided: `forced`, `greeting`, `sensitive`, `previous_low_confidence`, `follow_up`,
    /// `customer_tier`, `faq` or `score` (bounded: a metrics label).
    pub rule: &'static str,
    pub score: f64,
    pub features: Features,
}

impl Decision {
    /// Capable on its own merits (not forced, not a follow-up): the next turn follows it.
    pub fn is_complex(&self) -> bool {
        self.tier == Tier::Capable && matches!(self.rule, "score" | "sensitive")
    }

    /// The recorded reason: rule, score, threshold and every feature.
    pub fn reason(&self, threshold: f64) -> String {
        let mut s = format!("rule={} score={:.2} threshold={:.2}", self.rule, self.score, threshold);
        for (name, v) in self.features.named() {
            let _ = write!(s, " {name}={v:.2}");
        }
        s
    }
}

/// A phrase list in the form matching uses: each phrase as ` word word `.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Phrases(Vec<String>);

impl Phrases {
    pub fn new(list: &[String]) -> Self {
        Phrases(list.iter().map(|p| padded_words(p)).filter(|p| !p.trim().is_empty()).collect())
    }

    /// How many distinct phrases occur in `text` (already in the padded form).
    fn count(&self, padded: &str) -> usize {
        self.0.iter().filter(|p| padded.contains(p.as_str())).count()
    }

    /// Whether any phrase occurs in `text` (any form).
    pub fn any_in(&self, text: &str) -> bool {
        self.count(&padded_words(text)) > 0
    }
}

/// A policy with its phrase lists prepared once.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledRoute {
    pub policy: RoutePolicy,
    greeting: Phrases,
    faq: Phrases,
    complex: Phrases,
    sensitive: Phrases,
    tools: Phrases,
    connectors: Phrases,
    /// `escalation.low_confidence_phrases`, for generate.
    pub hedges: Phrases,
}

impl CompiledRoute {
    pub fn compile(policy: RoutePolicy) -> Result<CompiledRoute, String> {
        policy.validate()?;
        let k = &policy.keywords;
        let connectors: Vec<String> =
            ["also", "additionally", "another thing", "secondly", "thirdly", "furthermore", "on top of that", "plus"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        Ok(CompiledRoute {
            greeting: Phrases::new(&k.greeting),
            faq: Phrases::new(&k.faq),
            complex: Phrases::new(&k.complex),
            sensitive: Phrases::new(&k.sensitive),
            tools: Phrases::new(&k.tools),
            connectors: Phrases::new(&connectors),
            hedges: Phrases::new(&policy.escalation.low_confidence_phrases),
            policy,
        })
    }

    pub fn model(&self, tier: Tier) -> &str {
        match tier {
            Tier::Cheap => &self.policy.cheap_model,
            Tier::Capable => &self.policy.capable_model,
        }
    }
}

impl Default for CompiledRoute {
    fn default() -> Self {
        // The defaults always validate (a unit test checks it).
        Self::compile(RoutePolicy::default()).expect("default route policy is valid")
    }
}

/// Lower-cased words (letters, digits, apostrophes) joined by single spaces, with a space at both ends,
/// so ` phrase ` matches whole words only ("hi" never inside "this").
fn padded_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’')).filter(|w| !w.is_empty()) {
        for c in word.chars().flat_map(char::to_lowercase) {
            out.push(if c == '’' { '\'' } else { c });
        }
        out.push(' ');
    }
    out
}

/// Parts of a message: see the module comment.
fn parts(text: &str, padded: &str, connectors: &Phrases) -> usize {
    let mut questions = 0;
    let mut previous = ' ';
    for c in text.chars() {
        if c == '?' && previous != '?' {
            questions += 1;
        }
        previous = c;
    }
    let list_items = text
        .lines()
        .map(str::trim_start)
        .filter(|l| {
            let digits = l.chars().take_while(char::is_ascii_digit).count();
            let rest = &l[digits..];
            (digits > 0 && (rest.starts_with(". ") || rest.starts_with(") ")))
                || ["- ", "* ", "• "].iter().any(|b| l.starts_with(b))
        })
        .count();
    questions.max(list_items).max(1 + connectors.count(padded))
}

/// Decides the tier of one turn; see the module comment.
pub fn decide(route: &CompiledRoute, input: &TurnInput<'_>) -> Decision {
    let p = &route.policy;
    let s = &p.scales;
    let padded = padded_words(input.text);
    let word_count = padded.split(' ').filter(|w| !w.is_empty()).count();
    let complex = route.complex.count(&padded);
    let sensitive = route.sensitive.count(&padded) > 0;
    let parts = parts(input.text, &padded, &route.connectors);
    let customer_tier = input.attributes.get("customer_tier").map(|t| t.trim().to_lowercase());
    let unit = |x: f64| x.clamp(0.0, 1.0);
    let features = Features {
        length: unit(input.text.len() as f64 / 4.0 / s.length_tokens),
        intent: unit(complex as f64 / s.intent_matches),
        multi_part: unit((parts as f64 - 1.0) / (s.parts - 1.0)),
        depth: unit((input.seq - 1) as f64 / s.depth_turns),
        failures: unit(input.signals.earlier_failures as f64 / s.failures),
        tools: if route.tools.count(&padded) > 0 { 1.0 } else { 0.0 },
        customer: customer_tier.as_ref().and_then(|t| p.customer_tiers.get(t)).copied().map_or(0.0, unit),
    };
    let score = unit(p.weights.mean(&features));
    let decision = |tier, rule| Decision { tier, rule, score, features };

    if let Some(tier) = p.force_tier {
        return decision(tier, "forced");
    }
    if word_count <= s.greeting_max_words && route.greeting.count(&padded) > 0 && complex == 0 && !sensitive {
        return decision(Tier::Cheap, "greeting");
    }
    if sensitive {
        return decision(Tier::Capable, "sensitive");
    }
    if p.escalation.next_turn_capable && input.signals.previous_low_confidence {
        return decision(Tier::Capable, "previous_low_confidence");
    }
    if p.follow_up_capable && input.signals.previous_complex {
        return decision(Tier::Capable, "follow_up");
    }
    if customer_tier.is_some_and(|t| p.capable_customer_tiers.iter().any(|c| c.eq_ignore_ascii_case(&t))) {
        return decision(Tier::Capable, "customer_tier");
    }
    if word_count <= s.faq_max_words && parts == 1 && complex == 0 && route.faq.count(&padded) > 0 {
        return decision(Tier::Cheap, "faq");
    }
    let tier = if score >= p.threshold { Tier::Capable } else { Tier::Cheap };
    decision(tier, "score")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(route: &CompiledRoute, text: &str, seq: i64, attrs: &[(&str, &str)], signals: &Signals) -> Decision {
        let attributes = attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        decide(route, &TurnInput { text, seq, attributes: &attributes, signals })
    }

    fn plain(text: &str) -> Decision {
        run(&CompiledRoute::default(), text, 1, &[], &Signals::default())
    }

    pub(crate) const COMPLAINT: &str = "I am writing to make a formal complaint. My order arrived damaged, I was \
        charged twice for it, and when I called your support line the agent hung up on me after forty minutes \
        on hold. This is completely unacceptable. Why was I charged twice? When will I get my refund for the \
        second charge? And who is going to pay for the return shipping of a product that was broken when it \
        arrived?";

    #[test]
    fn greetings_and_faq_go_cheap() {
        for text in ["Hi there!", "hello", "Thanks, bye!", "Good morning :)", "ok thank you"] {
            let d = plain(text);
            assert_eq!((d.tier, d.rule), (Tier::Cheap, "greeting"), "{text}");
        }
        for text in ["What are your opening hours?", "Do you ship to Canada?", "How do I reset my password?"] {
            let d = plain(text);
            assert_eq!((d.tier, d.rule), (Tier::Cheap, "faq"), "{text}");
        }
        // Not an FAQ phrase, but simple: the score keeps it cheap.
        let d = plain("Can I pay with PayPal?");
        assert_eq!((d.tier, d.rule), (Tier::Cheap, "score"));
        assert!(d.score < 0.1, "{}", d.reason(0.45));
    }

    #[test]
    fn a_long_multi_part_complaint_goes_capable_on_its_score() {
        let d = plain(COMPLAINT);
        assert_eq!((d.tier, d.rule), (Tier::Capable, "score"), "{}", d.reason(0.45));
        assert!(d.features.intent == 1.0 && d.features.multi_part == 1.0, "{:?}", d.features);
        // A greeting word inside a complaint does not make it a greeting.
        assert_eq!(plain("Hi, this is unacceptable, cancel it").rule, "score");
    }

    #[test]
    fn features_are_extracted_as_documented() {
        let f = plain("First question? Second question?? Third?").features;
        assert_eq!(f.multi_part, 1.0, "three questions, `??` counts once");
        let f = plain("Two things:\n1. my invoice is wrong\n2) the delivery was late").features;
        assert_eq!(f.multi_part, 0.5, "two list items");
        assert_eq!(f.tools, 1.0, "invoice needs a lookup");
        let f = plain("Where is my parcel? Also, can I change the address?").features;
        assert_eq!(f.multi_part, 0.5, "two questions; `also` gives two parts too");
        assert_eq!(plain(&"a".repeat(400)).features.length, 0.5, "400 bytes = 100 tokens of 200");
        assert_eq!(plain("I want to cancel, this is ridiculous").features.intent, 1.0);
        assert_eq!(plain("This is about the issue with my router").features.intent, 0.0, "no substring matches");
        let route = CompiledRoute::default();
        let signals = Signals { earlier_failures: 1, ..Signals::default() };
        let d = run(&route, "Hello again", 11, &[("customer_tier", "Premium")], &signals);
        assert_eq!((d.features.depth, d.features.failures, d.features.customer), (0.5, 0.5, 0.5));
    }

    #[test]
    fn hard_rules_come_before_the_score() {
        let route = CompiledRoute::default();
        let none = Signals::default();
        assert_eq!(plain("Is this legal? I will talk to my lawyer").rule, "sensitive");
        let hedged = Signals { earlier_failures: 1, previous_low_confidence: true, previous_complex: false };
        assert_eq!(run(&route, "What about the other one?", 3, &[], &hedged).tier, Tier::Capable);
        assert_eq!(run(&route, "Thanks!", 3, &[], &hedged).rule, "greeting", "greetings always cheap");
        let after_complaint = Signals { previous_complex: true, ..Signals::default() };
        let d = run(&route, "I want compensation for the time I wasted.", 2, &[], &after_complaint);
        assert_eq!((d.tier, d.rule, d.is_complex()), (Tier::Capable, "follow_up", false), "one turn only");
        assert!(plain(COMPLAINT).is_complex() && !plain("hello").is_complex());
        let vip = CompiledRoute::compile(RoutePolicy {
            capable_customer_tiers: vec!["enterprise".into()],
            ..RoutePolicy::default()
        })
        .unwrap();
        let d = run(&vip, "Can I pay with PayPal?", 1, &[("customer_tier", "enterprise")], &none);
        assert_eq!((d.tier, d.rule), (Tier::Capable, "customer_tier"));
    }

    #[test]
    fn tenant_overrides_change_the_decision() {
        let forced =
            CompiledRoute::compile(RoutePolicy { force_tier: Some(Tier::Capable), ..RoutePolicy::default() }).unwrap();
        let d = run(&forced, "hi", 1, &[], &Signals::default());
        assert_eq!((d.tier, d.rule), (Tier::Capable, "forced"));
        let strict = CompiledRoute::compile(RoutePolicy { threshold: 0.1, ..RoutePolicy::default() }).unwrap();
        let text = "My package arrived damaged and I want a refund";
        assert_eq!(plain(text).tier, Tier::Cheap, "default threshold");
        assert_eq!(run(&strict, text, 1, &[], &Signals::default()).tier, Tier::Capable, "lower threshold");
        assert!(CompiledRoute::compile(RoutePolicy { threshold: -1.0, ..RoutePolicy::default() }).is_err());
    }

    #[test]
    fn the_reason_records_rule_score_and_features() {
        let r = plain(COMPLAINT).reason(0.45);
        assert!(r.starts_with("rule=score score=0."), "{r}");
        for name in ["threshold=0.45", "length=", "intent=1.00", "multi_part=1.00", "depth=0.00", "customer=0.00"] {
            assert!(r.contains(name), "{r}");
        }
    }
}
