//! Phone numbers in international and national formats.
//!
//! Guarantee: a run of digits and separators is a phone number when it has 8 to 15 digits and the shape of
//! one: an international prefix (`+44 20 …`, `0049 …`), a national trunk prefix or area code (`07…`,
//! `(0301) …`, `(555) …`), or three to five short groups (`912 345 678`, `+48 123-45-67-89` without the
//! prefix); a bare digit run counts only after a phone cue ("call me on", "my mobile is"). Dates, prices,
//! US SSN shapes, card and tracking numbers (more than 15 digits) are left alone.

use regex::Regex;

pub(crate) struct PhoneFinder {
    candidate: Regex,
    date: Regex,
    grouped: Regex,
    cue: Regex,
}

impl PhoneFinder {
    pub(crate) fn new() -> Result<Self, regex::Error> {
        Ok(PhoneFinder {
            candidate: Regex::new(
                r"(?:\+\s?|\b00|\(|\b)\d(?:[\d]|[ .\-/]\d|[ .\-]?\(\d+\)[ .\-]?\d|\)[ .\-]?\d)*\d\b",
            )?,
            date: Regex::new(r"^\d{1,4}[./\-]\d{1,2}[./\-]\d{1,4}$")?,
            grouped: Regex::new(r"^\d{2,4}(?:[ .\-]\d{2,4}){2,4}$")?,
            cue: Regex::new(
                r"(?i)(?:phone|tel|telephone|mobile|cell|call(?: me)?(?: on| at)?|whatsapp|sms|text me(?: on| at)?|reach me(?: on| at)?|fax|my number(?: is)?|number is|handy|telefon|téléphone|teléfono|telefono|portable|móvil|cellulare)(?:\s+(?:number|no|nr))?(?:\s+is)?\W{0,3}$",
            )?,
        })
    }

    /// Byte spans of phone numbers in `text`.
    pub(crate) fn find(&self, text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for m in self.candidate.find_iter(text) {
            let s = m.as_str();
            let digits = s.chars().filter(char::is_ascii_digit).count();
            if !(8..=15).contains(&digits) || self.date.is_match(s) {
                continue;
            }
            let international = s.starts_with('+') || s.starts_with("00");
            let national = s.starts_with('(') || (s.starts_with('0') && digits >= 9);
            let ssn_shape = s.len() == 11 && s.as_bytes()[3] == b'-' && s.as_bytes()[6] == b'-';
            let grouped = self.grouped.is_match(s) && !ssn_shape && digits <= 12;
            // The cue pattern is anchored at the end, so it looks only at the words right before the number.
            let cued = self.cue.is_match(text[..m.start()].trim_end_matches(['(', ' ']));
            if international || national || grouped || (cued && digits <= 13) {
                out.push((m.start(), m.end()));
            }
        }
        out
    }
}
