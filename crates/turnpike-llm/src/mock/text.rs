//! Deterministic reply text for the mock: same seed and prompt, same words, on every machine and run.
//!
//! Uses its own FNV-1a hash and SplitMix64 generator rather than `std`'s hasher or a rand crate, whose
//! outputs may change between releases: recorded test expectations must not.

/// A reply is streamed as these pieces: one "token" each, so `concat(pieces)` is the reply text.
pub type Pieces = Vec<String>;

const WORDS: &[&str] = &[
    "the", "a", "river", "quiet", "morning", "light", "over", "city", "train", "arrives", "late", "and", "we", "walk",
    "along", "old", "harbour", "where", "boats", "rest", "under", "grey", "sky", "every", "story", "begins", "with",
    "small", "question", "about", "time", "people", "remember", "summer", "rain", "on", "windows", "of", "library",
    "near", "station", "clear", "answer", "takes", "patience", "careful", "notes", "simple", "plan", "for", "tomorrow",
    "bright", "kitchen", "smells", "fresh", "bread", "coffee", "while", "friends", "talk", "music", "drifts", "from",
    "open", "door", "garden", "grows", "slowly", "through", "long", "season", "warm", "wind", "carries", "voices",
    "across", "field", "map", "shows", "road", "home",
];

/// 64-bit FNV-1a: tiny, stable, good enough to spread prompts over seeds.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64: a stable, well-mixed sequence from one `u64`.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        // Modulo bias is irrelevant for filler text.
        (self.next() % n as u64) as usize
    }
}

/// `tokens` English-ish words in sentences of 5 to 12 words, seeded by `seed` and the prompt.
pub fn generate(seed: u64, prompt: &str, tokens: usize) -> Pieces {
    let mut rng = SplitMix64(seed ^ fnv1a(prompt));
    let mut pieces = Vec::with_capacity(tokens);
    let mut sentence_left = 0;
    for i in 0..tokens {
        let mut word = WORDS[rng.below(WORDS.len())].to_owned();
        if sentence_left == 0 {
            sentence_left = 5 + rng.below(8);
            capitalise(&mut word);
        }
        sentence_left -= 1;
        if sentence_left == 0 || i + 1 == tokens {
            word.push('.');
            sentence_left = 0;
        }
        pieces.push(if i == 0 { word } else { format!(" {word}") });
    }
    pieces
}

fn capitalise(word: &mut String) {
    if let Some(first) = word.get(..1) {
        let upper = first.to_ascii_uppercase();
        word.replace_range(..1, &upper);
    }
}

/// Splits `text` into word pieces that concatenate back to exactly `text`: each piece is one word with
/// the whitespace before it (leading whitespace of the text stays with the first word).
pub fn split_words(text: &str) -> Pieces {
    let mut pieces = Vec::new();
    let mut start = 0;
    // Where the whitespace run after the latest word began: the next word's piece starts there.
    let mut gap: Option<usize> = None;
    let mut seen_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if seen_word && gap.is_none() {
                gap = Some(i);
            }
        } else {
            if let Some(at) = gap.take() {
                pieces.push(text[start..at].to_owned());
                start = at;
            }
            seen_word = true;
        }
    }
    if start < text.len() {
        pieces.push(text[start..].to_owned());
    }
    pieces
}

/// What a model that would reply `pieces` writes after `shown`: when `shown` is the start of that reply,
/// exactly the rest (the first piece may be the end of a word `shown` stopped inside), so shown + rest is
/// the uninterrupted reply byte for byte. Any other `shown` (not this model's words) gets deterministic
/// words of its own: `tokens` generated from the prompt and `shown`, after a space unless `shown` ends in
/// whitespace.
pub fn continue_after(pieces: &[String], shown: &str, seed: u64, prompt: &str, tokens: usize) -> Pieces {
    if pieces.concat().starts_with(shown) {
        let mut at = 0;
        let mut rest = Vec::new();
        for piece in pieces {
            let end = at + piece.len();
            if end > shown.len() {
                // `shown` is a prefix of the reply, so it ends on a character boundary of this piece.
                rest.push(piece[shown.len().saturating_sub(at)..].to_owned());
            }
            at = end;
        }
        return rest;
    }
    let mut rest = generate(seed ^ fnv1a(shown), prompt, tokens);
    if let Some(first) = rest.first_mut().filter(|_| !shown.is_empty() && !shown.ends_with(char::is_whitespace)) {
        first.insert(0, ' ');
    }
    rest
}

/// The mock's token estimate: whitespace-separated words.
pub fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// `text` without its `[[mock:...]]` directives (an unclosed one is kept as text).
pub fn strip_directives(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[[mock:") {
        let Some(end) = rest[start..].find("]]") else { break };
        out.push_str(&rest[..start]);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// Sentences of `text`: split after `.`, `!` or `?` followed by whitespace, and at line breaks; trimmed,
/// list markers (`- `) removed, empty ones dropped.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut start = 0;
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        for (i, &(at, c)) in chars.iter().enumerate() {
            let next_is_space = chars.get(i + 1).is_none_or(|(_, n)| n.is_whitespace());
            if matches!(c, '.' | '!' | '?') && next_is_space {
                out.push(line[start..at + c.len_utf8()].to_owned());
                start = at + c.len_utf8();
            }
        }
        out.push(line[start..].to_owned());
    }
    out.into_iter().map(|s| s.trim().trim_start_matches("- ").trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

fn has_word(sentence: &str, word: &str) -> bool {
    sentence.split(|c: char| !c.is_alphanumeric()).any(|w| w.eq_ignore_ascii_case(word))
}

/// The recall directive's answer: the first sentence of `context` (in order) containing `word` as a
/// whole word, ignoring case and mock directives.
pub fn recall(context: &[&str], word: &str) -> String {
    context
        .iter()
        .flat_map(|m| sentences(&strip_directives(m)))
        .find(|s| has_word(s, word))
        .unwrap_or_else(|| format!("I have nothing about {word} in this conversation."))
}

/// The mock's answer to a summary request: the first sentence of each line of `data` (at most 12 words,
/// directives and `<tag>` lines removed), the last 40 such lines.
pub fn digest(data: &[&str]) -> String {
    let mut lines: Vec<String> = Vec::new();
    for m in data {
        for line in strip_directives(m).lines() {
            let line = line.trim();
            if line.is_empty() || (line.starts_with('<') && line.ends_with('>')) {
                continue;
            }
            let Some(first) = sentences(line).into_iter().next() else { continue };
            lines.push(first.split_whitespace().take(12).collect::<Vec<_>>().join(" "));
        }
    }
    let from = lines.len().saturating_sub(40);
    lines[from..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_finds_the_first_sentence_with_the_word() {
        let context = [
            "Make promises about pricing, refunds, or policies.",
            "Summary.\n\nCommitments:\n- We will refund within 3 days of receiving your order.",
            "Hi [[mock:reply=We will refund nothing]] there. Later refund talk.",
        ];
        assert_eq!(recall(&context, "refund"), "We will refund within 3 days of receiving your order.");
        assert_eq!(recall(&context[2..], "REFUND"), "Later refund talk.", "directives are not context");
        assert!(recall(&context, "parcel").contains("nothing about parcel"));
    }

    #[test]
    fn digests_keep_one_short_line_per_message() {
        let data = ["<conversation>\nUser: My name is Ana. I want help [[mock:tokens=9]] now.\nAssistant: Sure! More.\n</conversation>"];
        assert_eq!(digest(&data), "User: My name is Ana.\nAssistant: Sure!");
        let long = format!("User: {}", "word ".repeat(30));
        assert_eq!(digest(&[long.as_str()]).split_whitespace().count(), 12);
    }

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a = generate(7, "hello there", 40);
        assert_eq!(a, generate(7, "hello there", 40));
        assert_ne!(a, generate(8, "hello there", 40));
        assert_ne!(a, generate(7, "hello again", 40));
        assert_eq!(a.len(), 40);
        let text = a.concat();
        assert_eq!(count_words(&text), 40);
        assert!(text.ends_with('.'));
        assert!(text.chars().next().is_some_and(|c| c.is_ascii_uppercase()));
    }

    #[test]
    fn split_words_round_trips() {
        for text in ["", "one", "  two  words ", "tab\tand\nnewline", "ünïcode wörds  here"] {
            let pieces = split_words(text);
            assert_eq!(pieces.concat(), text);
            assert_eq!(pieces.len(), count_words(text).max(usize::from(!text.is_empty())));
        }
        assert_eq!(split_words("a  b c"), vec!["a", "  b", " c"]);
    }

    #[test]
    fn a_continuation_of_the_reply_is_exactly_its_rest() {
        let reply = generate(7, "hello there", 20);
        let full = reply.concat();
        // Cut at every byte: after a piece, inside a word, on the space before a word.
        for cut in 0..=full.len() {
            let rest = continue_after(&reply, &full[..cut], 7, "hello there", 20);
            assert_eq!(format!("{}{}", &full[..cut], rest.concat()), full, "cut at {cut}");
            assert!(rest.iter().all(|p| !p.is_empty()), "cut at {cut}: {rest:?}");
        }
        // Text the mock would not have written: words of its own, deterministic, after a separator.
        let other = continue_after(&reply, "Something else", 7, "hello there", 5);
        assert_eq!(other, continue_after(&reply, "Something else", 7, "hello there", 5));
        assert!(other[0].starts_with(' ') && other.len() == 5);
        assert!(!continue_after(&reply, "Something else ", 7, "hello there", 5)[0].starts_with(' '));
    }
}
