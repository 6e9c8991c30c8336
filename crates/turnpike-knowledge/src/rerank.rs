//! Reranking and selection of BM25's candidates.
//!
//! Guarantee: the result holds at most `k` passages, at most `max_per_document` from one document, within
//! `max_tokens`, none below `min_score` or `min_relative_score` × the best score, in descending score order
//! (ties by source and position, so equal inputs give equal outputs). With `rerank` on, two cheap signals
//! adjust BM25 first: a chunk whose heading path contains the question's words is boosted (help pages name
//! their sections after the questions they answer), and a chunk whose words nearly repeat a better one
//! (the same paragraph copied across pages, or two overlapping chunks) is dropped, so the few passages the
//! prompt can hold say different things. Their effect is measured in `tests/knowledge/ranking.rs`.

use std::collections::HashSet;

use crate::{KnowledgePolicy, Passage};

/// Score multiplier for a chunk whose heading holds every query term (proportionally less for some).
const HEADING_BOOST: f32 = 0.5;
/// Word-set Jaccard similarity above which a chunk counts as a repeat of a better one.
const NEAR_DUPLICATE: f32 = 0.8;

pub(crate) struct Candidate {
    pub passage: Passage,
    pub ord: u64,
    /// Analyzed terms of the heading path.
    pub heading_terms: Vec<String>,
}

pub(crate) fn select(mut cands: Vec<Candidate>, query_terms: &[String], policy: &KnowledgePolicy) -> Vec<Passage> {
    if policy.rerank && !query_terms.is_empty() {
        for c in &mut cands {
            let hits = query_terms.iter().filter(|t| c.heading_terms.contains(t)).count();
            c.passage.score *= 1.0 + HEADING_BOOST * hits as f32 / query_terms.len() as f32;
        }
    }
    cands.sort_by(|a, b| {
        b.passage
            .score
            .total_cmp(&a.passage.score)
            .then_with(|| a.passage.source.cmp(&b.passage.source))
            .then(a.ord.cmp(&b.ord))
    });
    let best = cands.first().map_or(0.0, |c| c.passage.score);
    let floor = policy.min_score.max(best * policy.min_relative_score);

    let mut kept: Vec<(Passage, HashSet<String>)> = Vec::new();
    let mut tokens = 0;
    for c in cands {
        if kept.len() >= policy.k || c.passage.score < floor || c.passage.score <= 0.0 {
            break;
        }
        let same_doc = kept.iter().filter(|(p, _)| p.source == c.passage.source).count();
        if same_doc >= policy.max_per_document || tokens + c.passage.tokens > policy.max_tokens {
            continue;
        }
        let words = words(&c.passage.text);
        if policy.rerank && kept.iter().any(|(_, w)| jaccard(w, &words) >= NEAR_DUPLICATE) {
            continue;
        }
        tokens += c.passage.tokens;
        kept.push((c.passage, words));
    }
    kept.into_iter().map(|(p, _)| p).collect()
}

fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f32 {
    let inter = a.intersection(b).count();
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f32 / union as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(source: &str, heading: &[&str], text: &str, score: f32) -> Candidate {
        Candidate {
            passage: Passage {
                source: source.into(),
                headings: vec![],
                anchor: None,
                lines: (1, 1),
                text: text.into(),
                score,
                tokens: crate::estimate_tokens(text),
            },
            ord: 0,
            heading_terms: heading.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn heading_matches_win_duplicates_go_and_documents_are_capped() {
        let policy = KnowledgePolicy { k: 10, max_per_document: 2, min_relative_score: 0.0, ..Default::default() };
        let got = select(
            vec![
                cand("a.md", &[], "refunds are paid to the original card", 10.0),
                cand("b.md", &["refund"], "money goes back within five days", 8.5),
                cand("c.md", &[], "Refunds are paid to the original card.", 9.0),
                cand("a.md", &[], "second chunk of a", 7.0),
                cand("a.md", &[], "third chunk of a", 6.0),
            ],
            &["refund".to_string(), "card".to_string()],
            &policy,
        );
        let order: Vec<&str> = got.iter().map(|p| p.source.as_str()).collect();
        assert_eq!(order, vec!["b.md", "a.md", "a.md"], "8.5 × (1 + 0.5 × 1/2) beats 10");
        assert!(got.iter().all(|p| p.text != "Refunds are paid to the original card."), "near-duplicate dropped");
        assert!(!got.iter().any(|p| p.text == "third chunk of a"), "two per document");
    }

    #[test]
    fn floors_and_budgets() {
        let policy = KnowledgePolicy { k: 3, min_relative_score: 0.5, rerank: false, ..Default::default() };
        let got =
            select(vec![cand("a", &[], "x", 10.0), cand("b", &[], "y", 6.0), cand("c", &[], "z", 4.0)], &[], &policy);
        assert_eq!(got.len(), 2, "4 < 0.5 × 10");
        let policy = KnowledgePolicy { max_tokens: 2, rerank: false, ..Default::default() };
        let got = select(vec![cand("a", &[], "0123456789", 10.0), cand("b", &[], "0123", 9.0)], &[], &policy);
        assert_eq!(
            got.iter().map(|p| p.source.as_str()).collect::<Vec<_>>(),
            vec!["b"],
            "10 bytes = 3 tokens > 2; 4 bytes = 1 token fits"
        );
    }
}
