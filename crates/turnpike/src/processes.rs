//! `turnpike run --processes`: every stage as a child process of its own (`turnpike stage NAME`), the way
//! production runs them, on one machine: two instances of generate and guard-out by default, one of the
//! others, each with a stable instance id.
//!
//! Guarantee: the children are the production processes, started with the same flags `turnpike run` was
//! given, so this mode is the one code path a deployment uses. A child that exits while the supervisor is not
//! stopping is started again with the same instance id (its static group membership takes its partitions
//! back at once), as an orchestrator would restart it; one that keeps dying (more than [`MAX_RESTARTS`]
//! within [`RESTART_WINDOW`]) stops everything with its exit status, so a configuration error shows instead of
//! looping. On shutdown every child gets SIGTERM and drains; a child still running after [`CHILD_GRACE`] is
//! killed. A child also gets SIGTERM if the supervisor itself dies (Linux's parent-death signal), so no stage
//! outlives it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Restarts of one instance within [`RESTART_WINDOW`] before the supervisor gives up.
pub const MAX_RESTARTS: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// A stage's drain takes at most its drain timeout (below the 30 s session timeout) plus commit and close.
pub const CHILD_GRACE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(200);

/// Instances of `stage` when nothing else is asked for: two of the stages that hold a reply while it
/// streams (a crash of one leaves the other serving), one of the others.
pub fn default_instances(stage: &str) -> usize {
    if matches!(stage, "generate" | "guard-out") {
        2
    } else {
        1
    }
}

/// Parses `stage=N` (the `--instances` flag).
pub fn parse_instances(s: &str) -> Result<(String, usize), String> {
    let (stage, n) = s.split_once('=').ok_or_else(|| format!("expected stage=N, got {s:?}"))?;
    let stage = stage.trim();
    if !turnpike_topology::STAGE_NAMES.contains(&stage) {
        return Err(format!("unknown stage {stage:?} (stages: {})", turnpike_topology::STAGE_NAMES.join(", ")));
    }
    let n: usize = n.trim().parse().map_err(|_| format!("instances of {stage} must be a number, got {n:?}"))?;
    Ok((stage.to_string(), n))
}

/// One child process to keep running.
pub struct Instance {
    pub stage: &'static str,
    pub instance_id: String,
    /// Arguments after `turnpike`: `stage NAME --instance-id ID ...`.
    pub args: Vec<OsString>,
}

/// The children for `counts` (stage → instances; missing stages get [`default_instances`]). `common` are
/// the flags every child gets; `metrics_port` numbers the children's metrics ports from it (0: any port).
pub fn plan(base_id: &str, counts: &[(String, usize)], common: &[OsString], metrics_port: u16) -> Vec<Instance> {
    let mut out = Vec::new();
    for stage in turnpike_topology::STAGE_NAMES {
        let n = counts.iter().rev().find(|(s, _)| s == stage).map_or_else(|| default_instances(stage), |(_, n)| *n);
        for i in 0..n {
            let instance_id = format!("{base_id}-{i}");
            let port = if metrics_port == 0 { 0 } else { metrics_port.saturating_add(out.len() as u16) };
            let mut args: Vec<OsString> =
                vec!["stage".into(), stage.into(), "--instance-id".into(), instance_id.clone().into()];
            args.extend(["--metrics-addr".into(), format!("127.0.0.1:{port}").into()]);
            args.extend(common.iter().cloned());
            out.push(Instance { stage, instance_id, args });
        }
    }
    out
}

struct Running {
    instance: Instance,
    child: Child,
    restarts: VecDeque<Instant>,
}

fn start(exe: &std::path::Path, instance: &Instance) -> std::io::Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.args(&instance.args).kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent's memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    tracing::info!(stage = instance.stage, instance = %instance.instance_id, pid = child.id(), "Stage process started.");
    Ok(child)
}

/// Runs `instances` as children of `exe` until `shutdown`, restarting any that exit.
pub async fn supervise(
    exe: &std::path::Path,
    instances: Vec<Instance>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut running = Vec::with_capacity(instances.len());
    for instance in instances {
        let child = start(exe, &instance)?;
        running.push(Running { instance, child, restarts: VecDeque::new() });
    }
    let outcome = watch(exe, &mut running, &shutdown).await;
    stop(&mut running).await;
    outcome
}

async fn watch(exe: &std::path::Path, running: &mut [Running], shutdown: &CancellationToken) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(POLL) => {}
        }
        for r in running.iter_mut() {
            let Some(status) = r.child.try_wait()? else { continue };
            let now = Instant::now();
            r.restarts.retain(|at| now.duration_since(*at) < RESTART_WINDOW);
            if r.restarts.len() >= MAX_RESTARTS {
                anyhow::bail!(
                    "stage {} (instance {}) exited {} times within {} s, last with {status}; see its log above",
                    r.instance.stage,
                    r.instance.instance_id,
                    r.restarts.len() + 1,
                    RESTART_WINDOW.as_secs()
                );
            }
            tracing::warn!(stage = r.instance.stage, instance = %r.instance.instance_id, %status, "Stage process exited; starting it again.");
            r.restarts.push_back(now);
            r.child = start(exe, &r.instance)?;
        }
    }
}

/// SIGTERM to every child, then waits for them (killing those past [`CHILD_GRACE`]).
async fn stop(running: &mut [Running]) {
    for r in running.iter() {
        if let Some(pid) = r.child.id() {
            // SAFETY: kill(2) on a pid this process spawned and has not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }
    let deadline = tokio::time::Instant::now() + CHILD_GRACE;
    for r in running.iter_mut() {
        let status: Option<ExitStatus> =
            tokio::time::timeout_at(deadline, r.child.wait()).await.ok().and_then(|s| s.ok());
        match status {
            Some(status) => {
                tracing::info!(stage = r.instance.stage, instance = %r.instance.instance_id, %status, "Stage process stopped.")
            }
            None => {
                tracing::warn!(stage = r.instance.stage, instance = %r.instance.instance_id, "Stage process did not stop in time; killing it.");
                let _ = r.child.kill().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_two_of_generate_and_guard_out_and_numbers_metrics_ports() {
        let common: Vec<OsString> = vec!["--topic-prefix".into(), "p".into()];
        let plan = plan("local", &[("route".into(), 3)], &common, 9601);
        let stages: Vec<&str> = plan.iter().map(|i| i.stage).collect();
        assert_eq!(stages.iter().filter(|s| **s == "generate").count(), 2);
        assert_eq!(stages.iter().filter(|s| **s == "guard-out").count(), 2);
        assert_eq!(stages.iter().filter(|s| **s == "route").count(), 3);
        assert_eq!(plan.len(), turnpike_topology::STAGE_NAMES.len() + 1 + 1 + 2);
        let first = &plan[0];
        assert_eq!(first.stage, "ingest");
        let args: Vec<&str> = first.args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            ["stage", "ingest", "--instance-id", "local-0", "--metrics-addr", "127.0.0.1:9601", "--topic-prefix", "p"]
        );
        assert!(plan[1].args.iter().any(|a| a == "127.0.0.1:9602"), "one port per child");
        let any = super::plan("local", &[], &[], 0);
        assert!(any.iter().all(|i| i.args.iter().any(|a| a == "127.0.0.1:0")));
    }

    #[test]
    fn instances_flag_names_a_known_stage_and_a_number() {
        assert_eq!(parse_instances("deliver=2").unwrap(), ("deliver".to_string(), 2));
        assert!(parse_instances("deliverr=2").unwrap_err().contains("unknown stage"));
        assert!(parse_instances("deliver=two").unwrap_err().contains("must be a number"));
        assert!(parse_instances("deliver").unwrap_err().contains("stage=N"));
    }
}
