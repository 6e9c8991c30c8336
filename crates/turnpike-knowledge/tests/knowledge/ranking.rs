//! Retrieval quality on a labelled question set (tests/data/queries.toml, 46 customer questions over the
//! brightwave help centre): document-level recall@1, recall@4 and MRR for plain BM25 and each added
//! signal, printed as a table (`cargo test -p turnpike-knowledge --test knowledge ranking -- --nocapture`).
//!
//! The floors asserted are regression guards set below the measured figures, not targets.

use std::path::PathBuf;

use serde::Deserialize;
use turnpike_knowledge::{KnowledgeBase, KnowledgePolicy, SourceDoc};

#[derive(Deserialize)]
struct Labelled {
    q: Vec<Question>,
}

#[derive(Deserialize)]
struct Question {
    text: String,
    relevant: Vec<String>,
}

struct Quality {
    recall_1: f64,
    recall_k: f64,
    mrr: f64,
}

fn measure(kb: &KnowledgeBase, questions: &[Question], policy: &KnowledgePolicy) -> (Quality, Vec<String>) {
    let (mut r1, mut rk, mut rr) = (0.0, 0.0, 0.0);
    let mut misses = Vec::new();
    for q in questions {
        let hits = kb.search("brightwave", &q.text, None, policy).unwrap();
        match hits.iter().position(|p| q.relevant.contains(&p.source)) {
            Some(rank) => {
                r1 += f64::from(rank == 0);
                rk += 1.0;
                rr += 1.0 / (rank + 1) as f64;
            }
            None => misses.push(format!("{:?} → {:?}", q.text, hits.first().map(|p| &p.source))),
        }
    }
    let n = questions.len() as f64;
    (Quality { recall_1: r1 / n, recall_k: rk / n, mrr: rr / n }, misses)
}

#[test]
fn reranking_is_measured_on_labelled_questions() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let labelled: Labelled = toml::from_str(&std::fs::read_to_string(data.join("queries.toml")).unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let kb = KnowledgeBase::new(root.path());
    let (docs, _) = SourceDoc::collect(&[data.join("brightwave")], None).unwrap();
    kb.ingest("brightwave", &docs, false).unwrap();

    let d = KnowledgePolicy::default();
    let k = d.k;
    let plain = KnowledgePolicy { rerank: false, max_per_document: k, min_relative_score: 0.0, ..d.clone() };
    let variants = [
        ("BM25 on the body", KnowledgePolicy { heading_field_weight: 0.0, ..plain.clone() }),
        ("BM25 body + heading field", plain.clone()),
        ("+ rerank (heading boost, dedupe)", KnowledgePolicy { rerank: true, ..plain.clone() }),
        ("+ at most 2 per document", KnowledgePolicy { min_relative_score: 0.0, ..d.clone() }),
        ("defaults (+ relative floor 0.25)", d.clone()),
    ];
    println!("{} questions, k = {k}", labelled.q.len());
    println!("{:<36} {:>9} {:>9} {:>7}", "variant", "recall@1", "recall@4", "MRR");
    let mut results = Vec::new();
    for (name, policy) in &variants {
        let (q, misses) = measure(&kb, &labelled.q, policy);
        println!("{name:<36} {:>9.3} {:>9.3} {:>7.3}", q.recall_1, q.recall_k, q.mrr);
        for m in misses {
            println!("    miss: {m}");
        }
        results.push(q);
    }
    let (base, defaults) = (&results[0], &results[4]);
    assert!(defaults.recall_k >= 0.85 && defaults.mrr >= 0.75, "quality regressed");
    assert!(defaults.mrr >= base.mrr && defaults.recall_k >= base.recall_k, "the defaults must not lose to plain BM25");
}
