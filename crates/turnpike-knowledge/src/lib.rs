//! Knowledge retrieval: a tenant's help pages (Markdown, HTML, plain text) cut into chunks that keep their
//! source and location, indexed with BM25 (tantivy), searched on every turn.
//!
//! Guarantees:
//! - **Tenant isolation.** Each tenant has its own index directory under the index root (the tenant id is
//!   percent-encoded into one path component, so no id can name another tenant's directory or escape the
//!   root), and every chunk also carries its tenant id, which every query requires: a tenant never
//!   retrieves another tenant's chunks, even from a misplaced directory.
//! - **Idempotent ingest.** A document's id is its source (relative path or URL); ingesting a document
//!   deletes every chunk of that id and adds the new ones in the same commit, so re-ingesting the same
//!   files leaves exactly one copy.
//! - **Bounded chunks.** Chunks follow the document's structure (Markdown headings, HTML h1–h3 sections,
//!   paragraphs) and hold at most [`ChunkConfig::max_tokens`] estimated tokens, with a short overlap
//!   between consecutive chunks of one section.
//! - **Cheap per-turn search.** [`KnowledgeBase`] is `Send + Sync`, shared behind an `Arc`; each tenant's
//!   reader is opened once and reloaded when a commit lands (also commits made by another process, such
//!   as `turnpike knowledge ingest`, after tantivy's short file-watch delay).
//!
//! Tokens are estimated as one per four bytes of UTF-8, rounded up — the same rule as the assemble stage's
//! fallback estimate, and an over-estimate for English with OpenAI's tokenizers.

mod base;
mod chunk;
mod formats;
mod ingest;
mod rerank;
mod schema;
mod settings;
pub mod synthetic;

pub use base::{KnowledgeBase, Retrieval, RetrievalMode};
pub use chunk::{chunk_blocks, Block, Chunk, ChunkConfig};
pub use formats::{parse_document, Format};
pub use ingest::{IngestReport, SourceDoc};
pub use settings::KnowledgePolicy;

/// One retrieved piece of knowledge, ready for a prompt and a citation.
#[derive(Clone, Debug, PartialEq)]
pub struct Passage {
    /// The document: its path relative to the ingested folder, or the URL it was ingested as.
    pub source: String,
    /// Headings from the document's title down to the chunk's section.
    pub headings: Vec<String>,
    /// HTML anchor (`id` of the section's heading), when there is one.
    pub anchor: Option<String>,
    /// 1-based, inclusive line range in the source file.
    pub lines: (u32, u32),
    pub text: String,
    /// Relevance after reranking (BM25 before); 0 for passages not retrieved by a query.
    pub score: f32,
    /// Estimated tokens of `text`.
    pub tokens: usize,
}

impl Passage {
    /// Human-readable location: `Returns > Refund timing (#refund-timing, lines 12-30)`.
    pub fn location(&self) -> String {
        let lines = if self.lines.0 == self.lines.1 {
            format!("line {}", self.lines.0)
        } else {
            format!("lines {}-{}", self.lines.0, self.lines.1)
        };
        let place = match &self.anchor {
            Some(a) => format!("#{a}, {lines}"),
            None => lines,
        };
        if self.headings.is_empty() {
            place
        } else {
            format!("{} ({place})", self.headings.join(" > "))
        }
    }
}

/// Estimated tokens of `text` (see the crate comment).
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("invalid tenant id: {0}")]
    Tenant(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("index directory: {0}")]
    Directory(String),
}

impl KnowledgeError {
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        KnowledgeError::Io { path: path.display().to_string(), message: e.to_string() }
    }
}
