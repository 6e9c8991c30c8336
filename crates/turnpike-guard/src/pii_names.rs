//! Person names and street addresses in free text, found with gazetteers rather than capital letters.
//!
//! Guarantee: a word is taken for a name when it is in the first-name or surname list
//! (`pii_gazetteer.txt`, derived from Faker's locale data) and is not an ordinary English word, a product or
//! brand word or a calendar word, whatever its case ("anna", "ANNA", "Anna"); a name that is also an English
//! word ("will", "mark", "rose") counts only after a cue phrase ("my name is", "regards,", "mr") or beside
//! another name word with both capitalised ("Mark Price"). A word in no list at all (neither a known name nor
//! an ordinary word of the languages listed) is part of a name right after a cue ("my name is zbigniew"),
//! beside a name ("paul helpling"), or as one of two capitalised such words inside a sentence ("left with
//! Florine Molman"); lower-cased pairs are not taken, as they are mostly words of other languages. A street address needs a house number next to a
//! street-type word ("12 baker street", "Hauptstraße 5", "via Roma 10", "12 rue de la Paix"); a postcode and
//! town after it are masked with it. So "mark the order as paid" or "3 green lights" stay intact.

use crate::pii_name_lists::{CUES, NOT_NAMES, PARTICLES, STREET_ANYCASE, STREET_ENDINGS};
use std::collections::HashSet;

static GAZETTEER: &str = include_str!("pii_gazetteer.txt");

struct Tok {
    start: usize,
    end: usize,
    lower: String,
    cap: bool,
    /// Every letter upper-case.
    upper: bool,
}

pub(crate) struct Gazetteer {
    first: HashSet<String>,
    last: HashSet<String>,
    common: HashSet<String>,
    street: HashSet<String>,
    /// Ordinary words of English and of the other languages listed: never a surname by position alone.
    ordinary: HashSet<String>,
    not_names: HashSet<&'static str>,
}

impl Gazetteer {
    /// The lists, parsed once per process (every `Guard` shares them).
    pub(crate) fn shared() -> &'static Gazetteer {
        static SHARED: std::sync::OnceLock<Gazetteer> = std::sync::OnceLock::new();
        SHARED.get_or_init(Gazetteer::load)
    }

    fn load() -> Self {
        let mut sets: [HashSet<String>; 5] = Default::default();
        let mut at = None;
        for line in GAZETTEER.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            match line {
                "[first]" => at = Some(0),
                "[last]" => at = Some(1),
                "[common]" => at = Some(2),
                "[street]" => at = Some(3),
                "[ordinary]" => at = Some(4),
                word => {
                    if let Some(i) = at {
                        sets[i].insert(word.to_string());
                    }
                }
            }
        }
        let [first, last, common, street, ordinary] = sets;
        Gazetteer { first, last, common, street, ordinary, not_names: NOT_NAMES.iter().copied().collect() }
    }

    fn is_name(&self, t: &Tok) -> bool {
        t.lower.chars().count() >= 2
            && (self.first.contains(&t.lower) || self.last.contains(&t.lower))
            && !self.not_names.contains(t.lower.as_str())
    }

    /// A name word that is not an English word: a name on its own.
    fn strong(&self, t: &Tok) -> bool {
        // Short words in capitals are acronyms more often than names ("NINO", "ANA"): not names alone.
        let acronym = t.lower.chars().count() <= 4 && t.upper;
        t.lower.chars().count() >= 3 && !acronym && self.is_name(t) && !self.common.contains(&t.lower)
    }

    /// A word in no list at all (not a known name, not an ordinary word): a name only by its position,
    /// right after a cue or beside a name ("paul helpling", "my name is zbigniew").
    fn unknown(&self, t: &Tok) -> bool {
        t.lower.chars().count() >= 3
            && t.lower.chars().all(|c| c.is_alphabetic() || c == '\'' || c == '’' || c == '-')
            && !self.is_name(t)
            && !self.ordinary.contains(&t.lower)
            && !self.common.contains(&t.lower)
            && !self.not_names.contains(t.lower.as_str())
    }

    /// Name spans (byte offsets), at most three words each.
    pub(crate) fn names(&self, text: &str) -> Vec<(usize, usize)> {
        let toks = tokens(text);
        let mut out: Vec<(usize, usize)> = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let cue = cue_before(&toks, i, text);
            let t = &toks[i];
            let starts = self.strong(t)
                || (cue.is_some() && self.is_name(t))
                || (cue == Some(true) && self.unknown(t))
                || (cue.is_some() && t.cap && self.unknown(t))
                // Two capitalised words in no list side by side inside a sentence ("left with Florine Molman"):
                // a name from elsewhere. Lower-cased, such pairs are mostly words of other languages.
                || (t.cap
                    && !t.upper
                    && self.unknown(t)
                    && !sentence_start(text, t.start)
                    && toks.get(i + 1).is_some_and(|n| n.cap && !n.upper && self.unknown(n) && adjacent(text, t, n)))
                || (t.cap
                    && self.first.contains(&t.lower)
                    && self.is_name(t)
                    && toks.get(i + 1).is_some_and(|n| n.cap && self.last.contains(&n.lower) && adjacent(text, t, n)));
            if !starts {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < toks.len() && j < i + 3 && adjacent(text, &toks[j - 1], &toks[j]) {
                let n = &toks[j];
                let particle = ["van", "von", "de", "da", "di", "del", "der", "la", "le", "ter", "dos", "das", "st"]
                    .contains(&n.lower.as_str());
                let next_is_name =
                    toks.get(j + 1).is_some_and(|m| (self.is_name(m) || self.unknown(m)) && adjacent(text, n, m));
                if self.is_name(n) || (particle && next_is_name) || self.unknown(n) {
                    j += 1;
                } else {
                    break;
                }
            }
            // "Kyoko Dawson", "christia rivera": an unknown word right before a name is its first name.
            let start = match i.checked_sub(1).map(|p| &toks[p]) {
                Some(p)
                    if (self.unknown(p) || self.is_name(p))
                        && p.cap == t.cap
                        && adjacent(text, p, t)
                        && cue.is_none() =>
                {
                    p.start
                }
                _ => t.start,
            };
            if out.last().is_some_and(|&(_, e)| e > start) {
                out.pop();
            }
            out.push((start, toks[j - 1].end));
            i = j;
        }
        out
    }

    /// Street-address spans (byte offsets): house number and street, with a following postcode and town.
    pub(crate) fn addresses(&self, text: &str) -> Vec<(usize, usize)> {
        let toks = tokens(text);
        let mut out = Vec::new();
        for (i, t) in toks.iter().enumerate() {
            let anycase = STREET_ANYCASE.contains(&t.lower.as_str());
            // A street word that is also an English word ("trail", "way") counts lower-cased only behind a
            // house number and street-name words that are not ordinary words ("529 kissling trail", not
            // "3 green lights").
            let lower_listed = !anycase && !t.cap && self.street.contains(&t.lower);
            let listed = anycase || (t.cap && self.street.contains(&t.lower)) || lower_listed;
            // Lower-cased one-word streets ("thymianweg 97") must be words in no list.
            let compound = !listed
                && STREET_ENDINGS.iter().any(|e| {
                    t.lower.len() > e.len() + 2
                        && t.lower.ends_with(e)
                        && (t.cap || e.chars().count() >= 5 || self.unknown(t))
                });
            if !listed && !compound {
                continue;
            }
            // Words of the street name around the street word: capitalised, or any word after an any-case
            // street word ("12 baker street", "rue de la paix 12").
            let word_ok = |k: &Tok| k.cap || anycase || compound || PARTICLES.contains(&k.lower.as_str());
            let mut right = t.end;
            let mut j = i;
            let mut after = if lower_listed { None } else { number_right_after(text, t.end) };
            while !lower_listed
                && after.is_none()
                && j + 1 < toks.len()
                && j < i + 4
                && joined(text, &toks[j], &toks[j + 1])
            {
                j += 1;
                if !word_ok(&toks[j]) {
                    break;
                }
                if toks[j].cap {
                    right = toks[j].end;
                }
                after = number_right_after(text, toks[j].end);
            }
            let mut left = i;
            let mut before = if lower_listed { None } else { number_right_before(text, t.start) };
            while before.is_none() && left > 0 && left + 3 > i && adjacent(text, &toks[left - 1], &toks[left]) {
                left -= 1;
                let name_word = self.unknown(&toks[left]) || self.strong(&toks[left]);
                if !(toks[left].cap || anycase || compound || (lower_listed && name_word)) {
                    break;
                }
                before = number_right_before(text, toks[left].start);
            }
            let (start, end) = match (before, after) {
                (Some(s), _) => (s, right),
                (None, Some(e)) => {
                    // "Skandinavische Straße 12": capitalised words right before the street word belong to it.
                    let mut s = i;
                    while s > 0 && s + 2 > i && toks[s - 1].cap && adjacent(text, &toks[s - 1], &toks[s]) {
                        s -= 1;
                    }
                    (toks[s].start, e)
                }
                _ => continue,
            };
            out.push((start, postcode_town(text, end)));
        }
        out
    }
}

/// Start of a house number ("12", "12a", "12-14") directly before byte `at` ("12 ", "12, ").
fn number_right_before(text: &str, at: usize) -> Option<usize> {
    let head = &text[..at];
    let trimmed = head.trim_end_matches(' ').trim_end_matches(',');
    if trimmed.len() == head.len() {
        return None;
    }
    let start = trimmed.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '-').len();
    let number = &trimmed[start..];
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let boundary = trimmed[..start].chars().last().is_none_or(|c| c.is_whitespace() || c == ',' || c == '(');
    (number.starts_with(|c: char| c.is_ascii_digit()) && (1..=5).contains(&digits) && boundary).then_some(start)
}

/// End of "5", ", 5", " 12a" directly after byte `at`.
fn number_right_after(text: &str, at: usize) -> Option<usize> {
    let rest = &text[at..];
    let skipped = rest.len() - rest.trim_start_matches([' ', ',']).len();
    let r = &rest[skipped..];
    let n = r.chars().take_while(char::is_ascii_digit).count();
    if !(1..=5).contains(&n) || skipped == 0 {
        return None;
    }
    let mut end = n;
    if r[n..].starts_with(|c: char| c.is_ascii_alphabetic()) && !r[n..].chars().nth(1).is_some_and(char::is_alphabetic)
    {
        end += 1;
    }
    if r[end..].starts_with(|c: char| c.is_alphanumeric()) {
        return None;
    }
    Some(at + skipped + end)
}

/// Extends an address over ", 10115 Berlin", " NW1 6XE", " 1012 AB Amsterdam", ", 75002 Paris".
fn postcode_town(text: &str, end: usize) -> usize {
    static POST: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = POST.get_or_init(|| {
        regex::Regex::new(
            r"^,?\s+(?:[A-Z]{2}-)?(?:\d{4,5}(?:\s?[A-Z]{2}\b)?|\d{2}-\d{3}|\d{3}\s\d{2}|[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}|[A-Z]\d[A-Z]\s\d[A-Z]\d)(?:,?\s+\p{Lu}[\p{L}'-]+(?:[\s-]\p{Lu}[\p{L}'-]+){0,2})?",
        )
        .expect("static pattern")
    });
    re.find(&text[end..]).map_or(end, |m| end + m.end())
}

/// True at the start of the text or of a sentence, where every word is capitalised.
fn sentence_start(text: &str, at: usize) -> bool {
    text[..at].trim_end().chars().last().is_none_or(|c| matches!(c, '.' | '!' | '?' | ':' | '"' | '\n'))
}

/// Adjacent, or an abbreviation's full stop between ("ul. Polna", "St. James").
fn joined(text: &str, a: &Tok, b: &Tok) -> bool {
    let gap = &text[a.end..b.start];
    adjacent(text, a, b)
        || (a.end - a.start <= 3 && gap.starts_with('.') && gap[1..].chars().all(|c| c == ' ') && gap.len() > 1)
}

fn adjacent(text: &str, a: &Tok, b: &Tok) -> bool {
    text[a.end..b.start].chars().all(|c| c == ' ')
}

/// `Some(strong)` when a cue phrase ends right before token `i` (a comma may follow "regards").
fn cue_before(toks: &[Tok], i: usize, text: &str) -> Option<bool> {
    CUES.iter().find_map(|(words, strong)| {
        let n = words.len();
        if i < n {
            return None;
        }
        let fits = words.iter().zip(&toks[i - n..i]).all(|(w, t)| t.lower == *w);
        let gap = &text[toks[i - 1].end..toks[i].start];
        let gap_ok = gap.chars().all(|c| c.is_whitespace() || c == ',' || c == ':' || c == '.' || c == '-');
        (fits && gap_ok && !gap.is_empty()).then_some(*strong)
    })
}

fn tokens(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut start = None;
    let push = |out: &mut Vec<Tok>, s: usize, e: usize| {
        let w = text[s..e].trim_end_matches(['\'', '-', '’']);
        let w = w.strip_suffix("'s").or_else(|| w.strip_suffix("’s")).unwrap_or(w);
        if !w.is_empty() {
            let cap = w.chars().next().is_some_and(char::is_uppercase);
            let upper = w.chars().all(|c| !c.is_lowercase());
            out.push(Tok { start: s, end: s + w.len(), lower: w.to_lowercase(), cap, upper });
        }
    };
    for (i, c) in text.char_indices() {
        let word_char = c.is_alphabetic() || (start.is_some() && (c == '\'' || c == '-' || c == '’'));
        match (word_char, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                push(&mut out, s, i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        push(&mut out, s, text.len());
    }
    out
}

#[cfg(test)]
#[path = "pii_names_tests.rs"]
mod tests;
