//! Knowledge on the real stack: a tenant's help centre ingested with the same code as `turnpike knowledge
//! ingest`, a customer question through all eight stages, and the reply's citation checked at every hop
//! (assembled prompt → routed prompt → outbound FINAL). The mock's `recall` directive answers with the
//! first sentence of the prompt's context containing a word, so the reply quoting the passage shows the
//! passage really was in the prompt. A tenant without a knowledge base gets neither knowledge nor citations.

use crate::common;

use common::*;
use std::time::Duration;
use turnpike_knowledge::{KnowledgeBase, SourceDoc};
use turnpike_schemas::{
    AssembledPrompt, CheckedReplyChunk, ChunkKind, OutboundKind, OutboundReply, Role, RoutedPrompt,
};

fn help_centre() -> std::path::PathBuf {
    root().join("crates/turnpike-knowledge/tests/data/brightwave")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_knowledge_question_is_answered_with_a_citation_to_the_right_document() {
    let index = tempfile::tempdir().unwrap();
    let tenant = unique("kb-bright");
    let (docs, _) = SourceDoc::collect(&[help_centre()], None).unwrap();
    KnowledgeBase::new(index.path()).ingest(&tenant, &docs, false).unwrap();

    let tuning = turnpike::pipeline::Tuning { knowledge_dir: Some(index.path().into()), ..Default::default() };
    let p = Pipeline::start_custom(
        &turnpike_topology::STAGE_NAMES,
        turnpike_llm::mock::MockConfig::instant(),
        turnpike_core::Endpoints::from_env(),
        tuning,
    )
    .await;
    let question = "Will I have to pay customs duties on my parcel to France? [[mock:recall=VAT]]";
    p.send_turn(&turn(&tenant, "u1:c1", "m1", question)).await;
    // Same question from a tenant that has no knowledge base (the other tenant's index is not consulted).
    let stranger = unique("kb-none");
    p.send_turn(&turn(&stranger, "u2:c1", "m1", question)).await;

    let outbound = read_until::<OutboundReply>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.replies.outbound"),
        6,
        Duration::from_secs(90),
        |rs| rs.iter().filter(|r| r.kind == OutboundKind::Final).count() >= 2,
    )
    .await;
    let reply = |tenant: &str| -> (String, OutboundReply) {
        let mine: Vec<&OutboundReply> = outbound.iter().map(|(_, r)| r).filter(|r| r.tenant_id == tenant).collect();
        // DELTA texts followed by the FINAL's: the whole reply (docs/kafka-contract.md).
        let text: String = mine.iter().filter(|r| r.kind != OutboundKind::Status).map(|r| r.text.as_str()).collect();
        let fin = mine.iter().find(|r| r.kind == OutboundKind::Final).expect("a FINAL").to_owned().clone();
        (text, fin)
    };

    let (text, fin) = reply(&tenant);
    let cited: Vec<(&str, &str)> = fin.citations.iter().map(|c| (c.source.as_str(), c.location.as_str())).collect();
    assert!(!cited.is_empty(), "the FINAL carries citations");
    assert_eq!(cited[0].0, "shipping/international.html", "{cited:?}");
    assert!(cited[0].1.starts_with("International delivery > Customs duties and import taxes (#customs, lines "));
    assert!(fin.citations[0].snippet.contains("we collect VAT at checkout"), "{}", fin.citations[0].snippet);
    assert!(text.contains("we collect VAT at checkout"), "the reply quotes the retrieved passage: {text:?}");

    let (other_text, other_fin) = reply(&stranger);
    assert!(other_fin.citations.is_empty(), "{:?}", other_fin.citations);
    assert!(!other_text.contains("we collect VAT"), "{other_text:?}");

    // The citations travelled assemble → route with the passage in the prompt.
    let assembled = read_until::<AssembledPrompt>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.prompts.assembled"),
        6,
        Duration::from_secs(10),
        |rs| rs.len() >= 2,
    )
    .await;
    let prompt = |tenant: &str| assembled.iter().map(|(_, a)| a).find(|a| a.tenant_id == tenant).unwrap().clone();
    let a = prompt(&tenant);
    let knowledge: Vec<&str> = a
        .messages
        .iter()
        .filter(|m| m.role == Role::System && m.content.starts_with("Knowledge passages"))
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(knowledge.len(), 1, "one knowledge message");
    assert!(knowledge[0].contains("shipping/international.html") && knowledge[0].contains("import duties"));
    assert_eq!(a.citations, fin.citations, "the FINAL carries exactly assemble's citations");
    assert!(a.prompt_tokens <= a.budget_tokens);
    let none = prompt(&stranger);
    assert!(none.citations.is_empty() && none.messages.iter().all(|m| !m.content.starts_with("Knowledge passages")));

    let routed = read_until::<RoutedPrompt>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.prompts.routed"),
        6,
        Duration::from_secs(10),
        |rs| rs.iter().any(|r| r.tenant_id == tenant),
    )
    .await;
    let r = routed.iter().map(|(_, r)| r).find(|r| r.tenant_id == tenant).unwrap();
    assert_eq!(r.citations, a.citations);

    // guard-out's grounding check sees the sources for every sentence, also those it releases before the
    // FINAL arrives: a reply whose first sentence states the passage's €150 is not flagged as ungrounded,
    // while an invented figure in the same reply is.
    let probe = "Do I pay VAT on delivery to France? \
                 [[mock:reply=Orders up to €150 pay no extra VAT on delivery. Orders over €900 ship by air. Anything else?]]";
    p.send_turn(&turn(&tenant, "u1:c2", "m1", probe)).await;
    let checked = read_until::<CheckedReplyChunk>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.replies.checked"),
        6,
        Duration::from_secs(10),
        |rs| rs.iter().any(|c| c.session_id == "u1:c2" && c.kind == ChunkKind::Final),
    )
    .await;
    let mine: Vec<&CheckedReplyChunk> =
        checked.iter().map(|(_, c)| c).filter(|c| c.tenant_id == tenant && c.session_id == "u1:c2").collect();
    let sentence = |start: &str| {
        let c = mine.iter().find(|c| c.kind == ChunkKind::Delta && c.text.trim_start().starts_with(start));
        let c = c.unwrap_or_else(|| panic!("no released sentence starting {start:?}: {mine:?}"));
        c.triggers.iter().filter(|t| t.check == "grounding").map(|t| t.detail.clone()).collect::<Vec<_>>()
    };
    assert_eq!(sentence("Orders up to"), Vec::<String>::new(), "a figure from the cited passage is grounded");
    assert_eq!(sentence("Orders over"), vec!["number:€900".to_string()], "an invented figure is flagged");
    p.stop().await;
}
