//! Resuming a reply instead of apologising (see the module comment of `generate` for the guarantee).
//!
//! - [`Chunks`] makes a turn's chunk records and keeps the reply's record in Redis (one hash per turn):
//!   the text of every DELTA, written before the DELTA is emitted, and how the reply ended (finish reason,
//!   the FINAL's text), written before the FINAL is emitted. Written first, a crash can only leave a record
//!   ahead of what reached Kafka, never behind it.
//! - A redelivered prompt with a record is [replayed](Generate::replay): every recorded DELTA is emitted
//!   again with its index and text (any that the crash lost are filled in, the others are dropped
//!   downstream as re-releases: guard-out checks a chunk index from the state after the one before, and
//!   deliver publishes each index once), then the recorded ending, or else the rest of the reply by
//!   continuation, numbered after the last recorded chunk.
//! - [`Generate::resume`] asks the tier's chain to continue the text already emitted
//!   ([`ChatRequest::continuation`]): after a crash, or when a stream fails after text left, at most
//!   `max_continuations` times per processing. Counted in
//!   `turnpike_generate_continuations_total{reason=crash|interrupted, outcome=streaming|failed|unsupported|exhausted}`.

use redis::AsyncCommands;
use turnpike_core::{Classify, ErrorClass};
use turnpike_llm::{Answer, ChatRequest};
use turnpike_runner::{now_ms, Emitter, StageError};
use turnpike_schemas::{ChunkKind, ReplyChunk, RoutedPrompt};

use super::{handoff, Generate};

/// How long a reply's record is kept while it streams (a redelivery comes within the group's session
/// timeout, far sooner), and once it ended: long enough for a redelivery, short because it holds text.
const RECORD_TTL_SECS: i64 = 3600;
const ENDED_TTL_SECS: i64 = 600;

/// Builds chunk records for one turn and keeps the reply's record in Redis (see the module comment).
pub(super) struct Chunks<'a> {
    pub(super) p: &'a RoutedPrompt,
    pub(super) next: i32,
    redis: redis::aio::ConnectionManager,
    key: String,
    /// The model text emitted in DELTAs so far: what a continuation continues.
    pub(super) shown: String,
    /// The tier and model answering: the routed ones, or the capable ones after an escalation.
    pub(super) tier: String,
    pub(super) model: String,
}

/// A turn's record as a redelivery finds it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Record {
    /// The text of DELTA 0, 1, ...
    pub(super) deltas: Vec<String>,
    /// How the reply ended, if its FINAL was made: (finish reason, the FINAL's text, whether that text is
    /// the model's).
    pub(super) end: Option<(String, String, bool)>,
}

impl Record {
    fn parse(mut fields: std::collections::HashMap<String, String>) -> Record {
        let n: usize = fields.get("n").and_then(|n| n.parse().ok()).unwrap_or(0);
        // `n` and `c<n-1>` are written by one HSET, so every `c<i>` below `n` is there.
        let deltas = (0..n).map(|i| fields.remove(&format!("c{i}")).unwrap_or_default()).collect();
        let end = fields.remove("end").map(|reason| {
            let text = fields.remove("end_text").unwrap_or_default();
            (reason, text, fields.get("end_generated").is_some_and(|g| g == "1"))
        });
        Record { deltas, end }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.deltas.is_empty() && self.end.is_none()
    }
}

impl<'a> Chunks<'a> {
    /// The chunk builder of `p`, and the record an earlier processing of it left (empty if none).
    pub(super) async fn load(
        p: &'a RoutedPrompt,
        mut redis: redis::aio::ConnectionManager,
    ) -> Result<(Chunks<'a>, Record), StageError> {
        let key = crate::session::key(&p.tenant_id, &p.session_id, &format!("turn:{}:reply", p.turn_id));
        let fields = redis.hgetall(&key).await.map_err(crate::redis_err)?;
        let chunks =
            Chunks { p, next: 0, redis, key, shown: String::new(), tier: p.tier.clone(), model: p.model.clone() };
        Ok((chunks, Record::parse(fields)))
    }

    /// Records a DELTA, then emits it (see the module comment).
    pub(super) async fn emit_delta(&mut self, out: &mut Emitter, text: String) -> Result<(), StageError> {
        let index = self.next;
        let _: () = redis::pipe()
            .hset_multiple(&self.key, &[(format!("c{index}"), text.clone()), ("n".to_owned(), (index + 1).to_string())])
            .expire(&self.key, RECORD_TTL_SECS)
            .query_async(&mut self.redis)
            .await
            .map_err(crate::redis_err)?;
        self.shown.push_str(&text);
        let chunk = self.make(ChunkKind::Delta, text);
        out.emit(&chunk).await
    }

    /// Records how the reply ended, before its FINAL `fin` is emitted; only after DELTAs (a reply that is
    /// a single FINAL is answered again when redelivered, see the module comment of `generate`).
    pub(super) async fn record_end(&mut self, fin: &ReplyChunk) -> Result<(), StageError> {
        if fin.chunk_index == 0 {
            return Ok(());
        }
        let fields = [
            ("end", fin.finish_reason.clone().unwrap_or_default()),
            ("end_text", fin.text.clone()),
            ("end_generated", if fin.generated { "1" } else { "0" }.to_owned()),
        ];
        let _: () = redis::pipe()
            .hset_multiple(&self.key, &fields)
            .expire(&self.key, ENDED_TTL_SECS)
            .query_async(&mut self.redis)
            .await
            .map_err(crate::redis_err)?;
        Ok(())
    }

    pub(super) fn make(&mut self, kind: ChunkKind, text: String) -> ReplyChunk {
        let c = ReplyChunk {
            tenant_id: self.p.tenant_id.clone(),
            session_id: self.p.session_id.clone(),
            turn_id: self.p.turn_id.clone(),
            seq: self.p.seq,
            chunk_index: self.next,
            kind,
            text,
            action: self.p.action,
            tier: Some(self.tier.clone()),
            // The first chunk carries the sources for guard-out's grounding check (it keeps them for the
            // turn's later chunks); the FINAL carries them to the client.
            citations: if kind == ChunkKind::Final || self.next == 0 { self.p.citations.clone() } else { vec![] },
            channel: self.p.channel.clone(),
            received_at_ms: self.p.received_at_ms,
            ..Default::default()
        };
        self.next += 1;
        c
    }
}

/// Why a continuation was asked for: a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// The prompt was redelivered after an earlier processing emitted text (a crash, a rebalance).
    Crash,
    /// The provider's stream failed after text left.
    Interrupted,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Crash => "crash",
            Reason::Interrupted => "interrupted",
        }
    }
}

impl Generate {
    /// Emits a redelivered turn's recorded DELTAs again (see the module comment); `Ok(true)` when its
    /// recorded ending was emitted too and the turn is done.
    pub(super) async fn replay(
        &self,
        record: Record,
        chunks: &mut Chunks<'_>,
        out: &mut Emitter,
    ) -> Result<bool, StageError> {
        for text in record.deltas {
            chunks.shown.push_str(&text);
            let chunk = chunks.make(ChunkKind::Delta, text);
            out.emit(&chunk).await?;
        }
        let Some((reason, text, generated)) = record.end else { return Ok(false) };
        metrics::counter!("turnpike_generate_replayed_endings_total").increment(1);
        let mut fin = chunks.make(ChunkKind::Final, text);
        fin.generated = generated;
        fin.model = Some(chunks.model.clone());
        let incomplete = reason == "incomplete";
        fin.finish_reason = Some(reason);
        out.emit(&fin).await?;
        if incomplete {
            out.emit(&handoff(chunks.p, "llm_failure")).await?;
        }
        Ok(true)
    }

    /// Asks the tier's chain to continue `chunks.shown` (see the module comment). `Ok(None)`: it cannot
    /// (no deployment of the chain can continue, tools are configured, or `attempts` reached the bound) or
    /// it failed; the caller ends the reply with the apology. After a crash, a failure before any text that
    /// the runner may retry (retryable, turn not overdue) is returned as that retry instead.
    pub(super) async fn resume(
        &self,
        req: &ChatRequest,
        chunks: &Chunks<'_>,
        reason: Reason,
        cut_on: Option<String>,
        attempts: &mut u32,
    ) -> Result<Option<Answer>, StageError> {
        let count = |outcome: &'static str| {
            metrics::counter!("turnpike_generate_continuations_total", "reason" => reason.label(), "outcome" => outcome)
                .increment(1);
        };
        let chain = self.llm.chain(&chunks.tier);
        // The tool loop's earlier rounds (calls and results) are not carried into a continuation, so a reply
        // that may rest on them is not continued without them.
        if self.llm.tools.is_some() || !chain.can_continue() {
            count("unsupported");
            return Ok(None);
        }
        if *attempts >= self.max_continuations {
            count("exhausted");
            return Ok(None);
        }
        *attempts += 1;
        let mut continued = req.clone().continuing(chunks.shown.clone());
        continued.cut_on = cut_on;
        match chain.stream(&continued).await {
            Ok(answer) => {
                count("streaming");
                tracing::info!(tenant = %chunks.p.tenant_id, turn = %chunks.p.turn_id, reason = reason.label(),
                    deployment = %answer.deployment, "Continuing a reply after {} chars.", chunks.shown.len());
                Ok(Some(answer))
            }
            Err(e) => {
                count("failed");
                metrics::counter!("turnpike_llm_errors_total", "code" => e.code()).increment(1);
                tracing::warn!(tenant = %chunks.p.tenant_id, turn = %chunks.p.turn_id, error = %e, "Cannot continue a reply.");
                let overdue = now_ms() - chunks.p.received_at_ms > self.turn_deadline.as_millis() as i64;
                if reason == Reason::Crash && e.class() == ErrorClass::Retryable && !overdue {
                    return Err(StageError::retryable(e.code(), e.to_string()));
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_its_deltas_in_order_and_its_ending() {
        let fields = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(Record::parse(fields(&[])).is_empty());
        let streaming = Record::parse(fields(&[("c1", " It arrives"), ("n", "2"), ("c0", "Your parcel left.")]));
        assert_eq!(streaming.deltas, ["Your parcel left.", " It arrives"]);
        assert_eq!(streaming.end, None);
        let ended = Record::parse(fields(&[
            ("n", "1"),
            ("c0", "Hi."),
            ("end", "stop"),
            ("end_text", " Bye."),
            ("end_generated", "1"),
        ]));
        assert_eq!(ended.end, Some(("stop".into(), " Bye.".into(), true)));
    }
}
