//! OpenAI response shapes the mock sends, as typed structs.
//!
//! Typed rather than `json!` so fields go out in OpenAI's order (`id` first, `usage` last) without
//! turning on serde_json's order-preserving map for the whole workspace.

use serde::Serialize;

pub(super) const FINGERPRINT: &str = "fp_mock";

#[derive(Serialize)]
pub(super) struct ChunkOut<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) system_fingerprint: &'static str,
    pub(super) choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<Option<UsageOut>>,
}

#[derive(Serialize)]
pub(super) struct ChunkChoice<'a> {
    pub(super) index: u32,
    pub(super) delta: DeltaOut<'a>,
    pub(super) logprobs: Option<()>,
    pub(super) finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) content: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct UsageOut {
    pub(super) prompt_tokens: usize,
    pub(super) completion_tokens: usize,
    pub(super) total_tokens: usize,
    pub(super) prompt_tokens_details: CachedTokens,
    pub(super) completion_tokens_details: ReasoningTokens,
}

#[derive(Serialize)]
pub(super) struct CachedTokens {
    pub(super) cached_tokens: u32,
}

#[derive(Serialize)]
pub(super) struct ReasoningTokens {
    pub(super) reasoning_tokens: u32,
}

#[derive(Serialize)]
pub(super) struct CompletionOut<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) system_fingerprint: &'static str,
    pub(super) choices: [CompletionChoice<'a>; 1],
    pub(super) usage: UsageOut,
}

#[derive(Serialize)]
pub(super) struct CompletionChoice<'a> {
    pub(super) index: u32,
    pub(super) message: MessageOut,
    pub(super) logprobs: Option<()>,
    pub(super) finish_reason: &'a str,
}

#[derive(Serialize)]
pub(super) struct MessageOut {
    pub(super) role: &'static str,
    pub(super) content: String,
    pub(super) refusal: Option<()>,
}

#[derive(Serialize)]
pub(super) struct ErrorOut<'a> {
    pub(super) error: ErrorDetail<'a>,
}

#[derive(Serialize)]
pub(super) struct ErrorDetail<'a> {
    pub(super) message: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'a str,
    pub(super) param: Option<()>,
    pub(super) code: Option<&'a str>,
}
