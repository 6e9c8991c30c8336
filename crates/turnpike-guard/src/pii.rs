//! PII detection with checksum validation, and masking with reversible per-session tokens.
//!
//! Guarantee: structured values are masked only when they validate (cards pass Luhn, IBANs pass mod-97,
//! SSNs and NINOs respect their allocation rules, Spanish DNIs their check letter), which keeps order
//! numbers and prices intact; the same value gets the same token (`[EMAIL_1]`) for the whole session, and
//! the token→value map lives only in [`SessionPii`] (whose `Debug` hides values) and the vault.

use crate::pii_names::Gazetteer;
use crate::pii_phone::PhoneFinder;
use crate::policy::PolicyError;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Card,
    Iban,
    UsSsn,
    UkNino,
    EsDni,
    Phone,
    Address,
    Name,
}

impl PiiKind {
    pub const ALL: [PiiKind; 9] = [
        PiiKind::Email,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::UsSsn,
        PiiKind::UkNino,
        PiiKind::EsDni,
        PiiKind::Phone,
        PiiKind::Address,
        PiiKind::Name,
    ];

    /// The token label: `[EMAIL_1]`.
    pub fn label(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Card => "CARD",
            PiiKind::Iban => "IBAN",
            PiiKind::UsSsn => "SSN",
            PiiKind::UkNino => "NINO",
            PiiKind::EsDni => "DNI",
            PiiKind::Phone => "PHONE",
            PiiKind::Address => "ADDRESS",
            PiiKind::Name => "NAME",
        }
    }
}

/// A detected value: kind and byte span in the original text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PiiSpan {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

/// One session's token map. Load it from the vault before a check, persist `take_new()` after.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SessionPii {
    by_token: HashMap<String, String>,
    by_value: HashMap<String, String>,
    counters: HashMap<&'static str, u32>,
    new: Vec<(String, String)>,
}

impl std::fmt::Debug for SessionPii {
    // Only tokens, never values: a session context may end up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut tokens: Vec<&String> = self.by_token.keys().collect();
        tokens.sort();
        f.debug_struct("SessionPii").field("tokens", &tokens).finish()
    }
}

impl SessionPii {
    /// Rebuilds a session from stored (token, value) pairs.
    pub fn from_entries<I: IntoIterator<Item = (String, String)>>(entries: I) -> Self {
        let mut s = SessionPii::default();
        for (token, value) in entries {
            s.insert(token, value, false);
        }
        s
    }

    fn insert(&mut self, token: String, value: String, fresh: bool) {
        // Counters continue after the highest stored number so tokens stay unique within the session.
        if let Some((label, n)) = token.trim_matches(['[', ']']).rsplit_once('_') {
            if let (Some(kind), Ok(n)) = (PiiKind::ALL.iter().find(|k| k.label() == label), n.parse::<u32>()) {
                let c = self.counters.entry(kind.label()).or_insert(0);
                *c = (*c).max(n);
            }
        }
        self.by_value.insert(value_key(&value), token.clone());
        if fresh {
            self.new.push((token.clone(), value.clone()));
        }
        self.by_token.insert(token, value);
    }

    /// The token for a value, minting `[LABEL_n]` the first time it is seen.
    pub fn token_for(&mut self, kind: PiiKind, value: &str) -> String {
        if let Some(t) = self.by_value.get(&value_key(value)) {
            return t.clone();
        }
        let c = self.counters.entry(kind.label()).or_insert(0);
        *c += 1;
        let token = format!("[{}_{}]", kind.label(), c);
        self.insert(token.clone(), value.to_string(), true);
        token
    }

    /// The original value of a token (for tools and the human agent).
    pub fn reveal(&self, token: &str) -> Option<&str> {
        self.by_token.get(token).map(String::as_str)
    }

    /// Replaces every known token in `text` by its value (e.g. before a tool call).
    pub fn unmask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (t, v) in &self.by_token {
            out = out.replace(t.as_str(), v);
        }
        out
    }

    /// Entries minted since the last call, to be persisted in the vault.
    pub fn take_new(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.new)
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// Same value, same token, whatever the spacing or case ("4111 1111…" and "4111-1111…").
fn value_key(v: &str) -> String {
    v.chars().filter(|c| c.is_alphanumeric() || *c == '@' || *c == '.').flat_map(char::to_lowercase).collect()
}

/// Masks personal data outside guard-in's check (a tool's result before the model reads it): guard-in's
/// patterns and validators, every kind, tokens from the session's map (a value already seen keeps its token).
pub struct PiiMasker(PiiDetector);

impl PiiMasker {
    pub fn new() -> Result<Self, PolicyError> {
        Ok(PiiMasker(PiiDetector::new()?))
    }

    /// `text` with each value replaced by its session token; new tokens wait in `session.take_new()`.
    pub fn mask(&self, text: &str, session: &mut SessionPii) -> String {
        self.0.mask(text, &PiiKind::ALL, session).0
    }
}

pub(crate) struct PiiDetector {
    email: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    nino: Regex,
    dni: Regex,
    phone: PhoneFinder,
    gazetteer: &'static Gazetteer,
    address: Regex,
    postcode: Regex,
    name: Regex,
}

impl PiiDetector {
    pub(crate) fn new() -> Result<Self, PolicyError> {
        let r = |p: &str| Regex::new(p).map_err(|e| PolicyError::Pattern(e.to_string()));
        Ok(PiiDetector {
            email: r(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,24}\b")?,
            card: r(r"\b\d(?:[ -]?\d){12,18}\b")?,
            iban: r(r"(?i)\b[a-z]{2}\d{2}(?:[ ]?[a-z0-9]){11,30}\b")?,
            ssn: r(r"\b(\d{3})[- ](\d{2})[- ](\d{4})\b")?,
            nino: r(r"(?i)\b([a-z]{2})[ ]?\d{2}[ ]?\d{2}[ ]?\d{2}[ ]?[a-d]\b")?,
            dni: r(r"(?i)\b(\d{8})[- ]?([a-z])\b")?,
            phone: PhoneFinder::new().map_err(|e| PolicyError::Pattern(e.to_string()))?,
            gazetteer: Gazetteer::shared(),
            address: r(
                r"\b\d{1,5}[a-zA-Z]?\s+(?:[A-Z][a-z]+\s+){1,3}(?i:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|close|crescent|square|sq)\b",
            )?,
            postcode: r(r"\b[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}\b")?,
            name: r(
                r"(?:[Mm]y name is|[Mm]y name's|[Tt]his is|[Nn]ame:|[Ii] am called|[Ss]igned,?|[Rr]egards,|[Ss]incerely,)\s+((?:[A-Z][a-z'-]+)(?:\s+[A-Z][a-z'-]+){0,2})",
            )?,
        })
    }

    /// All validated spans, longest-first on overlap, in text order.
    pub(crate) fn detect(&self, text: &str, kinds: &[PiiKind]) -> Vec<PiiSpan> {
        let mut spans: Vec<PiiSpan> = Vec::new();
        let on = |k: PiiKind| kinds.contains(&k);
        let mut push = |kind, start, end| spans.push(PiiSpan { kind, start, end });
        if on(PiiKind::Email) {
            self.email.find_iter(text).for_each(|m| push(PiiKind::Email, m.start(), m.end()));
        }
        if on(PiiKind::Iban) {
            // The pattern is greedy and may run into the next words ("… 3000 for me"); retry shorter
            // prefixes at space boundaries until one validates.
            for m in self.iban.find_iter(text) {
                let s = m.as_str();
                // Only cut before a word with a lowercase letter: IBAN groups are upper-case and digits, and
                // cutting inside them would give a 1-in-97 chance of validating a wrong number.
                let cuts = s
                    .char_indices()
                    .filter(|&(i, c)| {
                        c == ' ' && s[i + 1..].split(' ').next().is_some_and(|w| w.chars().any(|c| c.is_lowercase()))
                    })
                    .map(|(i, _)| i)
                    .rev();
                if let Some(end) = std::iter::once(s.len()).chain(cuts).find(|&e| iban_valid(&s[..e])) {
                    push(PiiKind::Iban, m.start(), m.start() + end);
                }
            }
        }
        if on(PiiKind::Card) {
            for m in self.card.find_iter(text).filter(|m| luhn_valid(m.as_str())) {
                push(PiiKind::Card, m.start(), m.end());
            }
        }
        if on(PiiKind::UsSsn) {
            for c in self.ssn.captures_iter(text) {
                let (area, group, serial) = (&c[1], &c[2], &c[3]);
                let area_ok = area != "000" && area != "666" && !area.starts_with('9');
                if area_ok && group != "00" && serial != "0000" {
                    if let Some(m) = c.get(0) {
                        push(PiiKind::UsSsn, m.start(), m.end());
                    }
                }
            }
        }
        if on(PiiKind::UkNino) {
            for c in self.nino.captures_iter(text) {
                if nino_prefix_valid(&c[1]) {
                    if let Some(m) = c.get(0) {
                        push(PiiKind::UkNino, m.start(), m.end());
                    }
                }
            }
        }
        if on(PiiKind::EsDni) {
            for c in self.dni.captures_iter(text) {
                if dni_valid(&c[1], &c[2]) {
                    if let Some(m) = c.get(0) {
                        push(PiiKind::EsDni, m.start(), m.end());
                    }
                }
            }
        }
        if on(PiiKind::Phone) {
            self.phone.find(text).into_iter().for_each(|(s, e)| push(PiiKind::Phone, s, e));
        }
        if on(PiiKind::Address) {
            self.address.find_iter(text).for_each(|m| push(PiiKind::Address, m.start(), m.end()));
            self.postcode.find_iter(text).for_each(|m| push(PiiKind::Address, m.start(), m.end()));
            self.gazetteer.addresses(text).into_iter().for_each(|(s, e)| push(PiiKind::Address, s, e));
        }
        if on(PiiKind::Name) {
            for c in self.name.captures_iter(text) {
                if let Some(m) = c.get(1) {
                    push(PiiKind::Name, m.start(), m.end());
                }
            }
            self.gazetteer.names(text).into_iter().for_each(|(s, e)| push(PiiKind::Name, s, e));
        }
        // Validated kinds were pushed before the looser phone pattern, so on overlap the longer (or, on a
        // tie, earlier-pushed, stricter) span wins.
        let mut order: Vec<usize> = (0..spans.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(spans[i].end - spans[i].start), i));
        let mut kept: Vec<PiiSpan> = Vec::new();
        for i in order {
            let s = &spans[i];
            if kept.iter().all(|k| s.end <= k.start || s.start >= k.end) {
                kept.push(s.clone());
            }
        }
        kept.sort_by_key(|s| s.start);
        kept
    }

    /// Replaces each span by its session token; returns the masked text and (span, token) per span.
    pub(crate) fn mask(
        &self,
        text: &str,
        kinds: &[PiiKind],
        session: &mut SessionPii,
    ) -> (String, Vec<(PiiSpan, String)>) {
        let spans = self.detect(text, kinds);
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut found = Vec::with_capacity(spans.len());
        for s in spans {
            out.push_str(&text[last..s.start]);
            let token = session.token_for(s.kind, &text[s.start..s.end]);
            out.push_str(&token);
            last = s.end;
            found.push((s, token));
        }
        out.push_str(&text[last..]);
        (out, found)
    }
}

pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

pub fn iban_valid(s: &str) -> bool {
    let c: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect();
    if !(15..=34).contains(&c.len()) || !c[2].is_ascii_digit() || !c[3].is_ascii_digit() {
        return false;
    }
    let mut rem: u64 = 0;
    for ch in c[4..].iter().chain(c[..4].iter()) {
        let v = match ch.to_digit(36) {
            Some(v) => v as u64,
            None => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

fn nino_prefix_valid(p: &str) -> bool {
    let p = p.to_ascii_uppercase();
    let b = p.as_bytes();
    let first_ok = !b"DFIQUV".contains(&b[0]);
    let second_ok = !b"DFIQUVO".contains(&b[1]);
    first_ok && second_ok && !["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"].contains(&p.as_str())
}

fn dni_valid(num: &str, letter: &str) -> bool {
    const LETTERS: &[u8] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    let n: u64 = match num.parse() {
        Ok(n) => n,
        Err(_) => return false,
    };
    letter.len() == 1 && letter.as_bytes()[0].to_ascii_uppercase() == LETTERS[(n % 23) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(t: &str) -> (String, SessionPii) {
        let d = PiiDetector::new().unwrap();
        let mut s = SessionPii::default();
        let (m, _) = d.mask(t, &PiiKind::ALL, &mut s);
        (m, s)
    }

    #[test]
    fn checksums_accept_valid_and_reject_invalid() {
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(!luhn_valid("4111 1111 1111 1112"));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_valid("GB82 WEST 1234 5698 7654 33"));
        assert!(dni_valid("12345678", "Z"));
        assert!(!dni_valid("12345678", "A"));
    }

    #[test]
    fn masks_each_kind_with_stable_tokens() {
        let (m, s) = mask(
            "IBAN GB82 WEST 1234 5698 7654 32 is mine. I'm jane.doe@example.com, card 4111-1111-1111-1111, IBAN DE89 3704 0044 0532 0130 00, \
             SSN 123-45-6789, NINO AB 12 34 56 C, call +44 20 7946 0958. Again: jane.doe@example.com",
        );
        assert_eq!(
            m,
            "IBAN [IBAN_1] is mine. I'm [EMAIL_1], card [CARD_1], IBAN [IBAN_2], SSN [SSN_1], NINO [NINO_1], call [PHONE_1]. \
             Again: [EMAIL_1]"
        );
        assert_eq!(s.reveal("[CARD_1]"), Some("4111-1111-1111-1111"));
        assert_eq!(s.unmask("mail [EMAIL_1]"), "mail jane.doe@example.com");
    }

    #[test]
    fn leaves_invalid_numbers_and_order_ids_alone() {
        let t = "Order 1234567812345678 costs $45.99, SSN-like 666-12-3456, ref 000-00-0000.";
        assert_eq!(mask(t).0, t);
    }

    #[test]
    fn masks_addresses_and_names_from_cues() {
        let (m, _) = mask("My name is Maria Lopez and I live at 221 Baker Street, London NW1 6XE.");
        assert_eq!(m, "My name is [NAME_1] and I live at [ADDRESS_1], London [ADDRESS_2].");
    }

    #[test]
    fn debug_never_shows_values_and_counters_resume() {
        let (_, mut s) = mask("mail a@b.io");
        assert!(!format!("{s:?}").contains("a@b.io"));
        let stored = s.take_new();
        assert_eq!(stored, vec![("[EMAIL_1]".to_string(), "a@b.io".to_string())]);
        let mut again = SessionPii::from_entries(stored);
        assert_eq!(again.token_for(PiiKind::Email, "c@d.io"), "[EMAIL_2]");
        assert_eq!(again.token_for(PiiKind::Email, "A@B.io"), "[EMAIL_1]");
    }
}
