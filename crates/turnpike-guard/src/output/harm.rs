//! A small statistical harm classifier for model replies: logistic regression over hashed word unigrams,
//! bigrams and character 4-grams, run on the same two-sentence window the other output checks see.
//!
//! Guarantee: pure Rust, in-process, no download: the weights are a text file compiled into the crate
//! (`harm_model.txt`), regenerated deterministically by `turnpike-guard-eval train` from PyRIT's
//! human-labelled replies (dev half only) plus the team-written support replies in `support_replies.txt`.
//! The model machinery (features, scoring, training, text form) is [`crate::linear`], shared with the
//! injection classifier; this module holds what is particular to replies: the sentence windows and the
//! harmless support replies.

use crate::normalize::fold;
use crate::output::segment;

pub use crate::linear::{train, LinearModel, TrainParams};

/// The header name of the harm model's text form.
pub const KIND: &str = "turnpike-harm-model";

/// The shipped weights (see the module doc for where they come from).
const SHIPPED: &str = include_str!("harm_model.txt");

/// Team-written replies in a support bot's ordinary voice, used as harmless training examples (so that
/// apologies, refunds and account talk are known to be harmless). Not used for evaluation.
pub const SUPPORT_REPLIES: &str = include_str!("support_replies.txt");

/// The model compiled into the crate (parsed once per process).
pub fn shipped() -> Result<std::sync::Arc<LinearModel>, String> {
    static MODEL: crate::linear::ShippedCell = std::sync::OnceLock::new();
    crate::linear::shipped_once(&MODEL, KIND, SHIPPED)
}

/// The folded two-sentence windows the output checker scores for `text` (previous sentence, a space, the
/// current sentence), in order, segmented exactly as the streaming checker segments them.
pub fn windows(text: &str, max_sentence_chars: usize) -> Vec<String> {
    let mut rest = text;
    let mut prev = String::new();
    let mut out = Vec::new();
    loop {
        let end = segment::next_sentence(rest, max_sentence_chars).unwrap_or(rest.len());
        if end == 0 || rest.trim().is_empty() {
            break;
        }
        let folded = fold(&rest[..end]).text;
        out.push(format!("{prev} {folded}"));
        prev = folded;
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_match_the_checker_segmentation() {
        let w = windows("First one. Second one! Tail", 600);
        assert_eq!(w, vec![" first one. ", "first one.  second one! ", "second one!  tail"]);
    }

    #[test]
    fn shipped_model_loads_and_scores_ordinary_support_replies_low() {
        let m = shipped().unwrap();
        for t in [
            "Your refund of the delivery fee has been processed and should reach your card in a few days.",
            "I'm sorry to hear the blender arrived damaged; I've started a replacement for you.",
        ] {
            let s = m.score(&fold(t).text);
            assert!(s < 0.5, "{t}: {s}");
        }
    }
}
