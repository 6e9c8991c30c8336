//! One turn's frustration score, from the sentiment head when guard-in ran it, else from a lexical
//! fallback that says what it matched.
//!
//! The plug: the sentiment head reports through guard-in's triggers, as check `sentiment` with the score
//! (probability that the message is negative or frustrated) and verdict `flag` when the head counts it
//! negative. [`of_turn`] takes that when present, so the head replaces the fallback for every turn it
//! scores with no change here; until the head exists (or with model checks off) every turn is scored by
//! [`lexical`].
//!
//! [`lexical`] is deliberately simple and visible: a weighted list of frustration markers (words, phrases,
//! shouting), the score is the sum of the weights of what matched, capped at 1, and the evidence lists the
//! markers. One strong marker ("this is ridiculous") or two mild ones reach the default threshold (0.5).
//! It has no negation handling ("not angry" scores as "angry") and no sarcasm: a fallback, not a model.

use super::SentimentTrigger;
use crate::normalize::fold;
use crate::Trigger;

/// The check name the sentiment head's trigger carries.
pub const SENTIMENT_CHECK: &str = "sentiment";

/// Where a score came from.
pub const SOURCE_MODEL: &str = "model";
pub const SOURCE_LEXICAL: &str = "lexical_fallback";

#[derive(Clone, Debug, PartialEq)]
pub struct Frustration {
    /// In [0, 1]; 1 = most frustrated.
    pub score: f32,
    /// Whether this turn counts as negative under the policy.
    pub negative: bool,
    /// [`SOURCE_MODEL`] or [`SOURCE_LEXICAL`].
    pub source: &'static str,
    /// What the lexical fallback matched (empty for the model).
    pub markers: Vec<&'static str>,
}

/// Markers and their weights: strong ones reach the default threshold alone.
const MARKERS: &[(&str, f32)] = &[
    ("ridiculous", 0.6),
    ("unacceptable", 0.6),
    ("useless", 0.6),
    ("fed up", 0.6),
    ("sick of", 0.6),
    ("waste of time", 0.6),
    ("worst", 0.5),
    ("i give up", 0.6),
    ("furious", 0.6),
    ("pathetic", 0.6),
    ("absurd", 0.5),
    ("terrible", 0.5),
    ("horrible", 0.5),
    ("awful", 0.5),
    ("how many times", 0.5),
    ("i already told you", 0.6),
    ("not helpful", 0.5),
    ("doesn't help", 0.4),
    ("frustrated", 0.5),
    ("frustrating", 0.5),
    ("angry", 0.5),
    ("annoyed", 0.35),
    ("annoying", 0.35),
    ("disappointed", 0.35),
    ("still not", 0.3),
    ("still hasn't", 0.3),
    ("again", 0.15),
    ("seriously", 0.3),
    ("come on", 0.3),
    ("wtf", 0.5),
    ("what the hell", 0.5),
];

/// Shouting: `!!` anywhere, or at least three words of three or more letters in capitals.
const SHOUTING: f32 = 0.2;

/// The lexical fallback's score for `text` (see the module comment).
pub fn lexical(text: &str) -> (f32, Vec<&'static str>) {
    let folded = format!(" {} ", words_only(&fold(text).text));
    let mut markers = Vec::new();
    let mut score = 0.0f32;
    for (m, w) in MARKERS {
        if folded.contains(&format!(" {m} ")) {
            markers.push(*m);
            score += w;
        }
    }
    let caps = text
        .split_whitespace()
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 3)
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).all(|c| c.is_uppercase()))
        .count();
    if text.contains("!!") || caps >= 3 {
        markers.push("shouting");
        score += SHOUTING;
    }
    (score.min(1.0), markers)
}

/// Lower-case words separated by single spaces, apostrophes kept ("doesn't"), so markers match whole
/// words only.
fn words_only(folded: &str) -> String {
    let cleaned: String =
        folded.chars().map(|c| if c.is_alphanumeric() || c == '\'' { c.to_ascii_lowercase() } else { ' ' }).collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// This turn's score: the sentiment head's when one of `triggers` carries it, else [`lexical`].
pub fn of_turn(text: &str, triggers: &[Trigger], policy: &SentimentTrigger) -> Frustration {
    if let Some(t) = triggers.iter().find(|t| t.check == SENTIMENT_CHECK) {
        if let Some(score) = t.score {
            let negative = match policy.model_threshold {
                Some(at) => score >= at,
                None => t.verdict == "flag",
            };
            return Frustration { score, negative, source: SOURCE_MODEL, markers: vec![] };
        }
    }
    let (score, markers) = lexical(text);
    Frustration { score, negative: score >= policy.lexical_threshold, source: SOURCE_LEXICAL, markers }
}

/// Consecutive negative turns ending with this one (`seq`): this turn, then each earlier turn as long as it
/// is the one just before (`seq - 1`, `seq - 2`, ...) and was negative. `earlier` holds `(seq, negative)`
/// of the session's scored turns, any order; a gap (a turn that was not scored) ends the run.
pub fn negative_run(seq: i64, negative: bool, earlier: &[(i64, bool)]) -> usize {
    if !negative {
        return 0;
    }
    let mut run = 1;
    while earlier.iter().any(|&(s, neg)| s == seq - run as i64 && neg) {
        run += 1;
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strong_marker_or_two_mild_ones_reach_the_default_threshold_and_calm_text_scores_nothing() {
        let at = SentimentTrigger::default().lexical_threshold;
        let (s, m) = lexical("This is ridiculous, I have been waiting for a week.");
        assert!(s >= at && m == vec!["ridiculous"], "{s} {m:?}");
        let (s, m) = lexical("I'm annoyed, it still hasn't shipped.");
        assert!(s >= at, "{s} {m:?}");
        let (s, _) = lexical("I'm a bit annoyed.");
        assert!(s < at, "one mild marker is not enough: {s}");
        assert_eq!(lexical("Where is my order? It should have arrived on Monday.").0, 0.0);
        // Whole words only: "worst" is not in "worsted".
        assert_eq!(lexical("Do you sell worsted wool?").0, 0.0);
        let (s, m) = lexical("WHERE IS MY ORDER!!");
        assert!(m.contains(&"shouting") && s < at, "{s} {m:?}");
    }

    #[test]
    fn the_heads_score_replaces_the_fallback_when_guard_in_ran_it() {
        let p = SentimentTrigger::default();
        let mut t = Trigger::new(SENTIMENT_CHECK, "flag", "score=0.910 negative_run=1 recent=0.910");
        t.score = Some(0.91);
        let f = of_turn("calm words", &[t.clone()], &p);
        assert_eq!((f.source, f.negative, f.score), (SOURCE_MODEL, true, 0.91));
        // A policy threshold replaces the head's own verdict.
        let strict = SentimentTrigger { model_threshold: Some(0.95), ..p.clone() };
        assert!(!of_turn("calm words", &[t], &strict).negative);
        let f = of_turn("This is useless.", &[], &p);
        assert_eq!((f.source, f.negative), (SOURCE_LEXICAL, true));
    }

    #[test]
    fn the_run_counts_only_consecutive_negative_turns() {
        let earlier = [(3, true), (4, true), (1, true)];
        assert_eq!(negative_run(5, true, &earlier), 3);
        assert_eq!(negative_run(5, false, &earlier), 0);
        // Turn 4 calm: the run is this turn alone.
        assert_eq!(negative_run(5, true, &[(4, false), (3, true)]), 1);
        // A gap (turn 4 not scored) ends it.
        assert_eq!(negative_run(5, true, &[(3, true)]), 1);
    }
}
