//! The scripted mix of support conversations the cost report routes.
//!
//! Source of realism, and what is assumed: the seed (`seed-architecture.md`) gives the shape — an average of
//! 5 turns per conversation, "simple queries (greetings, FAQ, short answers)" as the bulk that a cheap
//! model serves ("85–90% of traffic"), complaints, billing disputes and legal topics as the escalation
//! cases, most conversations done within 30 minutes. The conversation *kinds* below are the usual contact
//! reasons of an online shop's support (opening hours and shipping questions, "where is my order", returns,
//! invoices, cancellations, complaints, a long troubleshooting session); their *shares* and the reply
//! lengths are this report's assumptions, not measured data, and are printed with the results so they can
//! be challenged. The messages are written the way customers write them (short, typos aside), and the
//! complaint is deliberately long and multi-part: the case the router must send to the capable tier.

/// One user turn and what answering it takes.
pub struct Turn {
    pub user: &'static str,
    /// Tokens of the assistant's reply (assumed, by kind of answer).
    pub reply_tokens: usize,
    /// Model calls that are tool calls before the answer (an order or invoice lookup).
    pub tool_calls: usize,
}

pub struct Conversation {
    pub name: &'static str,
    /// Share of all conversations (the shares sum to 1).
    pub share: f64,
    /// The turn attribute `customer_tier`, when the conversation has one.
    pub customer_tier: Option<&'static str>,
    pub turns: Vec<Turn>,
}

const fn t(user: &'static str, reply_tokens: usize) -> Turn {
    Turn { user, reply_tokens, tool_calls: 0 }
}

const fn tool(user: &'static str, reply_tokens: usize) -> Turn {
    Turn { user, reply_tokens, tool_calls: 1 }
}

pub fn conversations() -> Vec<Conversation> {
    vec![
        Conversation {
            name: "greeting + FAQ",
            share: 0.28,
            customer_tier: None,
            turns: vec![
                t("Hi!", 20),
                t("What are your opening hours on weekends?", 60),
                t("Do you ship to Canada?", 70),
                t("How long does delivery take to Toronto?", 60),
                t("Thanks, bye!", 15),
            ],
        },
        Conversation {
            name: "order status (tool)",
            share: 0.25,
            customer_tier: None,
            turns: vec![
                t("Hello", 20),
                tool("Where is my order 48213? It was supposed to arrive yesterday.", 90),
                t("Can I change the delivery address to my office instead?", 80),
                tool("The office is at 12 Market Street, same city. Can you update order 48213?", 70),
                t("Great, thank you!", 15),
            ],
        },
        Conversation {
            name: "returns FAQ",
            share: 0.15,
            customer_tier: None,
            turns: vec![
                t("How do I return an item?", 110),
                t("Is there a return fee for sale items?", 60),
                t("How long does the refund take once you receive the parcel?", 60),
                t("ok thanks", 15),
            ],
        },
        Conversation {
            name: "invoice / billing (tool, premium)",
            share: 0.10,
            customer_tier: Some("premium"),
            turns: vec![
                tool("Hi, I need a copy of my last invoice for my company's accounts.", 80),
                t("Can you send it to a different email address?", 60),
                t("Also, can I switch to annual billing? What would it cost per month then?", 120),
                t("Perfect, thank you", 15),
            ],
        },
        Conversation {
            name: "cancellation with a dispute",
            share: 0.07,
            customer_tier: None,
            turns: vec![
                t("I want to cancel my subscription.", 90),
                t("Why was I charged again after I cancelled last month? This is ridiculous, I want a refund.", 160),
                t("Ok. And when will the money be back on my card?", 70),
                t("Thanks", 15),
            ],
        },
        Conversation {
            name: "multi-part complaint",
            share: 0.08,
            customer_tier: None,
            turns: vec![
                t(
                    "I am writing to make a formal complaint. My order arrived damaged, I was charged twice for it, \
                     and when I called your support line the agent hung up on me after forty minutes on hold. This \
                     is completely unacceptable. Why was I charged twice? When will I get my refund for the second \
                     charge? And who is going to pay for the return shipping of a product that was broken when it \
                     arrived?",
                    250,
                ),
                t(
                    "That's not good enough. I want compensation for the time I wasted, and I want to know why \
                     nobody called me back when I was promised a call within 24 hours.",
                    200,
                ),
                t("If this isn't resolved this week I will take legal action.", 150),
                t("Fine. Please confirm in writing what you just promised me.", 120),
                t("Ok, thank you", 15),
            ],
        },
        Conversation {
            name: "long troubleshooting (14 turns, enterprise)",
            share: 0.07,
            customer_tier: Some("enterprise"),
            turns: vec![
                t("Hello", 20),
                t("Our smart thermostat stopped connecting to the wifi this morning.", 120),
                t("Yes, I restarted it twice already.", 90),
                t("The light is blinking orange.", 100),
                t("How do I do a network reset?", 110),
                t("Done. It now shows a solid blue light but the app still says offline.", 120),
                t("The app is on version 5.2. Is that the latest?", 60),
                t("Ok, updating now.", 20),
                t("It works again on my phone, but my colleague's phone still shows it offline. Why?", 110),
                t("She is on the same account. Does she need to log out and in again?", 70),
                t("That fixed it.", 20),
                t("Also, is there a way to get alerts when it goes offline again? And can we add a third user?", 140),
                t("Great. Can you summarise what we did so I can send it to our facilities team?", 180),
                t("Thanks a lot, bye", 15),
            ],
        },
    ]
}
