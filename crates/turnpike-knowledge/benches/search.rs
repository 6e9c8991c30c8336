//! Search latency on a 1,000-document knowledge base, with its ingest time and index size.
//!
//! Guarantee: measures the public API as the assemble stage calls it (`KnowledgeBase::retrieve` with the
//! default policy, one `Arc`-shared base, warm reader) over many customer-style questions, and prints
//! p50/p99/max, on the deterministic synthetic help centre of `turnpike_knowledge::synthetic`.
//! Run: `cargo bench -p turnpike-knowledge --bench search`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use turnpike_knowledge::synthetic::{self, QUESTIONS};
use turnpike_knowledge::{KnowledgeBase, KnowledgePolicy, SourceDoc};

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let docs: Vec<SourceDoc> = synthetic::help_centre(1000);
    let words: usize = docs.iter().map(|d| d.text.split_whitespace().count()).sum();
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();

    let root = tempfile::tempdir()?;
    let kb = std::sync::Arc::new(KnowledgeBase::new(root.path()));
    let started = Instant::now();
    let report = kb.ingest("bench", &docs, false)?;
    let ingest = started.elapsed();
    let size = dir_size(root.path());
    println!(
        "ingest: {} documents ({} words, {:.1} MB of source) → {} chunks (~{} tokens) in {:.2?}; index {:.1} MB on disk",
        report.documents,
        words,
        bytes as f64 / 1e6,
        report.chunks,
        report.tokens,
        ingest,
        size as f64 / 1e6
    );
    let started = Instant::now();
    let again = kb.ingest("bench", &docs, false)?;
    println!(
        "re-ingest of the same 1,000 documents: {:.2?}, {} chunks in the index",
        started.elapsed(),
        kb.chunk_count("bench")?
    );
    assert_eq!(kb.chunk_count("bench")?, again.chunks as u64);

    let policy = KnowledgePolicy::default();
    let cold = Instant::now();
    let first = kb.retrieve("bench", QUESTIONS[0], None, &policy)?;
    println!("first retrieve after open: {:.2?} ({:?}, {} passages)", cold.elapsed(), first.mode, first.passages.len());
    for q in QUESTIONS.iter().cycle().take(500) {
        black_box(kb.retrieve("bench", q, None, &policy)?);
    }
    let mut retrieve = Vec::with_capacity(20_000);
    let mut follow_up = Vec::with_capacity(5_000);
    for (i, q) in QUESTIONS.iter().cycle().take(20_000).enumerate() {
        let t = Instant::now();
        black_box(kb.retrieve("bench", q, None, &policy)?);
        retrieve.push(t.elapsed());
        if i % 4 == 0 {
            let prev = QUESTIONS[(i + 7) % QUESTIONS.len()];
            let t = Instant::now();
            black_box(kb.retrieve("bench", q, Some(prev), &policy)?);
            follow_up.push(t.elapsed());
        }
    }
    let report = |name: &str, mut v: Vec<Duration>| {
        let (p50, p99) = (pct(&mut v, 0.50), pct(&mut v, 0.99));
        println!("{name:<44} n={:<6} p50={:>8.1?} p99={:>8.1?} max={:>8.1?}", v.len(), p50, p99, v.last().unwrap());
    };
    report("retrieve (k=4, 24 candidates, rerank)", retrieve);
    report("retrieve with the previous message", follow_up);
    let plain = KnowledgePolicy { rerank: false, ..policy.clone() };
    let mut v = Vec::with_capacity(10_000);
    for q in QUESTIONS.iter().cycle().take(10_000) {
        let t = Instant::now();
        black_box(kb.search("bench", q, None, &plain)?);
        v.push(t.elapsed());
    }
    report("search without rerank", v);
    Ok(())
}
