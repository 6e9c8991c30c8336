//! guard-out: a per-turn, stateful checker over the streamed reply.
//!
//! Guarantee: text is released only as whole sentences that have been checked, so an unsafe sentence never
//! reaches the user, not even partly; every release carries an explicit verdict; after a
//! `BlockAndHandoff` nothing more is released for the turn. Each check sees the current sentence plus the
//! previous one (a two-sentence window), so a canary split across a sentence boundary is still caught.
//! `finish` checks the unfinished tail too: no stream end skips the checks.

mod checks;
pub mod harm;
mod segment;

/// Where the first complete sentence of a buffer ends: generate flushes there, because guard-out can release
/// nothing before it.
pub use segment::next_sentence;

use crate::normalize::fold;
use crate::policy::{CompiledPolicy, SentenceAction};
use crate::{Guard, Trigger};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OutputVerdict {
    /// Released as generated (flags, if any, are in the triggers).
    Pass,
    /// Released with some words replaced by `[redacted]`.
    Redact,
    /// The sentence was replaced by the policy's replacement line.
    Replace,
    /// The sentence was replaced by the hand-off line; the turn releases nothing more.
    BlockAndHandoff,
}

/// One checked piece of the reply, ready for the outbound topic.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    pub text: String,
    pub verdict: OutputVerdict,
    pub triggers: Vec<Trigger>,
}

/// What a checker carries from one delta to the next, so a stage can persist it between records (a crash
/// must neither lose held-back text nor check it twice).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckerState {
    /// Text received but not yet released (an unfinished sentence).
    pub held: String,
    /// The previous sentence, folded: the window's first half.
    pub prev_folded: String,
    /// A sentence was blocked; nothing more is released for the turn.
    pub blocked: bool,
}

pub struct OutputChecker<'a> {
    guard: &'a Guard,
    policy: &'a CompiledPolicy,
    /// Folded, concatenated retrieval sources the grounding check compares against.
    sources: String,
    buf: String,
    prev_folded: String,
    blocked: bool,
}

impl Guard {
    /// A checker for one turn; `sources` are the retrieved snippets the reply may rely on.
    pub fn output_checker<'a>(&'a self, policy: &'a CompiledPolicy, sources: &[&str]) -> OutputChecker<'a> {
        let sources = sources.iter().map(|s| fold(s).text).collect::<Vec<_>>().join("\n");
        OutputChecker { guard: self, policy, sources, buf: String::new(), prev_folded: String::new(), blocked: false }
    }
}

impl OutputChecker<'_> {
    /// Adds a delta; returns the sentences it completed, checked, in order.
    pub fn push(&mut self, delta: &str) -> Vec<Release> {
        if self.blocked {
            return Vec::new();
        }
        self.buf.push_str(delta);
        let mut out = Vec::new();
        while !self.blocked {
            let Some(end) = segment::next_sentence(&self.buf, self.policy.policy.output.max_sentence_chars) else {
                break;
            };
            let sentence: String = self.buf.drain(..end).collect();
            out.push(self.check(&sentence));
        }
        out
    }

    /// Ends the turn: checks and releases whatever is still held.
    pub fn finish(&mut self) -> Vec<Release> {
        if self.blocked || self.buf.trim().is_empty() {
            self.buf.clear();
            return Vec::new();
        }
        let rest = std::mem::take(&mut self.buf);
        vec![self.check(&rest)]
    }

    /// The state to persist after a push.
    pub fn state(&self) -> CheckerState {
        CheckerState { held: self.buf.clone(), prev_folded: self.prev_folded.clone(), blocked: self.blocked }
    }

    /// Continues from a persisted state.
    pub fn with_state(mut self, state: CheckerState) -> Self {
        self.buf = state.held;
        self.prev_folded = state.prev_folded;
        self.blocked = state.blocked;
        self
    }

    /// True once a sentence was blocked: the stage should end the turn and hand off.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    fn check(&mut self, sentence: &str) -> Release {
        let out = &self.policy.policy.output;
        let folded = fold(sentence).text;
        let window = format!("{} {}", self.prev_folded, folded);
        let found = checks::run(&self.guard.output, self.policy, sentence, &folded, &window, &self.sources);
        self.prev_folded = folded;

        let action = found.iter().map(|(a, _)| *a).max_by_key(|a| severity(*a));
        let triggers: Vec<Trigger> = found.into_iter().map(|(_, t)| t).collect();
        let trailing = &sentence[sentence.trim_end().len()..];
        let (verdict, text) = match action {
            None | Some(SentenceAction::Flag) => (OutputVerdict::Pass, sentence.to_string()),
            Some(SentenceAction::Redact) => {
                let mut t = sentence.to_string();
                for (list, act) in [
                    (&self.policy.unsafe_words, out.content_action),
                    (&self.policy.competitors, out.competitor_action),
                    (&self.policy.off_brand, out.off_brand_action),
                ] {
                    if act == SentenceAction::Redact {
                        t = list.redact(&t);
                    }
                }
                (OutputVerdict::Redact, t)
            }
            Some(SentenceAction::Replace) => (OutputVerdict::Replace, format!("{}{trailing}", out.replacement_line)),
            Some(SentenceAction::BlockAndHandoff) => {
                self.blocked = true;
                self.buf.clear();
                (OutputVerdict::BlockAndHandoff, self.policy.policy.handoff_line.clone())
            }
        };
        Release { text, verdict, triggers }
    }
}

fn severity(a: SentenceAction) -> u8 {
    match a {
        SentenceAction::Flag => 0,
        SentenceAction::Redact => 1,
        SentenceAction::Replace => 2,
        SentenceAction::BlockAndHandoff => 3,
    }
}

pub(crate) use checks::OutputPatterns;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn a_restored_checker_continues_where_the_first_stopped() {
        let guard = Guard::new().unwrap();
        let policy = CompiledPolicy::compile(Default::default()).unwrap();
        let mut a = guard.output_checker(&policy, &[]);
        let first = a.push("Your parcel left our depot. It should arr");
        assert_eq!(first.len(), 1);
        let mut b = guard.output_checker(&policy, &[]).with_state(a.state());
        let second = b.push("ive tomorrow. ");
        assert_eq!(second.iter().map(|r| r.text.as_str()).collect::<String>(), "It should arrive tomorrow. ");
    }
}
