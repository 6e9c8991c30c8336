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
    let raw = config.section::<TenantPolicy>("guard").map_err(|e| fatal(e.to_string()))?;
    raw.try_map(|p| CompiledPolicy::compile(p.clone())).map_err(|e| fatal(e.to_string()))
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
        metrics::counter!("turnpike_guardrail_triggers_total", "stage" => site.stage, "check" => t.check.clone(), "verdict" => t.verdict.clone())
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
