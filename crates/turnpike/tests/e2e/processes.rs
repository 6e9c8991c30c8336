//! `turnpike run --processes`: every stage as a process of its own, as production runs them, with no LLM
//! provider configured (the supervisor's mock serves every child: the path on which `turnpike stage
//! assemble` once failed to start). Turns are answered, a SIGKILLed child is started again and its partitions
//! keep being served, and SIGTERM to the supervisor stops every child.

use crate::common;

use common::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use turnpike_llm::mock::MockConfig;
use turnpike_schemas::{OutboundKind, OutboundReply};

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by its parent) has no cmdline any more.
    !cmdline(pid).is_empty()
}

/// Waits until the supervisor has `n` live children; returns them with their command lines.
async fn wait_for_children(pid: u32, n: usize) -> Vec<(u32, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live: Vec<(u32, String)> =
            children(pid).into_iter().filter(|c| alive(*c)).map(|c| (c, cmdline(c))).collect();
        if live.len() == n || Instant::now() > deadline {
            return live;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn answered(p: &Pipeline, turns: usize) -> HashSet<String> {
    let outbound = p.topic("turnpike.replies.outbound");
    let records = read_until::<OutboundReply>(&p.endpoints, &p.codec, &outbound, 6, Duration::from_secs(120), |rs| {
        rs.iter().filter(|r| r.kind == OutboundKind::Final).count() >= turns
    })
    .await;
    records.into_iter().filter(|(_, r)| r.kind == OutboundKind::Final).map(|(_, r)| r.turn_id).collect()
}

/// `turnpike ARGS --topic-prefix P --topology ...` with no LLM provider in its environment, logging at info
/// level to a file of its own (returned).
fn without_provider(p: &Pipeline, args: &[&str]) -> (std::process::Child, std::path::PathBuf) {
    let log_path = std::env::temp_dir().join(format!("{}.log", unique("turnpike")));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_turnpike"))
        .args(args)
        .args(["--metrics-addr", "127.0.0.1:0", "--instance-id"])
        .arg(unique("i"))
        .arg("--topic-prefix")
        .arg(&p.prefix)
        .arg("--topology")
        .arg(root().join("topology/turnpike.toml"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("TURNPIKE_LLM_CONFIG")
        .env_remove("TURNPIKE_LLM_BASE_URL")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot start the turnpike binary");
    (child, log_path)
}

#[tokio::test]
async fn every_stage_its_own_process_answers_restarts_a_killed_child_and_stops_them_all() {
    // Topics only: the pipeline is the supervisor's children.
    let p = Pipeline::start_stages(&[], MockConfig::instant()).await;
    let (mut supervisor, log_path) =
        without_provider(&p, &["run", "--processes", "--mock-ttft-ms", "0", "--mock-tokens-per-sec", "0"]);
    let pid = supervisor.id();
    let stages = turnpike_topology::STAGE_NAMES.len();
    let kids = wait_for_children(pid, stages + 2).await;
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(
        kids.len(),
        stages + 2,
        "one process per stage, two of generate and guard-out: {kids:?}\n{}",
        log_text()
    );
    for stage in turnpike_topology::STAGE_NAMES {
        let n = kids.iter().filter(|(_, c)| c.contains(&format!(" stage {stage} "))).count();
        let want = if matches!(stage, "generate" | "guard-out") { 2 } else { 1 };
        assert_eq!(n, want, "instances of {stage}: {kids:?}");
    }

    let sessions: Vec<String> = (0..12).map(|i| format!("u{i}:{}", unique("c"))).collect();
    for s in &sessions {
        p.send_turn(&turn("acme", s, "m1", "Where is my parcel?")).await;
    }
    let first = answered(&p, sessions.len()).await;
    assert_eq!(first.len(), sessions.len(), "every turn answered\n{}", log_text());

    // SIGKILL one generate: the supervisor starts it again (same instance id), and the turns go on.
    let (victim, _) = kids.iter().find(|(_, c)| c.contains(" stage generate ")).unwrap().clone();
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let is_new_generate =
        |(c, cmd): &(u32, String)| cmd.contains(" stage generate ") && !kids.iter().any(|(k, _)| k == c);
    let mut restarted = false;
    while !restarted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        restarted = wait_for_children(pid, stages + 2).await.iter().any(is_new_generate);
    }
    assert!(restarted, "the killed generate was started again\n{}", log_text());
    for s in &sessions {
        p.send_turn(&turn("acme", s, "m2", "And when will it arrive?")).await;
    }
    let both = answered(&p, 2 * sessions.len()).await;
    assert_eq!(both.len(), 2 * sessions.len(), "every turn after the kill answered too\n{}", log_text());

    // SIGTERM: every child drains and exits, then the supervisor.
    let live: Vec<u32> = wait_for_children(pid, stages + 2).await.into_iter().map(|(c, _)| c).collect();
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = supervisor.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the supervisor did not stop\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.success(), "clean exit: {status}\n{}", log_text());
    let left: Vec<u32> = live.into_iter().filter(|c| alive(*c)).collect();
    assert!(left.is_empty(), "stage processes left running: {left:?}");
    assert!(log_text().contains("Stage process stopped."), "each child stopped by SIGTERM");
    p.stop().await;
}

/// `turnpike stage NAME` alone, with no provider at all: each stage that calls the LLM starts (on the mock it
/// serves itself) and stops cleanly. `turnpike stage assemble` used to exit at once ("base URL \"\"").
#[tokio::test]
async fn a_stage_process_starts_with_no_llm_provider_configured() {
    let p = Pipeline::start_stages(&[], MockConfig::instant()).await;
    for stage in ["assemble", "generate", "handoff"] {
        let (mut child, log_path) = without_provider(&p, &["stage", stage]);
        let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !log_text().contains("Stage started.") {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("stage {stage} exited with {status} instead of starting:\n{}", log_text());
            }
            assert!(Instant::now() < deadline, "stage {stage} did not start:\n{}", log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(log_text().contains("using the mock LLM"), "{}", log_text());
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "stage {stage} stopped with {status}:\n{}", log_text());
    }
    p.stop().await;
}
