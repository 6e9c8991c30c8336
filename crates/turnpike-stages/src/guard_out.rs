//! guard-out: reply chunk → checked reply chunk.
//!
//! Guarantee: every chunk passes through the output check before it can reach a user: one checked chunk per
//! reply chunk, same index, same kind. The check here is a hook with a placeholder policy (a few banned
//! words replaced); the guardrails issue replaces it with sentence-window checks.

use turnpike_runner::{Emitter, Stage, StageError};
use turnpike_schemas::{CheckedReplyChunk, GuardTrigger, ReplyChunk, Verdict};

/// What an output check decides for one piece of text.
pub trait OutputCheck: Send + Sync + 'static {
    /// Returns the verdict, the text to release, and the triggers.
    fn check(&self, tenant: &str, text: &str) -> (Verdict, String, Vec<GuardTrigger>);
}

/// Replaces listed words with asterisks.
pub struct WordList(pub Vec<String>);

impl Default for WordList {
    fn default() -> Self {
        WordList(vec!["damn".into(), "crap".into()])
    }
}

impl OutputCheck for WordList {
    fn check(&self, _tenant: &str, text: &str) -> (Verdict, String, Vec<GuardTrigger>) {
        let lower = text.to_lowercase();
        let hits: Vec<&String> = self.0.iter().filter(|w| lower.contains(w.as_str())).collect();
        if hits.is_empty() {
            return (Verdict::Pass, text.to_string(), vec![]);
        }
        let mut out = text.to_string();
        for w in &hits {
            while let Some(i) = out.to_lowercase().find(w.as_str()) {
                out.replace_range(i..i + w.len(), &"*".repeat(w.len()));
            }
        }
        let triggers = hits
            .iter()
            .map(|w| GuardTrigger { check: "profanity".into(), verdict: "redact".into(), detail: w.to_string() })
            .collect();
        (Verdict::Redact, out, triggers)
    }
}

pub struct GuardOut<C: OutputCheck> {
    pub check: C,
}

impl<C: OutputCheck> Stage for GuardOut<C> {
    type In = ReplyChunk;

    async fn process(&self, c: ReplyChunk, out: &mut Emitter) -> Result<(), StageError> {
        let (verdict, text, triggers) = self.check.check(&c.tenant_id, &c.text);
        for t in &triggers {
            metrics::counter!("turnpike_guardrail_triggers_total", "stage" => "guard-out", "check" => t.check.clone(), "verdict" => t.verdict.clone())
                .increment(1);
        }
        out.emit(&CheckedReplyChunk {
            tenant_id: c.tenant_id,
            session_id: c.session_id,
            turn_id: c.turn_id,
            seq: c.seq,
            chunk_index: c.chunk_index,
            kind: c.kind,
            text,
            action: c.action,
            verdict,
            triggers,
            finish_reason: c.finish_reason,
            usage: c.usage,
            provider: c.provider,
            model: c.model,
            tier: c.tier,
            ttft_ms: c.ttft_ms,
            citations: c.citations,
            channel: c.channel,
            received_at_ms: c.received_at_ms,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_listed_words_case_insensitively() {
        let (v, text, t) = WordList::default().check("t", "Well, DAMN that is crap.");
        assert_eq!(v, Verdict::Redact);
        assert_eq!(text, "Well, **** that is ****.");
        assert_eq!(t.len(), 2);
        assert_eq!(WordList::default().check("t", "All good").0, Verdict::Pass);
    }
}
