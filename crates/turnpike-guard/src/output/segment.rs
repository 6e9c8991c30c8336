//! Sentence segmentation over a stream of deltas.
//!
//! Guarantee: [`next_sentence`] only cuts where the sentence is known to be over: after `.`, `!`, `?` or
//! `…` *followed by whitespace that has already arrived*, or at a newline, so "3." waiting for "50" and
//! "Mr." / "e.g." are never split; text past `max_chars` without any boundary within its first `max_chars`
//! bytes is cut at the last space before them, so a run-on reply cannot be held back forever. Only the
//! first `max_chars` bytes decide a cut, so how the reply is split into deltas never moves one (a
//! boundary past `max_chars` counted only when its delta happened to arrive with it did: found by the
//! `guard_output` fuzz target).

const ABBREVIATIONS: &[&str] =
    &["e.g", "i.e", "mr", "mrs", "ms", "dr", "st", "vs", "etc", "no", "approx", "inc", "ltd", "co", "jr", "sr"];

/// Byte length of the first complete sentence in `buf` (including trailing whitespace seen so far).
pub fn next_sentence(buf: &str, max_chars: usize) -> Option<usize> {
    let b = buf.as_bytes();
    let mut iter = buf.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if i >= max_chars {
            break;
        }
        if c == '\n' {
            return Some(i + 1);
        }
        if !matches!(c, '.' | '!' | '?' | '…') {
            continue;
        }
        // Swallow repeated terminators and closing quotes/brackets: `?!`, `."`, `.)`.
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = iter.peek() {
            if matches!(d, '.' | '!' | '?' | '…' | '"' | '\'' | ')' | ']' | '”' | '’') {
                end = j + d.len_utf8();
                iter.next();
            } else {
                break;
            }
        }
        if end > max_chars {
            break;
        }
        let &(_, next) = iter.peek()?;
        if !next.is_whitespace() {
            continue;
        }
        if c == '.' && is_abbreviation(&buf[..i]) {
            continue;
        }
        // Include the whitespace that has arrived, so the next sentence starts at a word.
        while end < b.len() && (b[end] == b' ' || b[end] == b'\t' || b[end] == b'\r' || b[end] == b'\n') {
            end += 1;
            if b[end - 1] == b'\n' {
                break;
            }
        }
        return Some(end);
    }
    if buf.len() > max_chars {
        let cut = buf[..floor_char_boundary(buf, max_chars)].rfind(' ').map(|p| p + 1);
        return Some(cut.unwrap_or_else(|| floor_char_boundary(buf, max_chars)).max(1));
    }
    None
}

fn is_abbreviation(before: &str) -> bool {
    let word = before.rsplit(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
    let lower = word.to_ascii_lowercase();
    ABBREVIATIONS.contains(&lower.as_str()) || (word.chars().count() == 1 && word.chars().all(|c| c.is_uppercase()))
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_only_after_terminator_and_whitespace() {
        assert_eq!(next_sentence("It costs 3.", 600), None, "the next char is unknown yet");
        assert_eq!(next_sentence("It costs 3.50 today. Next", 600), Some(21));
        assert_eq!(next_sentence("Really?! Yes", 600), Some(9));
        assert_eq!(next_sentence("Line one\nLine two", 600), Some(9));
    }

    #[test]
    fn abbreviations_and_initials_do_not_cut() {
        assert_eq!(next_sentence("Ask Dr. Smith, e.g. today. Then", 600), Some(27));
        assert_eq!(next_sentence("J. Doe signed. x", 600), Some(15));
    }

    #[test]
    fn run_on_text_is_cut_at_a_space() {
        let s = "word ".repeat(50);
        let cut = next_sentence(&s, 100).unwrap();
        assert!(cut <= 100 && s[..cut].ends_with(' '));
    }

    /// Regression (fuzz target `guard_output`): a sentence end past `max_chars` used to count when it
    /// arrived in the same delta and not otherwise, so the same reply was cut in different places.
    #[test]
    fn a_sentence_end_past_the_limit_does_not_move_the_cut() {
        let long = format!("{}end. Next", "word ".repeat(30));
        let whole = next_sentence(&long, 100);
        let first_delta = next_sentence(&long[..101], 100);
        assert_eq!(whole, first_delta);
        assert!(whole.unwrap() <= 100);
    }
}
