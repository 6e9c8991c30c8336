//! Knowledge for assemble: each PROCEED turn's passages from the tenant's knowledge base
//! (`turnpike-knowledge`), and the citations the reply carries.
//!
//! Guarantees:
//! - The query is the user's (masked) message, with the previous user message at a lower weight so a
//!   follow-up ("and to Canada?") still finds its topic; the tenant's `knowledge` settings apply
//!   (`TURNPIKE_TENANTS_CONFIG`), including the whole-base rule for small knowledge bases.
//! - Citations are the passages the prompt holds that answer the question, best first: in retrieval mode
//!   every included passage, in whole-base mode only the included passages that the question retrieved (the
//!   rest of the base is context, not a source of this answer). guard-out's grounding check compares the
//!   reply against exactly these snippets.
//! - Knowledge never stops a turn: an index error is logged and counted
//!   (`turnpike_knowledge_errors_total`), and the turn is answered without knowledge.
//! - The search (CPU and memory-mapped reads) runs on the blocking pool, never on the async workers.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::assemble::{Assemble, Passage};
use turnpike_core::{PerTenant, TenantsConfig};
use turnpike_knowledge::{KnowledgeBase, KnowledgePolicy, Retrieval, RetrievalMode};
use turnpike_runner::StageError;
use turnpike_schemas::Citation;

/// Every tenant's knowledge base and retrieval settings.
#[derive(Clone)]
pub struct Knowledge {
    pub base: Arc<KnowledgeBase>,
    pub policies: PerTenant<KnowledgePolicy>,
}

impl Knowledge {
    /// Indexes under `root` (one folder per tenant, made by `turnpike knowledge ingest`), settings from
    /// section `knowledge` of the tenants file.
    pub fn load(root: &Path) -> Result<Knowledge, StageError> {
        let policies = TenantsConfig::from_env()
            .and_then(|c| c.section::<KnowledgePolicy>("knowledge"))
            .map_err(|e| StageError::fatal("knowledge_policy", e.to_string()))?;
        Ok(Knowledge { base: Arc::new(KnowledgeBase::new(root)), policies })
    }

    /// The turn's knowledge (empty on any error, see the module comment).
    pub async fn for_turn(&self, tenant: &str, text: &str, previous: Option<&str>) -> TurnKnowledge {
        let policy = self.policies.get(tenant).clone();
        if !policy.enabled {
            return TurnKnowledge::default();
        }
        let started = Instant::now();
        let (base, t, q, p) = (self.base.clone(), tenant.to_string(), text.to_string(), previous.map(str::to_string));
        let result = tokio::task::spawn_blocking(move || base.retrieve(&t, &q, p.as_deref(), &policy)).await;
        metrics::histogram!("turnpike_knowledge_seconds").record(started.elapsed().as_secs_f64());
        let r = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return failed(tenant, &e),
            Err(e) => return failed(tenant, &e),
        };
        let mode = match r.mode {
            RetrievalMode::None => "none",
            RetrievalMode::Retrieved => "retrieved",
            RetrievalMode::WholeBase => "whole_base",
        };
        metrics::counter!("turnpike_knowledge_turns_total", "mode" => mode).increment(1);
        TurnKnowledge::from(r)
    }
}

fn failed(tenant: &str, e: &dyn std::fmt::Display) -> TurnKnowledge {
    tracing::warn!(tenant, error = %e, "Knowledge retrieval failed; answering without knowledge.");
    metrics::counter!("turnpike_knowledge_errors_total").increment(1);
    TurnKnowledge::default()
}

/// One turn's knowledge: the passages for the prompt and which of them the answer cites.
#[derive(Clone, Debug, Default)]
pub struct TurnKnowledge {
    /// For [`crate::assemble::build`], in prompt order.
    pub passages: Vec<Passage>,
    /// (source, location) of the cited passages, best first.
    cited: Vec<(String, String)>,
}

impl From<Retrieval> for TurnKnowledge {
    fn from(r: Retrieval) -> Self {
        let convert = |p: &turnpike_knowledge::Passage| Passage {
            source: p.source.clone(),
            location: p.location(),
            text: p.text.clone(),
        };
        TurnKnowledge {
            passages: r.passages.iter().map(convert).collect(),
            cited: r.cited.iter().map(|p| (p.source.clone(), p.location())).collect(),
        }
    }
}

impl TurnKnowledge {
    /// The reply's citations: of the passages the prompt holds (`included`, as assemble rendered them,
    /// possibly cut to fit), those the answer cites, best first.
    pub fn citations(&self, included: Vec<Citation>) -> Vec<Citation> {
        let mut by_rank: Vec<(usize, Citation)> = included
            .into_iter()
            .filter_map(|c| {
                let rank = self.cited.iter().position(|(s, l)| *s == c.source && *l == c.location)?;
                Some((rank, c))
            })
            .collect();
        by_rank.sort_by_key(|(rank, _)| *rank);
        by_rank.into_iter().map(|(_, c)| c).collect()
    }
}

impl Assemble {
    /// Retrieval for every PROCEED turn from `knowledge`.
    pub fn with_knowledge(mut self, knowledge: Knowledge) -> Self {
        self.knowledge = Some(knowledge);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(source: &str, heading: &str, score: f32) -> turnpike_knowledge::Passage {
        turnpike_knowledge::Passage {
            source: source.into(),
            headings: vec![heading.into()],
            anchor: None,
            lines: (1, 2),
            text: format!("{heading} text."),
            score,
            tokens: 4,
        }
    }

    fn citation(p: &Passage) -> Citation {
        Citation { source: p.source.clone(), location: p.location.clone(), snippet: p.text.clone() }
    }

    #[test]
    fn whole_base_turns_cite_only_what_the_question_retrieved_best_first() {
        let (a, b, c) = (passage("a.md", "A", 0.0), passage("b.md", "B", 0.0), passage("c.md", "C", 0.0));
        let r = Retrieval {
            mode: RetrievalMode::WholeBase,
            passages: vec![a.clone(), b.clone(), c.clone()],
            cited: vec![passage("c.md", "C", 5.0), passage("a.md", "A", 2.0)],
        };
        let k = TurnKnowledge::from(r);
        assert_eq!(k.passages.iter().map(|p| p.source.as_str()).collect::<Vec<_>>(), vec!["a.md", "b.md", "c.md"]);
        assert_eq!(k.passages[0].location, "A (lines 1-2)");
        let included: Vec<Citation> = k.passages.iter().map(citation).collect();
        let cited = k.citations(included);
        assert_eq!(cited.iter().map(|c| c.source.as_str()).collect::<Vec<_>>(), vec!["c.md", "a.md"]);
        assert_eq!(cited[0].snippet, "C text.");
    }

    #[test]
    fn passages_the_budget_left_out_are_not_cited() {
        let r = Retrieval {
            mode: RetrievalMode::Retrieved,
            passages: vec![passage("a.md", "A", 3.0), passage("b.md", "B", 2.0)],
            cited: vec![passage("a.md", "A", 3.0), passage("b.md", "B", 2.0)],
        };
        let k = TurnKnowledge::from(r);
        let cited = k.citations(vec![citation(&k.passages[0])]);
        assert_eq!(cited.len(), 1);
        assert_eq!(k.citations(Vec::new()), Vec::<Citation>::new());
    }
}
