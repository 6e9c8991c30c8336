//! The knowledge base end to end on the shipped test data: ingest from disk, search, locations, idempotent
//! re-ingest, tenant isolation, the whole-base rule, and reloads after another writer's commit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_knowledge::{KnowledgeBase, KnowledgePolicy, Passage, RetrievalMode, SourceDoc};

fn data(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(dir)
}

fn ingest(kb: &KnowledgeBase, tenant: &str, dir: &str) -> turnpike_knowledge::IngestReport {
    let (docs, skipped) = SourceDoc::collect(&[data(dir)], None).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    kb.ingest(tenant, &docs, false).unwrap()
}

fn sources(p: &[Passage]) -> Vec<&str> {
    p.iter().map(|p| p.source.as_str()).collect()
}

#[test]
fn a_passage_names_its_document_section_and_lines() {
    let root = tempfile::tempdir().unwrap();
    let kb = KnowledgeBase::new(root.path());
    let report = ingest(&kb, "brightwave", "brightwave");
    assert_eq!(report.documents, 13);
    assert!(report.chunks > report.documents, "sections become chunks: {report:?}");
    assert_eq!(kb.chunk_count("brightwave").unwrap(), report.chunks as u64);

    let policy = KnowledgePolicy::default();
    let hits =
        kb.search("brightwave", "Will I have to pay customs duties on a parcel to France?", None, &policy).unwrap();
    let top = &hits[0];
    assert_eq!(top.source, "shipping/international.html");
    assert_eq!(top.headings, vec!["International delivery", "Customs duties and import taxes"]);
    assert_eq!(top.anchor.as_deref(), Some("customs"));
    assert!(top.text.contains("import duties and local taxes"), "{}", top.text);
    assert!(!top.text.contains('<') && !top.text.contains("&euro;"), "markup stripped, entities decoded");
    // The line range points at the passage's text in the file.
    let file = std::fs::read_to_string(data("brightwave").join(&top.source)).unwrap();
    let lines: Vec<&str> = file.lines().collect();
    let span = lines[top.lines.0 as usize - 1..top.lines.1 as usize].join("\n");
    assert!(span.contains("For deliveries to the European Union") && span.contains("minus the original delivery"));
    assert_eq!(
        top.location(),
        format!(
            "International delivery > Customs duties and import taxes (#customs, lines {}-{})",
            top.lines.0, top.lines.1
        )
    );

    // Markdown and text keep their headings and lines too.
    let hits = kb.search("brightwave", "how to descale a kettle with vinegar", None, &policy).unwrap();
    assert_eq!(hits[0].source, "products/kettle-care.txt");
    assert_eq!(hits[0].headings, vec!["Kettle care and descaling", "How to descale"]);
    assert_eq!(hits[0].lines, (9, 11));
    let hits = kb.search("brightwave", "reset forgotten password", None, &policy).unwrap();
    assert_eq!(hits[0].source, "account/account-help.md");
    assert_eq!(hits[0].headings, vec!["Your Brightwave account", "I forgot my password"]);
    assert_eq!(hits[0].lines, (5, 7));

    // Every passage of any question: its line range holds its first and last words.
    let wide = KnowledgePolicy { k: 20, max_per_document: 20, min_relative_score: 0.0, ..Default::default() };
    let mut checked = 0;
    for q in ["refund delivery", "kettle warranty", "password email account", "blender jug", "pay card order"] {
        for p in kb.search("brightwave", q, None, &wide).unwrap() {
            let file = std::fs::read_to_string(data("brightwave").join(&p.source)).unwrap();
            let lines: Vec<&str> = file.lines().collect();
            let span = lines[p.lines.0 as usize - 1..p.lines.1 as usize].join("\n");
            let words: Vec<&str> = p.text.split(|c: char| !c.is_alphabetic()).filter(|w| w.len() >= 4).collect();
            for w in [words.first(), words.last()].into_iter().flatten() {
                assert!(span.contains(w), "{} {:?}: {w:?} not in {span:?}", p.source, p.lines);
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
}

#[test]
fn ingesting_the_same_documents_again_replaces_them() {
    let root = tempfile::tempdir().unwrap();
    let kb = KnowledgeBase::new(root.path());
    let first = ingest(&kb, "acme", "brightwave");
    let policy = KnowledgePolicy { k: 10, max_per_document: 10, ..Default::default() };
    let before = kb.search("acme", "refund delivery charge", None, &policy).unwrap();
    for _ in 0..2 {
        ingest(&kb, "acme", "brightwave");
    }
    assert_eq!(kb.chunk_count("acme").unwrap(), first.chunks as u64, "no duplicates after re-ingest");
    assert_eq!(kb.search("acme", "refund delivery charge", None, &policy).unwrap(), before);

    // A changed document replaces all its old chunks; others are untouched.
    let doc = SourceDoc {
        source: "returns/refunds.html".into(),
        format: turnpike_knowledge::Format::Markdown,
        text: "# Refunds\n\nRefunds now take 3 days.\n".into(),
    };
    kb.ingest("acme", &[doc], false).unwrap();
    let hits = kb.search("acme", "how long does a refund take", None, &policy).unwrap();
    let refunds: Vec<_> = hits.iter().filter(|p| p.source == "returns/refunds.html").collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].text, "Refunds now take 3 days.");
    assert!(kb.chunk_count("acme").unwrap() < first.chunks as u64);

    // replace_all drops documents that are gone from the folder; remove() drops named ones.
    let (docs, _) = SourceDoc::collect(&[data("globex")], None).unwrap();
    kb.ingest("acme", &docs, true).unwrap();
    assert!(kb.search("acme", "refund", None, &policy).unwrap().iter().all(|p| !p.source.starts_with("returns/")));
    assert!(kb.remove("acme", &["refunds.md".to_string()]).unwrap() > 0);
    assert!(kb.search("acme", "refund", None, &policy).unwrap().iter().all(|p| p.source == "roaming.md"));
}

#[test]
fn a_tenant_never_retrieves_another_tenants_chunks() {
    let root = tempfile::tempdir().unwrap();
    let kb = KnowledgeBase::new(root.path());
    ingest(&kb, "brightwave", "brightwave");
    ingest(&kb, "globex", "globex");
    let policy = KnowledgePolicy { k: 20, max_per_document: 20, min_relative_score: 0.0, ..Default::default() };
    for q in
        ["how long does a refund take", "cancel contract roaming", "Globex Mobile", "delivery to the United States"]
    {
        let b = kb.search("brightwave", q, None, &policy).unwrap();
        assert!(sources(&b).iter().all(|s| !["refunds.md", "roaming.md"].contains(s)), "{q}: {:?}", sources(&b));
        let g = kb.search("globex", q, None, &policy).unwrap();
        assert!(sources(&g).iter().all(|s| ["refunds.md", "roaming.md"].contains(s)), "{q}: {:?}", sources(&g));
    }
    assert!(kb.search("nobody", "refund", None, &policy).unwrap().is_empty(), "no index, no knowledge");

    // Even a directory copied under another tenant's name yields nothing: every query requires the tenant.
    let copy = root.path().join("intruder");
    std::fs::create_dir(&copy).unwrap();
    for f in std::fs::read_dir(root.path().join("globex")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
    }
    let fresh = KnowledgeBase::new(root.path());
    assert!(fresh.chunk_count("intruder").unwrap() > 0, "the copied index opens");
    assert!(fresh.search("intruder", "refund cancel roaming", None, &policy).unwrap().is_empty());
    assert!(fresh.whole_kb_if_small("intruder", 100_000).unwrap().unwrap_or_default().is_empty());
}

#[test]
fn small_bases_go_whole_into_the_prompt_and_large_ones_are_retrieved() {
    let root = tempfile::tempdir().unwrap();
    let kb = KnowledgeBase::new(root.path());
    ingest(&kb, "globex", "globex");
    ingest(&kb, "brightwave", "brightwave");
    let policy = KnowledgePolicy::default();

    let whole = kb.whole_kb_if_small("globex", policy.stuff_max_tokens).unwrap().expect("globex is small");
    assert_eq!(sources(&whole), vec!["refunds.md", "refunds.md", "roaming.md"], "document order");
    assert!(whole.iter().map(|p| p.tokens).sum::<usize>() <= policy.stuff_max_tokens);
    let r = kb.retrieve("globex", "how long does a refund take", None, &policy).unwrap();
    assert_eq!(r.mode, RetrievalMode::WholeBase);
    assert_eq!(r.passages, whole);
    assert_eq!(r.cited[0].source, "refunds.md", "citations rank the base for the question");
    assert!(r.cited.iter().all(|c| c.score > 0.0));

    assert!(kb.whole_kb_if_small("brightwave", policy.stuff_max_tokens).unwrap().is_none());
    let r = kb.retrieve("brightwave", "how long does a refund take", None, &policy).unwrap();
    assert_eq!(r.mode, RetrievalMode::Retrieved);
    assert_eq!(r.passages, r.cited);
    assert!(r.passages.len() <= policy.k && r.passages.iter().map(|p| p.tokens).sum::<usize>() <= policy.max_tokens);
    assert_eq!(r.passages[0].source, "returns/refunds.html");
    // A raised threshold stuffs the brightwave base too, without chunk overlaps.
    let whole = kb.whole_kb_if_small("brightwave", 100_000).unwrap().unwrap();
    let text: String = whole.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join("\n");
    assert_eq!(text.matches("Our customer care team is available").count(), 3, "each page's copy once");

    let off = KnowledgePolicy { enabled: false, ..Default::default() };
    assert_eq!(kb.retrieve("brightwave", "refund", None, &off).unwrap().mode, RetrievalMode::None);
}

#[test]
fn a_follow_up_question_uses_the_previous_message() {
    let root = tempfile::tempdir().unwrap();
    let kb = KnowledgeBase::new(root.path());
    ingest(&kb, "brightwave", "brightwave");
    let policy = KnowledgePolicy::default();
    let alone = kb.search("brightwave", "and how much is it to Australia?", None, &policy).unwrap();
    let with = kb
        .search("brightwave", "and how much is it to Australia?", Some("do you deliver internationally?"), &policy)
        .unwrap();
    assert_eq!(with[0].source, "shipping/international.html");
    assert_eq!(with[0].anchor.as_deref(), Some("costs"), "{:?}", with[0]);
    assert!(alone[0].score <= with[0].score);
}

#[test]
fn commits_from_another_writer_become_visible_without_reopening() {
    let root = tempfile::tempdir().unwrap();
    let reader_side = Arc::new(KnowledgeBase::new(root.path()));
    ingest(&reader_side, "acme", "globex");
    let policy = KnowledgePolicy::default();
    assert!(reader_side.search("acme", "descale kettle vinegar", None, &policy).unwrap().is_empty());
    // Another process's ingest: a separate KnowledgeBase on the same root.
    ingest(&KnowledgeBase::new(root.path()), "acme", "brightwave");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hits = reader_side.search("acme", "descale kettle vinegar", None, &policy).unwrap();
        if hits.first().is_some_and(|p| p.source == "products/kettle-care.txt") {
            break;
        }
        assert!(Instant::now() < deadline, "the reader never saw the other writer's commit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn settings_come_from_the_tenants_file() {
    fn shareable<T: Send + Sync>() {}
    shareable::<KnowledgeBase>();
    let cfg = turnpike_core::TenantsConfig::parse(
        "[defaults.knowledge]\nk = 3\n[tenants.acme.knowledge]\nstuff_max_tokens = 0\nmin_score = 1.5\n",
    )
    .unwrap();
    let s = cfg.section::<KnowledgePolicy>("knowledge").unwrap();
    assert_eq!((s.get("acme").k, s.get("acme").stuff_max_tokens, s.get("acme").min_score), (3, 0, 1.5));
    assert_eq!(s.get("other").stuff_max_tokens, KnowledgePolicy::default().stuff_max_tokens);
    let bad = turnpike_core::TenantsConfig::parse("[tenants.acme.knowledge]\nkk = 3\n").unwrap();
    assert!(bad.section::<KnowledgePolicy>("knowledge").is_err());
}
