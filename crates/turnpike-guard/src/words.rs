//! Whole-word phrase lists over folded text, and the built-in unsafe-word list.
//!
//! Guarantee: a [`WordList`] matches a phrase only at word boundaries ("ass" never fires inside "class"),
//! case- and obfuscation-insensitively because both patterns and input go through [`crate::normalize::fold`].
//! One Aho-Corasick pass per text, whatever the list size.

use crate::normalize::fold;
use crate::policy::PolicyError;
use aho_corasick::{AhoCorasick, MatchKind};

pub(crate) struct WordList {
    ac: Option<AhoCorasick>,
    words: Vec<String>,
    /// The same phrases over the original (unfolded) text, for redaction in place.
    redactor: Option<regex::Regex>,
}

impl WordList {
    pub(crate) fn new<S: AsRef<str>>(phrases: &[S]) -> Result<Self, PolicyError> {
        let words: Vec<String> =
            phrases.iter().map(|p| fold(p.as_ref().trim()).text).filter(|p| !p.is_empty()).collect();
        if words.is_empty() {
            return Ok(WordList { ac: None, words, redactor: None });
        }
        let alts: Vec<String> = phrases
            .iter()
            .map(|p| p.as_ref().split_whitespace().map(regex::escape).collect::<Vec<_>>().join(r"\s+"))
            .filter(|p| !p.is_empty())
            .collect();
        let redactor = regex::Regex::new(&format!(r"(?i)\b(?:{})\b", alts.join("|")))
            .map_err(|e| PolicyError::Pattern(e.to_string()))?;
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .map_err(|e| PolicyError::Pattern(e.to_string()))?;
        Ok(WordList { ac: Some(ac), words, redactor: Some(redactor) })
    }

    /// Matches in a folded text: (phrase, byte span).
    pub(crate) fn find<'a>(&'a self, folded: &'a str) -> impl Iterator<Item = (&'a str, usize, usize)> + 'a {
        self.ac.iter().flat_map(move |ac| {
            ac.find_iter(folded).filter_map(move |m| {
                let before = folded[..m.start()].chars().next_back();
                let after = folded[m.end()..].chars().next();
                let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
                (boundary(before) && boundary(after))
                    .then(|| (self.words[m.pattern().as_usize()].as_str(), m.start(), m.end()))
            })
        })
    }

    /// `text` with every phrase replaced by `[redacted]` (plain-case matching on the original text).
    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.redactor {
            Some(r) => r.replace_all(text, "[redacted]").into_owned(),
            None => text.to_string(),
        }
    }

    pub(crate) fn first<'a>(&'a self, folded: &'a str) -> Option<&'a str> {
        self.find(folded).next().map(|(w, _, _)| w)
    }
}

/// Built-in profanity, slurs-adjacent insults and harassment phrases a support bot must never say. Kept
/// short and generic on purpose; tenants extend it with `output.extra_unsafe_words`.
pub(crate) const UNSAFE_WORDS: &[&str] = &[
    "fuck",
    "fucking",
    "fucked",
    "fucker",
    "motherfucker",
    "shit",
    "shitty",
    "bullshit",
    "bitch",
    "bastard",
    "asshole",
    "dickhead",
    "dick",
    "cunt",
    "prick",
    "wanker",
    "twat",
    "bollocks",
    "piss off",
    "pissed off",
    "crap",
    "damn you",
    "goddamn",
    "slut",
    "whore",
    "retard",
    "retarded",
    "idiot",
    "moron",
    "stupid customer",
    "you are stupid",
    "you're stupid",
    "you are an idiot",
    "you're an idiot",
    "shut up",
    "go to hell",
    "kill yourself",
    "kys",
    "i hate you",
    "nobody cares",
    "loser",
    "dumbass",
    "jackass",
    "screw you",
    "worthless",
    "pathetic",
    "disgusting",
    "scum",
    "die in a fire",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_words_only() {
        let l = WordList::new(&["ass", "piss off"]).unwrap();
        assert_eq!(l.first(&fold("this class is fine").text), None);
        assert_eq!(l.first(&fold("Piss   off").text), None, "inner whitespace must match exactly");
        assert_eq!(l.first(&fold("just PISS OFF now").text), Some("piss off"));
    }

    #[test]
    fn redacts_in_the_original_text() {
        let l = WordList::new(&["Acme  Air"]).unwrap();
        assert_eq!(l.redact("Try ACME Air instead."), "Try [redacted] instead.");
    }

    #[test]
    fn empty_list_matches_nothing() {
        let l = WordList::new::<&str>(&[]).unwrap();
        assert_eq!(l.first("anything"), None);
    }
}
