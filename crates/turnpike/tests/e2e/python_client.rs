//! The Kafka contract (docs/kafka-contract.md) seen from a non-Rust client: the Python confluent-kafka
//! client, with its Avro serializer and the schema registry, runs clients/python/roundtrip.py against a whole
//! pipeline on its own topics. The script checks what a client can see and prints a JSON summary; this test
//! then reads the outbound topic itself and checks that the client saw exactly what Turnpike wrote: the same
//! schema ids, partitions, turns and texts.
//!
//! The Python environment comes from `deploy/local/python-env.sh` (or `TURNPIKE_PYTHON`); without it the test
//! fails and says how to create it.

use crate::common;

use common::*;
use rdkafka::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use turnpike_schemas::registry::{register_all, RegistryClient};
use turnpike_schemas::{OutboundKind, OutboundReply};

/// The venv interpreter: `TURNPIKE_PYTHON`, else where `deploy/local/python-env.sh` puts it.
fn venv_python() -> PathBuf {
    if let Some(p) = std::env::var_os("TURNPIKE_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let under_root = |p: PathBuf| if p.is_absolute() { p } else { root().join(p) };
    let stack = std::env::var_os("TURNPIKE_STACK_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".stack"));
    let venv = std::env::var_os("TURNPIKE_PYTHON_VENV").map(PathBuf::from).unwrap_or_else(|| stack.join("venv"));
    let python = under_root(venv).join("bin/python");
    assert!(
        python.exists(),
        "no Python client environment at {}: create it with `deploy/local/python-env.sh` (prints the interpreter; \
         or point TURNPIKE_PYTHON at a python with clients/python/requirements.txt installed)",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_confluent_kafka_client_round_trip_follows_the_contract() {
    let python = venv_python();
    // Streamed replies (40 tokens at 400/s): the script replays one DELTA and one FINAL of a reply, and a
    // reply that arrives whole rides in a single FINAL.
    let streamed = turnpike_llm::mock::MockConfig { tokens_per_sec: 400, ..turnpike_llm::mock::MockConfig::instant() };
    let p = Pipeline::start_with(streamed).await;
    let (inbound, outbound) = (p.topic("turnpike.turns.inbound"), p.topic("turnpike.replies.outbound"));
    // What `turnpike schemas register` does for the shipped topics: the Python producer only looks its
    // schema up, it never registers one.
    let registry = RegistryClient::for_endpoints(&p.endpoints, Duration::from_secs(10)).unwrap();
    let ids: HashMap<String, u32> = register_all(
        &registry,
        &[(inbound.clone(), "inbound_turn".into()), (outbound.clone(), "outbound_reply".into())],
    )
    .await
    .expect(HINT)
    .into_iter()
    .collect();

    let mut child = tokio::process::Command::new(&python)
        .arg(root().join("clients/python/roundtrip.py"))
        .args(["--bootstrap", &p.endpoints.kafka_bootstrap, "--registry", &p.endpoints.schema_registry_url])
        .args(["--inbound", &inbound, "--outbound", &outbound, "--tenant", "acme", "--timeout", "120"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    // The script's progress is echoed as it comes and kept, so a hang still says how far it got.
    let progress = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let echo = tokio::spawn({
        let progress = progress.clone();
        async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                progress.lock().unwrap().push_str(&format!("{line}\n"));
            }
        }
    });
    let mut stdout = Vec::new();
    let mut pipe = child.stdout.take().unwrap();
    // The script's own watchdog (faulthandler, at its timeout + 90 s) fires well before this one.
    let finished = tokio::time::timeout(Duration::from_secs(400), async {
        pipe.read_to_end(&mut stdout).await?;
        child.wait().await
    })
    .await;
    let status = match finished {
        Ok(status) => status.expect("waiting for roundtrip.py"),
        Err(_) => {
            let _ = child.kill().await;
            panic!("roundtrip.py did not finish in 400 s; its stderr:\n{}", progress.lock().unwrap());
        }
    };
    let _ = echo.await;
    let stderr = progress.lock().unwrap().clone();
    let summary: serde_json::Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("roundtrip.py printed no JSON summary ({e}); exit {status}; stderr:\n{stderr}"));
    assert!(status.success(), "roundtrip.py failed: {:#}\nstderr:\n{stderr}", summary["failures"]);
    assert_eq!(summary["ok"], true, "{summary:#}");

    // The Python serializer wrote with the very schema id Turnpike registered, and read Turnpike's.
    assert_eq!(summary["inbound_schema_ids"], serde_json::json!([ids[&format!("{inbound}-value")]]));
    let outbound_id = serde_json::json!([ids[&format!("{outbound}-value")]]);
    assert_eq!(summary["outbound_headers"]["turnpike-stage"], "deliver", "{summary:#}");
    assert_eq!(summary["duplicates_dropped"], 2, "the replayed DELTA and FINAL were not dropped: {summary:#}");

    // Read the outbound topic from Rust: the client's view must be exactly what the pipeline wrote.
    let sessions: Vec<String> = summary["sessions"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(sessions.len(), 2, "{summary:#}");
    let ours = |r: &OutboundReply| sessions.contains(&r.session_id);
    // Four turns answered, plus the FINAL the script replayed.
    let records = read_until::<OutboundReply>(&p.endpoints, &p.codec, &outbound, 6, Duration::from_secs(60), |rs| {
        rs.iter().filter(|r| ours(r) && r.kind == OutboundKind::Final).count() >= 5
    })
    .await;
    let mut seen = HashSet::new();
    let mut replays = 0;
    let mut texts: BTreeMap<(String, i64), String> = BTreeMap::new();
    for (m, r) in records.iter().filter(|(_, r)| ours(r)) {
        let info = &summary["sessions"][&r.session_id];
        assert_eq!(i64::from(m.partition()), info["murmur2_partition"], "{} on another partition", r.session_id);
        assert_eq!(info["inbound_partitions"], serde_json::json!([m.partition()]), "{info:#}");
        assert_eq!(info["outbound_schema_ids"], outbound_id);
        if !seen.insert((r.turn_id.clone(), r.chunk_index)) {
            replays += 1;
            continue;
        }
        texts.entry((r.session_id.clone(), r.seq)).or_default().push_str(&r.text);
    }
    assert_eq!(replays, 2, "only the two records the script replayed may repeat");
    let from_python: BTreeMap<(String, i64), String> = sessions
        .iter()
        .flat_map(|s| {
            summary["sessions"][s]["turns"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| ((s.clone(), t["seq"].as_i64().unwrap()), t["text"].as_str().unwrap().to_string()))
        })
        .collect();
    assert_eq!(texts, from_python, "the Python client assembled other replies than the pipeline wrote");
    // The resent message id got no turn of its own: three turns for one session, one for the other.
    let mut turns_per_session: Vec<usize> =
        sessions.iter().map(|s| texts.keys().filter(|k| &k.0 == s).count()).collect();
    turns_per_session.sort();
    assert_eq!(turns_per_session, vec![1, 3]);
    p.stop().await;
}
