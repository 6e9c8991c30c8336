//! Fuzz target of the topology file (issue 20): whatever the text, parsing and validating it against the
//! shipped schemas returns a topology or an error naming the problem, never a panic; a topology that
//! validates still validates under a topic prefix. Seeds: `tests/corpus/topology/`.

use std::path::Path;
use turnpike_fuzz::proptest::prelude::*;
use turnpike_topology::Topology;

#[test]
fn fuzz_topology_file() {
    let seeds = turnpike_fuzz::corpus(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/topology"));
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    turnpike_fuzz::run("topology_file", 8_000, turnpike_fuzz::text_from(seeds), |text| {
        let Ok(topology) = Topology::parse(&text) else { return Ok(()) };
        if topology.validate(&schemas).is_ok() {
            prop_assert!(topology.prefixed("fuzz-").validate(&schemas).is_ok());
        }
        for t in &topology.topics {
            let _ = t.retention_ms();
        }
        Ok(())
    });
}
