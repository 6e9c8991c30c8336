//! The knowledge base: every tenant's index under one root, opened on first use and shared by all turns.
//!
//! Guarantee (see the crate comment for isolation and idempotence): a search sees every commit made
//! through this `KnowledgeBase` at once (the reader is reloaded after the commit), and commits made by
//! another process after tantivy's file watcher notices them (a fraction of a second). A tenant without an
//! index has no knowledge: its searches return nothing, they do not fail.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::rerank::{self, Candidate};
use crate::schema::{self, Fields};
use crate::{
    chunk_blocks, parse_document, ChunkConfig, IngestReport, KnowledgeError, KnowledgePolicy, Passage, SourceDoc,
};

/// Indexing memory: tantivy's per-thread minimum is 15 MB; one thread is plenty for help pages.
const WRITER_BYTES: usize = 64 * 1024 * 1024;

struct TenantIndex {
    index: Index,
    reader: IndexReader,
    f: Fields,
    /// One writer at a time in this process (tantivy's lock file covers other processes).
    write: Mutex<()>,
    whole: Mutex<Option<WholeCache>>,
}

/// The whole base as read for one searcher generation and token limit: `None` when it is larger.
struct WholeCache {
    generation: u64,
    limit: usize,
    whole: Option<Arc<Vec<Passage>>>,
}

/// Every tenant's knowledge. `Send + Sync`: share one behind an `Arc`.
pub struct KnowledgeBase {
    root: PathBuf,
    chunking: ChunkConfig,
    tenants: RwLock<HashMap<String, Arc<TenantIndex>>>,
}

/// How a turn's knowledge was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrievalMode {
    /// Nothing: retrieval is off, the tenant has no index, or nothing matched.
    None,
    /// The top passages for the question.
    Retrieved,
    /// The whole (small) knowledge base; see [`KnowledgePolicy`] for the rule.
    WholeBase,
}

/// A turn's knowledge.
#[derive(Clone, Debug)]
pub struct Retrieval {
    pub mode: RetrievalMode,
    /// What goes into the prompt, in prompt order (relevance, or document order for the whole base).
    pub passages: Vec<Passage>,
    /// What the answer cites, by relevance: the retrieved passages (in whole-base mode, the ones that
    /// matched the question). The grounding check compares the reply against these.
    pub cited: Vec<Passage>,
}

impl KnowledgeBase {
    /// Indexes live in `root/<tenant>/`. Nothing is read or created yet.
    pub fn new(root: impl Into<PathBuf>) -> KnowledgeBase {
        KnowledgeBase { root: root.into(), chunking: ChunkConfig::default(), tenants: RwLock::default() }
    }

    pub fn with_chunking(mut self, chunking: ChunkConfig) -> KnowledgeBase {
        self.chunking = chunking;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tenant(&self, tenant: &str, create: bool) -> Result<Option<Arc<TenantIndex>>, KnowledgeError> {
        if let Some(t) = self.tenants.read().unwrap_or_else(|e| e.into_inner()).get(tenant) {
            return Ok(Some(t.clone()));
        }
        let dir = schema::tenant_dir(&self.root, tenant)?;
        let mut map = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = map.get(tenant) {
            return Ok(Some(t.clone()));
        }
        let Some((index, f)) = schema::open_index(&dir, create)? else { return Ok(None) };
        let reader = index.reader_builder().reload_policy(ReloadPolicy::OnCommitWithDelay).try_into()?;
        let t = Arc::new(TenantIndex { index, reader, f, write: Mutex::new(()), whole: Mutex::new(None) });
        map.insert(tenant.to_string(), t.clone());
        Ok(Some(t))
    }

    /// Adds or replaces `docs` in the tenant's index (created if missing) in one commit. With
    /// `replace_all`, every document not in `docs` is removed too.
    pub fn ingest(&self, tenant: &str, docs: &[SourceDoc], replace_all: bool) -> Result<IngestReport, KnowledgeError> {
        let t = self.tenant(tenant, true)?.ok_or_else(|| KnowledgeError::Directory("not created".into()))?;
        let _one_writer = t.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut writer: IndexWriter<TantivyDocument> = t.index.writer_with_num_threads(1, WRITER_BYTES)?;
        if replace_all {
            writer.delete_query(Box::new(AllQuery))?;
        }
        let f = t.f;
        let mut report = IngestReport { documents: docs.len(), ..Default::default() };
        for d in docs {
            writer.delete_term(Term::from_field_text(f.source, &d.source));
            let chunks = chunk_blocks(&parse_document(d.format, &d.source, &d.text), self.chunking);
            for (ord, c) in chunks.iter().enumerate() {
                report.chunks += 1;
                report.tokens += crate::estimate_tokens(&c.text);
                writer.add_document(doc!(
                    f.tenant => tenant,
                    f.source => d.source.as_str(),
                    f.heading => c.headings.join("\n"),
                    f.body => c.text.as_str(),
                    f.anchor => c.anchor.clone().unwrap_or_default(),
                    f.line_start => u64::from(c.lines.0),
                    f.line_end => u64::from(c.lines.1),
                    f.ord => ord as u64,
                    f.overlap => c.overlap_bytes as u64,
                ))?;
            }
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        t.reader.reload()?;
        Ok(report)
    }

    /// Chunks in the tenant's index (0 without one).
    pub fn chunk_count(&self, tenant: &str) -> Result<u64, KnowledgeError> {
        Ok(self.tenant(tenant, false)?.map_or(0, |t| t.reader.searcher().num_docs()))
    }

    /// Removes documents by source; returns how many chunks the index held for them.
    pub fn remove(&self, tenant: &str, sources: &[String]) -> Result<u64, KnowledgeError> {
        let Some(t) = self.tenant(tenant, false)? else { return Ok(0) };
        let _one_writer = t.write.lock().unwrap_or_else(|e| e.into_inner());
        let searcher = t.reader.searcher();
        let mut found = 0;
        let mut writer: IndexWriter<TantivyDocument> = t.index.writer_with_num_threads(1, WRITER_BYTES)?;
        for s in sources {
            let term = Term::from_field_text(t.f.source, s);
            found += searcher.doc_freq(&term)?;
            writer.delete_term(term);
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        t.reader.reload()?;
        Ok(found)
    }

    /// The passages that best answer `query` (reranked and filtered by `policy`), best first. `previous`
    /// (the user's previous message) adds its words at `policy.previous_message_weight`.
    pub fn search(
        &self,
        tenant: &str,
        query: &str,
        previous: Option<&str>,
        policy: &KnowledgePolicy,
    ) -> Result<Vec<Passage>, KnowledgeError> {
        if !policy.enabled || policy.k == 0 {
            return Ok(Vec::new());
        }
        let Some(t) = self.tenant(tenant, false)? else { return Ok(Vec::new()) };
        let mut analyzer = schema::analyzer();
        let q_terms = schema::terms(&mut analyzer, query);
        let mut p_terms = previous.map(|p| schema::terms(&mut analyzer, p)).unwrap_or_default();
        p_terms.retain(|t| !q_terms.contains(t));
        if policy.previous_message_weight <= 0.0 {
            p_terms.clear();
        }
        if q_terms.is_empty() && p_terms.is_empty() {
            return Ok(Vec::new());
        }
        let f = t.f;
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (terms, weight) in [(&q_terms, 1.0f32), (&p_terms, policy.previous_message_weight)] {
            for term in terms {
                for (field, w) in [(f.body, weight), (f.heading, weight * policy.heading_field_weight)] {
                    if w <= 0.0 {
                        continue;
                    }
                    let q = TermQuery::new(Term::from_field_text(field, term), IndexRecordOption::WithFreqs);
                    should.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), w))));
                }
            }
        }
        // Every chunk of this tenant and no other, even from a misplaced directory; the filter adds no score.
        let tenant_only = TermQuery::new(Term::from_field_text(f.tenant, tenant), IndexRecordOption::Basic);
        let query = BooleanQuery::new(vec![
            (Occur::Must, Box::new(ConstScoreQuery::new(Box::new(tenant_only), 0.0))),
            (Occur::Must, Box::new(BooleanQuery::new(should))),
        ]);
        let searcher = t.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(policy.candidates.max(policy.k)).order_by_score())?;
        let mut cands = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let (passage, ord, _) = schema::passage(&f, &doc, score);
            let heading_terms = schema::terms(&mut analyzer, &passage.headings.join(" "));
            cands.push(Candidate { passage, ord, heading_terms });
        }
        Ok(rerank::select(cands, &q_terms, policy))
    }

    /// The tenant's whole knowledge base, in document order without chunk overlaps, when it holds at most
    /// `max_tokens` estimated tokens; `None` when it is larger or absent. Cached per index generation, and
    /// reading stops as soon as the limit is passed, so a large base costs little.
    pub fn whole_kb_if_small(&self, tenant: &str, max_tokens: usize) -> Result<Option<Vec<Passage>>, KnowledgeError> {
        if max_tokens == 0 {
            return Ok(None);
        }
        let Some(t) = self.tenant(tenant, false)? else { return Ok(None) };
        let searcher = t.reader.searcher();
        let generation = searcher.generation().generation_id();
        let mut cache = t.whole.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.as_ref().filter(|c| c.generation == generation && c.limit == max_tokens) {
            return Ok(c.whole.as_ref().map(|w| w.as_ref().clone()));
        }
        let tenant_only = TermQuery::new(Term::from_field_text(t.f.tenant, tenant), IndexRecordOption::Basic);
        let mut addrs: Vec<_> = searcher.search(&tenant_only, &DocSetCollector)?.into_iter().collect();
        addrs.sort();
        let mut all = Vec::with_capacity(addrs.len());
        let mut total = 0;
        for addr in addrs {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let (mut p, ord, overlap) = schema::passage(&t.f, &doc, 0.0);
            if overlap > 0 && overlap <= p.text.len() && p.text.is_char_boundary(overlap) {
                p.text = p.text[overlap..].trim_start().to_string();
                p.tokens = crate::estimate_tokens(&p.text);
            }
            total += p.tokens;
            if total > max_tokens {
                *cache = Some(WholeCache { generation, limit: max_tokens, whole: None });
                return Ok(None);
            }
            all.push((p.source.clone(), ord, p));
        }
        all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let whole: Vec<Passage> = all.into_iter().map(|(_, _, p)| p).collect();
        *cache = Some(WholeCache { generation, limit: max_tokens, whole: Some(Arc::new(whole.clone())) });
        Ok(Some(whole))
    }

    /// A turn's knowledge under `policy`: the whole base when it is small enough, else the top passages.
    pub fn retrieve(
        &self,
        tenant: &str,
        query: &str,
        previous: Option<&str>,
        policy: &KnowledgePolicy,
    ) -> Result<Retrieval, KnowledgeError> {
        if !policy.enabled {
            return Ok(Retrieval { mode: RetrievalMode::None, passages: Vec::new(), cited: Vec::new() });
        }
        let cited = self.search(tenant, query, previous, policy)?;
        if let Some(whole) = self.whole_kb_if_small(tenant, policy.stuff_max_tokens)?.filter(|w| !w.is_empty()) {
            return Ok(Retrieval { mode: RetrievalMode::WholeBase, passages: whole, cited });
        }
        let mode = if cited.is_empty() { RetrievalMode::None } else { RetrievalMode::Retrieved };
        Ok(Retrieval { mode, passages: cited.clone(), cited })
    }
}
