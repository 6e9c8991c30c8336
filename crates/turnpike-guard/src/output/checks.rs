//! The per-sentence output checks: content safety, brand, commitments, canaries, grounding.
//!
//! Guarantee: each check returns the policy's action for it plus a PII-free trigger, and only the checks
//! that matched return anything; deciding between them is the caller's job (most severe wins).

use crate::policy::{CompiledPolicy, PolicyError, SentenceAction};
use crate::Trigger;
use regex::{Regex, RegexSet};

pub(crate) struct OutputPatterns {
    harm: std::sync::Arc<crate::linear::LinearModel>,
    commitment: RegexSet,
    number: Regex,
    policy_name: Regex,
}

const COMMITMENTS: &[(&str, &str)] = &[
    (
        "guarantee",
        r"\b(i|we)\s+(can\s+)?(guarantee|promise|assure\s+you)\b|\bguaranteed\b|\blegally\s+binding\b|\bno\s+takesies\s+backsies\b",
    ),
    (
        "refund",
        r"\b(you\s*('ll|\s+will)\s+(get|receive|be\s+(given|issued|entitled\s+to))|(i|we)\s*('ll|\s+will|\s+can)\s+(give|issue|send|process|offer|approve))\s+(you\s+)?(a\s+|an\s+)?(full\s+|partial\s+|complete\s+)?(refund|credit|discount|voucher|compensation|replacement|reimbursement)",
    ),
    (
        "refund",
        r"\b(i|we)\s*('ll|\s+will|\s+can)\s+(refund|waive|credit|reimburse|discount|price[-\s]match|cancel\s+the\s+fee)\b",
    ),
    (
        "discount",
        r"\b\d+\s*%\s*(off|discount)\b|\bdiscount\s+of\b|\bfree\s+of\s+charge\b|\bat\s+no\s+(extra\s+)?cost\b",
    ),
    (
        "price",
        r"\bfor\s+(only\s+|just\s+)?[$€£]\s*\d|\b(price|cost|total)\s+(is|will\s+be|would\s+be)\s+(only\s+|just\s+)?[$€£]?\s*\d|\bthat'?s\s+a\s+deal\b",
    ),
    (
        "deadline",
        r"\b(will|'ll|guarantee)\b.*\b(by|within|before)\s+(\d+\s+(business\s+|working\s+)?(hours?|days?|weeks?)|tomorrow|tonight|monday|tuesday|wednesday|thursday|friday|saturday|sunday|end\s+of\s+(the\s+)?(day|week|month))\b",
    ),
];

impl OutputPatterns {
    pub(crate) fn new() -> Result<Self, PolicyError> {
        let err = |e: regex::Error| PolicyError::Pattern(e.to_string());
        Ok(OutputPatterns {
            harm: super::harm::shipped().map_err(PolicyError::Invalid)?,
            commitment: RegexSet::new(COMMITMENTS.iter().map(|c| c.1)).map_err(err)?,
            number: Regex::new(r"[$€£]?\d+(?:[.,]\d+)*\s*%?").map_err(err)?,
            policy_name: Regex::new(
                r"\b((?:[A-Z][a-z]+\s+){1,4}(?:Policy|Program|Programme|Plan|Guarantee|Fare|Fares|Warranty|Scheme|Protection|Promise|Discount))\b",
            )
            .map_err(err)?,
        })
    }
}

/// Runs every enabled check on one sentence. `folded` is the folded sentence, `window` the folded previous
/// and current sentence, `sources` the folded retrieval snippets.
pub(crate) fn run(
    pat: &OutputPatterns,
    policy: &CompiledPolicy,
    sentence: &str,
    folded: &str,
    window: &str,
    sources: &str,
) -> Vec<(SentenceAction, Trigger)> {
    let out = &policy.policy.output;
    let mut found = Vec::new();
    let verdict = |a: SentenceAction| match a {
        SentenceAction::Flag => "flag",
        SentenceAction::Redact => "redact",
        SentenceAction::Replace => "replace",
        SentenceAction::BlockAndHandoff => "block",
    };
    let mut hit = |a: SentenceAction, check: &'static str, detail: String| {
        found.push((a, Trigger::new(check, verdict(a), detail)));
    };

    // Canaries are compared on letters and digits only, so a canary split by spaces, punctuation or a
    // sentence boundary ("ZX-CANA.\nRY-91") still matches.
    let squeezed: String = window.chars().filter(|c| c.is_alphanumeric()).collect();
    for (i, c) in out.canaries.iter().enumerate() {
        let c: String = crate::normalize::fold(c).text.chars().filter(|c| c.is_alphanumeric()).collect();
        if !c.is_empty() && squeezed.contains(&c) {
            hit(SentenceAction::BlockAndHandoff, "canary", format!("canary#{i}"));
        }
    }
    if let Some(w) = policy.unsafe_words.first(folded) {
        hit(out.content_action, "content_safety", w.to_string());
    }
    if out.harm_threshold < 1.0 {
        let p = pat.harm.score(window);
        if p >= out.harm_threshold {
            let a =
                if out.content_action == SentenceAction::Redact { SentenceAction::Replace } else { out.content_action };
            hit(a, "content_safety", format!("harm_model:{p:.2}"));
        }
    }
    if let Some(w) = policy.competitors.first(folded) {
        hit(out.competitor_action, "brand", format!("competitor:{w}"));
    }
    if let Some(w) = policy.off_brand.first(folded) {
        hit(out.off_brand_action, "brand", format!("off_brand:{w}"));
    }
    if let Some(i) = pat.commitment.matches(folded).iter().next() {
        hit(out.commitment_action, "commitment", COMMITMENTS[i].0.to_string());
    }
    if out.grounding {
        if let Some(claim) = unsupported_claim(pat, sentence, sources) {
            hit(out.grounding_action, "grounding", claim);
        }
    }
    found
}

/// The first number or policy name in the sentence that the sources do not contain. Bare integers below
/// 10 are ignored: they are list markers and "1 moment", not claims.
fn unsupported_claim(pat: &OutputPatterns, sentence: &str, sources: &str) -> Option<String> {
    let digits_of = |s: &str| s.chars().filter(|c| c.is_ascii_digit() || *c == '.').collect::<String>();
    let source_numbers: Vec<String> = pat.number.find_iter(sources).map(|m| digits_of(m.as_str())).collect();
    for m in pat.number.find_iter(sentence) {
        let raw = m.as_str().trim();
        let d = digits_of(raw).trim_end_matches('.').to_string();
        let marked = raw.contains(['$', '€', '£', '%']);
        if !marked && d.parse::<u32>().is_ok_and(|n| n < 10) {
            continue;
        }
        if !source_numbers.iter().any(|s| s.trim_end_matches('.') == d) {
            return Some(format!("number:{raw}"));
        }
    }
    for c in pat.policy_name.captures_iter(sentence) {
        let name = c.get(1).map(|m| m.as_str()).unwrap_or("");
        if !sources.contains(&crate::normalize::fold(name).text) {
            return Some(format!("policy:{name}"));
        }
    }
    None
}
