//! Person names and street addresses in free text, found with gazetteers rather than capital letters.
//!
//! Guarantee: a word is taken for a name when it is in the first-name or surname list
//! (`pii_gazetteer.txt`, derived from Faker's locale data) and is not an ordinary English word, a product or
//! brand word or a calendar word, whatever its case ("anna", "ANNA", "Anna"); a name that is also an English
//! word ("will", "mark", "rose") counts only after a cue phrase ("my name is", "regards,", "mr") or beside
//! another name word with both capitalised ("Mark Price"). A street address needs a house number next to a
//! street-type word ("12 baker street", "Hauptstraße 5", "via Roma 10", "12 rue de la Paix"); a postcode and
//! town after it are masked with it. So "mark the order as paid" or "3 green lights" stay intact.

use std::collections::HashSet;

static GAZETTEER: &str = include_str!("pii_gazetteer.txt");

/// Words the lists contain that, in support messages, are far more often products, brands, months or
/// places than people (team-written; capitalisation does not rescue them without a cue).
const NOT_NAMES: &[&str] = &[
    "alexa",
    "siri",
    "cortana",
    "kindle",
    "roku",
    "tesla",
    "dell",
    "lenovo",
    "asus",
    "acer",
    "samsung",
    "sony",
    "nokia",
    "huawei",
    "xiaomi",
    "honda",
    "toyota",
    "ford",
    "mercedes",
    "porsche",
    "ferrari",
    "jordan",
    "nike",
    "adidas",
    "puma",
    "zara",
    "ikea",
    "lidl",
    "aldi",
    "tesco",
    "costco",
    "walmart",
    "fedex",
    "dhl",
    "hermes",
    "evri",
    "paypal",
    "klarna",
    "visa",
    "mastercard",
    "maestro",
    "apple",
    "google",
    "amazon",
    "android",
    "iphone",
    "ipad",
    "pixel",
    "galaxy",
    "xbox",
    "nintendo",
    "netflix",
    "spotify",
    "disney",
    "uber",
    "safari",
    "firefox",
    "chrome",
    "opera",
    "outlook",
    "gmail",
    "zoom",
    "skype",
    "linux",
    "ubuntu",
    "java",
    "python",
    "ruby",
    "oracle",
    "sage",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "paris",
    "london",
    "berlin",
    "madrid",
    "rome",
    "vienna",
    "sydney",
    "dallas",
    "austin",
    "phoenix",
    "orlando",
    "florence",
    "victoria",
    "georgia",
    "carolina",
    "virginia",
    "india",
    "china",
    "israel",
    "jersey",
    "kent",
    "lincoln",
    "admin",
    "support",
    "team",
    "user",
    "customer",
    "ok",
    "hi",
    "hey",
    "hello",
    "thanks",
    "please",
    "sir",
    "madam",
    "dear",
    "bot",
];

/// Phrases after which the next words are a name even when they are also English words. (cue, strong):
/// after a strong cue, an unknown capitalised word is taken for a name too ("my name is Zbigniew").
const CUES: &[(&[&str], bool)] = &[
    (&["my", "name", "is"], true),
    (&["name", "is"], true),
    (&["name"], true),
    (&["call", "me"], true),
    (&["called"], false),
    (&["named"], false),
    (&["i", "am"], false),
    (&["i'm"], false),
    (&["im"], false),
    (&["this", "is"], false),
    (&["regards"], true),
    (&["sincerely"], true),
    (&["signed"], true),
    (&["thanks"], false),
    (&["cheers"], false),
    (&["mr"], true),
    (&["mrs"], true),
    (&["ms"], true),
    (&["miss"], false),
    (&["dr"], true),
    (&["spoke", "to"], false),
    (&["spoke", "with"], false),
    (&["talked", "to"], false),
    (&["holder", "is"], true),
    (&["addressed", "to"], false),
    (&["signed", "for", "by"], false),
];

/// Street words that mean a street whatever their case; the others in the list ("way", "court", "green",
/// "via") are English words and count only capitalised.
const STREET_ANYCASE: &[&str] = &[
    "street",
    "st",
    "str",
    "road",
    "rd",
    "avenue",
    "ave",
    "av",
    "boulevard",
    "blvd",
    "lane",
    "ln",
    "drive",
    "terrace",
    "crescent",
    "highway",
    "parkway",
    "straße",
    "strasse",
    "gasse",
    "allee",
    "platz",
    "weg",
    "rue",
    "chemin",
    "impasse",
    "calle",
    "avenida",
    "viale",
    "piazza",
    "corso",
    "rua",
    "travessa",
    "straat",
    "laan",
    "gracht",
    "plein",
    "ulica",
    "ul",
    "utca",
    "vej",
    "gatan",
    "vägen",
    "gade",
];

/// Endings of one-word street names ("Hauptstraße", "Kerkstraat", "Storgatan") followed by a house number.
const STREET_ENDINGS: &[&str] = &[
    "straße", "strasse", "str", "gasse", "weg", "allee", "platz", "ring", "damm", "ufer", "straat", "laan", "plein",
    "gracht", "kade", "dijk", "gatan", "vägen", "gata", "gränd", "gade", "vej", "torget", "veien",
];

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
            && t.lower.chars().all(char::is_alphabetic)
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
                let particle = ["van", "von", "de", "da", "di", "del", "der", "la", "le"].contains(&n.lower.as_str());
                let next_is_name = toks.get(j + 1).is_some_and(|m| self.is_name(m) && adjacent(text, n, m));
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
            let listed = anycase || (t.cap && self.street.contains(&t.lower));
            let compound = !listed
                && STREET_ENDINGS
                    .iter()
                    .any(|e| t.lower.len() > e.len() + 2 && t.lower.ends_with(e) && (t.cap || e.chars().count() >= 5));
            if !listed && !compound {
                continue;
            }
            // Words of the street name around the street word: capitalised, or any word after an any-case
            // street word ("12 baker street", "rue de la paix 12").
            let word_ok = |k: &Tok| k.cap || anycase || compound || PARTICLES.contains(&k.lower.as_str());
            let mut right = t.end;
            let mut j = i;
            let mut after = number_right_after(text, t.end);
            while after.is_none() && j + 1 < toks.len() && j < i + 4 && joined(text, &toks[j], &toks[j + 1]) {
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
            let mut before = number_right_before(text, t.start);
            while before.is_none() && left > 0 && left + 3 > i && adjacent(text, &toks[left - 1], &toks[left]) {
                left -= 1;
                if !(toks[left].cap || anycase || compound) {
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

const PARTICLES: &[&str] =
    &["de", "du", "des", "la", "le", "da", "do", "dos", "di", "del", "della", "degli", "van", "von", "der"];

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
mod tests {
    use crate::pii::{PiiDetector, PiiKind};
    use crate::SessionPii;

    fn mask(t: &str) -> String {
        let mut s = SessionPii::default();
        PiiDetector::new().unwrap().mask(t, &PiiKind::ALL, &mut s).0
    }

    #[test]
    fn names_are_found_whatever_their_case_and_without_a_cue() {
        assert_eq!(mask("hello, anna kowalski here"), "hello, [NAME_1] here");
        assert_eq!(mask("My husband Giovanni Rossi ordered it"), "My husband [NAME_1] ordered it");
        assert_eq!(mask("ask JOSÉ GARCÍA about it"), "ask [NAME_1] about it");
    }

    #[test]
    fn names_that_are_english_words_need_a_cue_or_a_capitalised_surname() {
        assert_eq!(
            mask("Please mark the order as paid, I will grant access"),
            "Please mark the order as paid, I will grant access"
        );
        assert_eq!(mask("my name is bill"), "my name is [NAME_1]");
        assert_eq!(mask("I spoke to Mark Price"), "I spoke to [NAME_1]");
        assert_eq!(mask("Regards, Zbigniew"), "Regards, [NAME_1]");
    }

    #[test]
    fn product_and_calendar_words_are_not_names() {
        let t = "My Alexa and the Jordan trainers from Amazon arrived in April via DHL";
        assert_eq!(mask(t), t);
    }

    #[test]
    fn street_addresses_in_several_countries_with_postcode_and_town() {
        assert_eq!(mask("send it to 12 baker street please"), "send it to [ADDRESS_1] please");
        assert_eq!(mask("Hauptstraße 5, 10115 Berlin is my flat"), "[ADDRESS_1] is my flat");
        assert_eq!(mask("j'habite 12 rue de la Paix, 75002 Paris."), "j'habite [ADDRESS_1].");
        assert_eq!(mask("Via Roma 10, Milano"), "[ADDRESS_1], Milano");
        assert_eq!(mask("ul. Polna 12, 00-950 Warszawa"), "[ADDRESS_1]");
    }

    #[test]
    fn numbers_near_ordinary_words_are_not_addresses() {
        for t in ["I bought 3 green lights and 2 way adapters", "Order 5 is on the way", "page 2 of the terms"] {
            assert_eq!(mask(t), t);
        }
    }

    #[test]
    fn international_and_national_phone_formats() {
        for p in
            ["+49-30-12345678", "+1 (415) 555-0134", "+48 123-45-67-89", "(030) 1234567", "07700 900123", "912 345 678"]
        {
            assert_eq!(mask(&format!("call me on {p} today")), "call me on [PHONE_1] today", "{p}");
        }
        assert_eq!(mask("my mobile is 612345678"), "my mobile is [PHONE_1]");
        for t in ["order 612345678 is late", "on 2024-05-14 at 10.30", "SSN-like 000-12-3456"] {
            assert!(!mask(t).contains("[PHONE"), "{t}");
        }
    }
}
