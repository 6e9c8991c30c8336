//! A schema registry outage makes records temporarily unreadable: the pipeline must wait and retry, never
//! dead-letter them, and carry on once the registry is back.

use crate::common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use turnpike_core::Endpoints;
use turnpike_llm::mock::MockConfig;
use turnpike_schemas::{OutboundKind, OutboundReply};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_outage_delays_turns_but_never_dead_letters_them() {
    let real = Endpoints::from_env();
    let url = reqwest_free_parse(&real.schema_registry_url);
    let (proxy_addr, up) = switchable_proxy(url.authority).await;
    let mut down_endpoints = real.clone();
    down_endpoints.schema_registry_url = format!("http://{proxy_addr}{}", url.path);

    // The pipeline starts with the registry unreachable: nothing is cached, nothing can be decoded.
    let p = Pipeline::start_custom(
        &turnpike_topology::STAGE_NAMES,
        MockConfig::instant(),
        down_endpoints,
        Default::default(),
    )
    .await;
    let session = format!("o1:{}", unique("c"));
    p.send_turn(&turn("acme", &session, "m1", "Hello during an outage")).await;
    p.send_turn(&turn("acme", &session, "m2", "And again")).await;

    let outbound = p.topic("turnpike.replies.outbound");
    let early =
        read_until::<OutboundReply>(&p.endpoints, &p.codec, &outbound, 6, Duration::from_secs(4), |_| false).await;
    assert!(early.is_empty(), "a reply went out although the registry was down");
    let dlq = p.topic("turnpike.dlq.ingest");
    let letters =
        read_until::<turnpike_schemas::DeadLetter>(&p.endpoints, &p.codec, &dlq, 1, Duration::from_secs(1), |_| false)
            .await;
    assert!(letters.is_empty(), "registry outage dead-lettered {letters:?}");

    up.store(true, Ordering::SeqCst);
    let replies = read_until::<OutboundReply>(&p.endpoints, &p.codec, &outbound, 6, Duration::from_secs(60), |rs| {
        rs.iter().filter(|r| r.kind == OutboundKind::Final).count() >= 2
    })
    .await;
    let finals: Vec<i64> = replies.iter().filter(|(_, r)| r.kind == OutboundKind::Final).map(|(_, r)| r.seq).collect();
    assert_eq!(finals, vec![1, 2], "both turns answered, in order, once the registry is back");
    let letters =
        read_until::<turnpike_schemas::DeadLetter>(&p.endpoints, &p.codec, &dlq, 1, Duration::from_secs(1), |_| false)
            .await;
    assert!(letters.is_empty());
    p.stop().await;
}

struct Url {
    authority: String,
    path: String,
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn reqwest_free_parse(url: &str) -> Url {
    let rest = url.strip_prefix("http://").expect("the local registry URL is plain http");
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, String::new()));
    Url { authority: authority.to_string(), path }
}
