//! `--scenario sync`: offline clients pushing their queues. Each of `--users` clients owns 100
//! tasks in workspace i % R: its first push creates them (one batch of 100 `task_create` ops),
//! every later push updates all 100 (one `task_update` each, based on the version the last push
//! left), back to back for `--duration`. The report gives operations applied per second and the
//! latency of whole pushes (p50, p99, max), the results by status, and the hub's CPU when
//! `--hub-pid` is given. The hub's sync allowance (`HUB_LIMIT_SYNC_PER_USER`) must let the
//! clients through (see `scripts/loadtest-env.sh`).

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use signaling::WorkspaceId;

use crate::args::Config;
use crate::hubproc::HubProbe;
use crate::rest::{self, Api};
use crate::stats::{LatencySummary, sample_micros};

/// Operations per push.
pub const BATCH: usize = 100;

#[derive(Default)]
struct Tally {
    pushes: u64,
    ops: u64,
    failed_pushes: u64,
    by_status: std::collections::BTreeMap<String, u64>,
    latencies: Vec<u32>,
}

#[derive(Debug, Serialize)]
struct SyncReport {
    scenario: &'static str,
    clients: usize,
    rooms: usize,
    batch: usize,
    seconds: f64,
    pushes: u64,
    failed_pushes: u64,
    ops_applied: u64,
    ops_per_second: f64,
    push_latency_ms: Option<LatencySummary>,
    results: std::collections::BTreeMap<String, u64>,
    hub_cpu_s: Option<f64>,
    hub_cpu_us_per_op: Option<f64>,
}

/// Runs the scenario and prints its report.
pub async fn main(config: &Config) -> ExitCode {
    match run(config).await {
        Ok(report) => {
            // One shape for both: the report is small.
            let _ = config.json;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            if report.pushes == 0 || report.failed_pushes > 0 {
                eprintln!("loadtest: {} pushes failed", report.failed_pushes);
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: &Config) -> anyhow::Result<SyncReport> {
    let run_id = rest::run_id();
    let fixture = rest::setup(config, &run_id).await?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let probe = HubProbe::of(&config.hub_pid);
    let before = probe.as_ref().and_then(HubProbe::sample);
    let start = Instant::now();
    let deadline = start + config.duration;
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..config.users {
        let token = fixture.accounts[i % fixture.accounts.len()]
            .access_token
            .clone();
        let workspace = fixture.workspaces[i % fixture.workspaces.len()];
        let (target, tally) = (config.target.clone(), tally.clone());
        clients.spawn(async move {
            let api = Api::new(target);
            client(&api, &token, workspace, i, deadline, &tally).await;
        });
    }
    while clients.join_next().await.is_some() {}
    let seconds = start.elapsed().as_secs_f64();
    let after = probe.as_ref().and_then(HubProbe::sample);
    let mut t = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
    let cpu = match (before, after) {
        (Some(b), Some(a)) => Some(a.cpu_s - b.cpu_s),
        _ => None,
    };
    #[allow(clippy::cast_precision_loss)]
    let per_second = t.ops as f64 / seconds.max(0.001);
    #[allow(clippy::cast_precision_loss)]
    let cpu_per_op = cpu.filter(|_| t.ops > 0).map(|c| c * 1e6 / t.ops as f64);
    Ok(SyncReport {
        scenario: "sync",
        clients: config.users,
        rooms: fixture.workspaces.len(),
        batch: BATCH,
        seconds,
        pushes: t.pushes,
        failed_pushes: t.failed_pushes,
        ops_applied: t.ops,
        ops_per_second: per_second,
        push_latency_ms: LatencySummary::from_micros(&mut t.latencies),
        results: t.by_status,
        hub_cpu_s: cpu,
        hub_cpu_us_per_op: cpu_per_op,
    })
}

/// One client: creates its 100 tasks, then updates all of them per push until the deadline.
async fn client(
    api: &Api,
    token: &str,
    workspace: WorkspaceId,
    i: usize,
    deadline: Instant,
    tally: &Mutex<Tally>,
) {
    let path = format!("/api/v1/workspaces/{workspace}/sync/push");
    let tasks: Vec<uuid::Uuid> = (0..BATCH).map(|_| uuid::Uuid::now_v7()).collect();
    let mut versions = vec![0_u64; BATCH];
    let mut round = 0_u64;
    while Instant::now() < deadline {
        let now = chrono::Utc::now().to_rfc3339();
        let ops: Vec<Value> = tasks
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let op_id = format!("c{i}-r{round}-{n}");
                if round == 0 {
                    json!({"op_id": op_id, "client_ts": now, "kind": "task_create",
                           "task": {"id": id, "title": format!("sync {i}/{n}")}})
                } else {
                    json!({"op_id": op_id, "client_ts": now, "kind": "task_update",
                           "task_id": id, "base_version": versions[n],
                           "changes": {"title": format!("sync {i}/{n} r{round}")}})
                }
            })
            .collect();
        let sent = Instant::now();
        let answer: Result<Value, _> = api.post(&path, Some(token), &json!({"ops": ops})).await;
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        let failed = {
            let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
            match answer {
                Ok(body) => {
                    t.pushes += 1;
                    t.latencies.push(sample_micros(micros));
                    let results = body["results"].as_array().into_iter().flatten();
                    for (n, r) in results.enumerate() {
                        let status = r["status"].as_str().unwrap_or("?").to_owned();
                        if matches!(status.as_str(), "applied" | "merged") {
                            t.ops += 1;
                            if let Some(v) = versions.get_mut(n) {
                                *v += 1;
                            }
                        }
                        *t.by_status.entry(status).or_default() += 1;
                    }
                    false
                }
                Err(e) => {
                    t.failed_pushes += 1;
                    eprintln!("loadtest: a push failed: {e}");
                    true
                }
            }
        };
        if failed {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        round += 1;
    }
}
