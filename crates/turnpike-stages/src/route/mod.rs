//! route: assembled prompt → routed prompt.
//!
//! Guarantee: every prompt gets a tier and a recorded reason. Rules for now (the routing issue adds a
//! complexity score and experiments): long prompts, long messages and complaint/escalation vocabulary go to
//! the capable tier; everything else to the cheap tier, which should carry most traffic.

use turnpike_runner::{Emitter, Stage, StageError};
use turnpike_schemas::{AssembledPrompt, Role, RoutedPrompt};

/// Tier names and their models.
#[derive(Clone, Debug)]
pub struct RoutePolicy {
    pub cheap_model: String,
    pub capable_model: String,
    pub capable_prompt_tokens: i32,
    pub capable_message_chars: usize,
    pub capable_keywords: Vec<String>,
}

impl Default for RoutePolicy {
    fn default() -> Self {
        RoutePolicy {
            cheap_model: "gpt-4o-mini".into(),
            capable_model: "gpt-4o".into(),
            capable_prompt_tokens: 3000,
            capable_message_chars: 600,
            capable_keywords: [
                "complaint",
                "lawyer",
                "legal",
                "refund",
                "chargeback",
                "cancel my",
                "furious",
                "unacceptable",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

/// `(tier, model, reason)` for a prompt.
pub fn choose(policy: &RoutePolicy, prompt: &AssembledPrompt) -> (&'static str, String, String) {
    let user = prompt.messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.as_str()).unwrap_or("");
    let lower = user.to_lowercase();
    let capable = |reason: String| ("capable", policy.capable_model.clone(), reason);
    if prompt.prompt_tokens > policy.capable_prompt_tokens {
        return capable(format!("prompt_tokens>{}", policy.capable_prompt_tokens));
    }
    if user.chars().count() > policy.capable_message_chars {
        return capable(format!("message_chars>{}", policy.capable_message_chars));
    }
    if let Some(k) = policy.capable_keywords.iter().find(|k| lower.contains(k.as_str())) {
        return capable(format!("keyword:{k}"));
    }
    ("cheap", policy.cheap_model.clone(), "default".into())
}

pub struct Route {
    pub policy: RoutePolicy,
}

impl Stage for Route {
    type In = AssembledPrompt;

    async fn process(&self, p: AssembledPrompt, out: &mut Emitter) -> Result<(), StageError> {
        let (tier, model, reason) = choose(&self.policy, &p);
        metrics::counter!("turnpike_route_decisions_total", "tier" => tier).increment(1);
        out.emit(&RoutedPrompt {
            tenant_id: p.tenant_id,
            session_id: p.session_id,
            turn_id: p.turn_id,
            seq: p.seq,
            user_id: p.user_id,
            action: p.action,
            reply_text: p.reply_text,
            messages: p.messages,
            citations: p.citations,
            tier: tier.into(),
            model,
            route_reason: reason,
            variant: None,
            prompt_tokens: p.prompt_tokens,
            budget_tokens: p.budget_tokens,
            channel: p.channel,
            received_at_ms: p.received_at_ms,
            attributes: p.attributes,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_schemas::ChatMessage;

    fn prompt(text: &str) -> AssembledPrompt {
        AssembledPrompt { messages: vec![ChatMessage { role: Role::User, content: text.into() }], ..Default::default() }
    }

    #[test]
    fn greetings_go_cheap_and_complaints_go_capable() {
        let p = RoutePolicy::default();
        assert_eq!(choose(&p, &prompt("Hi there!")).0, "cheap");
        assert_eq!(choose(&p, &prompt("I want to file a complaint about my bill")).0, "capable");
        assert_eq!(choose(&p, &prompt(&"why ".repeat(200))).0, "capable");
    }
}
