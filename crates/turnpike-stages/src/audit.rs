//! Guardrail policies per tenant and the audit trail of their triggers, shared by guard-in and guard-out.
//!
//! Guarantee: every trigger that a guard stage acts on is also written, before the stage's offset moves, as
//! a `GuardAudit` record on the audit topic: at least once, with an `audit_id` that is the same on every
//! redelivery (turn, stage, position, trigger ordinal), and without raw PII (trigger details carry the PII
//! kind and the per-session token only — `turnpike-guard` builds them that way and its tests check it).

use turnpike_core::{PerTenant, TenantsConfig};
use turnpike_guard::policy::TenantPolicy;
use turnpike_guard::CompiledPolicy;
use turnpike_runner::{now_ms, Emitter, StageError};
use turnpike_schemas::{GuardAudit, GuardTrigger, TurnAction, Verdict};

/// Every tenant's compiled guard policy: section `guard` of the tenants file (`TURNPIKE_TENANTS_CONFIG`),
/// defaults when there is none. A policy that does not parse or compile stops the stage at start-up.
pub fn load_policies() -> Result<PerTenant<CompiledPolicy>, StageError> {
    let fatal = |e: String| StageError::fatal("guard_policy", e);
    let config = TenantsConfig::from_env().map_err(|e| fatal(e.to_string()))?;
    compile_policies(&config).map_err(fatal)
}

/// Section `guard` of `config`, compiled for every tenant. An error names whose settings it is in
/// (`tenants.acme.guard`, or `defaults.guard`), since a value that parses can still be invalid (a threshold
/// out of range, `guard.handoff.vip.sentiment_turns` above `sentiment.turns`).
pub fn compile_policies(config: &TenantsConfig) -> Result<PerTenant<CompiledPolicy>, String> {
    let raw = config.section::<TenantPolicy>("guard").map_err(|e| e.to_string())?;
    for (tenant, p) in raw.iter() {
        if let Err(e) = CompiledPolicy::compile(p.clone()) {
            return Err(match tenant {
                Some(t) => format!("tenants.{t}.guard: {e}"),
                None => format!("defaults.guard: {e}"),
            });
        }
    }
    raw.try_map(|p| CompiledPolicy::compile(p.clone())).map_err(|e| e.to_string())
}

/// Which policy applied, for the audit record.
pub fn policy_label(policies: &PerTenant<CompiledPolicy>, tenant: &str) -> String {
    if policies.has_own(tenant) {
        tenant.to_string()
    } else {
        "default".into()
    }
}

pub fn turn_action(a: TurnAction) -> &'static str {
    match a {
        TurnAction::Proceed => "proceed",
        TurnAction::Refuse => "refuse",
        TurnAction::Handoff => "handoff",
        TurnAction::Human => "human",
        TurnAction::Desk => "desk",
    }
}

pub fn sentence_verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Redact => "redact",
        Verdict::Replace => "replace",
        Verdict::Block => "block",
    }
}

/// Where in the turn the triggers were found: guard-in has one place per turn, guard-out one per released
/// sentence (its chunk index).
pub struct AuditSite<'a> {
    pub tenant_id: &'a str,
    pub session_id: &'a str,
    pub turn_id: &'a str,
    pub seq: i64,
    pub stage: &'static str,
    pub position: i32,
    pub action: &'a str,
    pub policy: &'a str,
}

/// Emits one audit record per trigger and counts it.
pub async fn emit(site: &AuditSite<'_>, triggers: &[GuardTrigger], out: &mut Emitter) -> Result<(), StageError> {
    for (i, t) in triggers.iter().enumerate() {
        metrics::counter!("turnpike_guardrail_triggers_total", "stage" => site.stage, "check" => t.check.clone(), "verdict" => t.verdict.clone(), "tenant" => turnpike_core::tenant_label(site.tenant_id))
            .increment(1);
        out.emit(&GuardAudit {
            audit_id: format!("{}:{}:{}:{i}", site.turn_id, site.stage, site.position),
            tenant_id: site.tenant_id.into(),
            session_id: site.session_id.into(),
            turn_id: site.turn_id.into(),
            seq: site.seq,
            stage: site.stage.into(),
            check: t.check.clone(),
            verdict: t.verdict.clone(),
            detail: t.detail.clone(),
            action: site.action.into(),
            policy: site.policy.into(),
            at_ms: now_ms(),
        })
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_handoff_setting_names_the_tenant_and_the_key() {
        let config = TenantsConfig::parse(
            "[tenants.acme.guard.handoff.sentiment]\nturns = 0\n[tenants.ok.guard.handoff.vip]\nimmediate = true\n",
        )
        .unwrap();
        let err = compile_policies(&config).err().unwrap_or_default();
        assert!(err.starts_with("tenants.acme.guard: ") && err.contains("guard.handoff.sentiment.turns"), "{err}");
        let typo = TenantsConfig::parse("[tenants.acme.guard.handoff.sentiment]\ntruns = 3\n").unwrap();
        let err = compile_policies(&typo).err().unwrap_or_default();
        assert!(err.contains("tenants.acme.guard") && err.contains("truns"), "{err}");
        let fine = TenantsConfig::parse("[tenants.ok.guard.handoff.vip]\nimmediate = true\n").unwrap();
        let policies = compile_policies(&fine).unwrap();
        assert!(policies.get("ok").triggers.triggers.vip.immediate);
        assert!(!policies.get("other").triggers.triggers.vip.immediate, "other tenants keep the defaults");
    }
}
