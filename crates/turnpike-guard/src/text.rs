//! Cheap shape checks: length, token estimate, language, garbage.
//!
//! Guarantee: each function is O(n) over the text with no allocation beyond language detection, and the
//! garbage test only fires on texts long enough to judge (≥ 12 chars), so "ok", "?" or "#4512" pass.

/// Tokens as BPE tokenisers count them for English-like text: about one per 4 bytes, never fewer than the
/// word count. An estimate for budgeting, not a billing figure.
pub fn token_estimate(text: &str) -> usize {
    let words = text.split_whitespace().count();
    words.max(text.len().div_ceil(4))
}

/// ISO 639-3 code of the language when the detector is confident, else `None` (short or mixed text).
pub fn language(text: &str) -> Option<&'static str> {
    if text.chars().filter(|c| c.is_alphabetic()).count() < 20 {
        return None;
    }
    let info = whatlang::detect(text)?;
    (info.is_reliable() || info.confidence() >= 0.3).then(|| info.lang().code())
}

/// Keyboard mash, symbol soup or one character repeated: text no question is made of.
pub fn is_garbage(text: &str) -> bool {
    let total = text.chars().filter(|c| !c.is_whitespace()).count();
    if total < 12 {
        return false;
    }
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    if letters * 10 < total * 4 {
        return true;
    }
    let mut run = 0;
    let mut prev = '\0';
    for c in text.chars() {
        run = if c == prev { run + 1 } else { 1 };
        prev = c;
        if run > 12 {
            return true;
        }
    }
    // Latin words with no vowel and 6+ consonants ("sdfghjkl") in most of the message.
    let words: Vec<&str> = text.split_whitespace().filter(|w| w.chars().all(|c| c.is_ascii_alphabetic())).collect();
    let mash = words.iter().filter(|w| w.len() >= 6 && !w.chars().any(|c| "aeiouyAEIOUY".contains(c))).count();
    !words.is_empty() && mash * 2 >= words.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimate_tracks_length() {
        assert_eq!(token_estimate(""), 0);
        assert_eq!(token_estimate("where is my order"), 5);
        assert!(token_estimate(&"word ".repeat(100)) >= 100);
    }

    #[test]
    fn language_detects_confident_text_only() {
        assert_eq!(language("Where is my parcel? It should have arrived at my home yesterday."), Some("eng"));
        assert_eq!(language("Wo ist mein Paket? Es hätte gestern bei mir zu Hause ankommen sollen."), Some("deu"));
        assert_eq!(language("ok thanks"), None);
    }

    #[test]
    fn garbage_detection() {
        assert!(is_garbage("sdfghjkl qwrtzp xcvbnm"));
        assert!(is_garbage("!!!!!!!!!!!!!!!!!!!!!!!!"));
        assert!(is_garbage("#$%^&*()_+#$%^&*()"));
        assert!(!is_garbage("Where is my order #4512?"));
        assert!(!is_garbage("ok"));
    }
}
