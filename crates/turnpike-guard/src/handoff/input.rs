//! The triggers guard-in evaluates on a user turn: explicit request, sensitive topic, sustained sentiment,
//! a repeated question, and the VIP rules.
//!
//! Guarantee: [`decide`] is a pure function of [`TurnSignals`] and the policy; the caller (guard-in)
//! gathers the signals — the input checks' triggers, the session's frustration history from Redis, the
//! repetition count, the turn's attributes — so the same turn always decides the same way.

use super::frustration::Frustration;
use super::{reason, CompiledTriggers, HandoffDecision, Priority, VipTrigger};
use crate::normalize::fold;
use crate::{Embedding, Guard, Trigger};
use std::collections::HashMap;

/// A message's match with a sensitive topic.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicHit {
    /// Index into the policy's `sensitive.topics`.
    pub topic: usize,
    /// `model` (similarity `score` to `matched`, a description or example) or `keyword` (`matched`).
    pub via: &'static str,
    pub matched: String,
    pub score: Option<f32>,
}

/// Everything [`decide`] needs about one user turn.
#[derive(Clone, Debug, Default)]
pub struct TurnSignals<'a> {
    /// The input checks' triggers (the explicit request is the `handoff_request` check).
    pub triggers: &'a [Trigger],
    pub frustration: Option<Frustration>,
    /// Consecutive negative turns ending with this one ([`super::frustration::negative_run`]).
    pub negative_run: usize,
    /// Earlier messages of the session asking the same question (0 without the model).
    pub repeats: usize,
    pub topic: Option<TopicHit>,
    /// The customer's VIP tier ([`vip_tier`]), if any.
    pub vip: Option<String>,
}

/// The customer's tier when the turn's attributes make them a VIP under `p` (lower-cased), else `None`.
pub fn vip_tier(p: &VipTrigger, attributes: &HashMap<String, String>) -> Option<String> {
    if !p.enabled {
        return None;
    }
    let tier = attributes.get(&p.tier_attribute).map(|t| t.trim().to_lowercase());
    if let Some(t) = tier.as_ref().filter(|t| p.tiers.iter().any(|x| x.eq_ignore_ascii_case(t))) {
        return Some(t.clone());
    }
    let flagged = attributes
        .get(&p.flag_attribute)
        .is_some_and(|v| matches!(v.trim().to_lowercase().as_str(), "true" | "yes" | "1"));
    flagged.then(|| tier.filter(|t| !t.is_empty()).unwrap_or_else(|| "vip".into()))
}

impl Guard {
    /// The first sensitive topic the message matches: by similarity to a topic's description or examples
    /// when `embedding` is given (model checks on), and by keyword either way.
    pub fn sensitive_topic(&self, t: &CompiledTriggers, text: &str, embedding: Option<&Embedding>) -> Option<TopicHit> {
        let p = &t.triggers.sensitive;
        if !p.enabled {
            return None;
        }
        let folded = fold(text).text;
        let mut best: Option<TopicHit> = None;
        for (i, topic) in p.topics.iter().enumerate() {
            if let Some(k) = t.topic_keywords[i].first(&folded) {
                return Some(TopicHit { topic: i, via: "keyword", matched: k.to_string(), score: None });
            }
            let Some(e) = embedding else { continue };
            let texts = std::iter::once(&topic.description).filter(|d| !d.trim().is_empty()).chain(&topic.examples);
            for x in texts {
                let Some(v) = self.example(x).ok().flatten() else { continue };
                let sim: f32 = v.iter().zip(&e.0).map(|(a, b)| a * b).sum();
                if sim >= p.similarity && best.as_ref().and_then(|b| b.score).is_none_or(|s| sim > s) {
                    best = Some(TopicHit { topic: i, via: "model", matched: x.clone(), score: Some(sim) });
                }
            }
        }
        best
    }
}

/// One trigger that fired: reason, evidence, priority, extra tags.
struct Fired {
    reason: &'static str,
    evidence: String,
    priority: Priority,
    tags: Vec<String>,
}

/// Whether a user turn hands off, and why (see the module table in [`super`]).
pub fn decide(t: &CompiledTriggers, s: &TurnSignals) -> Option<HandoffDecision> {
    let p = &t.triggers;
    let vip = s.vip.as_ref().filter(|_| p.vip.enabled);
    let mut fired: Vec<Fired> = Vec::new();
    let mut fire =
        |reason, evidence: String, priority, tags: Vec<String>| fired.push(Fired { reason, evidence, priority, tags });

    if let Some(x) = s.triggers.iter().find(|x| x.check == "handoff_request").filter(|_| p.explicit.enabled) {
        let how = match x.score {
            Some(score) => format!("the handoff_request head scored {score:.2}"),
            None => format!("the phrase \"{}\"", x.detail),
        };
        fire(reason::USER_ASKED, format!("the customer asked for a person ({how})"), p.explicit.priority, vec![]);
    }
    if let Some(hit) = &s.topic {
        let topic = &p.sensitive.topics[hit.topic];
        let how = match hit.score {
            Some(score) => format!("similarity {score:.2} to \"{}\"", hit.matched),
            None => format!("keyword \"{}\"", hit.matched),
        };
        let priority = topic.priority.unwrap_or(p.sensitive.priority);
        fire(
            reason::SENSITIVE_TOPIC,
            format!("topic {} ({how})", topic.name),
            priority,
            vec![format!("topic:{}", topic.name)],
        );
    }
    if let Some(f) = s.frustration.as_ref().filter(|_| p.sentiment.enabled) {
        let needed = if vip.is_some() { p.vip.sentiment_turns } else { p.sentiment.turns };
        if f.negative && s.negative_run >= needed {
            let markers =
                if f.markers.is_empty() { String::new() } else { format!(", markers: {}", f.markers.join(", ")) };
            let evidence = format!(
                "{} negative turns in a row (this one {:.2} by the {}{markers}; threshold {needed} turns)",
                s.negative_run, f.score, f.source
            );
            // Fired only because the VIP threshold is lower: the VIP rule is the reason.
            let r = if s.negative_run < p.sentiment.turns { reason::VIP } else { reason::SENTIMENT };
            fire(r, evidence, p.sentiment.priority, vec![]);
        }
    }
    if p.repeat.enabled && p.repeat.question_repeats > 0 {
        let needed = if vip.is_some() { p.vip.question_repeats } else { p.repeat.question_repeats };
        if s.repeats >= needed {
            let evidence = format!("the same question asked {} times before (threshold {needed})", s.repeats);
            let r = if s.repeats < p.repeat.question_repeats { reason::VIP } else { reason::LOOP };
            fire(r, evidence, p.repeat.priority, vec![]);
        }
    }
    if let Some(tier) = vip.filter(|_| p.vip.immediate) {
        fire(reason::VIP, format!("a {tier} customer: handed to a person at once"), p.vip.priority, vec![]);
    }
    decision(fired, vip, p.vip.priority, s.frustration.as_ref().map(|f| f.score))
}

/// One decision from every trigger that fired: the first reason in [`reason::ALL`] order names it, the
/// highest priority wins (at least the VIP priority for a VIP), every trigger adds its evidence and tags.
fn decision(
    mut fired: Vec<Fired>,
    vip: Option<&String>,
    vip_priority: Priority,
    frustration: Option<f32>,
) -> Option<HandoffDecision> {
    let rank = |r: &str| reason::ALL.iter().position(|x| *x == r).unwrap_or(usize::MAX);
    fired.sort_by_key(|f| rank(f.reason));
    let first = fired.first()?;
    let mut priority = fired.iter().map(|f| f.priority).max().unwrap_or_default();
    let mut tags: Vec<String> = Vec::new();
    for f in &fired {
        let tag = format!("handoff:{}", f.reason);
        if !tags.contains(&tag) {
            tags.push(tag);
        }
        tags.extend(f.tags.iter().cloned());
    }
    if let Some(tier) = vip {
        priority = priority.max(vip_priority);
        tags.push("vip".into());
        tags.push(format!("tier:{tier}"));
    }
    Some(HandoffDecision {
        reason: first.reason,
        evidence: fired.iter().map(|f| format!("{}: {}", f.reason, f.evidence)).collect::<Vec<_>>().join("; "),
        priority,
        tags,
        frustration,
    })
}

#[cfg(test)]
mod tests {
    use super::super::frustration::{of_turn, Frustration};
    use super::super::HandoffTriggers;
    use super::*;

    /// The defaults with the suggested sensitive topics.
    fn compiled() -> CompiledTriggers {
        let t = HandoffTriggers { sensitive: super::super::SensitiveTrigger::suggested(), ..Default::default() };
        CompiledTriggers::compile(&t).unwrap()
    }

    fn negative(score: f32) -> Option<Frustration> {
        Some(Frustration { score, negative: true, source: "lexical_fallback", markers: vec!["useless"] })
    }

    #[test]
    fn an_explicit_request_hands_off_with_its_phrase_as_evidence() {
        let t = compiled();
        let asked = [Trigger::new("handoff_request", "handoff", "talk to a human")];
        let d = decide(&t, &TurnSignals { triggers: &asked, ..Default::default() }).unwrap();
        assert_eq!(
            (d.reason, d.priority, d.tags.as_slice()),
            ("user_asked", Priority::Normal, &["handoff:user_asked".to_string()][..])
        );
        assert!(d.evidence.contains("\"talk to a human\""), "{}", d.evidence);
        let off = CompiledTriggers::compile(&HandoffTriggers {
            explicit: super::super::ExplicitTrigger { enabled: false, ..Default::default() },
            ..Default::default()
        })
        .unwrap();
        assert_eq!(decide(&off, &TurnSignals { triggers: &asked, ..Default::default() }), None);
    }

    #[test]
    fn sentiment_needs_the_run_and_a_vip_needs_less() {
        let t = compiled();
        let one = TurnSignals { frustration: negative(0.6), negative_run: 1, ..Default::default() };
        assert_eq!(decide(&t, &one), None, "a single annoyed turn");
        let two = TurnSignals { frustration: negative(0.6), negative_run: 2, ..Default::default() };
        let d = decide(&t, &two).unwrap();
        assert_eq!((d.reason, d.priority, d.frustration), ("sentiment", Priority::High, Some(0.6)));
        assert!(d.evidence.contains("2 negative turns in a row") && d.evidence.contains("useless"), "{}", d.evidence);
        let vip = TurnSignals { vip: Some("platinum".into()), ..one };
        let d = decide(&t, &vip).unwrap();
        assert_eq!(d.reason, "vip", "fired only at the VIP's lower threshold");
        assert!(d.tags.contains(&"tier:platinum".to_string()) && d.tags.contains(&"vip".to_string()), "{:?}", d.tags);
    }

    #[test]
    fn the_third_time_is_a_loop_and_reasons_keep_their_precedence() {
        let t = compiled();
        assert_eq!(decide(&t, &TurnSignals { repeats: 1, ..Default::default() }), None, "asked twice");
        let d = decide(&t, &TurnSignals { repeats: 2, ..Default::default() }).unwrap();
        assert_eq!((d.reason, d.priority), ("loop", Priority::Normal));
        let hit = TopicHit { topic: 2, via: "keyword", matched: "caught fire".into(), score: None };
        let d = decide(&t, &TurnSignals { repeats: 2, topic: Some(hit), ..Default::default() }).unwrap();
        assert_eq!((d.reason, d.priority), ("sensitive_topic", Priority::Urgent), "safety overrides the priority");
        assert_eq!(d.tags, ["handoff:sensitive_topic", "topic:safety", "handoff:loop"]);
        assert!(
            d.evidence.starts_with("sensitive_topic: topic safety (keyword \"caught fire\"); loop: "),
            "{}",
            d.evidence
        );
    }

    #[test]
    fn vip_comes_from_the_tier_or_the_flag_and_immediate_hands_off_at_once() {
        let p = VipTrigger::default();
        let attrs = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(vip_tier(&p, &attrs(&[("tier", "Platinum")])), Some("platinum".into()));
        assert_eq!(vip_tier(&p, &attrs(&[("tier", "gold")])), None, "an ordinary customer");
        assert_eq!(vip_tier(&p, &attrs(&[("tier", "gold"), ("vip", "true")])), Some("gold".into()));
        assert_eq!(vip_tier(&p, &attrs(&[("vip", "no")])), None);
        let t = compiled();
        assert_eq!(
            decide(&t, &TurnSignals { vip: Some("vip".into()), ..Default::default() }),
            None,
            "not immediate by default"
        );
        let mut immediate = HandoffTriggers::default();
        immediate.vip.immediate = true;
        let t = CompiledTriggers::compile(&immediate).unwrap();
        let d = decide(&t, &TurnSignals { vip: Some("vip".into()), ..Default::default() }).unwrap();
        assert_eq!((d.reason, d.priority), ("vip", Priority::High));
    }

    #[test]
    fn sensitive_topics_match_keywords_without_the_model_and_not_near_misses() {
        let g = Guard::new().unwrap();
        let t = compiled();
        let hit = g.sensitive_topic(&t, "If this isn't fixed I'll take legal action.", None).unwrap();
        assert_eq!((t.triggers.sensitive.topics[hit.topic].name.as_str(), hit.via), ("legal", "keyword"));
        assert_eq!(g.sensitive_topic(&t, "Was I charged twice for order 1234?", None).map(|h| h.topic), Some(1));
        assert_eq!(g.sensitive_topic(&t, "The lawyer in that film was funny. Where is my order?", None), None);
        assert_eq!(g.sensitive_topic(&t, "Can I change the charge card on my account?", None), None);
    }

    #[test]
    fn the_lexical_fallback_feeds_the_sentiment_trigger() {
        let t = compiled();
        let f = of_turn("This is useless, I am fed up.", &[], &t.triggers.sentiment);
        let d = decide(&t, &TurnSignals { frustration: Some(f), negative_run: 2, ..Default::default() }).unwrap();
        assert!(d.evidence.contains("lexical_fallback"), "{}", d.evidence);
    }
}
