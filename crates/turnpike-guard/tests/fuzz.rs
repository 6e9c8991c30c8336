//! Fuzz targets of the guard's input and output checks (issue 20), pattern checks only (the model checks
//! take the encoder's embedding, which the fuzzer does not reach). Whatever the text:
//! - the input check never panics, its PII spans are char-aligned spans of the input, and an email put
//!   anywhere in it never survives into the masked text;
//! - the output check releases the same sentences with the same verdicts however the reply is cut into
//!   deltas, and a checker restored from its persisted state after every delta releases what one that never
//!   stopped releases (a provider's chunking or a stage crash must not change what the user sees);
//! - a tenant policy document that does not parse or validate is an error, never a panic.
//!
//! Seeds: `tests/corpus/text/`.

use turnpike_fuzz::proptest::prelude::*;
use turnpike_guard::output::{OutputVerdict, Release};
use turnpike_guard::{CompiledPolicy, Guard, SessionPii};

fn seeds() -> Vec<Vec<u8>> {
    turnpike_fuzz::corpus(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/text"))
}

fn policy() -> CompiledPolicy {
    CompiledPolicy::from_json(r#"{"topics": {"denied": ["politics"]}, "output": {"competitors": ["Acme"]}}"#).unwrap()
}

#[test]
fn fuzz_guard_input_check() {
    let (guard, policy) = (Guard::new().unwrap(), policy());
    let email = "jane.doe42@example.com";
    let strategy = (turnpike_fuzz::text_from(seeds()), turnpike_fuzz::text_from(seeds()), any::<bool>());
    turnpike_fuzz::run("guard_input", 3_000, strategy, |(before, after, with_email)| {
        let text = if with_email { format!("{before} {email} {after}") } else { format!("{before}{after}") };
        let v = guard.check_input(&policy, &text, &mut SessionPii::default());
        for s in &v.pii_spans {
            prop_assert!(s.start < s.end && s.end <= text.len(), "span {}..{} of {}", s.start, s.end, text.len());
            prop_assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        }
        if with_email {
            prop_assert!(!v.masked_text.contains(email), "email kept in {:?}", v.masked_text);
        }
        Ok(())
    });
}

/// What a checker releases for `deltas`, restoring it from its persisted state after every push when
/// `restore` (as guard-out does after a crash).
fn released(guard: &Guard, policy: &CompiledPolicy, deltas: &[&str], restore: bool) -> Vec<Release> {
    let mut out = Vec::new();
    let mut checker = guard.output_checker(policy, &["Refunds take 30 days."]);
    for d in deltas {
        out.extend(checker.push(d));
        if restore {
            let state = checker.state();
            checker = guard.output_checker(policy, &["Refunds take 30 days."]).with_state(state);
        }
    }
    out.extend(checker.finish());
    out
}

/// Releases with their text's whitespace removed: a sentence's trailing spaces go with it or with the next
/// one depending on whether they had arrived, which changes nothing a reader sees.
fn trimmed(releases: Vec<Release>) -> Vec<Release> {
    releases
        .into_iter()
        .map(|mut r| {
            r.text = r.text.split_whitespace().collect();
            r
        })
        .filter(|r| !r.text.is_empty())
        .collect()
}

#[test]
fn fuzz_guard_output_check() {
    let (guard, policy) = (Guard::new().unwrap(), policy());
    let strategy = (turnpike_fuzz::text_from(seeds()), turnpike_fuzz::proptest::collection::vec(any::<usize>(), 0..6));
    turnpike_fuzz::run("guard_output", 10_000, strategy, |(reply, cuts)| {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (reply.len() + 1)).collect();
        cuts.retain(|c| reply.is_char_boundary(*c));
        cuts.extend([0, reply.len()]);
        cuts.sort_unstable();
        cuts.dedup();
        let deltas: Vec<&str> = cuts.windows(2).map(|w| &reply[w[0]..w[1]]).collect();
        let whole = trimmed(released(&guard, &policy, &[&reply], false));
        prop_assert_eq!(&trimmed(released(&guard, &policy, &deltas, false)), &whole, "cut at {:?}", cuts);
        prop_assert_eq!(&trimmed(released(&guard, &policy, &deltas, true)), &whole, "restored, cut at {:?}", cuts);
        if whole.iter().all(|r| r.verdict == OutputVerdict::Pass) && !reply.trim().is_empty() {
            let passed: Vec<&str> = whole.iter().map(|r| r.text.as_str()).collect();
            let written: String = reply.split_whitespace().collect();
            prop_assert_eq!(passed.concat(), written, "a reply that passes is released as written");
        }
        Ok(())
    });
}

#[test]
fn fuzz_guard_policy_documents() {
    let seeds = vec![
        br#"{"topics": {"denied": ["politics"]}, "output": {"competitors": ["Acme"]}}"#.to_vec(),
        br#"{"injection": {"threshold": 0.5, "extra_phrases": ["ignore"]}, "limits": {"max_chars": 4000}}"#.to_vec(),
        br#"{"pii": {"kinds": ["email", "card"]}, "handoff_phrases": ["human"]}"#.to_vec(),
    ];
    turnpike_fuzz::run("guard_policy", 20_000, turnpike_fuzz::text_from(seeds), |doc| {
        let _ = CompiledPolicy::from_json(&doc);
        Ok(())
    });
}
