//! PostgreSQL restarts under a running hub: writes fail with `unavailable` while it is down (never
//! acknowledged), and succeed again once it is back, with no room left wedged. A throwaway
//! PostgreSQL server of this test's own (initdb on a free port), since the shared one cannot be
//! restarted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::{Storage, TestHub};

/// A PostgreSQL server in a temporary folder, stopped (immediately) when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Runs a PostgreSQL tool as the `postgres` user when this process is root (initdb refuses
/// root), as this user otherwise.
fn pg_tool(bin: &Path, tool: &str, args: &[&str]) -> std::process::ExitStatus {
    let path = bin.join(tool);
    let mut cmd = if nix_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    cmd.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("PostgreSQL's tools run")
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    fn start() -> Postgres {
        // scripts/test.sh says where the server binaries are; else Debian's place for them.
        let bin = std::env::var_os("HUB_TEST_PG_BIN")
            .map(PathBuf::from)
            .or_else(|| {
                std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .filter_map(Result::ok)
                    .map(|e| e.path().join("bin"))
                    .find(|b| b.join("pg_ctl").exists())
            })
            .expect(
                "PostgreSQL's server binaries (apt-get install postgresql-15; HUB_TEST_PG_BIN)",
            );
        let dir = tempfile::tempdir().expect("tempdir");
        if nix_is_root() {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let data = dir.path().join("data");
        let data = data.to_str().expect("utf-8 path");
        let ok = pg_tool(
            &bin,
            "initdb",
            &[
                "-D",
                data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        assert!(ok.success(), "initdb");
        let pg = Postgres { dir, bin, port };
        pg.up();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn up(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let ok = pg_tool(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                log.to_str().expect("path"),
                "-w",
                "-o",
                &opts,
                "start",
            ],
        );
        assert!(ok.success(), "postgres starts");
    }

    fn down(&self) {
        let ok = pg_tool(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        assert!(ok.success(), "postgres stops");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_tool(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

#[tokio::test]
async fn writes_fail_unacknowledged_while_postgres_is_down_and_resume_after() {
    let pg = Postgres::start();
    let storage = Storage {
        dir: tempfile::tempdir().expect("tempdir"),
        db: None,
    };
    let url = pg.url();
    let hub = TestHub::start_on(storage, move |c| {
        crate::support::unthrottled(c);
        c.database_url = Some(url);
    })
    .await;
    let api = hub.api();
    let (ada, _, ws) = api.team("member").await;
    let mut c = hub.ws(&ada).await;
    c.join(&ws, None).await;
    let mut kept = Vec::new();
    for i in 0..5 {
        c.create_task(&ws, &format!("before {i}")).await;
        kept.push(format!("before {i}"));
    }

    pg.down();
    // Nothing is acknowledged while the database is away: each write is refused (the room, its
    // append failed, restarts and cannot load yet), and the connection lives on.
    let mut seen = 0;
    for i in 0..3 {
        let reference = 9000 + i;
        let cmd = json!({"type": "task_create", "workspace_id": ws, "ref": reference,
                         "task": {"title": format!("down {i}")}});
        c.send_text(cmd.to_string()).await;
        let asked = tokio::time::Instant::now();
        let reply = loop {
            assert!(
                c.closed_within(Duration::from_millis(200)).await.is_none(),
                "the connection lives on"
            );
            let frames = c.pending_frames();
            let answer = frames
                .iter()
                .find(|v| v["ref"] == json!(reference))
                .cloned();
            for v in frames {
                if let Some(o) = v["offset"].as_u64() {
                    seen = seen.max(o);
                }
            }
            if let Some(a) = answer {
                break a;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(60),
                "no answer in a minute"
            );
        };
        eprintln!("answered in {:?}: {reply}", asked.elapsed());
        assert_eq!(reply["type"], "error", "never acknowledged: {reply}");
        assert!(
            matches!(reply["code"].as_str(), Some("unavailable" | "not_joined")),
            "{reply}"
        );
    }
    for v in c.pending_frames() {
        if let Some(o) = v["offset"].as_u64() {
            seen = seen.max(o);
        }
    }

    pg.up();
    // Back: the client joins again (retrying while the room restarts) and writes.
    let mut joined = false;
    for _ in 0..100 {
        let r = c
            .request(json!({"type": "join_workspace", "workspace_id": ws, "last_offset": seen}))
            .await;
        if r["type"] == "ack" {
            joined = true;
            break;
        }
        assert_eq!(r["code"], "unavailable", "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(joined, "the room came back");
    c.create_task(&ws, "after").await;
    kept.push("after".into());
    let mut titles: Vec<String> = api
        .tasks(&ada, &ws)
        .await
        .iter()
        .map(|t| t["title"].as_str().expect("title").to_owned())
        .collect();
    titles.sort();
    kept.sort();
    assert_eq!(titles, kept, "what was acknowledged, and nothing else");
    hub.stop().await;
}
