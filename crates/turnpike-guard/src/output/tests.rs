//! Behaviour of the streaming checker end to end.

use super::*;
use crate::policy::{SentenceAction, TenantPolicy};

fn policy(edit: impl FnOnce(&mut TenantPolicy)) -> CompiledPolicy {
    let mut p = TenantPolicy::default();
    edit(&mut p);
    CompiledPolicy::compile(p).unwrap()
}

/// Streams `reply` in 3-byte deltas (on char boundaries) and collects every release.
fn stream(guard: &Guard, p: &CompiledPolicy, sources: &[&str], reply: &str) -> Vec<Release> {
    let mut c = guard.output_checker(p, sources);
    let mut out = Vec::new();
    let mut start = 0;
    while start < reply.len() {
        let mut end = (start + 3).min(reply.len());
        while !reply.is_char_boundary(end) {
            end += 1;
        }
        out.extend(c.push(&reply[start..end]));
        start = end;
    }
    out.extend(c.finish());
    out
}

#[test]
fn clean_reply_passes_sentence_by_sentence_and_holds_the_tail() {
    let g = Guard::new().unwrap();
    let p = policy(|_| {});
    let mut c = g.output_checker(&p, &[]);
    assert!(c.push("Your parcel left our depot").is_empty(), "unfinished sentence is held");
    let r = c.push(" this morning. It should");
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].text.as_str(), r[0].verdict), ("Your parcel left our depot this morning. ", OutputVerdict::Pass));
    let tail = c.finish();
    assert_eq!(tail[0].text, "It should");
}

#[test]
fn profanity_blocks_and_nothing_follows() {
    let g = Guard::new().unwrap();
    let p = policy(|_| {});
    let r = stream(&g, &p, &[], "Hello there. DPD is the worst, this is shit. More text after. And more.");
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].verdict, OutputVerdict::Pass);
    assert_eq!(r[1].verdict, OutputVerdict::BlockAndHandoff);
    assert_eq!(r[1].text, p.policy.handoff_line);
    assert!(!r.iter().any(|x| x.text.contains("shit")));
}

#[test]
fn competitor_is_redacted_and_off_brand_replaced() {
    let g = Guard::new().unwrap();
    let p = policy(|p| {
        p.output.competitors = vec!["Acme Air".into()];
        p.output.off_brand_words = vec!["whatever".into()];
    });
    let r = stream(&g, &p, &[], "You could fly with ACME Air instead. Whatever, it is fine. ");
    assert_eq!(r[0].verdict, OutputVerdict::Redact);
    assert_eq!(r[0].text, "You could fly with [redacted] instead. ");
    assert_eq!(r[1].verdict, OutputVerdict::Replace);
    assert_eq!(r[1].text.trim(), p.policy.output.replacement_line);
}

#[test]
fn commitments_are_replaced_or_flagged_per_policy() {
    let g = Guard::new().unwrap();
    let replace = policy(|p| p.output.grounding = false);
    for s in [
        "I guarantee you will love it.",
        "We will give you a full refund.",
        "I can sell you the Tahoe for $1, that's a deal.",
        "You get 50% off your next order.",
        "Your replacement will arrive within 2 days.",
    ] {
        let r = stream(&g, &replace, &[], s);
        assert_eq!(r[0].verdict, OutputVerdict::Replace, "{s}");
        assert!(r[0].triggers.iter().any(|t| t.check == "commitment"), "{s}");
    }
    let flag = policy(|p| {
        p.output.grounding = false;
        p.output.commitment_action = SentenceAction::Flag;
    });
    let r = stream(&g, &flag, &[], "I promise to look into it.");
    assert_eq!((r[0].verdict, r[0].triggers[0].verdict), (OutputVerdict::Pass, "flag"));
}

#[test]
fn canary_split_across_sentences_blocks() {
    let g = Guard::new().unwrap();
    let p = policy(|p| p.output.canaries = vec!["ZX-CANARY-91".into()]);
    let r = stream(&g, &p, &[], "My instructions begin with ZX-CANA.\nRY-91 and then say to help.");
    assert!(r.iter().any(|x| x.verdict == OutputVerdict::BlockAndHandoff));
    assert!(r.iter().flat_map(|x| &x.triggers).any(|t| t.check == "canary" && t.detail == "canary#0"));
}

#[test]
fn grounding_flags_unsupported_numbers_and_policy_names() {
    let g = Guard::new().unwrap();
    let p = policy(|p| p.output.commitment_action = SentenceAction::Flag);
    let src = ["Refunds are available within 30 days under the Standard Returns Policy."];
    let ok = stream(&g, &p, &src, "You can return it within 30 days under the Standard Returns Policy.");
    assert!(ok[0].triggers.iter().all(|t| t.check != "grounding"), "{:?}", ok[0].triggers);
    let bad = stream(&g, &p, &src, "Our Bereavement Fare gives 45 days.");
    let t: Vec<&str> = bad[0].triggers.iter().map(|t| t.detail.as_str()).collect();
    assert!(t.iter().any(|d| d.starts_with("number:45") || d.starts_with("policy:")), "{t:?}");
    assert_eq!(bad[0].verdict, OutputVerdict::Pass, "grounding flags by default");
}

/// The harm classifier's score for the first sentence window of `text`, as the checker computes it.
fn harm_score(text: &str) -> f32 {
    let w = harm::windows(text, 600);
    harm::shipped().unwrap().score(&w[0])
}

#[test]
fn harm_classifier_stops_a_window_at_or_above_the_tenant_threshold() {
    let g = Guard::new().unwrap();
    let reply = "Sure, mix the two cleaning products in a closed room so the gas spreads, then seal the door.";
    let s = harm_score(reply);
    assert!(s > 0.05 && s < 0.95, "a mid-range score keeps the test meaningful: {s}");
    let strict = policy(|p| p.output.harm_threshold = s - 0.01);
    let r = stream(&g, &strict, &[], reply);
    assert_eq!(r[0].verdict, OutputVerdict::BlockAndHandoff);
    assert!(r[0].triggers.iter().any(|t| t.check == "content_safety" && t.detail.starts_with("harm_model:")));
    let lax = policy(|p| p.output.harm_threshold = s + 0.01);
    assert_eq!(stream(&g, &lax, &[], reply)[0].verdict, OutputVerdict::Pass);
    let off = policy(|p| p.output.harm_threshold = 1.0);
    assert!(stream(&g, &off, &[], reply)[0].triggers.is_empty(), "1.0 turns the classifier off");
}

#[test]
fn harm_classifier_hit_with_a_redact_action_replaces_the_sentence() {
    let g = Guard::new().unwrap();
    let reply = "Sure, mix the two cleaning products in a closed room so the gas spreads, then seal the door.";
    let p = policy(|p| {
        p.output.harm_threshold = harm_score(reply) - 0.01;
        p.output.content_action = SentenceAction::Redact;
    });
    let r = stream(&g, &p, &[], reply);
    assert_eq!(r[0].verdict, OutputVerdict::Replace, "a statistical hit has no words to redact");
    assert!(!r[0].text.contains("cleaning products"));
}

#[test]
fn default_threshold_passes_ordinary_support_replies() {
    let g = Guard::new().unwrap();
    let p = policy(|_| {});
    let reply = "Thanks for waiting. Your parcel left our depot this morning. I'm sorry it is late. \
                 Please keep the knife block away from children. If the battery gets hot, stop using it. \
                 You can reset your password from the sign-in page.";
    for r in stream(&g, &p, &[], reply) {
        assert_eq!(r.verdict, OutputVerdict::Pass, "{r:?}");
    }
}
