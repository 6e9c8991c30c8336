//! Topic boundary per tenant: allowed and denied keyword sets.
//!
//! Guarantee: a denied keyword anywhere (whole words, after folding) stops the turn; with
//! `require_allowed`, a message long enough to carry a topic that names no allowed keyword stops too, while
//! short turns ("thanks!", "hi") always pass so small talk is never refused.

use crate::policy::PolicyError;
use crate::words::WordList;

pub(crate) struct KeywordSet {
    allowed: WordList,
    denied: WordList,
    has_allowed: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TopicOutcome<'a> {
    InScope,
    Denied(&'a str),
    OffTopic,
}

impl KeywordSet {
    pub(crate) fn new(allowed: &[String], denied: &[String]) -> Result<Self, PolicyError> {
        Ok(KeywordSet {
            allowed: WordList::new(allowed)?,
            denied: WordList::new(denied)?,
            has_allowed: !allowed.is_empty(),
        })
    }

    pub(crate) fn classify<'a>(&'a self, folded: &'a str, require_allowed: bool, min_words: usize) -> TopicOutcome<'a> {
        if let Some(w) = self.denied.first(folded) {
            return TopicOutcome::Denied(w);
        }
        if require_allowed
            && self.has_allowed
            && folded.split_whitespace().count() >= min_words
            && self.allowed.first(folded).is_none()
        {
            return TopicOutcome::OffTopic;
        }
        TopicOutcome::InScope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> KeywordSet {
        KeywordSet::new(&["order".into(), "refund".into(), "delivery".into()], &["crypto".into(), "election".into()])
            .unwrap()
    }

    #[test]
    fn denied_keyword_stops_allowed_keyword_passes() {
        assert_eq!(set().classify("should i buy crypto with my refund", true, 6), TopicOutcome::Denied("crypto"));
        assert_eq!(set().classify("when will my order arrive at my house", true, 6), TopicOutcome::InScope);
    }

    #[test]
    fn long_unrelated_text_is_off_topic_short_small_talk_is_not() {
        assert_eq!(set().classify("write me a poem about the sea and the moon", true, 6), TopicOutcome::OffTopic);
        assert_eq!(set().classify("thanks a lot!", true, 6), TopicOutcome::InScope);
        assert_eq!(set().classify("write me a poem about the sea and the moon", false, 6), TopicOutcome::InScope);
    }
}
