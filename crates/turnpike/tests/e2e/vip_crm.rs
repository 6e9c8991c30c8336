//! VIP from a CRM lookup, on the real stack: guard-in (its own process, with a tenants file naming the CRM)
//! asks the tenant's CRM endpoint for a customer whose turn carries no tier; a customer the CRM calls
//! `platinum` is handed to a person at once (`immediate`), one it calls `standard` gets the bot, and the
//! CRM is asked once per customer (the answer is cached).

use crate::common::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use turnpike_llm::mock::MockConfig;
use turnpike_schemas::{HandoffRequest, OutboundKind, OutboundReply};

/// A CRM answering `GET /customers?user_id=…` with the tier `tiers` gives the user, counting the calls.
async fn crm(tiers: HashMap<String, &'static str>) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/customers",
        axum::routing::get(move |axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>| {
            let (seen, tiers) = (seen.clone(), tiers.clone());
            async move {
                let user = q.get("user_id").cloned().unwrap_or_default();
                *seen.lock().unwrap().entry(user.clone()).or_insert(0) += 1;
                axum::Json(serde_json::json!({"tier": tiers.get(&user).copied().unwrap_or("standard"), "ltv": 120}))
            }
        }),
    );
    (serve_http(app).await + "/customers", calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_the_crm_calls_platinum_is_handed_off_at_once_and_a_standard_one_gets_the_bot() {
    const OTHERS: &[&str] = &["ingest", "assemble", "route", "generate", "guard-out", "deliver", "handoff"];
    let (vip, plain) = (unique("vip"), unique("plain"));
    let (url, calls) = crm([(vip.clone(), "platinum")].into_iter().collect()).await;
    let p = Pipeline::start_stages(OTHERS, MockConfig::instant()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tenants.toml");
    std::fs::write(&config, format!("[tenants.crmco.guard.handoff.vip]\nimmediate = true\ncrm_url = \"{url}\"\n"))
        .unwrap();
    let _guard_in = p.spawn_stage_with_env(
        "guard-in",
        &unique("gi"),
        &dir.path().join("gi.log"),
        &[("TURNPIKE_TENANTS_CONFIG", &config)],
    );

    let (vs, ps) = (format!("{vip}:c1"), format!("{plain}:c1"));
    p.send_turn(&turn("crmco", &vs, "m1", "What are your opening hours?")).await;
    p.send_turn(&turn("crmco", &ps, "m1", "What are your opening hours?")).await;
    p.send_turn(&turn("crmco", &ps, "m2", "And on Sundays?")).await;
    let finals: Vec<OutboundReply> = read_until::<OutboundReply>(
        &p.endpoints,
        &p.codec,
        &p.topic("turnpike.replies.outbound"),
        6,
        Duration::from_secs(90),
        |rs| rs.iter().filter(|r| r.kind == OutboundKind::Final).count() >= 3,
    )
    .await
    .into_iter()
    .map(|(_, r)| r)
    .filter(|r| r.kind == OutboundKind::Final)
    .collect();
    let reason =
        |s: &str| finals.iter().filter(|r| r.session_id == s).map(|r| r.finish_reason.clone()).collect::<Vec<_>>();
    assert_eq!(reason(&vs), [Some("handoff".to_string())], "{finals:?}");
    assert_eq!(reason(&ps), [Some("stop".to_string()), Some("stop".to_string())], "{finals:?}");

    let requests: Vec<HandoffRequest> = p.records("turnpike.handoff.requests", Duration::from_secs(30)).await;
    let r = requests.iter().find(|r| r.session_id == vs).expect("the VIP's handoff request");
    assert_eq!((r.reason.as_str(), r.priority.as_str()), ("vip", "high"), "{r:?}");
    assert!(r.tags.contains(&"tier:platinum".to_string()), "{r:?}");
    let calls = calls.lock().unwrap().clone();
    assert_eq!((calls.get(&vip), calls.get(&plain)), (Some(&1), Some(&1)), "one lookup per customer: {calls:?}");
    p.stop().await;
}
