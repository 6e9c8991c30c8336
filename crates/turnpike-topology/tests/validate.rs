//! `topology validate` accepts the shipped file and rejects broken ones with a message naming the problem.

use std::path::PathBuf;
use turnpike_topology::Topology;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shipped_text() -> String {
    std::fs::read_to_string(root().join("topology/turnpike.toml")).unwrap()
}

/// Validates a variant of the shipped file and returns the rendered error.
fn errors_of(text: &str) -> String {
    let topo = Topology::parse(text).expect("variant still parses");
    match topo.validate(&root().join("schemas")) {
        Ok(()) => panic!("broken topology was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn shipped_topology_is_valid() {
    let topo = Topology::load(&root().join("topology/turnpike.toml")).unwrap();
    topo.validate(&root().join("schemas")).unwrap();
    let pipeline = topo.stages.iter().filter(|s| turnpike_topology::STAGE_NAMES.contains(&s.name.as_str()));
    assert_eq!(pipeline.count(), 9);
    assert!(topo.stage("gateway").is_some_and(|s| s.outputs.is_empty()), "the gateway is an edge stage");
}

#[test]
fn edge_stages_read_a_sink_and_write_nothing() {
    let text = shipped_text().replace(
        "input = \"turnpike.replies.outbound\"\noutputs = []",
        "input = \"turnpike.replies.checked\"\noutputs = [\"turnpike.replies.outbound\"]",
    );
    let err = errors_of(&text);
    assert!(err.contains("stage gateway: input topic `turnpike.replies.checked` is a Internal topic"), "{err}");
    assert!(err.contains("stage gateway: is an edge stage"), "{err}");
}

#[test]
fn rejects_partition_mismatch_along_the_chain() {
    let text = shipped_text().replacen(
        "name = \"turnpike.prompts.routed\"\nrole = \"internal\"\nschema = \"routed_prompt\"\npartitions = 6",
        "name = \"turnpike.prompts.routed\"\nrole = \"internal\"\nschema = \"routed_prompt\"\npartitions = 3",
        1,
    );
    let err = errors_of(&text);
    assert!(err.contains("stage route"), "{err}");
    assert!(err.contains("has 3"), "{err}");
    assert!(err.contains("per-session order"), "{err}");
}

#[test]
fn rejects_a_broken_chain_and_a_missing_stage() {
    // Remove the assemble stage: guarded turns are no longer read, route's input is no longer written.
    let text = shipped_text();
    let start = text.find("[[stage]]\nname = \"assemble\"").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let text = format!("{}{}", &text[..start], &text[end..]);
    let err = errors_of(&text);
    assert!(err.contains("stage assemble: is missing"), "{err}");
    assert!(err.contains("topic turnpike.turns.guarded: is internal but no stage reads it"), "{err}");
    assert!(err.contains("topic turnpike.prompts.assembled: is internal but no stage writes it"), "{err}");
}

#[test]
fn rejects_unknown_schema_and_missing_dlq() {
    let text = shipped_text()
        .replace("schema = \"ticket_event\"", "schema = \"no_such_schema\"")
        .replace("dlq = \"turnpike.dlq.route\"", "dlq = \"turnpike.dlq.nowhere\"");
    let err = errors_of(&text);
    assert!(err.contains("topic turnpike.handoff.events: schema `no_such_schema` not found"), "{err}");
    assert!(err.contains("stage route: dead-letter topic `turnpike.dlq.nowhere` is not declared"), "{err}");
}

#[test]
fn rejects_bad_names_retention_and_unknown_keys() {
    let text = shipped_text().replace("retention = \"1d\"", "retention = \"1 fortnight\"").replacen(
        "name = \"turnpike.turns.inbound\"",
        "name = \"turnpike turns inbound\"",
        1,
    );
    let topo = Topology::parse(&text).unwrap();
    let err = topo.validate(&root().join("schemas")).unwrap_err().to_string();
    assert!(err.contains("character ` ` is not allowed"), "{err}");
    assert!(err.contains("retention `1 fortnight` has unknown unit `fortnight`"), "{err}");

    let typo = shipped_text().replacen("partitions = 6", "partitons = 6", 1);
    let parse_err = Topology::parse(&typo).unwrap_err().to_string();
    assert!(parse_err.contains("partitons"), "{parse_err}");
}
