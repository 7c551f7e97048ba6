//! `--scenario chaos`: durable writes against a cluster while one of its nodes is killed (and,
//! with `--chaos-restart`, started again), then a count of what survived.
//!
//! Every connection (spread over the `--url` nodes, connection i on node i % n) joins workspace
//! i % R and creates tasks one at a time, each with a title of its own, at its share of
//! `--rate`. It keeps going through the failure as a client of the hub should: on `resync` it
//! joins again with the last offset it saw, on a closed socket it reconnects to the next node
//! and does the same, retrying on `unavailable`. A write whose answer never came (its node died
//! with it) is counted as unanswered, never as acknowledged.
//!
//! At `--chaos-at` seconds into the load the harness sends `SIGKILL` to `--chaos-pid`, then,
//! after `--chaos-restart-after`, runs the `--chaos-restart` shell command (which starts the
//! node again, in the background). The report says how many writes were acknowledged and how
//! many of those the hub has afterwards (listed over REST; they must be equal: the run exits 1
//! otherwise), and the failover time: from the kill to the first acknowledged write of every
//! connection the kill interrupted (the slowest, and the median).

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode, Payload};
use serde::Serialize;
use serde_json::{Value, json};
use signaling::WorkspaceId;

use crate::args::Config;
use crate::rest::{self, Api};
use crate::ws::{Dialer, Socket};

/// How long one write may wait for its answer before it is counted unanswered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two attempts to join a room that is between nodes.
const RETRY: Duration = Duration::from_millis(100);

/// What the run counts, shared by the connections.
#[derive(Default)]
struct Tally {
    /// Titles of the acknowledged writes, with their workspace.
    acked: Vec<(WorkspaceId, String)>,
    /// Writes sent whose answer never came (their socket or room went away first).
    unanswered: u64,
    /// Writes answered with an error.
    refused: u64,
    /// Reconnections after a closed socket.
    reconnects: u64,
    /// `resync`s received.
    resyncs: u64,
    /// For each connection the kill interrupted: the time from the kill to its next ack.
    recovered_ms: Vec<f64>,
}

/// The report.
#[derive(Debug, Serialize)]
struct ChaosReport {
    scenario: &'static str,
    nodes: usize,
    connections: usize,
    rooms: usize,
    killed_pid: Option<u32>,
    killed_at_s: Option<f64>,
    restarted: bool,
    acknowledged: usize,
    acknowledged_found: usize,
    lost: usize,
    unanswered: u64,
    refused: u64,
    reconnects: u64,
    resyncs: u64,
    interrupted_connections: usize,
    failover_max_ms: Option<f64>,
    failover_p50_ms: Option<f64>,
}

/// Runs the scenario and prints its report.
pub async fn main(config: &Config) -> ExitCode {
    match run(config).await {
        Ok(report) => {
            if config.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print_table(&report);
            }
            if report.lost > 0 || report.acknowledged == 0 {
                eprintln!("loadtest: {} acknowledged writes are missing", report.lost);
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

async fn run(config: &Config) -> anyhow::Result<ChaosReport> {
    let run_id = rest::run_id();
    let fixture = rest::setup(config, &run_id).await?;
    let dialer = Arc::new(Dialer::resolve(&config.nodes, config.source_addrs, config.users).await?);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let deadline = start + config.duration;
    let killed: Arc<Mutex<Option<Instant>>> = Arc::default();
    #[allow(clippy::cast_precision_loss)]
    let period = Duration::from_secs_f64(config.users as f64 / config.rate.max(0.001));

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..config.users {
        let account = fixture.accounts[i % fixture.accounts.len()].clone();
        let workspace = fixture.workspaces[i % fixture.workspaces.len()];
        let (dialer, tally, killed) = (dialer.clone(), tally.clone(), killed.clone());
        tasks.spawn(async move {
            let mut writer = Writer {
                i,
                node_attempt: 0,
                token: account.access_token,
                workspace,
                seen: 0,
                next_ref: 1,
                dialer,
                tally,
                killed,
                interrupted: false,
            };
            writer.run(period, deadline).await;
        });
    }

    let chaos = config.chaos.clone();
    let mut killed_at_s = None;
    let mut restarted = false;
    if let Some(chaos) = &chaos {
        tokio::time::sleep_until((start + chaos.at).into()).await;
        // SAFETY: `kill` sends a signal to a pid given on the command line; no memory involved.
        let sent = unsafe { libc::kill(chaos.pid.cast_signed(), libc::SIGKILL) };
        let at = Instant::now();
        *killed.lock().unwrap_or_else(PoisonError::into_inner) = Some(at);
        killed_at_s = Some(at.duration_since(start).as_secs_f64());
        if sent != 0 {
            eprintln!(
                "warning: kill -9 {} failed: {}",
                chaos.pid,
                std::io::Error::last_os_error()
            );
        } else {
            eprintln!(
                "chaos: killed {} at {:.1}s",
                chaos.pid,
                at.duration_since(start).as_secs_f64()
            );
        }
        if let Some(cmd) = &chaos.restart {
            tokio::time::sleep(chaos.restart_after).await;
            match std::process::Command::new("sh").arg("-c").arg(cmd).spawn() {
                Ok(_) => {
                    restarted = true;
                    eprintln!("chaos: restarted with `{cmd}`");
                }
                Err(e) => eprintln!("warning: --chaos-restart failed: {e}"),
            }
        }
    }
    while tasks.join_next().await.is_some() {}

    // What the hub has: every workspace's tasks, from the first node that answers.
    let mut found: HashSet<String> = HashSet::new();
    let owner = fixture
        .accounts
        .first()
        .map(|a| a.access_token.clone())
        .unwrap_or_default();
    for ws in &fixture.workspaces {
        let mut listed = None;
        for node in &config.nodes {
            if let Ok(tasks) = all_tasks(&Api::new(node.clone()), ws, &owner).await {
                listed = Some(tasks);
                break;
            }
        }
        let tasks = listed.ok_or_else(|| anyhow::anyhow!("no node listed the tasks of {ws}"))?;
        found.extend(
            tasks
                .iter()
                .filter_map(|t| t["title"].as_str().map(str::to_owned)),
        );
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
    let acknowledged_found = tally
        .acked
        .iter()
        .filter(|(_, t)| found.contains(t))
        .count();
    let mut recovered = tally.recovered_ms.clone();
    recovered.sort_by(f64::total_cmp);
    Ok(ChaosReport {
        scenario: "chaos",
        nodes: config.nodes.len(),
        connections: config.users,
        rooms: config.rooms,
        killed_pid: chaos.as_ref().map(|c| c.pid),
        killed_at_s,
        restarted,
        acknowledged: tally.acked.len(),
        acknowledged_found,
        lost: tally.acked.len() - acknowledged_found,
        unanswered: tally.unanswered,
        refused: tally.refused,
        reconnects: tally.reconnects,
        resyncs: tally.resyncs,
        interrupted_connections: recovered.len(),
        failover_max_ms: recovered.last().copied(),
        failover_p50_ms: recovered.get(recovered.len() / 2).copied(),
    })
}

fn print_table(r: &ChaosReport) {
    println!(
        "chaos: {} connections over {} nodes, {} rooms",
        r.connections, r.nodes, r.rooms
    );
    if let (Some(pid), Some(at)) = (r.killed_pid, r.killed_at_s) {
        println!(
            "killed pid {pid} at {at:.1}s{}",
            if r.restarted { ", restarted" } else { "" }
        );
    }
    println!(
        "acknowledged writes {}, found afterwards {}, lost {}",
        r.acknowledged, r.acknowledged_found, r.lost
    );
    println!(
        "unanswered {}, refused {}, reconnects {}, resyncs {}",
        r.unanswered, r.refused, r.reconnects, r.resyncs
    );
    match (r.failover_p50_ms, r.failover_max_ms) {
        (Some(p50), Some(max)) => println!(
            "failover: {} interrupted connections back to an acknowledged write after p50 {p50:.0} ms, max {max:.0} ms",
            r.interrupted_connections
        ),
        _ => println!("failover: no connection was interrupted"),
    }
}

/// One writing connection.
struct Writer {
    i: usize,
    /// Added to the connection index to pick the node: the next node after each failure.
    node_attempt: usize,
    token: String,
    workspace: WorkspaceId,
    /// The highest offset seen in the room.
    seen: u64,
    next_ref: u64,
    dialer: Arc<Dialer>,
    tally: Arc<Mutex<Tally>>,
    killed: Arc<Mutex<Option<Instant>>>,
    /// The kill interrupted this connection and it has not had an ack since.
    interrupted: bool,
}

/// How a wait for an answer ended.
enum Answer {
    Ack,
    Error,
    /// `resync`: join again.
    Resync,
    /// The socket closed or failed, or nothing came in time.
    Lost,
}

impl Writer {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn after_kill(&self) -> bool {
        self.killed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    async fn run(&mut self, period: Duration, deadline: Instant) {
        // Staggered, so that the connections spread their writes over the period.
        #[allow(clippy::cast_precision_loss)]
        let offset = period.mul_f64((self.i % 1000) as f64 / 1000.0);
        tokio::time::sleep(offset).await;
        let mut socket: Option<Socket> = None;
        let mut k = 0u64;
        while Instant::now() < deadline {
            let Some(ws) = socket.as_mut() else {
                socket = self.connect(deadline).await;
                continue;
            };
            let title = format!("c{}-{}", self.i, k);
            k += 1;
            let sent_at = Instant::now();
            let cmd = json!({"type": "task_create", "workspace_id": self.workspace,
                             "task": {"title": title}});
            match self.request(ws, cmd).await {
                Answer::Ack => {
                    let recovered = std::mem::take(&mut self.interrupted);
                    let killed = *self.killed.lock().unwrap_or_else(PoisonError::into_inner);
                    let mut tally = self.tally();
                    tally.acked.push((self.workspace, title));
                    if recovered && let Some(at) = killed {
                        tally
                            .recovered_ms
                            .push(Instant::now().duration_since(at).as_secs_f64() * 1000.0);
                    }
                }
                Answer::Error => self.tally().refused += 1,
                Answer::Resync => {
                    self.tally().unanswered += 1;
                    self.tally().resyncs += 1;
                    self.interrupted |= self.after_kill();
                    if !self.join(ws, deadline).await {
                        socket = None;
                    }
                }
                Answer::Lost => {
                    self.tally().unanswered += 1;
                    self.interrupted |= self.after_kill();
                    socket = None;
                    self.node_attempt += 1;
                    self.tally().reconnects += 1;
                }
            }
            let next = sent_at + period;
            if next > Instant::now() {
                tokio::time::sleep_until(next.into()).await;
            }
        }
        if let Some(mut ws) = socket {
            let _ = ws.write_frame(Frame::close(1000, b"")).await;
        }
    }

    /// Opens a socket (to the next node after a failure) and joins the room from `seen`.
    async fn connect(&mut self, deadline: Instant) -> Option<Socket> {
        while Instant::now() < deadline {
            // The dialer sends connection j to node j % n.
            let conn = self.i + self.node_attempt;
            if let Ok((mut ws, _)) = self.dialer.open_bare(&self.token, conn).await
                && self.join(&mut ws, deadline).await
            {
                return Some(ws);
            }
            self.node_attempt += 1;
            tokio::time::sleep(RETRY).await;
        }
        None
    }

    /// Joins the room from the last offset seen, retrying while it is between nodes. False if
    /// the socket failed.
    async fn join(&mut self, ws: &mut Socket, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            let cmd = json!({"type": "join_workspace", "workspace_id": self.workspace,
                             "last_offset": self.seen});
            match self.request(ws, cmd).await {
                Answer::Ack => return true,
                Answer::Error | Answer::Resync => tokio::time::sleep(RETRY).await,
                Answer::Lost => return false,
            }
        }
        false
    }

    /// Sends `cmd` with a fresh `ref` and reads until its answer, a `resync`, or the end.
    async fn request(&mut self, ws: &mut Socket, mut cmd: Value) -> Answer {
        let reference = self.next_ref;
        self.next_ref += 1;
        cmd["ref"] = json!(reference);
        let text = cmd.to_string().into_bytes();
        if ws
            .write_frame(Frame::text(Payload::Owned(text)))
            .await
            .is_err()
        {
            return Answer::Lost;
        }
        let until = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            let frame = match tokio::time::timeout_at(until, ws.read_frame()).await {
                Ok(Ok(frame)) => frame,
                _ => return Answer::Lost,
            };
            match frame.opcode {
                OpCode::Close => return Answer::Lost,
                OpCode::Text => {}
                _ => continue,
            }
            let Ok(v) = serde_json::from_slice::<Value>(&frame.payload) else {
                continue;
            };
            if let Some(o) = v["offset"].as_u64()
                && v["type"] != "ack"
                && v["type"] != "resync"
            {
                self.seen = self.seen.max(o);
            }
            match v["type"].as_str() {
                Some("resync") if v["workspace_id"] == json!(self.workspace) => {
                    return Answer::Resync;
                }
                Some("ack") if v["ref"] == json!(reference) => return Answer::Ack,
                Some("error") if v["ref"] == json!(reference) => return Answer::Error,
                _ => {}
            }
        }
    }
}

/// Every task of a workspace, page after page.
async fn all_tasks(api: &Api, ws: &WorkspaceId, token: &str) -> anyhow::Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/workspaces/{ws}/tasks?limit=200");
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(c);
        }
        let page: Value = api.get(&path, Some(token)).await?;
        // An error answer (a node still taking the room over) is not an empty list.
        let tasks = page["tasks"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("not a task list: {page}"))?;
        all.extend(tasks.iter().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(all),
        }
    }
}
