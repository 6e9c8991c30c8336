//! The index layout: one tantivy document per chunk, and the English analyzer both sides of a search use.
//!
//! Guarantee: the analyzer is registered on every open (tantivy does not persist custom tokenizers), so
//! indexing and querying always cut and stem words the same way; a schema change needs a re-ingest.

use std::path::{Path, PathBuf};

use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, STORED, STRING};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, TantivyDocument};

use crate::{KnowledgeError, Passage};

/// Name of the analyzer: lower-cased, ASCII-folded, English stop words removed, Porter-stemmed.
pub(crate) const ANALYZER: &str = "kb_en";

#[derive(Clone, Copy)]
pub(crate) struct Fields {
    pub tenant: Field,
    /// The document id: its source. Every chunk of a document shares it, so one term deletes them all.
    pub source: Field,
    pub heading: Field,
    pub body: Field,
    pub anchor: Field,
    pub line_start: Field,
    pub line_end: Field,
    pub ord: Field,
    pub overlap: Field,
}

pub(crate) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |stored: bool| {
        let o = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs),
        );
        if stored {
            o.set_stored()
        } else {
            o
        }
    };
    let fields = Fields {
        tenant: b.add_text_field("tenant", STRING),
        source: b.add_text_field("source", STRING | STORED),
        heading: b.add_text_field("heading", text(true)),
        body: b.add_text_field("body", text(true)),
        anchor: b.add_text_field("anchor", STORED),
        line_start: b.add_u64_field("line_start", STORED),
        line_end: b.add_u64_field("line_end", STORED),
        ord: b.add_u64_field("ord", STORED),
        overlap: b.add_u64_field("overlap", STORED),
    };
    (b.build(), fields)
}

pub(crate) fn analyzer() -> TextAnalyzer {
    let mut builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .dynamic();
    if let Some(stop) = StopWordFilter::new(Language::English) {
        builder = builder.filter_dynamic(stop);
    }
    builder.filter_dynamic(Stemmer::new(Language::English)).build()
}

/// Analyzed terms of `text`, in order of first appearance, without repeats.
pub(crate) fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(t) = stream.next() {
        if !out.contains(&t.text) {
            out.push(t.text.clone());
        }
    }
    out
}

/// The tenant's index directory: the tenant id percent-encoded into a single path component (bytes other
/// than ASCII letters, digits, `-` and `_` become `%XX`), so the mapping is injective and no id can be `..`,
/// contain a separator or name another tenant's directory.
pub(crate) fn tenant_dir(root: &Path, tenant: &str) -> Result<PathBuf, KnowledgeError> {
    if tenant.is_empty() || tenant.len() > 256 {
        return Err(KnowledgeError::Tenant(format!("{} bytes", tenant.len())));
    }
    let mut name = String::with_capacity(tenant.len());
    for b in tenant.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(root.join(name))
}

/// Opens (or with `create`, creates) a tenant's index and registers the analyzer.
pub(crate) fn open_index(dir: &Path, create: bool) -> Result<Option<(Index, Fields)>, KnowledgeError> {
    let (schema, fields) = schema();
    let exists = dir.join("meta.json").exists();
    let index = match (exists, create) {
        (true, _) => Index::open_in_dir(dir)?,
        (false, true) => {
            std::fs::create_dir_all(dir).map_err(|e| KnowledgeError::io(dir, e))?;
            Index::create_in_dir(dir, schema.clone())?
        }
        (false, false) => return Ok(None),
    };
    if index.schema() != schema {
        return Err(KnowledgeError::Directory(format!(
            "{} was built with another schema: ingest it again into an empty directory",
            dir.display()
        )));
    }
    index.tokenizers().register(ANALYZER, analyzer());
    Ok(Some((index, fields)))
}

/// A stored chunk back as a passage.
pub(crate) fn passage(f: &Fields, doc: &TantivyDocument, score: f32) -> (Passage, u64, usize) {
    use tantivy::schema::Value;
    let text = |field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let num = |field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
    let heading = text(f.heading);
    let body = text(f.body);
    let p = Passage {
        source: text(f.source),
        headings: heading.split('\n').filter(|h| !h.is_empty()).map(str::to_string).collect(),
        anchor: Some(text(f.anchor)).filter(|a| !a.is_empty()),
        lines: (num(f.line_start) as u32, num(f.line_end) as u32),
        tokens: crate::estimate_tokens(&body),
        text: body,
        score,
    };
    (p, num(f.ord), num(f.overlap) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_directories_are_one_injective_component() {
        let root = Path::new("/kb");
        assert_eq!(tenant_dir(root, "acme").unwrap(), Path::new("/kb/acme"));
        assert_eq!(tenant_dir(root, "..").unwrap(), Path::new("/kb/%2E%2E"));
        assert_eq!(tenant_dir(root, "a/b").unwrap(), Path::new("/kb/a%2Fb"));
        assert_ne!(tenant_dir(root, "a b").unwrap(), tenant_dir(root, "a%20b").unwrap());
        assert!(tenant_dir(root, "").is_err());
    }

    #[test]
    fn the_analyzer_stems_and_drops_stop_words() {
        let mut a = analyzer();
        assert_eq!(terms(&mut a, "How are Refunds refunded? The refund!"), vec!["how", "refund"]);
        assert_eq!(terms(&mut a, "Café shipping"), vec!["cafe", "ship"]);
    }
}
