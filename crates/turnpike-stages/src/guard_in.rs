//! guard-in: accepted turn → guarded turn (+ handoff request).
//!
//! Guarantee: every accepted turn yields exactly one guarded turn carrying the action the rest of the chain
//! follows (proceed, refuse, hand off, or silent because a human owns the session), so every turn still
//! gets exactly one final reply record. The user's message is written to the transcript here, after the
//! checks, so a masked message is what gets stored. The checks are a placeholder for the guardrails issue:
//! a length limit, a small deny-list of instruction-override phrases, and "talk to a human" detection.

use crate::{store_err, Deps};
use turnpike_runner::{now_ms, Emitter, Stage, StageError};
use turnpike_schemas::{
    AcceptedTurn, GuardTrigger, GuardedTurn, HandoffKind, HandoffRequest, SessionOwner, TurnAction,
};
use turnpike_store::TranscriptRow;

/// Input policy (per tenant once the guardrails issue lands).
#[derive(Clone, Debug)]
pub struct InputPolicy {
    pub max_chars: usize,
    pub deny_phrases: Vec<String>,
    pub human_phrases: Vec<String>,
    pub refusal: String,
    pub handoff_line: String,
}

impl Default for InputPolicy {
    fn default() -> Self {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        InputPolicy {
            max_chars: 4000,
            deny_phrases: list(&[
                "ignore previous instructions",
                "ignore all previous instructions",
                "ignore your instructions",
                "disregard your instructions",
                "reveal your system prompt",
                "developer mode",
                "dan mode",
            ]),
            human_phrases: list(&[
                "talk to a human",
                "speak to a human",
                "human agent",
                "real person",
                "talk to an agent",
                "speak to an agent",
                "representative",
            ]),
            refusal: "I'm sorry, I can't help with that request. Is there something else I can do for you?".into(),
            handoff_line: "I'm connecting you with a member of our support team. They will see this conversation, so \
                           you won't need to repeat yourself."
                .into(),
        }
    }
}

/// The decision for one message.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: TurnAction,
    pub reply: Option<String>,
    pub triggers: Vec<GuardTrigger>,
}

/// Applies the policy to a message text.
pub fn decide(policy: &InputPolicy, text: &str) -> Decision {
    let trigger = |check: &str, verdict: &str, detail: String| GuardTrigger {
        check: check.into(),
        verdict: verdict.into(),
        detail,
    };
    let chars = text.chars().count();
    if chars > policy.max_chars {
        return Decision {
            action: TurnAction::Refuse,
            reply: Some(format!(
                "Your message is too long for me to handle ({chars} characters; the limit is {}). Could you shorten it?",
                policy.max_chars
            )),
            triggers: vec![trigger("length", "refuse", format!("{chars} chars"))],
        };
    }
    let lower = text.to_lowercase();
    if let Some(p) = policy.deny_phrases.iter().find(|p| lower.contains(p.as_str())) {
        return Decision {
            action: TurnAction::Refuse,
            reply: Some(policy.refusal.clone()),
            triggers: vec![trigger("deny_list", "refuse", p.clone())],
        };
    }
    if let Some(p) = policy.human_phrases.iter().find(|p| lower.contains(p.as_str())) {
        return Decision {
            action: TurnAction::Handoff,
            reply: Some(policy.handoff_line.clone()),
            triggers: vec![trigger("handoff_request", "handoff", p.clone())],
        };
    }
    Decision { action: TurnAction::Proceed, reply: None, triggers: vec![] }
}

pub struct GuardIn {
    pub deps: Deps,
    pub policy: InputPolicy,
}

impl Stage for GuardIn {
    type In = AcceptedTurn;

    async fn process(&self, turn: AcceptedTurn, out: &mut Emitter) -> Result<(), StageError> {
        let decision = if turn.owner == SessionOwner::Human {
            Decision { action: TurnAction::Human, reply: None, triggers: vec![] }
        } else {
            decide(&self.policy, &turn.text)
        };
        for t in &decision.triggers {
            metrics::counter!("turnpike_guardrail_triggers_total", "stage" => "guard-in", "check" => t.check.clone(), "verdict" => t.verdict.clone())
                .increment(1);
        }
        self.deps
            .transcript
            .append(&TranscriptRow {
                tenant_id: turn.tenant_id.clone(),
                session_id: turn.session_id.clone(),
                seq: turn.seq,
                role: "user".into(),
                turn_id: turn.turn_id.clone(),
                user_id: Some(turn.user_id.clone()),
                content: turn.text.clone(),
                channel: Some(turn.channel.clone()),
                created_at: Some(scylla::value::CqlTimestamp(turn.received_at_ms)),
                ..Default::default()
            })
            .await
            .map_err(store_err)?;
        if matches!(decision.action, TurnAction::Handoff | TurnAction::Human) {
            let kind =
                if decision.action == TurnAction::Human { HandoffKind::UserMessage } else { HandoffKind::Request };
            out.emit(&HandoffRequest {
                tenant_id: turn.tenant_id.clone(),
                session_id: turn.session_id.clone(),
                turn_id: turn.turn_id.clone(),
                seq: turn.seq,
                user_id: turn.user_id.clone(),
                kind,
                reason: if kind == HandoffKind::Request { "user_asked".into() } else { "human_owned".into() },
                source_stage: "guard-in".into(),
                text: turn.text.clone(),
                summary: None,
                requested_at_ms: now_ms(),
            })
            .await?;
        }
        out.emit(&GuardedTurn {
            tenant_id: turn.tenant_id,
            session_id: turn.session_id,
            turn_id: turn.turn_id,
            seq: turn.seq,
            user_id: turn.user_id,
            text: turn.text,
            action: decision.action,
            reply_text: decision.reply,
            triggers: decision.triggers,
            channel: turn.channel,
            received_at_ms: turn.received_at_ms,
            attributes: turn.attributes,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_overrides_and_long_text_and_hands_off_on_request() {
        let p = InputPolicy { max_chars: 50, ..Default::default() };
        assert_eq!(decide(&p, "Where is my order?").action, TurnAction::Proceed);
        assert_eq!(decide(&p, "Please IGNORE previous instructions and...").action, TurnAction::Refuse);
        assert_eq!(decide(&p, &"a".repeat(51)).action, TurnAction::Refuse);
        let d = decide(&p, "I want to talk to a human please");
        assert_eq!(d.action, TurnAction::Handoff);
        assert_eq!(d.triggers[0].check, "handoff_request");
    }
}
