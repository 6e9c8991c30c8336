//! The triggers guard-out evaluates on a finished bot reply: the bot repeating an earlier answer (`loop`)
//! and low confidence (it cannot help, it hedges, or the grounding check finds its claims unsupported).
//!
//! Guarantee: [`decide`] is a pure function of the reply's released text, its grounding flags, the
//! session's earlier replies (given by the caller, guard-out, from Redis) and the policy. Only the model's
//! own words count: the pipeline's canned lines (refusals, the handoff line) repeat by design.

use super::{reason, CompiledTriggers, HandoffDecision};
use crate::normalize::fold;
use std::collections::HashSet;

/// The finished reply, as guard-out saw it.
#[derive(Clone, Debug, Default)]
pub struct ReplySignals<'a> {
    /// The released text of the reply (the model's words after the output checks).
    pub text: &'a str,
    /// Sentences the grounding check flagged.
    pub unsupported: usize,
    /// Whether the turn had sources (knowledge passages) to ground on.
    pub had_sources: bool,
    /// The session's earlier replies, normalised with [`normalise`].
    pub earlier: &'a [String],
    /// The tier that answered (`cheap`, `capable`).
    pub tier: &'a str,
}

/// The form replies are kept and compared in: folded, words only, single spaces.
pub fn normalise(text: &str) -> String {
    let folded = fold(text).text;
    let cleaned: String = folded.chars().map(|c| if c.is_alphanumeric() || c == '\'' { c } else { ' ' }).collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Jaccard similarity of two normalised texts' word pairs (bigrams): 1.0 for the same answer, near 0 for
/// different answers even over a small vocabulary, since word order counts.
pub fn similarity(a: &str, b: &str) -> f32 {
    let pairs = |s: &str| -> HashSet<(String, String)> {
        let w: Vec<&str> = s.split(' ').filter(|w| !w.is_empty()).collect();
        w.windows(2).map(|p| (p[0].to_string(), p[1].to_string())).collect()
    };
    let (x, y) = (pairs(a), pairs(b));
    if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    x.intersection(&y).count() as f32 / x.union(&y).count() as f32
}

/// Whether the finished reply hands off, and why.
pub fn decide(t: &CompiledTriggers, s: &ReplySignals) -> Option<HandoffDecision> {
    let p = &t.triggers;
    let mut fired: Vec<(&'static str, String, super::Priority)> = Vec::new();
    let norm = normalise(s.text);
    let words = norm.split(' ').filter(|w| !w.is_empty()).count();
    if p.repeat.enabled && words >= p.repeat.answer_min_words {
        let best = s.earlier.iter().map(|e| similarity(&norm, e)).fold(0.0f32, f32::max);
        if best >= p.repeat.answer_similarity {
            let evidence = format!("the bot's reply repeats an earlier one (similarity {best:.2})");
            fired.push((reason::LOOP, evidence, p.repeat.priority));
        }
    }
    let lc = &p.low_confidence;
    if lc.enabled {
        let folded = fold(s.text).text;
        let mut why = Vec::new();
        if let Some(phrase) = t.cannot_help.first(&folded) {
            why.push(format!("the reply says it cannot help (\"{phrase}\")"));
        }
        let hedge_counts = lc.hedge_tiers.iter().any(|x| x == s.tier);
        if let Some(phrase) = t.hedges.first(&folded).filter(|_| hedge_counts) {
            why.push(format!("the reply hedges (\"{phrase}\")"));
        }
        if s.had_sources && lc.unsupported_sentences > 0 && s.unsupported >= lc.unsupported_sentences {
            why.push(format!("{} sentences make claims the sources do not hold", s.unsupported));
        }
        if !why.is_empty() {
            fired.push((reason::LOW_CONFIDENCE, why.join(", "), lc.priority));
        }
    }
    let first = fired.first()?;
    Some(HandoffDecision {
        reason: first.0,
        evidence: fired.iter().map(|(r, e, _)| format!("{r}: {e}")).collect::<Vec<_>>().join("; "),
        priority: fired.iter().map(|f| f.2).max().unwrap_or_default(),
        tags: fired.iter().map(|(r, _, _)| format!("handoff:{r}")).collect(),
        frustration: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::HandoffTriggers;
    use super::*;

    fn compiled() -> CompiledTriggers {
        CompiledTriggers::compile(&HandoffTriggers::default()).unwrap()
    }

    const ANSWER: &str = "Your order left our warehouse on Monday and should reach you within three working days.";

    #[test]
    fn the_same_answer_again_is_a_loop_and_a_different_one_or_a_short_one_is_not() {
        let t = compiled();
        let earlier = [normalise(ANSWER)];
        let again = "Your order left our warehouse on Monday, and should reach you within three working days!";
        let d = decide(&t, &ReplySignals { text: again, earlier: &earlier, ..Default::default() }).unwrap();
        assert_eq!((d.reason, d.tags.as_slice()), ("loop", &["handoff:loop".to_string()][..]));
        let other = "You can return any item within thirty days from the day it reached you, in its original box.";
        assert_eq!(decide(&t, &ReplySignals { text: other, earlier: &earlier, ..Default::default() }), None);
        let thanks = [normalise("You're welcome! Anything else?")];
        let short = ReplySignals { text: "You're welcome! Anything else?", earlier: &thanks, ..Default::default() };
        assert_eq!(decide(&t, &short), None, "short replies may repeat");
        // Word order counts: the same words shuffled are a different reply.
        let shuffled = "days working three within you reach should and Monday on warehouse our left order Your";
        assert!(similarity(&normalise(shuffled), &earlier[0]) < 0.1);
    }

    #[test]
    fn low_confidence_is_giving_up_hedging_or_unsupported_claims_with_sources() {
        let t = compiled();
        let d = decide(&t, &ReplySignals { text: "I'm sorry, I can't help with that request.", ..Default::default() })
            .unwrap();
        assert_eq!(d.reason, "low_confidence");
        assert!(d.evidence.contains("cannot help"), "{}", d.evidence);
        let text = "I'm not sure whether that model ships abroad.";
        let hedged = ReplySignals { text, tier: "capable", ..Default::default() };
        assert!(decide(&t, &hedged).unwrap().evidence.contains("hedges"));
        let cheap = ReplySignals { tier: "cheap", ..hedged };
        assert_eq!(decide(&t, &cheap), None, "a cheap tier's hedge escalates the next turn instead");
        let claims = ReplySignals {
            text: "It costs $40 and ships in 12 days.",
            unsupported: 2,
            had_sources: true,
            ..Default::default()
        };
        assert!(decide(&t, &claims).unwrap().evidence.contains("2 sentences make claims"));
        let no_sources = ReplySignals { had_sources: false, ..claims };
        assert_eq!(decide(&t, &no_sources), None, "without sources every number is unsupported: not counted");
        assert_eq!(decide(&t, &ReplySignals { text: ANSWER, ..Default::default() }), None);
        assert_eq!(
            decide(&t, &ReplySignals { text: "I can help with that: here is how.", ..Default::default() }),
            None
        );
    }
}
