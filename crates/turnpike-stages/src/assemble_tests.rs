//! Unit tests of the budgeted prompt builder: the budget is never exceeded, priorities hold, truncation is
//! as documented, and the reported count is the tokenizer's count of the emitted messages.

use super::*;

fn counter(model: &str) -> TokenCounter {
    TokenCounter::for_model(model).unwrap()
}

fn msg(role: Role, content: &str) -> ChatMessage {
    ChatMessage { role, content: content.into() }
}

/// A small deterministic generator: no rand dependency, same cases on every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "refund",
    "order",
    "parcel",
    "ünïcode",
    "日本語",
    "délai",
    "the",
    "a",
    "we",
    "will",
    "3",
    "days",
    "🙂",
    "customer",
    "account",
    "https://example.com/x?y=1",
    "\n",
    "  ",
    "tracking",
    "#4421",
    "é",
    "price",
    "$19.99",
];

fn text(rng: &mut Lcg, max_words: usize) -> String {
    let n = rng.next(max_words + 1);
    (0..n).map(|_| WORDS[rng.next(WORDS.len())]).collect::<Vec<_>>().join(" ")
}

#[test]
fn the_budget_is_never_exceeded_over_random_histories() {
    let mut rng = Lcg(42);
    for case in 0..400 {
        let model = ["gpt-4o-mini", "gpt-4", "claude-sonnet-4-5", "gemini-2.0-flash"][case % 4];
        let c = counter(model);
        let policy = ContextPolicy {
            model: model.into(),
            budget_tokens: 300 + rng.next(3000),
            recent_messages: 1 + rng.next(30),
            summary_budget_tokens: rng.next(800),
            knowledge_budget_tokens: rng.next(800),
            ..Default::default()
        };
        let history: Vec<ChatMessage> = (0..rng.next(60))
            .map(|i| msg(if i % 2 == 0 { Role::User } else { Role::Assistant }, &text(&mut rng, 300)))
            .collect();
        let summary = (rng.next(2) == 0).then(|| Summary {
            text: text(&mut rng, 600),
            commitments: (0..rng.next(5)).map(|_| text(&mut rng, 30)).collect(),
            covered_seq: 7,
        });
        let passages: Vec<Passage> = (0..rng.next(5))
            .map(|i| Passage { source: format!("doc{i}.md"), location: "L1-9".into(), text: text(&mut rng, 400) })
            .collect();
        let long = rng.next(10) == 0;
        let user = text(&mut rng, if long { 5000 } else { 80 });
        let a = build(&c, &policy, summary.as_ref(), &passages, &history, &user);
        let recount = prompt_tokens(&c, &a.messages);
        assert_eq!(recount, a.tokens, "case {case}: reported count is the real count");
        assert!(a.tokens <= policy.budget_tokens, "case {case}: {} > {}", a.tokens, policy.budget_tokens);
        assert_eq!(a.messages.first().unwrap().content, policy.system_prompt, "case {case}: system prompt whole");
        assert_eq!(a.messages.last().unwrap().role, Role::User);
        assert_eq!(a.history_kept + a.history_dropped, history.len());
        assert!(a.history_kept <= policy.recent_messages);
        let kept: Vec<_> = a.messages.iter().filter(|m| m.role != Role::System).cloned().collect();
        let tail = &history[history.len() - a.history_kept..];
        assert_eq!(&kept[..kept.len() - 1], tail, "case {case}: a contiguous run ending at the newest message");
    }
}

#[test]
fn parts_come_in_priority_order_and_layout() {
    let c = counter("gpt-4o-mini");
    let policy = ContextPolicy::default();
    let summary = Summary {
        text: "Ana wants her money back for order 4421.".into(),
        commitments: vec!["We will refund your order within 3 days.".into()],
        covered_seq: 12,
    };
    let passages =
        vec![Passage { source: "faq.md".into(), location: "Refunds".into(), text: "Refunds take 3 days.".into() }];
    let history = vec![msg(Role::User, "old question"), msg(Role::Assistant, "old answer")];
    let a = build(&c, &policy, Some(&summary), &passages, &history, "what now?");
    let roles: Vec<Role> = a.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, vec![Role::System, Role::System, Role::System, Role::User, Role::Assistant, Role::User]);
    assert!(a.messages[1].content.contains("turns 1 to 12"));
    assert!(a.messages[1].content.contains("Commitments:\n- We will refund your order within 3 days."));
    assert!(a.messages[2].content.contains("[1] faq.md (Refunds)\nRefunds take 3 days."));
    assert_eq!(a.citations.len(), 1);
    assert_eq!(a.citations[0].source, "faq.md");
    assert_eq!((a.history_kept, a.history_dropped), (2, 0));
    assert_eq!(a.messages[5].content, "what now?");

    // With room for only the system prompt, the message and a little more: history goes first, then
    // knowledge, then the summary; the user's message stays whole.
    let base = prompt_tokens(&c, &[msg(Role::System, &policy.system_prompt), msg(Role::User, "what now?")]);
    let tight = ContextPolicy { budget_tokens: base + a.summary_tokens, ..Default::default() };
    let t = build(&c, &tight, Some(&summary), &passages, &history, "what now?");
    assert_eq!(t.messages.len(), 3, "system, summary, user");
    assert!(t.messages[1].content.contains("Commitments:"));
    assert_eq!((t.history_kept, t.history_dropped, t.citations.len()), (0, 2, 0));
}

#[test]
fn the_user_message_is_cut_only_as_a_last_resort() {
    let c = counter("gpt-4o-mini");
    let policy = ContextPolicy { system_prompt: "sys".into(), budget_tokens: 200, ..Default::default() };
    let long = "é".repeat(5000);
    let history = vec![msg(Role::User, "earlier")];
    let a = build(&c, &policy, None, &[], &history, &long);
    assert!(a.user_truncated);
    assert!(a.tokens <= 200);
    assert!(long.starts_with(&a.messages.last().unwrap().content), "the start of the message is kept");
    assert_eq!(a.history_kept, 0);
    let fits = build(&c, &policy, None, &[], &history, "short");
    assert!(!fits.user_truncated);
    assert_eq!(fits.history_kept, 1);
}

#[test]
fn a_long_summary_keeps_its_commitments_and_cuts_the_narrative() {
    let c = counter("gpt-4o-mini");
    let s = Summary {
        text: "The customer talked about many things. ".repeat(200),
        commitments: vec!["We will refund your order within 3 days.".into(), "I will call you Friday.".into()],
        covered_seq: 30,
    };
    let text = render_summary(&c, &s, 120).unwrap();
    assert!(c.count(&text) <= 120);
    assert!(text.ends_with("- We will refund your order within 3 days.\n- I will call you Friday."));
    assert!(text.contains("The customer talked"));
    let first = "Summary of the earlier conversation (turns 1 to 30):\n\n\nCommitments:\n- We will refund your order within 3 days.";
    let only = render_summary(&c, &s, c.count(first)).unwrap();
    assert!(only.contains("- We will refund your order within 3 days."), "{only}");
    assert!(!only.contains("Friday"), "the oldest commitments are kept first");
    assert!(render_summary(&c, &s, 5).is_none());
}

#[test]
fn passages_are_whole_or_usefully_cut_then_the_list_ends() {
    let c = counter("gpt-4o-mini");
    let p = |i: usize, words: usize| Passage {
        source: format!("doc{i}.md"),
        location: format!("L{i}"),
        text: "refunds are processed quickly ".repeat(words),
    };
    let passages = vec![p(1, 10), p(2, 200), p(3, 10)];
    let (text, cited) = render_passages(&c, &passages, 300).unwrap();
    assert!(c.count(&text) <= 300);
    assert_eq!(cited.len(), 2, "the second is cut to fit, the third is not reached");
    assert_eq!(cited[0].snippet, passages[0].text);
    assert!(passages[1].text.starts_with(&cited[1].snippet) && cited[1].snippet.len() < passages[1].text.len());
    let (_, small) = render_passages(&c, &passages, 80).unwrap();
    assert_eq!(small.len(), 1, "less than 64 tokens left: the second is dropped, not cut");
}
