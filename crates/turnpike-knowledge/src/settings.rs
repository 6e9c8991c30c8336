//! Per-tenant retrieval settings: section `knowledge` of the tenants file (`turnpike_core::TenantsConfig`).
//!
//! ```toml
//! [defaults.knowledge]
//! k = 4
//!
//! [tenants.acme.knowledge]
//! stuff_max_tokens = 0     # acme's FAQ is large: always retrieve
//! ```
//!
//! The rule for small knowledge bases (the seed's "start with the FAQ in the system prompt"): when a
//! tenant's whole knowledge base, without chunk overlaps, is at most `stuff_max_tokens` estimated tokens,
//! all of it goes into every prompt (in document order, so the prompt prefix stays identical turn after
//! turn and provider prompt caches hit), and retrieval only ranks it for citations. Above that, the top `k`
//! retrieved passages go in, within `max_tokens`. The default threshold equals the default knowledge share
//! of the 8K context budget (1,500 tokens, the seed's "RAG context ~1,500 tokens"): stuffing never costs
//! more prompt than retrieval would.

use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgePolicy {
    /// Retrieval for this tenant at all.
    pub enabled: bool,
    /// Passages in a prompt at most.
    pub k: usize,
    /// Knowledge tokens in a prompt at most (the context budget may cut further).
    pub max_tokens: usize,
    /// Whole knowledge base in the prompt up to this many tokens (0: always retrieve).
    pub stuff_max_tokens: usize,
    /// BM25 candidates considered before reranking.
    pub candidates: usize,
    /// Passages scoring below this (after reranking) are dropped. BM25 scale: 0 keeps any match.
    pub min_score: f32,
    /// Passages scoring below this fraction of the best passage are dropped.
    pub min_relative_score: f32,
    /// Passages from one document at most.
    pub max_per_document: usize,
    /// Rerank BM25's candidates (heading match boost, near-duplicate removal).
    pub rerank: bool,
    /// BM25 of the heading path counts this much relative to the body's (0: body only).
    pub heading_field_weight: f32,
    /// Weight of the previous user message's words (follow-up questions: "and for Canada?").
    pub previous_message_weight: f32,
}

impl Default for KnowledgePolicy {
    fn default() -> Self {
        KnowledgePolicy {
            enabled: true,
            k: 4,
            max_tokens: 1500,
            stuff_max_tokens: 1500,
            candidates: 24,
            min_score: 0.0,
            min_relative_score: 0.25,
            max_per_document: 2,
            rerank: true,
            heading_field_weight: 0.5,
            previous_message_weight: 0.3,
        }
    }
}
