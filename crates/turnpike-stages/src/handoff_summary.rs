//! The note a human agent reads before taking over: written by the cheap LLM tier from the masked
//! transcript, with a plain extract of the last messages as the fallback when the LLM is down.
//!
//! PII: the LLM, the Kafka topics and Cassandra only ever see the masked text (tokens such as `[EMAIL_1]`);
//! [`Reveal`] puts the real values back for the helpdesk copy alone, from the session's vault.

use crate::{store_err, Deps};
use std::time::Duration;
use turnpike_guard::vault::{PiiVault, RedisVault};
use turnpike_guard::SessionPii;
use turnpike_llm::{ChatMessage, ChatRequest, LlmRouter};
use turnpike_runner::StageError;
use turnpike_schemas::HandoffRequest;
use turnpike_store::TranscriptRow;

/// Transcript turns the note covers (the LLM's and the extract's input).
const TURNS: i64 = 10;
/// The extract is cut here (bytes, on a character boundary).
const EXTRACT_BYTES: usize = 2000;
/// The LLM gets this long before the fallback is used.
const LLM_TIMEOUT: Duration = Duration::from_secs(20);

const SYSTEM: &str = "You write the handover note a human support agent reads before taking over a chat from \
the assistant. In at most 150 words, say: who the customer is; what they want; what the assistant already did \
or verified; why it is handing over; the customer's sentiment; and every open commitment the assistant made \
(refunds, prices, deadlines), verbatim. Keep placeholders such as [EMAIL_1] exactly as written.";

/// Must start with the mock's summary prefix (`turnpike_llm::mock::SUMMARY_REQUEST_PREFIX`), so the mock
/// answers with a digest of the conversation as a model would.
const INSTRUCTION: &str = "Summarise the conversation above as the handover note for the agent.";

/// What the agent reads, masked; `llm` says whether the model wrote it.
pub struct Note {
    pub text: String,
    pub llm: bool,
    /// The channel of the turn that asked for the handoff (agent replies go back there).
    pub channel: Option<String>,
}

/// The session's transcript rows the note covers.
pub async fn recent(deps: &Deps, r: &HandoffRequest) -> Result<Vec<TranscriptRow>, StageError> {
    deps.transcript.read_since(&r.tenant_id, &r.session_id, (r.seq - TURNS + 1).max(1)).await.map_err(store_err)
}

fn lines(rows: &[TranscriptRow]) -> String {
    rows.iter()
        .map(|row| {
            let who = match row.role.as_str() {
                "user" => "Customer",
                "agent" => "Agent",
                _ => "Bot",
            };
            format!("{who}: {}", row.content.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last messages, cut at [`EXTRACT_BYTES`]: today's extract, and the fallback.
pub fn extract(rows: &[TranscriptRow]) -> String {
    let mut s = lines(rows);
    if s.len() > EXTRACT_BYTES {
        let cut = s.char_indices().map(|(i, _)| i).take_while(|i| *i <= EXTRACT_BYTES).last().unwrap_or(0);
        s.truncate(cut);
    }
    s
}

/// The agent's note for `r`: the LLM summary (or nothing when it failed), why, the evidence, and the extract.
pub async fn note(deps: &Deps, llm: Option<&LlmRouter>, r: &HandoffRequest) -> Result<Note, StageError> {
    let rows = recent(deps, r).await?;
    let channel = rows.iter().rev().find(|row| row.role == "user").and_then(|row| row.channel.clone());
    let summary = match llm {
        Some(router) if !rows.is_empty() => match summarise(router, &rows).await {
            Ok(s) => Some(s),
            Err(e) => {
                metrics::counter!("turnpike_handoff_summaries_total", "outcome" => "fallback").increment(1);
                tracing::warn!(error = %e, tenant = %r.tenant_id, "Handoff summary by the LLM failed; using the extract.");
                None
            }
        },
        _ => None,
    };
    let llm_ok = summary.is_some();
    if llm_ok {
        metrics::counter!("turnpike_handoff_summaries_total", "outcome" => "llm").increment(1);
    }
    let mut text = String::new();
    if let Some(s) = summary {
        text.push_str(&format!("Summary: {s}\n\n"));
    }
    text.push_str(&format!("Why handed over: {}", r.reason));
    if !r.evidence.is_empty() {
        text.push_str(&format!(" ({})", r.evidence));
    }
    text.push_str("\n\nLast messages:\n");
    text.push_str(&extract(&rows));
    Ok(Note { text, llm: llm_ok, channel })
}

async fn summarise(router: &LlmRouter, rows: &[TranscriptRow]) -> Result<String, String> {
    let mut req = ChatRequest::new(
        "gpt-4o-mini",
        vec![
            ChatMessage::system(SYSTEM),
            ChatMessage::user(format!("<conversation>\n{}\n</conversation>", lines(rows))),
            ChatMessage::user(INSTRUCTION),
        ],
    );
    req.max_tokens = Some(300);
    req.temperature = Some(0.0);
    let run = async {
        let answer = router.chain("cheap").stream(&req).await.map_err(|e| e.to_string())?;
        let done = turnpike_llm::collect(answer.events).await.map_err(|e| e.to_string())?;
        let text = done.text.trim().to_string();
        if text.is_empty() {
            return Err("the model returned an empty summary".to_string());
        }
        Ok(text)
    };
    tokio::time::timeout(LLM_TIMEOUT, run).await.map_err(|_| "the model took too long".to_string())?
}

/// The session's PII, for the helpdesk side only.
pub struct Reveal(SessionPii);

impl Reveal {
    /// Loads the session's tokens (the vault key is tenant and session, as guard-in writes it).
    pub async fn load(vault: Option<&RedisVault>, tenant: &str, session: &str) -> Result<Reveal, StageError> {
        let Some(vault) = vault else { return Ok(Reveal(SessionPii::default())) };
        let pii = vault
            .load(&format!("{tenant}:{session}"))
            .await
            .map_err(|e| StageError::retryable("pii_vault", e.to_string()))?;
        Ok(Reveal(pii))
    }

    /// `text` with the real values behind its tokens.
    pub fn text(&self, text: &str) -> String {
        self.0.unmask(text)
    }

    /// The customer's first email address, when they gave one (the ticket's requester).
    pub fn email(&self) -> Option<String> {
        self.0.reveal("[EMAIL_1]").map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, role: &str, content: &str) -> TranscriptRow {
        TranscriptRow { seq, role: role.into(), content: content.into(), ..Default::default() }
    }

    #[test]
    fn the_extract_names_who_spoke_and_is_cut_on_a_character_boundary() {
        let rows = vec![row(1, "user", "Where is   my order?"), row(1, "assistant", "On its way.")];
        assert_eq!(extract(&rows), "Customer: Where is my order?\nBot: On its way.");
        let long = vec![row(1, "user", &"é".repeat(3000))];
        let cut = extract(&long);
        assert!(cut.len() <= EXTRACT_BYTES && cut.starts_with("Customer: é"));
    }

    #[test]
    fn revealing_puts_values_back_only_where_tokens_are() {
        let r = Reveal(SessionPii::from_entries([("[EMAIL_1]".to_string(), "jane@example.com".to_string())]));
        assert_eq!(r.text("Reach me at [EMAIL_1], not [EMAIL_2]"), "Reach me at jane@example.com, not [EMAIL_2]");
        assert_eq!(r.email().as_deref(), Some("jane@example.com"));
    }

    #[test]
    fn the_instruction_is_answered_by_the_mock_as_a_summary() {
        assert!(INSTRUCTION.starts_with(turnpike_llm::mock::SUMMARY_REQUEST_PREFIX));
    }
}
