//! The default phrase lists of the routing policy (tenants replace any of them in their `route` section).
//! English only: a tenant serving another language sets its own lists. Matched as whole words,
//! case-insensitively (see [`super::decide`]).

/// Greetings, thanks and goodbyes: a short message with one of these (and no complex or sensitive phrase)
/// is a greeting, always cheap.
pub const GREETING: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "hiya",
    "good morning",
    "good afternoon",
    "good evening",
    "thanks",
    "thank you",
    "thx",
    "cheers",
    "bye",
    "goodbye",
    "ok",
    "okay",
    "great",
    "perfect",
];

/// Phrases of the questions an FAQ answers (hours, shipping, returns, payment).
pub const FAQ: &[&str] = &[
    "opening hours",
    "open on",
    "hours",
    "how do i",
    "how can i",
    "where can i",
    "do you ship",
    "shipping cost",
    "delivery time",
    "return policy",
    "refund policy",
    "payment methods",
    "do you accept",
    "what is your",
    "what are your",
    "is there a",
    "how long does",
    "warranty",
    "size guide",
    "contact",
];

/// Complaint, cancellation, dispute and damage vocabulary (the `intent` feature).
pub const COMPLEX: &[&str] = &[
    "complaint",
    "complain",
    "complaining",
    "unacceptable",
    "disappointed",
    "furious",
    "angry",
    "ridiculous",
    "terrible",
    "worst",
    "escalate",
    "manager",
    "supervisor",
    "cancel",
    "cancellation",
    "terminate",
    "close my account",
    "refund",
    "compensation",
    "reimburse",
    "damaged",
    "broken",
    "wrong item",
    "charged twice",
    "double charged",
    "overcharged",
    "dispute",
    "fraud",
    "never arrived",
    "still waiting",
];

/// Legal and regulatory topics: always the capable tier.
pub const SENSITIVE: &[&str] = &[
    "lawyer",
    "attorney",
    "lawsuit",
    "sue",
    "legal action",
    "court",
    "chargeback",
    "ombudsman",
    "data breach",
    "gdpr",
];

/// Requests only a lookup can answer: orders, parcels, invoices, accounts, subscriptions.
pub const TOOLS: &[&str] = &[
    "order",
    "my order",
    "tracking",
    "track",
    "parcel",
    "package",
    "delivery status",
    "where is my",
    "invoice",
    "my account",
    "balance",
    "subscription",
];

/// A model hedging: a reply with one of these is low confidence.
pub const HEDGES: &[&str] = &[
    "i'm not sure",
    "i am not sure",
    "i'm not certain",
    "i am not certain",
    "i don't know",
    "i do not know",
    "i'm unable to",
    "i am unable to",
    "i cannot confirm",
    "i can't confirm",
    "i don't have access",
    "i do not have access",
    "i don't have information",
    "i do not have information",
];
