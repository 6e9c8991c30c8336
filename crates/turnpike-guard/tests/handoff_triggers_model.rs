//! The handoff triggers that use the encoder (files from deploy/local/models.sh; these tests fail rather
//! than skip without them): sensitive topics matched by meaning, and the explicit request's head.

use std::sync::OnceLock;
use turnpike_guard::handoff::input::{decide, TurnSignals};
use turnpike_guard::handoff::SensitiveTrigger;
use turnpike_guard::policy::{CompiledPolicy, TenantPolicy};
use turnpike_guard::{Encoder, EncoderConfig, Guard, SessionPii};

fn guard() -> &'static Guard {
    static G: OnceLock<Guard> = OnceLock::new();
    G.get_or_init(|| {
        let cfg = EncoderConfig::from_env_or_local_cache().expect("model config");
        let enc = Encoder::load(&cfg).unwrap_or_else(|e| panic!("{e}: run deploy/local/models.sh first"));
        Guard::new().unwrap().with_encoder(enc).unwrap()
    })
}

fn policy() -> &'static CompiledPolicy {
    static P: OnceLock<CompiledPolicy> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = TenantPolicy::default();
        p.handoff.sensitive = SensitiveTrigger::suggested();
        CompiledPolicy::compile(p).unwrap()
    })
}

/// The default topic a message matches, and how.
fn topic(text: &str) -> Option<(String, &'static str)> {
    let e = guard().embed(text).unwrap().expect("model loaded");
    let hit = guard().sensitive_topic(&policy().triggers, text, Some(&e))?;
    Some((policy().triggers.triggers.sensitive.topics[hit.topic].name.clone(), hit.via))
}

#[test]
fn sensitive_topics_in_other_words_match_by_meaning() {
    for (text, expected) in [
        ("I'll see you in court", "legal"),
        ("I'm going to get a solicitor involved if you don't refund me", "legal"),
        ("There's a charge on my statement I never made", "billing_dispute"),
        ("The battery got really hot and started smoking", "safety"),
    ] {
        assert_eq!(topic(text), Some((expected.to_string(), "model")), "{text}");
    }
}

#[test]
fn ordinary_questions_and_near_misses_match_no_sensitive_topic() {
    for text in [
        "Where is my order? It should have arrived on Monday.",
        "How do I change my delivery address?",
        "the lawyer in that film was funny",
        "what is your refund policy",
        "I'd like to update the billing address on my account",
        "the person at the store was nice",
    ] {
        assert_eq!(topic(text), None, "{text}");
    }
}

#[test]
fn the_head_hands_off_a_request_in_other_words_and_not_a_mention_of_a_person() {
    let explicit = |text: &str| {
        let e = guard().embed(text).unwrap();
        let v = guard().check_input_with(policy(), text, &mut SessionPii::default(), e.as_ref(), &[]);
        decide(&policy().triggers, &TurnSignals { triggers: &v.triggers, ..Default::default() })
    };
    let d = explicit("is there any way I could chat with one of your staff members?").expect("a handoff");
    assert_eq!(d.reason, "user_asked");
    assert!(d.evidence.contains("handoff_request head scored"), "{}", d.evidence);
    assert_eq!(explicit("the person at the store was nice"), None);
    assert_eq!(explicit("The agent who delivered my parcel was rude."), None);
}
