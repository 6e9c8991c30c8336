//! guard-in: accepted turn → guarded turn (+ handoff request).
//!
//! Guarantee: every accepted turn yields exactly one guarded turn carrying the action the rest of the chain
//! follows (proceed, refuse, hand off, or silent because a human owns the session), so every turn still gets
//! exactly one final reply record. The input checks of `turnpike-guard` run here: prompt injection,
//! PII masking with reversible per-session tokens (the vault keeps the values; the LLM, the transcript and
//! every later topic see only tokens such as `[EMAIL_1]`), topic boundary, length, language and garbage.
//! The user's message is written to the transcript here, after masking. Triggers carry no raw PII. Each
//! tenant gets its own policy (section `guard` of the tenants file) and every trigger is audited.
//! With the encoder loaded (`TURNPIKE_MODEL_DIR`, `ORT_DYLIB_PATH`; `deploy/local/models.sh`), the message is
//! embedded once and the heads on it (injection, request for a human, abuse aimed at the bot) add their
//! verdicts to the patterns', and the session's earlier messages (kept in Redis, quantized) give the
//! repetition signal ("the same question for the third time"); the sentiment head's score of every turn
//! travels as a `sentiment` trigger (verdict `flag` when negative, `score` otherwise; `score` triggers are
//! not audited) whose detail has the session's trend, from the last scores kept in Redis ([`sentiment_key`];
//! see `turnpike_guard::semantic::SentimentTrend`); without it the stage still runs, pattern checks only, says so at start-up and
//! reports `turnpike_guard_model_loaded 0`.
//! On a bot-owned turn the tenant's handoff triggers (`guard.handoff`: explicit request, sensitive topic,
//! sustained frustration, a repeated question, VIP rules; `turnpike_guard::handoff`) decide whether it goes
//! to a person; a handoff they decide carries its reason, evidence, priority and tags (`crate::triggers`).

use crate::audit::{self, AuditSite};
use crate::triggers::{self, TurnRef};
use crate::{store_err, Deps};
use redis::AsyncCommands;
use std::sync::Arc;
use turnpike_core::PerTenant;
use turnpike_guard::handoff::input::{decide, vip_tier, TurnSignals};
use turnpike_guard::handoff::{frustration, HandoffDecision};
use turnpike_guard::vault::RedisVault;
use turnpike_guard::{semantic, CompiledPolicy, Embedding, Guard, InputAction, InputVerdict, PiiVault, SessionHistory};
use turnpike_runner::{now_ms, Emitter, Stage, StageError};
use turnpike_schemas::{
    AcceptedTurn, GuardTrigger, GuardedTurn, HandoffKind, HandoffRequest, SessionOwner, TurnAction,
};
use turnpike_store::TranscriptRow;

pub struct GuardIn {
    pub deps: Deps,
    pub guard: Arc<Guard>,
    pub policies: PerTenant<CompiledPolicy>,
    pub vault: RedisVault,
    /// The tenants' CRM lookups (see [`crate::crm`]).
    pub crm: reqwest::Client,
}

impl GuardIn {
    /// The guard with the tenants' policies and the Redis vault (values kept as long as the session's state).
    pub async fn new(deps: Deps, redis_url: &str, policies: PerTenant<CompiledPolicy>) -> Result<Self, StageError> {
        let (guard, model) = Guard::from_env().map_err(|e| StageError::fatal("guard_policy", e.to_string()))?;
        // Loud on purpose: without the encoder the injection, request-for-a-human and abuse heads are off and
        // only the pattern checks run; the gauge lets a dashboard alert on it.
        match &model {
            Ok(name) => tracing::info!(model = %name, "Input model checks are on."),
            Err(error) => tracing::error!(
                %error,
                "INPUT MODEL CHECKS ARE OFF: guard-in runs pattern checks only. Fetch the files with \
                 deploy/local/models.sh and set TURNPIKE_MODEL_DIR and ORT_DYLIB_PATH."
            ),
        }
        metrics::gauge!("turnpike_guard_model_loaded").set(if model.is_ok() { 1.0 } else { 0.0 });
        for (_, policy) in policies.iter() {
            guard.prepare(policy).map_err(|e| StageError::fatal("guard_model", e.to_string()))?;
        }
        let vault = RedisVault::connect(redis_url, crate::session::SESSION_TTL_SECS as i64)
            .await
            .map_err(|e| StageError::retryable("redis", e.to_string()))?;
        let crm = reqwest::Client::builder().build().map_err(|e| StageError::fatal("crm_client", e.to_string()))?;
        Ok(GuardIn { deps, guard: Arc::new(guard), policies, vault, crm })
    }
}

impl GuardIn {
    /// The message's embedding, once per turn for every model check, on a blocking thread (1-6 ms of CPU).
    /// An encoder error costs this turn its model checks, not the turn: the patterns still run, and it is
    /// logged and counted.
    async fn embed(&self, text: &str) -> Option<Embedding> {
        let (guard, text) = (self.guard.clone(), text.to_string());
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || guard.embed(&text)).await;
        metrics::histogram!("turnpike_guard_embed_seconds").record(started.elapsed().as_secs_f64());
        let error = match result {
            Ok(Ok(e)) => return e,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(%error, "The encoder failed on a message; its model checks are skipped.");
        metrics::counter!("turnpike_guard_embed_errors_total").increment(1);
        None
    }
}

/// The session's recent user messages as quantized embeddings (`seq` as 8 bytes LE, then one byte per
/// dimension), newest last, for the repetition signal; kept as long as the session's state.
fn recent_key(turn: &AcceptedTurn) -> String {
    format!("turnpike:guard:recent:{}:{}", turn.tenant_id, turn.session_id)
}

/// The session's sentiment scores, a list of `"{seq}:{score}"` strings (score in [0, 1], negative or
/// frustrated high), newest last, at most `semantic::SENTIMENT_MEMORY`; kept as long as the session's state.
/// A handoff rule can read the trend from here or from the turn's `sentiment` trigger.
pub fn sentiment_key(tenant_id: &str, session_id: &str) -> String {
    format!("turnpike:guard:sentiment:{tenant_id}:{session_id}")
}

/// Scores of turns before `seq`, oldest first, one per turn (a redelivered turn's repeat entry dropped).
fn parse_sentiment(items: &[String], seq: i64) -> Vec<f32> {
    let mut by_seq: Vec<(i64, f32)> = items
        .iter()
        .filter_map(|i| i.split_once(':'))
        .filter_map(|(s, v)| Some((s.parse::<i64>().ok()?, v.parse::<f32>().ok()?)))
        .filter(|(s, _)| *s < seq)
        .collect();
    by_seq.sort_by_key(|(s, _)| *s);
    by_seq.dedup_by_key(|(s, _)| *s);
    by_seq.into_iter().map(|(_, v)| v).collect()
}

impl GuardIn {
    /// The session's sentiment scores before this turn; a Redis error costs the turn its trend (its own
    /// score still travels).
    async fn earlier_sentiment(&self, turn: &AcceptedTurn) -> Vec<f32> {
        let mut redis = self.deps.redis.clone();
        let key = sentiment_key(&turn.tenant_id, &turn.session_id);
        let raw: Result<Vec<String>, _> = redis.lrange(key, 0, -1).await;
        match raw {
            Ok(items) => parse_sentiment(&items, turn.seq),
            Err(error) => {
                tracing::warn!(%error, "Could not read the session's sentiment scores; no trend this turn.");
                vec![]
            }
        }
    }

    async fn remember_sentiment(&self, turn: &AcceptedTurn, score: f32) {
        let key = sentiment_key(&turn.tenant_id, &turn.session_id);
        // Room for a redelivered turn's repeat entry, dropped when read.
        let keep = 2 * semantic::SENTIMENT_MEMORY as isize;
        let mut redis = self.deps.redis.clone();
        let result: Result<(), _> = redis::pipe()
            .atomic()
            .rpush(&key, format!("{}:{score:.4}", turn.seq))
            .ltrim(&key, -keep, -1)
            .expire(&key, crate::session::SESSION_TTL_SECS as i64)
            .query_async(&mut redis)
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "Could not remember the turn's sentiment score.");
        }
    }

    /// The embeddings of the session's user messages before this turn (a redelivered turn does not count
    /// itself). A Redis error costs this turn its repetition signal, not the turn.
    async fn earlier_messages(&self, turn: &AcceptedTurn) -> Vec<Vec<f32>> {
        let mut redis = self.deps.redis.clone();
        let keep = semantic::SESSION_MEMORY as isize;
        let raw: Result<Vec<Vec<u8>>, _> = redis.lrange(recent_key(turn), -keep, -1).await;
        match raw {
            Ok(items) => items
                .iter()
                .filter(|b| b.len() > 8 && i64::from_le_bytes(b[..8].try_into().unwrap_or_default()) < turn.seq)
                .map(|b| semantic::dequantize(&b[8..]))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "Could not read the session's earlier messages; no repetition signal.");
                vec![]
            }
        }
    }

    async fn remember(&self, turn: &AcceptedTurn, e: &Embedding) {
        let mut item = turn.seq.to_le_bytes().to_vec();
        item.extend(semantic::quantize(&e.0));
        let key = recent_key(turn);
        let keep = semantic::SESSION_MEMORY as isize;
        let mut redis = self.deps.redis.clone();
        let result: Result<(), _> = redis::pipe()
            .atomic()
            .rpush(&key, item)
            .ltrim(&key, -keep, -1)
            .expire(&key, crate::session::SESSION_TTL_SECS as i64)
            .query_async(&mut redis)
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "Could not remember the message for the repetition signal.");
        }
    }
}

struct Decision {
    action: TurnAction,
    text: String,
    reply: Option<String>,
    triggers: Vec<GuardTrigger>,
    /// A handoff trigger of the tenant's `guard.handoff` policy fired (see `crate::triggers`).
    handoff: Option<HandoffDecision>,
}

impl GuardIn {
    /// The handoff triggers on a bot-owned turn: the session's frustration run (recorded here), the
    /// sensitive topics, the repetition count and the customer's tier, decided by the tenant's policy.
    async fn handoff_trigger(
        &self,
        turn: &AcceptedTurn,
        policy: &CompiledPolicy,
        verdict: &InputVerdict,
        embedding: Option<&Embedding>,
    ) -> Option<HandoffDecision> {
        let t = &policy.triggers;
        let frustration = t
            .triggers
            .sentiment
            .enabled
            .then(|| frustration::of_turn(&turn.text, &verdict.triggers, &t.triggers.sentiment));
        let negative_run = match &frustration {
            Some(f) => {
                let earlier = triggers::frustration_history(
                    &self.deps,
                    &turn.tenant_id,
                    &turn.session_id,
                    turn.seq,
                    f.negative,
                    f.score,
                )
                .await;
                frustration::negative_run(turn.seq, f.negative, &earlier)
            }
            None => 0,
        };
        let signals = TurnSignals {
            triggers: &verdict.triggers,
            frustration,
            negative_run,
            repeats: verdict.repeats,
            topic: self.guard.sensitive_topic(t, &turn.text, embedding),
            vip: match vip_tier(&t.triggers.vip, &turn.attributes) {
                Some(tier) => Some(tier),
                None => {
                    let crm =
                        crate::crm::lookup(&self.deps, &self.crm, &t.triggers.vip, &turn.tenant_id, &turn.user_id);
                    vip_tier(&t.triggers.vip, &crm.await)
                }
            },
        };
        decide(t, &signals)
    }
}

/// The action the input checks asked for without the explicit request (a tenant that turned that trigger
/// off): the most severe of the remaining triggers' verdicts, with its line. When the request had won over
/// a refusal, the refusal's line is the refusing check's own (topic, abuse) or the policy's refusal line.
fn without_explicit_request(v: &InputVerdict, p: &CompiledPolicy) -> (InputAction, Option<String>) {
    let rest = || v.triggers.iter().filter(|t| t.check != "handoff_request");
    if rest().any(|t| t.verdict == "handoff") {
        return (InputAction::Handoff, Some(p.policy.handoff_line.clone()));
    }
    if v.action == InputAction::Refuse {
        return (InputAction::Refuse, v.reply.clone());
    }
    match rest().find(|t| t.verdict == "refuse") {
        Some(t) => {
            let line = match t.check {
                "topic" => &p.policy.topics.refusal_line,
                "abuse" => &p.policy.model.abuse_line,
                _ => &p.policy.refusal_line,
            };
            (InputAction::Refuse, Some(line.clone()))
        }
        None => (InputAction::Proceed, None),
    }
}

impl Stage for GuardIn {
    type In = AcceptedTurn;

    async fn process(&self, turn: AcceptedTurn, out: &mut Emitter) -> Result<(), StageError> {
        // The vault is per tenant *and* session: one tenant's tokens never resolve in another's session.
        let vault_key = format!("{}:{}", turn.tenant_id, turn.session_id);
        let decision = if turn.owner == SessionOwner::Human {
            Decision {
                action: TurnAction::Human,
                text: turn.text.clone(),
                reply: None,
                triggers: vec![],
                handoff: None,
            }
        } else {
            let mut pii =
                self.vault.load(&vault_key).await.map_err(|e| StageError::retryable("pii_vault", e.to_string()))?;
            let policy = self.policies.get(&turn.tenant_id);
            let embedding = if self.guard.model_loaded() && policy.policy.model.enabled {
                self.embed(&turn.text).await
            } else {
                None
            };
            let (earlier, sentiment) = match &embedding {
                Some(_) => tokio::join!(self.earlier_messages(&turn), self.earlier_sentiment(&turn)),
                None => (vec![], vec![]),
            };
            let history = SessionHistory { messages: &earlier, sentiment: &sentiment };
            let verdict = self.guard.check_input_in_session(policy, &turn.text, &mut pii, embedding.as_ref(), history);
            if let Some(e) = &embedding {
                self.remember(&turn, e).await;
            }
            if let Some(s) = &verdict.sentiment {
                self.remember_sentiment(&turn, s.score).await;
            }
            let handoff = self.handoff_trigger(&turn, policy, &verdict, embedding.as_ref()).await;
            let (mut action, mut reply) = if policy.triggers.triggers.explicit.enabled {
                (verdict.action, verdict.reply.clone())
            } else {
                without_explicit_request(&verdict, policy)
            };
            if handoff.is_some() {
                (action, reply) = (InputAction::Handoff, Some(policy.policy.handoff_line.clone()));
            }
            let minted = pii.take_new();
            if !minted.is_empty() {
                // Stored before anything masked leaves this stage, so every token can be revealed later.
                self.vault
                    .store(&vault_key, &minted)
                    .await
                    .map_err(|e| StageError::retryable("pii_vault", e.to_string()))?;
            }
            let mut triggers: Vec<GuardTrigger> = verdict
                .triggers
                .into_iter()
                .map(|t| GuardTrigger { check: t.check.into(), verdict: t.verdict.into(), detail: t.detail })
                .collect();
            if let Some(d) = &handoff {
                // Audited like every trigger: which rule handed off, and on what evidence.
                let detail = format!("{} ({})", d.reason, d.evidence);
                triggers.push(GuardTrigger { check: "handoff_trigger".into(), verdict: "handoff".into(), detail });
            }
            Decision {
                action: match action {
                    InputAction::Proceed => TurnAction::Proceed,
                    InputAction::Refuse => TurnAction::Refuse,
                    InputAction::Handoff => TurnAction::Handoff,
                },
                text: verdict.masked_text,
                reply,
                triggers,
                handoff,
            }
        };
        for t in decision.triggers.iter().filter(|t| t.verdict != "score") {
            tracing::info!(tenant = %turn.tenant_id, turn = %turn.turn_id, check = %t.check, verdict = %t.verdict, "Input guardrail triggered.");
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
                content: decision.text.clone(),
                channel: Some(turn.channel.clone()),
                created_at: Some(scylla::value::CqlTimestamp(turn.received_at_ms)),
                ..Default::default()
            })
            .await
            .map_err(store_err)?;
        if let Some(d) = &decision.handoff {
            let at = TurnRef {
                tenant_id: &turn.tenant_id,
                session_id: &turn.session_id,
                turn_id: &turn.turn_id,
                seq: turn.seq,
                user_id: &turn.user_id,
                text: &decision.text,
            };
            out.emit(&triggers::request(&at, d, "guard-in")).await?;
        } else if matches!(decision.action, TurnAction::Handoff | TurnAction::Human) {
            let kind =
                if decision.action == TurnAction::Human { HandoffKind::UserMessage } else { HandoffKind::Request };
            let reason = match kind {
                HandoffKind::UserMessage => "human_owned".to_string(),
                HandoffKind::Request => decision
                    .triggers
                    .iter()
                    .find(|t| t.verdict == "handoff")
                    .map(|t| t.check.clone())
                    .unwrap_or_else(|| "user_asked".into()),
            };
            out.emit(&HandoffRequest {
                tenant_id: turn.tenant_id.clone(),
                session_id: turn.session_id.clone(),
                turn_id: turn.turn_id.clone(),
                seq: turn.seq,
                user_id: turn.user_id.clone(),
                kind,
                source_stage: "guard-in".into(),
                text: decision.text.clone(),
                summary: None,
                requested_at_ms: now_ms(),
                evidence: decision
                    .triggers
                    .iter()
                    .filter(|t| t.verdict == "handoff")
                    .map(|t| format!("{}: {}", t.check, t.detail))
                    .collect::<Vec<_>>()
                    .join("; "),
                tags: vec![format!("handoff:{reason}")],
                reason,
                ..Default::default()
            })
            .await?;
        }
        let site = AuditSite {
            tenant_id: &turn.tenant_id,
            session_id: &turn.session_id,
            turn_id: &turn.turn_id,
            seq: turn.seq,
            stage: "guard-in",
            position: 0,
            action: audit::turn_action(decision.action),
            policy: &audit::policy_label(&self.policies, &turn.tenant_id),
        };
        // A `score` trigger (a turn's sentiment that is not negative) is a measurement on every turn, not a
        // finding: it travels on the guarded turn but is not audited.
        let findings: Vec<GuardTrigger> = decision.triggers.iter().filter(|t| t.verdict != "score").cloned().collect();
        audit::emit(&site, &findings, out).await?;
        out.emit(&GuardedTurn {
            tenant_id: turn.tenant_id,
            session_id: turn.session_id,
            turn_id: turn.turn_id,
            seq: turn.seq,
            user_id: turn.user_id,
            text: decision.text,
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
    use turnpike_guard::policy::TenantPolicy;
    use turnpike_guard::SessionPii;

    #[test]
    fn sentiment_history_is_one_score_per_earlier_turn_in_order() {
        let items: Vec<String> = ["3:0.9", "1:0.1", "2:0.5", "3:0.95", "4:0.7", "junk", "x:1"].map(String::from).into();
        assert_eq!(parse_sentiment(&items, 4), vec![0.1, 0.5, 0.9]);
        assert_eq!(parse_sentiment(&items, 1), Vec::<f32>::new());
        assert_eq!(sentiment_key("acme", "s1"), "turnpike:guard:sentiment:acme:s1");
    }

    fn verdict(policy: &CompiledPolicy, text: &str) -> InputVerdict {
        Guard::new().unwrap().check_input(policy, text, &mut SessionPii::default())
    }

    #[test]
    fn a_tenant_without_the_explicit_trigger_keeps_the_other_checks_verdicts() {
        let mut p = TenantPolicy::default();
        p.handoff.explicit.enabled = false;
        p.topics.denied = vec!["crypto".into()];
        let p = CompiledPolicy::compile(p).unwrap();
        let asked = verdict(&p, "Can I talk to a human please?");
        assert_eq!(asked.action, InputAction::Handoff, "the check itself still reports");
        assert_eq!(without_explicit_request(&asked, &p), (InputAction::Proceed, None));
        let both = verdict(&p, "Can I talk to a human about crypto?");
        let (action, reply) = without_explicit_request(&both, &p);
        assert_eq!((action, reply.as_deref()), (InputAction::Refuse, Some(p.policy.topics.refusal_line.as_str())));
    }
}
