//! Continuation requests: "write on from this assistant text" ([`crate::ChatRequest::continuation`]).
//!
//! Generate uses them to resume a reply whose stream was cut, or whose process died, after part of it
//! reached the customer: the model is handed the text already shown as the start of its own turn and
//! streams only what follows. How each wire format says it:
//! - Anthropic: a trailing `assistant` message is a native prefill. Anthropic rejects a prefill that ends
//!   in whitespace, so the client sends it trimmed and [`Rejoin`] removes that same whitespace from the
//!   start of the continuation (the model writes it again, having stopped before it): the customer, who
//!   already has the whitespace, reads prefix + continuation with nothing doubled.
//! - Gemini: a trailing `model` content, continued natively.
//! - OpenAI-compatible: the Chat Completions API has no such request; some servers do, and a deployment
//!   says which it is with [`ContinuationStyle`]. One that cannot continue is skipped by the chain for
//!   continuation requests (and generate falls back to its apology when no deployment can).

use futures::StreamExt;
use serde::Deserialize;

use crate::{EventStream, LlmEvent};

/// How an OpenAI-compatible deployment continues an assistant message (`continuation = "..."` in its
/// configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContinuationStyle {
    /// It cannot (OpenAI itself): continuation requests skip it.
    #[default]
    None,
    /// vLLM (and SGLang, whose chat endpoint takes the same fields): the trailing assistant message with
    /// `continue_final_message: true, add_generation_prompt: false`.
    Vllm,
    /// DeepSeek (beta endpoint) and Mistral: the trailing assistant message carries `prefix: true`.
    Prefix,
}

impl std::str::FromStr for ContinuationStyle {
    type Err = crate::LlmError;

    /// The configuration's spelling: `none`, `vllm` or `prefix`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "none" => Ok(ContinuationStyle::None),
            "vllm" => Ok(ContinuationStyle::Vllm),
            "prefix" => Ok(ContinuationStyle::Prefix),
            other => Err(crate::LlmError::Config(format!("continuation {other:?}: expected none, vllm or prefix"))),
        }
    }
}

/// The prefill Anthropic accepts for `shown` (trailing whitespace removed) and the whitespace removed.
pub fn split_trailing_whitespace(shown: &str) -> (&str, &str) {
    let trimmed = shown.trim_end();
    (trimmed, &shown[trimmed.len()..])
}

/// Drops `removed` (the whitespace cut off a prefill) from the start of a continuation's text, where the
/// model writes it again; see the module comment. Stops at the first character that differs: the model
/// chose another separator, and what it wrote is passed on as written, so prefix + events is exactly the
/// text the customer reads. A delta left empty is not passed on (a `TextDelta` is never empty).
pub struct Rejoin {
    /// What is still to be matched and dropped.
    pending: String,
}

impl Rejoin {
    pub fn new(removed: &str) -> Self {
        Rejoin { pending: removed.to_owned() }
    }

    /// The part of `text` that follows the removed whitespace; `None` when nothing is left of it.
    pub fn apply(&mut self, text: String) -> Option<String> {
        if self.pending.is_empty() {
            return Some(text);
        }
        let common =
            text.chars().zip(self.pending.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a.len_utf8()).sum();
        let rest = text[common..].to_owned();
        if common == self.pending.len() || !rest.is_empty() {
            // Either all of it was matched, or the model wrote something else: stop matching either way.
            self.pending.clear();
        } else {
            self.pending.drain(..common);
        }
        (!rest.is_empty()).then_some(rest)
    }

    /// `events` with the removed whitespace dropped from the start of their text.
    pub fn stream(mut self, events: EventStream) -> EventStream {
        events
            .filter_map(move |event| {
                let event = match event {
                    Ok(LlmEvent::TextDelta(text)) => self.apply(text).map(|t| Ok(LlmEvent::TextDelta(t))),
                    other => Some(other),
                };
                futures::future::ready(event)
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejoin(removed: &str, deltas: &[&str]) -> Vec<String> {
        let mut r = Rejoin::new(removed);
        deltas.iter().filter_map(|d| r.apply((*d).to_owned())).collect()
    }

    #[test]
    fn styles_parse_as_configured() {
        assert_eq!("vllm".parse(), Ok(ContinuationStyle::Vllm));
        assert_eq!(" prefix".parse(), Ok(ContinuationStyle::Prefix));
        assert_eq!("none".parse(), Ok(ContinuationStyle::None));
        assert!("yes".parse::<ContinuationStyle>().is_err());
    }

    #[test]
    fn trailing_whitespace_is_split_off() {
        assert_eq!(split_trailing_whitespace("It left. \n"), ("It left.", " \n"));
        assert_eq!(split_trailing_whitespace("It left."), ("It left.", ""));
        assert_eq!(split_trailing_whitespace("  "), ("", "  "));
    }

    #[test]
    fn the_whitespace_written_again_is_dropped_once() {
        // The model writes the separator again, in one delta or across several.
        assert_eq!(rejoin(" ", &[" It", " arrives."]), ["It", " arrives."]);
        assert_eq!(rejoin(" \n", &[" ", "\n", "It"]), ["It"]);
        assert_eq!(rejoin(" \n", &[" \nIt"]), ["It"]);
        // Whitespace beyond what was removed is the model's own and is kept.
        assert_eq!(rejoin(" ", &["  It"]), [" It"]);
        // Another separator, or none: passed on as written.
        assert_eq!(rejoin(" ", &["\nIt"]), ["\nIt"]);
        assert_eq!(rejoin(" ", &["It", " arrives"]), ["It", " arrives"]);
        assert_eq!(rejoin(" \n", &[" It"]), ["It"]);
        // Nothing removed: nothing dropped.
        assert_eq!(rejoin("", &[" It"]), [" It"]);
    }
}
