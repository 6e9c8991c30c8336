//! route: assembled prompt → routed prompt.
//!
//! Guarantee: every prompt leaves with a tier, a model, a reason and its experiment variant, and every
//! decision is counted. Answered turns are decided by [`decide`] (hard rules, then a complexity score
//! against the tenant's threshold; features and rules documented there) over the tenant's policy from
//! the tenants file ([`policy`]), with the session's earlier failures read from Redis ([`signals`]).
//! Sessions in an experiment ([`experiment`]) get its model or system prompt, and its variant is recorded
//! on every one of their turns. Turns that will not reach the LLM (refused, handed off, human-owned)
//! pass through on the cheap tier with rule `not_answered`; a refused one is recorded as a failure of
//! the session, and one routed capable on its own merits as `complex` (its follow-up goes capable too).
//! The decision is deterministic given the turn and the session's signals, so a redelivered prompt is
//! routed the same way unless a signal arrived in between.
//!
//! Recorded on the turn: `tier`, `model`, `variant`, `route_reason` (`rule=… score=… threshold=…` and
//! every feature), and the attributes `route.rule` and `route.score`. Metrics:
//! `turnpike_route_decisions_total{tier,reason}` (reason = the rule), `turnpike_route_score{tier}`,
//! `turnpike_route_experiment_turns_total{experiment,variant}`; escalations are counted by generate
//! (`turnpike_route_escalations_total`, `turnpike_route_low_confidence_total`).

pub mod decide;
pub mod experiment;
pub mod policy;
pub mod signals;
pub mod vocabulary;

pub use decide::{decide, CompiledRoute, Decision, Features, TurnInput};
pub use policy::{RoutePolicy, Tier};
pub use signals::{SignalKind, Signals};

use turnpike_core::{PerTenant, TenantsConfig};
use turnpike_runner::{Emitter, Stage, StageError};
use turnpike_schemas::{AssembledPrompt, Role, RoutedPrompt, TurnAction};

use crate::Deps;

/// Every tenant's compiled routing policy: section `route` of the tenants file (`TURNPIKE_TENANTS_CONFIG`),
/// the defaults when there is none. A policy that does not parse or validate stops the stage at start-up.
pub fn load_policies() -> Result<PerTenant<CompiledRoute>, StageError> {
    let fatal = |e: String| StageError::fatal("route_policy", e);
    let config = TenantsConfig::from_env().map_err(|e| fatal(e.to_string()))?;
    compile_all(&config.section::<RoutePolicy>("route").map_err(|e| fatal(e.to_string()))?).map_err(fatal)
}

/// Validates and compiles every tenant's policy; an error names the tenant.
pub fn compile_all(raw: &PerTenant<RoutePolicy>) -> Result<PerTenant<CompiledRoute>, String> {
    for (tenant, p) in raw.iter() {
        p.validate().map_err(|e| format!("tenants.{}: {e}", tenant.unwrap_or("defaults")))?;
    }
    raw.try_map(|p| CompiledRoute::compile(p.clone()))
}

pub struct Route {
    pub deps: Deps,
    pub policies: PerTenant<CompiledRoute>,
}

impl Stage for Route {
    type In = AssembledPrompt;

    async fn process(&self, mut p: AssembledPrompt, out: &mut Emitter) -> Result<(), StageError> {
        let route = self.policies.get(&p.tenant_id);
        let (tier, model, reason, rule, variant) = if p.action == TurnAction::Proceed {
            let signals = signals::read(&self.deps, &p.tenant_id, &p.session_id, p.seq).await?;
            let user = p.messages.iter().rev().find(|m| m.role == Role::User).map_or("", |m| m.content.as_str());
            let d = decide(route, &TurnInput { text: user, seq: p.seq, attributes: &p.attributes, signals: &signals });
            if d.is_complex() {
                signals::record(&self.deps, &p.tenant_id, &p.session_id, p.seq, SignalKind::Complex).await?;
            }
            let applied = experiment::apply(&route.policy, &p.session_id, d.tier);
            if let Some(prompt) = &applied.system_prompt {
                let swapped = swap_system_prompt(&mut p, prompt);
                p.attributes
                    .insert("route.system_prompt".into(), if swapped { "variant" } else { "kept:budget" }.into());
            }
            count_experiments(&applied);
            metrics::histogram!("turnpike_route_score", "tier" => d.tier.name()).record(d.score);
            p.attributes.insert("route.rule".into(), d.rule.into());
            p.attributes.insert("route.score".into(), format!("{:.3}", d.score));
            let model = applied.model.unwrap_or_else(|| route.model(d.tier).to_string());
            (d.tier, model, d.reason(route.policy.threshold), d.rule, applied.variant)
        } else {
            if p.action == TurnAction::Refuse {
                signals::record(&self.deps, &p.tenant_id, &p.session_id, p.seq, SignalKind::Refused).await?;
            }
            // No LLM call will be made: the tier is nominal, the variant still recorded for comparison.
            let applied = experiment::apply(&route.policy, &p.session_id, Tier::Cheap);
            count_experiments(&applied);
            let reason = format!("rule=not_answered action={:?}", p.action).to_lowercase();
            (Tier::Cheap, route.policy.cheap_model.clone(), reason, "not_answered", applied.variant)
        };
        metrics::counter!("turnpike_route_decisions_total", "tier" => tier.name(), "reason" => rule).increment(1);
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
            tier: tier.name().into(),
            model,
            route_reason: reason,
            variant,
            prompt_tokens: p.prompt_tokens,
            budget_tokens: p.budget_tokens,
            channel: p.channel,
            received_at_ms: p.received_at_ms,
            attributes: p.attributes,
        })
        .await
    }
}

fn count_experiments(applied: &experiment::Applied) {
    for (name, variant) in &applied.experiments {
        metrics::counter!("turnpike_route_experiment_turns_total", "experiment" => name.clone(), "variant" => variant.clone())
            .increment(1);
    }
}

/// Replaces the system prompt with an experiment's, only if the result provably fits the turn's budget:
/// a token is never shorter than a byte, so `prompt_tokens + bytes(new)` bounds the new count whatever
/// the tokenizer. `prompt_tokens` is then re-estimated at 4 bytes per token for the swapped part.
fn swap_system_prompt(p: &mut AssembledPrompt, prompt: &str) -> bool {
    let Some(system) = p.messages.first_mut().filter(|m| m.role == Role::System) else { return false };
    let bound = i64::from(p.prompt_tokens) + prompt.len() as i64;
    if p.budget_tokens > 0 && bound > i64::from(p.budget_tokens) {
        return false;
    }
    let estimate = |s: &str| s.len().div_ceil(4) as i64;
    let tokens = i64::from(p.prompt_tokens) - estimate(&system.content) + estimate(prompt);
    system.content = prompt.to_string();
    p.prompt_tokens = tokens.clamp(0, i64::from(i32::MAX)) as i32;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_schemas::ChatMessage;

    #[test]
    fn an_experiment_prompt_replaces_the_system_prompt_only_within_budget() {
        let mut p = AssembledPrompt {
            messages: vec![
                ChatMessage { role: Role::System, content: "default".into() },
                ChatMessage { role: Role::User, content: "hi".into() },
            ],
            prompt_tokens: 100,
            budget_tokens: 200,
            ..Default::default()
        };
        assert!(!swap_system_prompt(&mut p, &"x".repeat(101)), "might not fit");
        assert_eq!(p.messages[0].content, "default");
        assert!(swap_system_prompt(&mut p, &"y".repeat(100)));
        assert_eq!(p.messages[0].content.len(), 100);
        assert_eq!(p.prompt_tokens, 100 - 2 + 25);
    }

    #[test]
    fn default_policies_compile_and_a_bad_tenant_is_named() {
        let raw = PerTenant::uniform(RoutePolicy::default())
            .with_tenant("acme", RoutePolicy { threshold: 2.0, ..RoutePolicy::default() });
        assert!(compile_all(&raw).unwrap_err().contains("tenants.acme"));
        assert!(compile_all(&PerTenant::uniform(RoutePolicy::default())).is_ok());
    }
}
