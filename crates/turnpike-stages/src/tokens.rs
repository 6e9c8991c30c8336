//! Token counting for the context budget, with the real tokenizer of the target model family.
//!
//! Guarantee: [`TokenCounter::count`] is exact for OpenAI models (tiktoken's `o200k_base` for the gpt-4o,
//! gpt-4.1, gpt-5 and o-series family, `cl100k_base` for gpt-4 and gpt-3.5) and a deliberate *over*-estimate
//! for the families whose tokenizer is not available offline, so a budget counted here is never exceeded by
//! the provider's own count (up to the stated margin):
//! - Anthropic (`claude-*`): Claude's tokenizer is not published (Anthropic offers a counting endpoint,
//!   which would cost a network round trip per turn). We count with `cl100k_base` and add 30 %: Claude's
//!   tokenizers produce more tokens than OpenAI's for the same English text (Anthropic states up to ~35 %
//!   more for its newest one), so the factor sits on the high side. Not measured here (no offline tokenizer).
//! - Gemini (`gemini-*`): a SentencePiece vocabulary (shared with Gemma) not shipped by tiktoken. We count
//!   with `o200k_base`, whose large vocabulary behaves similarly on English, and add 20 % as a margin.
//! - Anything else: treated like Anthropic (the most conservative rule).
//!
//! Chat framing costs tokens too: every message adds [`PER_MESSAGE`] (OpenAI documents 3 for role and
//! delimiters; 4 leaves room for a name field) and a request adds [`PER_REQUEST`] (the priming of the reply).
//!
//! Loading a BPE table takes tens of milliseconds (hundreds in a debug build), so each table is built ONCE
//! per process ([`warm_up`] at stage start) and shared read-only by every turn.
//!
//! Counts are remembered per process (a bounded LRU keyed by table and the text's 128-bit xxh3 hash):
//! a conversation's earlier messages and the system prompt are counted again on every turn, and encoding
//! was a tenth of the pipeline's CPU at full load. A count depends on nothing but the table and the text.

use std::num::NonZeroUsize;
use std::sync::{Mutex, OnceLock};
use tiktoken_rs::CoreBPE;
use xxhash_rust::xxh3::xxh3_128;

/// Texts whose count is remembered: a few thousand active conversations' recent messages (24 bytes each).
const REMEMBERED_COUNTS: usize = 65_536;
/// Shorter texts are counted directly: hashing and locking would cost about as much.
const REMEMBER_FROM_BYTES: usize = 64;

/// Tokens of chat framing per message (role, delimiters).
pub const PER_MESSAGE: usize = 4;
/// Tokens of framing per request (the assistant reply's priming).
pub const PER_REQUEST: usize = 3;

/// Which tokenizer a model uses, and how exact our count is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Exact: gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1/o3/o4 and their minis.
    O200k,
    /// Exact: gpt-4, gpt-3.5-turbo.
    Cl100k,
    /// Approximation: `cl100k_base` × 1.3.
    Anthropic,
    /// Approximation: `o200k_base` × 1.2.
    Gemini,
}

impl Family {
    pub fn of(model: &str) -> Family {
        let m = model.trim().to_ascii_lowercase();
        if m.starts_with("claude") || m.contains("anthropic") {
            return Family::Anthropic;
        }
        if m.starts_with("gemini") || m.starts_with("models/gemini") || m.starts_with("gemma") {
            return Family::Gemini;
        }
        match tiktoken_rs::tokenizer::get_tokenizer(&m) {
            Some(tiktoken_rs::tokenizer::Tokenizer::O200kBase | tiktoken_rs::tokenizer::Tokenizer::O200kHarmony) => {
                Family::O200k
            }
            Some(tiktoken_rs::tokenizer::Tokenizer::Cl100kBase) => Family::Cl100k,
            // Older OpenAI encodings (davinci era) and unknown models: the conservative rule.
            _ => Family::Anthropic,
        }
    }

    /// `(numerator, denominator)` applied to the base tokenizer's count.
    fn margin(self) -> (usize, usize) {
        match self {
            Family::O200k | Family::Cl100k => (1, 1),
            Family::Anthropic => (13, 10),
            Family::Gemini => (6, 5),
        }
    }
}

static O200K: OnceLock<Result<CoreBPE, String>> = OnceLock::new();
static CL100K: OnceLock<Result<CoreBPE, String>> = OnceLock::new();

fn table(family: Family) -> Result<&'static CoreBPE, String> {
    type Load = fn() -> Result<CoreBPE, String>;
    let (cell, load): (&OnceLock<Result<CoreBPE, String>>, Load) = match family {
        Family::O200k | Family::Gemini => (&O200K, || tiktoken_rs::o200k_base().map_err(|e| e.to_string())),
        Family::Cl100k | Family::Anthropic => (&CL100K, || tiktoken_rs::cl100k_base().map_err(|e| e.to_string())),
    };
    cell.get_or_init(load).as_ref().map_err(|e| format!("tokenizer table: {e}"))
}

/// Loads both tables now, so the first turn does not pay for it. Fails only if the embedded tables are
/// corrupt (a build problem): callers treat that as fatal.
pub fn warm_up() -> Result<(), String> {
    table(Family::O200k)?;
    table(Family::Cl100k)?;
    Ok(())
}

/// Counts tokens for one model family. Cheap to copy.
#[derive(Clone, Copy)]
pub struct TokenCounter {
    family: Family,
    bpe: &'static CoreBPE,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter").field("family", &self.family).finish()
    }
}

impl TokenCounter {
    /// The counter for `model` (see [`Family::of`]).
    pub fn for_model(model: &str) -> Result<TokenCounter, String> {
        let family = Family::of(model);
        Ok(TokenCounter { family, bpe: table(family)? })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    fn base(&self, text: &str) -> usize {
        if text.len() < REMEMBER_FROM_BYTES {
            return self.encode_len(text);
        }
        // Keyed by the table itself (one static per table), so families sharing a table share its counts.
        static COUNTS: OnceLock<Mutex<lru::LruCache<(usize, u128), u32>>> = OnceLock::new();
        let cache = COUNTS
            .get_or_init(|| Mutex::new(lru::LruCache::new(NonZeroUsize::new(REMEMBERED_COUNTS).expect("non-zero"))));
        let key = (std::ptr::from_ref(self.bpe) as usize, xxh3_128(text.as_bytes()));
        if let Some(n) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return *n as usize;
        }
        // Counted outside the lock: two turns counting the same new text both do the work, neither waits.
        let n = self.encode_len(text);
        cache.lock().unwrap_or_else(|p| p.into_inner()).put(key, u32::try_from(n).unwrap_or(u32::MAX));
        n
    }

    fn encode_len(&self, text: &str) -> usize {
        // Special-token text (`<|endoftext|>`) in a message is ordinary text to the provider too.
        self.bpe.encode_ordinary(text).len()
    }

    /// Tokens of `text` (content only, no framing).
    pub fn count(&self, text: &str) -> usize {
        let (num, den) = self.family.margin();
        (self.base(text) * num).div_ceil(den)
    }

    /// Tokens of one chat message with this content, framing included.
    pub fn message(&self, text: &str) -> usize {
        self.count(text) + PER_MESSAGE
    }

    /// The longest prefix of `text` (cut on a token, then on a character boundary) of at most `max` tokens.
    pub fn prefix<'a>(&self, text: &'a str, max: usize) -> &'a str {
        // The common case, a text that fits, is a (remembered) count: the caller counts the same text next.
        if self.count(text) <= max {
            return text;
        }
        let (num, den) = self.family.margin();
        let tokens = self.bpe.encode_ordinary(text);
        let mut keep = (max * den / num).min(tokens.len());
        loop {
            let bytes = self.bpe.decode_bytes(&tokens[..keep]).map(|b| b.len()).unwrap_or(0);
            let mut end = bytes.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let cut = &text[..end];
            // Re-encoding a prefix may merge differently; shrink until the count really fits.
            if keep == 0 || self.count(cut) <= max {
                return cut;
            }
            keep -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_model_name() {
        assert_eq!(Family::of("gpt-4o-mini"), Family::O200k);
        assert_eq!(Family::of("gpt-4.1"), Family::O200k);
        assert_eq!(Family::of("o3-mini"), Family::O200k);
        assert_eq!(Family::of("gpt-4"), Family::Cl100k);
        assert_eq!(Family::of("gpt-3.5-turbo"), Family::Cl100k);
        assert_eq!(Family::of("claude-sonnet-4-5"), Family::Anthropic);
        assert_eq!(Family::of("gemini-2.0-flash"), Family::Gemini);
        assert_eq!(Family::of("my-local-llama"), Family::Anthropic, "unknown: conservative");
    }

    #[test]
    fn counts_match_the_published_encodings() {
        // Reference counts from OpenAI's tiktoken for these exact strings.
        let o200k = TokenCounter::for_model("gpt-4o").unwrap();
        let cl100k = TokenCounter::for_model("gpt-4").unwrap();
        assert_eq!(o200k.count("hello world"), 2);
        assert_eq!(cl100k.count("hello world"), 2);
        assert_eq!(cl100k.count("tiktoken is great!"), 6);
        assert_eq!(o200k.count(""), 0);
        assert_eq!(o200k.message(""), PER_MESSAGE);
        // The approximations sit above the base count.
        let claude = TokenCounter::for_model("claude-3-5-haiku").unwrap();
        let text = "We will refund your order within 3 days of receiving the parcel.";
        assert!(claude.count(text) > cl100k.count(text));
        assert_eq!(claude.count(text), (cl100k.count(text) * 13).div_ceil(10));
    }

    #[test]
    fn remembered_counts_are_the_counts() {
        let o200k = TokenCounter::for_model("gpt-4o").unwrap();
        let cl100k = TokenCounter::for_model("gpt-4").unwrap();
        let text = "Your parcel left the depot this morning and should arrive tomorrow before noon, tracked.";
        assert!(text.len() >= REMEMBER_FROM_BYTES);
        for _ in 0..3 {
            // Same text, two tables: each keeps its own count, first read or remembered.
            assert_eq!(o200k.count(text), o200k.encode_len(text));
            assert_eq!(cl100k.count(text), cl100k.encode_len(text));
        }
        let claude = TokenCounter::for_model("claude-3-5-haiku").unwrap();
        assert_eq!(claude.count(text), (cl100k.encode_len(text) * 13).div_ceil(10));
    }

    #[test]
    fn prefixes_fit_and_stay_on_char_boundaries() {
        for model in ["gpt-4o", "gpt-4", "claude-3-opus", "gemini-2.0-flash"] {
            let c = TokenCounter::for_model(model).unwrap();
            for text in ["héllo wörld ünïcode ".repeat(40), "日本語のテキストです。".repeat(30), "plain ".repeat(100)]
            {
                for max in [0, 1, 5, 17, 60] {
                    let p = c.prefix(&text, max);
                    assert!(c.count(p) <= max, "{model} {max}: {}", c.count(p));
                    assert!(text.starts_with(p));
                }
                assert_eq!(c.prefix(&text, 100_000), text);
            }
        }
    }
}
