//! Cluster mode: hubs sharing one PostgreSQL database and one Redis (a throwaway `redis-server`
//! per test, on a free port), in this process and as separate processes.

use std::process::Command;
use std::time::Duration;

use hub::Hub;
use serde_json::{Value, json};

use crate::support::{Process, Storage, TestDb, TestHub, eventually, test_config};

const ADMIN_TOKEN: &str = "operator-token-for-cluster-tests-0123456789";
const JWT_SECRET: &str = "cluster-tests-share-this-signing-secret-0123456789";
/// Short, so that a killed node drops out quickly.
const NODE_TTL_MS: u64 = 1500;

/// A `redis-server` of this test's own, stopped when dropped.
pub struct Redis {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Redis {
    pub async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let redis = Redis {
            dir: tempfile::tempdir().expect("tempdir"),
            port,
        };
        redis.up().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, after [`Redis::down`]: empty, as after a restart without
    /// persistence).
    pub async fn up(&self) {
        let started = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--pidfile")
            .arg(self.dir.path().join("redis.pid"))
            .status()
            .expect("redis-server is installed (apt-get install redis-server)");
        assert!(started.success(), "redis-server starts");
        let port = self.port;
        eventually(
            "redis answers PING",
            move || async move { self::ping(port) },
        )
        .await;
    }

    /// Stops the server.
    pub async fn down(&self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .output();
        let port = self.port;
        eventually("redis stops", move || async move { !self::ping(port) }).await;
    }
}

fn ping(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "ping"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .output();
    }
}

/// One cluster: a database, a Redis, and nodes started on them.
pub struct TestCluster {
    pub db: TestDb,
    pub redis: Redis,
}

impl TestCluster {
    pub async fn new() -> TestCluster {
        TestCluster {
            db: TestDb::create().await,
            redis: Redis::start().await,
        }
    }

    /// A node in this process, with its own data folder.
    pub async fn node(&self, id: &str) -> TestHub {
        self.node_with(id, |_| {}).await
    }

    /// A node in this process, its config tweaked.
    pub async fn node_with(&self, id: &str, tweak: impl FnOnce(&mut hub::Config)) -> TestHub {
        let storage = Storage {
            dir: tempfile::tempdir().expect("tempdir"),
            db: None,
        };
        let (url, redis, id) = (self.db.url.clone(), self.redis.url(), id.to_owned());
        TestHub::start_on(storage, move |c| {
            crate::support::unthrottled(c);
            c.database_url = Some(url);
            c.cluster.redis_url = Some(redis);
            c.cluster.node_id = Some(id);
            c.cluster.node_ttl_ms = NODE_TTL_MS;
            c.jwt_secret = Some(JWT_SECRET.into());
            c.admin_token = Some(ADMIN_TOKEN.into());
            tweak(c);
        })
        .await
    }

    /// Two nodes in this process, each listing the other.
    pub async fn two(&self) -> (TestHub, TestHub) {
        let a = self.node("node-a").await;
        let b = self.node("node-b").await;
        lists(&a.base, &["node-a", "node-b"]).await;
        lists(&b.base, &["node-a", "node-b"]).await;
        (a, b)
    }

    /// A node as its own process (to be killed).
    pub async fn process(&self, id: &str, storage: &Storage) -> Process {
        Process::start_with(
            storage,
            &[
                ("DATABASE_URL", self.db.url.clone()),
                ("REDIS_URL", self.redis.url()),
                ("HUB_NODE_ID", id.to_owned()),
                ("HUB_NODE_TTL_MS", NODE_TTL_MS.to_string()),
                ("HUB_JWT_SECRET", JWT_SECRET.to_owned()),
                ("HUB_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ],
        )
        .await
    }
}

/// `GET /api/v1/admin/nodes` on `base`: the listed node ids and the whole body.
async fn nodes(base: &str) -> (Vec<String>, Value) {
    let body: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/admin/nodes"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("nodes")
        .json()
        .await
        .expect("json");
    let ids = body["nodes"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_owned())
        .collect();
    (ids, body)
}

/// Waits until `base` lists exactly `want` (sorted).
async fn lists(base: &str, want: &[&str]) -> Value {
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let (ids, body) = nodes(base).await;
        if ids == want {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} never listed {want:?}; last: {last}");
}

async fn ready(base: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("ready");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn cluster_mode_needs_postgres_a_shared_secret_and_a_unique_node_id() {
    let cluster = TestCluster::new().await;
    let storage = Storage::new(crate::support::Backend::Sqlite).await;

    let mut on_sqlite = test_config(&storage);
    on_sqlite.cluster.redis_url = Some(cluster.redis.url());
    on_sqlite.jwt_secret = Some(JWT_SECRET.into());
    let err = Hub::start(on_sqlite).await.err().expect("refused");
    assert!(format!("{err:#}").contains("PostgreSQL"), "{err:#}");

    let mut no_secret = test_config(&storage);
    no_secret.database_url = Some(cluster.db.url.clone());
    no_secret.cluster.redis_url = Some(cluster.redis.url());
    let err = Hub::start(no_secret).await.err().expect("refused");
    assert!(format!("{err:#}").contains("HUB_JWT_SECRET"), "{err:#}");

    let a = cluster.node("node-a").await;
    let twin = Hub::start({
        let mut c = test_config(&storage);
        c.database_url = Some(cluster.db.url.clone());
        c.cluster.redis_url = Some(cluster.redis.url());
        c.cluster.node_id = Some("node-a".into());
        c.jwt_secret = Some(JWT_SECRET.into());
        c
    })
    .await
    .err()
    .expect("a second node-a is refused");
    assert!(
        format!("{twin:#}").contains("already registered"),
        "{twin:#}"
    );
    lists(&a.base, &["node-a"]).await;
    a.stop().await;
}

#[tokio::test]
async fn nodes_list_each_other_and_a_node_that_stops_leaves_at_once() {
    let cluster = TestCluster::new().await;
    let a = cluster.node("node-a").await;
    let b = cluster.node("node-b").await;
    let body = lists(&a.base, &["node-a", "node-b"]).await;
    assert_eq!(body["cluster"], true);
    assert_eq!(body["node_id"], "node-a");
    let b_info = &body["nodes"][1];
    assert_eq!(
        b_info["addr"].as_str().map(|a| format!("http://{a}")),
        Some(b.base.clone()),
        "B is listed with the address it listens on"
    );
    assert!(b_info["heartbeat_at_ms"].as_u64() >= b_info["started_at_ms"].as_u64());
    lists(&b.base, &["node-a", "node-b"]).await;
    let (status, body) = ready(&a.base).await;
    assert_eq!(
        (status, &body["redis"]),
        (200, &Value::from("up")),
        "{body}"
    );

    // A graceful stop takes B's registration out as it ends, rather than letting it expire.
    b.stop().await;
    let exists = Command::new("redis-cli")
        .args(["-p", &cluster.redis.port.to_string()])
        .args(["exists", "{hub}:node:node-b"])
        .output()
        .expect("redis-cli");
    assert_eq!(
        String::from_utf8_lossy(&exists.stdout).trim(),
        "0",
        "B left"
    );
    lists(&a.base, &["node-a"]).await;
    a.stop().await;
}

#[tokio::test]
async fn a_killed_node_restarts_under_its_id_and_drops_out_when_its_registration_expires() {
    let cluster = TestCluster::new().await;
    let a = cluster.node("node-a").await;
    let storage = Storage {
        dir: tempfile::tempdir().expect("tempdir"),
        db: None,
    };
    let mut b = cluster.process("node-b", &storage).await;
    lists(&a.base, &["node-a", "node-b"]).await;

    // Restarted at once (as a supervisor would), it finds its old registration still there:
    // it waits for that to expire instead of refusing to start as a duplicate.
    b.signal("KILL");
    assert_eq!(b.exit_code().await, None, "killed by a signal");
    let mut b = cluster.process("node-b", &storage).await;
    lists(&a.base, &["node-a", "node-b"]).await;

    b.signal("KILL");
    assert_eq!(b.exit_code().await, None, "killed by a signal");
    lists(&a.base, &["node-a"]).await;
    a.stop().await;
}

#[tokio::test]
async fn a_redis_restart_is_survived_and_nodes_register_again() {
    let cluster = TestCluster::new().await;
    let a = cluster.node("node-a").await;
    let b = cluster.node("node-b").await;
    lists(&a.base, &["node-a", "node-b"]).await;

    cluster.redis.down().await;
    let (status, body) = ready(&a.base).await;
    assert_eq!(
        (status, &body["redis"], &body["database"]),
        (503, &Value::from("down"), &Value::from("up")),
        "{body}"
    );
    // The node itself keeps serving what needs no Redis.
    let health = reqwest::get(format!("{}/health", a.base))
        .await
        .expect("health");
    assert!(health.status().is_success());

    // Back, empty (no persistence): both nodes register again on their next heartbeats.
    cluster.redis.up().await;
    lists(&a.base, &["node-a", "node-b"]).await;
    lists(&b.base, &["node-a", "node-b"]).await;
    let (status, _) = ready(&a.base).await;
    assert_eq!(status, 200);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_room_runs_on_one_node_at_a_time_and_a_stale_owner_cannot_write() {
    let cluster = TestCluster::new().await;
    let a = cluster.node("node-a").await;
    let b = cluster.node("node-b").await;
    let on_a = a.api();
    let ada = on_a.register("ada").await;
    // A room placement puts on A, reached only through A (so that B has never heard of it).
    let ws = workspace_placed_on(&on_a, &ada, "node-a", &["node-a", "node-b"]).await;
    stale_owner_on(&cluster, &a, &b, &ws, &ada).await;
    b.stop().await;
    a.stop().await;
}

/// `owner` runs `ws`'s room; `other` takes it behind the owner's back.
async fn stale_owner_on(
    cluster: &TestCluster,
    owner: &TestHub,
    other: &TestHub,
    ws: &str,
    ada: &crate::support::User,
) {
    let tasks = format!("/api/v1/workspaces/{ws}/tasks");
    let (on_owner, on_other) = (owner.api(), other.api());
    let (status, body) = on_owner
        .post(
            &tasks,
            Some(&ada.token),
            serde_json::json!({"title": "first"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut member = owner.ws(ada).await;
    member.join(ws, None).await;

    // The owner loses its lease without knowing (as if paused past its expiry); the other node
    // takes it (as it would once the lease expired), claims a newer epoch, and writes.
    let owner_id = cluster_id(owner).await;
    let other_id = cluster_id(other).await;
    let lease = format!("{{hub}}:lease:ws:{ws}");
    assert_eq!(
        lease_holder(cluster, &format!("ws:{ws}")),
        owner_id,
        "the owner holds the lease"
    );
    let taken = Command::new("redis-cli")
        .args(["-p", &cluster.redis.port.to_string()])
        .args(["set", &lease, &format!("{other_id}:0")])
        .output()
        .expect("redis-cli");
    assert!(taken.status.success());
    let (status, body) = on_other
        .post(
            &tasks,
            Some(&ada.token),
            serde_json::json!({"title": "second"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The owner's room cannot append: still running, the store refuses its epoch
    // (`unavailable`); or it already noticed the lease is gone and handed the room off, its
    // member told to resync and no longer joined (`not_joined`). Nothing is acknowledged.
    let reply = member
        .request(serde_json::json!({"type": "task_create", "workspace_id": ws, "task": {"title": "stale"}}))
        .await;
    assert_eq!(reply["type"], "error", "{reply}");
    match reply["code"].as_str() {
        Some("unavailable") => {}
        Some("not_joined") => {
            let resync = member.next_of("resync").await;
            assert_eq!(resync["workspace_id"], serde_json::json!(ws), "{resync}");
        }
        _ => panic!("not refused as a stale owner's write: {reply}"),
    }
    let titles: Vec<String> = on_other
        .tasks(ada, ws)
        .await
        .iter()
        .map(|t| t["title"].as_str().expect("title").to_owned())
        .collect();
    assert_eq!(titles, ["first", "second"]);
    // And the stale owner no longer runs the room.
    let base = owner.base.clone();
    eventually("the stale owner reports no rooms", || {
        let (base, owner_id) = (base.clone(), owner_id.clone());
        async move {
            let (_, body) = nodes(&base).await;
            let rooms: Vec<u64> = body["nodes"]
                .as_array()
                .map(|n| n.iter().filter_map(|n| n["rooms"].as_u64()).collect())
                .unwrap_or_default();
            rooms.iter().sum::<u64>() == 1
                && body["nodes"]
                    .as_array()
                    .and_then(|n| n.iter().find(|n| n["id"] == owner_id.as_str()))
                    .is_some_and(|n| n["rooms"] == 0)
        }
    })
    .await;
}

/// The node holding `room`'s lease (`""`: none).
fn lease_holder(cluster: &TestCluster, room: &str) -> String {
    let held = Command::new("redis-cli")
        .args(["-p", &cluster.redis.port.to_string()])
        .args(["get", &format!("{{hub}}:lease:{room}")])
        .output()
        .expect("redis-cli");
    let value = String::from_utf8_lossy(&held.stdout).trim().to_owned();
    value
        .rsplit_once(':')
        .map_or(String::new(), |(node, _)| node.to_owned())
}

/// The node id `hub` goes by.
async fn cluster_id(hub: &TestHub) -> String {
    let (_, body) = nodes(&hub.base).await;
    body["node_id"].as_str().expect("node id").to_owned()
}

/// How many rooms each node runs, as `base` lists them.
async fn rooms_by_node(base: &str) -> Vec<(String, u64)> {
    let (_, body) = nodes(base).await;
    body["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or("").to_owned(),
                n["rooms"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test]
async fn members_on_two_nodes_see_each_others_presence_and_work() {
    let cluster = TestCluster::new().await;
    let (a, b) = cluster.two().await;
    let (ada, bob, ws) = a.api().team("member").await;

    let mut on_a = a.ws(&ada).await;
    on_a.join(&ws, None).await;
    let mut on_b = b.ws(&bob).await;
    let joined = on_b.join(&ws, None).await;
    let present: Vec<&Value> = joined["presence"]
        .as_array()
        .expect("presence")
        .iter()
        .map(|p| &p["user_id"])
        .collect();
    assert!(present.contains(&&json!(ada.id)), "bob sees ada: {joined}");
    let online = on_a.next_of("user_presence").await;
    assert_eq!(
        (online["user_id"].as_str(), online["status"].as_str()),
        (Some(bob.id.as_str()), Some("online"))
    );
    // One room in the cluster, on one node; the member of the other node reaches it.
    let base = a.base.clone();
    eventually("one room runs in the cluster", || {
        let base = base.clone();
        async move {
            rooms_by_node(&base)
                .await
                .iter()
                .map(|(_, n)| n)
                .sum::<u64>()
                == 1
        }
    })
    .await;

    let created = on_a.create_task(&ws, "write the docs").await;
    let task_id = created["task"]["id"].as_str().expect("id").to_owned();
    let seen = on_b.next_of("task_created").await;
    assert_eq!(seen["task"]["title"], "write the docs");
    assert_eq!(seen["offset"], created["offset"]);

    let updated = on_b
        .ok(
            json!({"type": "task_update", "workspace_id": ws, "task_id": task_id, "base_version": 1,
                   "changes": {"status": "in_progress"}}),
        )
        .await;
    assert_eq!(updated["task"]["version"], 2);
    let seen = on_a.next_of("task_updated").await;
    assert_eq!(seen["offset"], updated["offset"]);
    assert_eq!(seen["by"], json!(bob.id));

    on_b.ok(json!({"type": "typing", "workspace_id": ws, "task_id": task_id}))
        .await;
    assert_eq!(on_a.next_of("typing").await["user_id"], json!(bob.id));
    on_b.ok(json!({"type": "presence_update", "workspace_id": ws, "status": "busy"}))
        .await;
    let busy = on_a
        .next_where(|v| v["type"] == "user_presence" && v["status"] == "busy")
        .await;
    assert_eq!(busy["user_id"], json!(bob.id));

    // A refusal comes back to the right connection too.
    let refused = on_b
        .request(
            json!({"type": "task_update", "workspace_id": ws, "task_id": task_id, "base_version": 1,
                        "changes": {"title": "stale"}}),
        )
        .await;
    assert_eq!(refused["type"], "error", "{refused}");

    // REST works on either node, whichever runs the room.
    for node in [&a, &b] {
        let titles: Vec<Value> = node
            .api()
            .tasks(&bob, &ws)
            .await
            .iter()
            .map(|t| t["title"].clone())
            .collect();
        assert_eq!(titles, [json!("write the docs")]);
    }
    let (status, body) = b
        .api()
        .post(
            &format!("/api/v1/workspaces/{ws}/tasks"),
            Some(&bob.token),
            json!({"title": "over REST on B"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for c in [&mut on_a, &mut on_b] {
        c.next_where(|v| v["type"] == "task_created" && v["task"]["title"] == "over REST on B")
            .await;
    }

    // The metrics say so: commands forwarded by the edge, frames sent over the link by the
    // owner (each once for its node), as many member deliveries as frames or more.
    let mut counts = [0.0; 3];
    for node in [&a, &b] {
        let m = node.metrics().await;
        counts[0] += crate::support::gauge(&m, "hub_cluster_forwarded_commands_total");
        counts[1] += crate::support::gauge(&m, "hub_cluster_link_frames_total");
        counts[2] += crate::support::gauge(&m, "hub_cluster_remote_deliveries_total");
    }
    assert!(
        counts[0] >= 2.0 && counts[1] >= 4.0 && counts[2] >= counts[1],
        "{counts:?}"
    );

    // Bob's socket closes: Ada, on the other node, sees him go.
    drop(on_b);
    let offline = on_a
        .next_where(|v| v["type"] == "user_presence" && v["status"] == "offline")
        .await;
    assert_eq!(offline["user_id"], json!(bob.id));
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_presenter_and_an_attendee_on_different_nodes_exchange_webrtc_signals() {
    use crate::sessions::{OFFER, create_session, guest, join, start};
    let cluster = TestCluster::new().await;
    let (a, b) = cluster.two().await;
    let ada = a.api().register("ada").await;
    let s = create_session(&a.api(), &ada, json!({"title": "Across"})).await;
    start(&b.api(), &ada, &s).await;
    let mut presenter = a.ws(&ada).await;
    join(&mut presenter, &s, None).await;
    let gus = guest(&b.api(), &s, "Gus").await;
    let mut g = crate::support::Client::connect(&b.base, &gus.token).await;
    let ack = join(&mut g, &s, None).await;
    let ada_peer = ack["peers"][0]["peer_id"]
        .as_str()
        .expect("peer")
        .to_owned();
    let joined = presenter.next_of("peer_joined").await;
    assert_eq!(joined["peer_id"], json!(gus.peer));

    let sent = presenter
        .ok(json!({"type": "signal", "session_id": s, "to": gus.peer, "signal": {"kind": "offer", "sdp": OFFER}}))
        .await;
    let got = g.next_of("signal").await;
    assert_eq!(
        (
            got["from"].as_str(),
            got["seq"].as_u64(),
            got["signal"]["kind"].as_str()
        ),
        (Some(ada_peer.as_str()), sent["seq"].as_u64(), Some("offer"))
    );
    let answered = g
        .ok(json!({"type": "signal", "session_id": s, "to": ada_peer, "signal": {"kind": "answer", "sdp": OFFER}}))
        .await;
    let got = presenter.next_of("signal").await;
    assert_eq!(
        (
            got["from"].as_str(),
            got["seq"].as_u64(),
            got["signal"]["kind"].as_str()
        ),
        (
            Some(gus.peer.as_str()),
            answered["seq"].as_u64(),
            Some("answer")
        )
    );
    // Q&A across the nodes too: the guest asks, the presenter sees it.
    g.ok(json!({"type": "question_ask", "session_id": s, "text": "Can you hear me?"}))
        .await;
    let asked = presenter
        .next_where(|v| v["type"] == "question" && v["change"] == "asked")
        .await;
    assert_eq!(asked["question"]["text"], "Can you hear me?");
    drop(g);
    drop(presenter);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn alone_a_hub_lists_itself_as_the_only_node() {
    let hub = TestHub::start_with(crate::support::Backend::Sqlite, |c| {
        c.admin_token = Some(ADMIN_TOKEN.into());
    })
    .await;
    let (ids, body) = nodes(&hub.base).await;
    assert_eq!(
        (ids, &body["cluster"]),
        (vec!["local".to_owned()], &Value::from(false))
    );
    assert_eq!(
        body["nodes"][0]["addr"]
            .as_str()
            .map(|a| format!("http://{a}")),
        Some(hub.base.clone()),
        "the address it really listens on: {body}"
    );
    let (status, body) = ready(&hub.base).await;
    assert_eq!(
        (status, body.get("redis")),
        (200, None),
        "no redis alone: {body}"
    );
    // The operator's lists work on the embedded store too.
    let (ada, _, ws) = hub.api().team("member").await;
    for (path, key, want) in [
        ("/api/v1/admin/users?limit=5", "users", ada.id.clone()),
        ("/api/v1/admin/workspaces", "workspaces", ws.clone()),
    ] {
        let (status, body) = hub
            .api()
            .call(reqwest::Method::GET, path, Some(ADMIN_TOKEN), None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body[key]
                .as_array()
                .expect("list")
                .iter()
                .any(|x| x["id"] == json!(want)),
            "{body}"
        );
    }
    hub.stop().await;
}

/// A workspace of `owner`'s that placement puts on `node` among `nodes`.
async fn workspace_placed_on(
    api: &crate::support::Api<'_>,
    owner: &crate::support::User,
    node: &str,
    nodes: &[&str],
) -> String {
    loop {
        let ws = api.create_workspace(owner, "Team").await;
        let room = format!("ws:{ws}");
        if actors::cluster::placement::owner(&room, nodes.iter().copied()) == Some(node) {
            return ws;
        }
    }
}

/// The highest `offset` among `frames` of `ws`, or `from`.
fn last_offset(from: u64, frame: &Value) -> u64 {
    match frame["offset"].as_u64() {
        Some(o) if frame["type"] != "ack" && frame["type"] != "resync" => from.max(o),
        _ => from,
    }
}

#[tokio::test]
async fn the_owner_killed_mid_traffic_loses_no_acknowledged_write_and_its_room_moves() {
    let cluster = TestCluster::new().await;
    let a = cluster.node("node-a").await;
    let storage = Storage {
        dir: tempfile::tempdir().expect("tempdir"),
        db: None,
    };
    let b = cluster.process("node-b", &storage).await;
    lists(&a.base, &["node-a", "node-b"]).await;
    let api = a.api();
    let ada = api.register("ada").await;
    let bob = api.register("bob").await;
    let ws = workspace_placed_on(&api, &ada, "node-b", &["node-a", "node-b"]).await;
    api.add_member(&ada, &ws, &bob, "member").await;

    // Both members are on A; the room runs on B.
    let mut writer = a.ws(&ada).await;
    writer.join(&ws, None).await;
    let mut watcher = a.ws(&bob).await;
    watcher.join(&ws, None).await;
    assert_eq!(lease_holder(&cluster, &format!("ws:{ws}")), "node-b");

    let mut acked: Vec<(String, u64)> = Vec::new();
    for i in 0..20 {
        let title = format!("t{i}");
        let r = writer.create_task(&ws, &title).await;
        acked.push((title, r["offset"].as_u64().expect("offset")));
    }
    // More in flight, then B is killed.
    for i in 20..40 {
        let cmd = json!({"type": "task_create", "workspace_id": ws, "ref": 1000 + i,
                         "task": {"title": format!("t{i}")}});
        writer.send_text(cmd.to_string()).await;
    }
    b.signal("KILL");
    let killed = tokio::time::Instant::now();
    let mut seen = 0;
    loop {
        let v = writer.next().await;
        seen = last_offset(seen, &v);
        match v["type"].as_str() {
            Some("ack") if v["ref"].as_u64().is_some_and(|r| r >= 1000) => {
                let i = v["ref"].as_u64().expect("ref") - 1000;
                acked.push((
                    format!("t{i}"),
                    v["result"]["offset"].as_u64().expect("offset"),
                ));
            }
            Some("resync") => {
                assert_eq!(v["offset"], Value::Null, "the offset is not known: {v}");
                break;
            }
            _ => {}
        }
    }
    writer.clear();

    // The writer joins again until the room runs somewhere again (after B's lease expired).
    rejoin(&mut writer, &ws, seen).await;
    let first = writer.create_task(&ws, "after").await;
    eprintln!(
        "failover: {:?} from the kill to the first write served by the new owner",
        killed.elapsed()
    );
    acked.push(("after".into(), first["offset"].as_u64().expect("offset")));
    assert_eq!(lease_holder(&cluster, &format!("ws:{ws}")), "node-a");

    // Every acknowledged write is there, each at its own offset.
    let titles = assert_kept(&api, &ada, &ws, &acked).await;

    // The watcher, told to resync too, catches up by offset: every task exactly once, in
    // offset order, with no gap.
    let (mut bob_seen, mut created) = (0, Vec::new());
    until_resync(&mut watcher, &mut bob_seen, &mut created).await;
    let joined = rejoin(&mut watcher, &ws, bob_seen).await;
    assert_eq!(joined["mode"], "replay", "{joined}");
    all_created(&mut watcher, &mut created, &titles).await;
    a.stop().await;
}

/// Reads frames until `resync` (returned), keeping the highest offset seen in `seen` and the
/// `task_created` events in `created`.
async fn until_resync(
    c: &mut crate::support::Client,
    seen: &mut u64,
    created: &mut Vec<(u64, String)>,
) -> Value {
    loop {
        let v = c.next().await;
        *seen = last_offset(*seen, &v);
        if v["type"] == "task_created" {
            created.push((
                v["offset"].as_u64().expect("offset"),
                v["task"]["title"].as_str().expect("title").to_owned(),
            ));
        }
        if v["type"] == "resync" {
            return v;
        }
    }
}

/// Joins `ws` again from `seen` until the room answers (it may be between nodes); returns the
/// ack's result.
async fn rejoin(c: &mut crate::support::Client, ws: &str, seen: u64) -> Value {
    for _ in 0..200 {
        let r = c
            .request(json!({"type": "join_workspace", "workspace_id": ws, "last_offset": seen}))
            .await;
        if r["type"] == "ack" {
            return r["result"].clone();
        }
        assert_eq!(r["code"], "unavailable", "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the room never came back");
}

/// Collects `task_created` events until `want` titles are seen; asserts each came once, in
/// offset order.
async fn all_created(
    c: &mut crate::support::Client,
    created: &mut Vec<(u64, String)>,
    want: &[String],
) {
    while created.len() < want.len() {
        let v = c.next().await;
        if v["type"] == "task_created" {
            created.push((
                v["offset"].as_u64().expect("offset"),
                v["task"]["title"].as_str().expect("title").to_owned(),
            ));
        }
    }
    let mut titles: Vec<String> = created.iter().map(|(_, t)| t.clone()).collect();
    titles.sort();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(titles, want, "every task seen once");
    assert!(
        created
            .windows(2)
            .all(|w| w[0].1 != w[1].1 && w[0].0 + 1 == w[1].0),
        "in offset order, no gap: {created:?}"
    );
}

#[tokio::test]
async fn a_draining_node_hands_its_rooms_over_with_no_gap_and_exits() {
    let cluster = TestCluster::new().await;
    let a = cluster.node("node-a").await;
    let storage = Storage {
        dir: tempfile::tempdir().expect("tempdir"),
        db: None,
    };
    let mut b = cluster.process("node-b", &storage).await;
    lists(&a.base, &["node-a", "node-b"]).await;
    let api = a.api();
    let ada = api.register("ada").await;
    let bob = api.register("bob").await;
    let ws = workspace_placed_on(&api, &ada, "node-b", &["node-a", "node-b"]).await;
    api.add_member(&ada, &ws, &bob, "member").await;

    // Ada writes through A; Bob is on B itself, where the room runs.
    let mut writer = a.ws(&ada).await;
    writer.join(&ws, None).await;
    let mut watcher = crate::support::Client::connect(&b.base, &bob.token).await;
    watcher.join(&ws, None).await;
    let mut titles = Vec::new();
    for i in 0..10 {
        writer.create_task(&ws, &format!("before {i}")).await;
        titles.push(format!("before {i}"));
    }

    let started = tokio::time::Instant::now();
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/admin/nodes/node-b/drain",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");

    // Ada, on the node that stays, is told to resync with the room's offset, and continues
    // where the room runs now.
    let (mut seen, mut created) = (0, Vec::new());
    let resync = until_resync(&mut writer, &mut seen, &mut created).await;
    assert!(
        resync["offset"].as_u64().is_some(),
        "a handed-off room says its offset: {resync}"
    );
    let joined = rejoin(&mut writer, &ws, seen).await;
    assert_eq!(joined["mode"], "replay", "{joined}");
    eprintln!(
        "drain: {:?} from the call to the room serving on its next node",
        started.elapsed()
    );
    for i in 0..5 {
        writer.create_task(&ws, &format!("after {i}")).await;
        titles.push(format!("after {i}"));
    }
    assert_eq!(lease_holder(&cluster, &format!("ws:{ws}")), "node-a");

    // Bob's connection to the drained node is closed with 4010; he reconnects to A and resumes
    // by offset with no gap.
    let closed = watcher.closed_within(Duration::from_secs(10)).await;
    assert_eq!(
        closed,
        Some(Some(4010)),
        "the drained node closed Bob's socket with 4010"
    );
    let (mut bob_seen, mut bob_created) = (0, Vec::new());
    for v in watcher.pending_frames() {
        bob_seen = last_offset(bob_seen, &v);
        if v["type"] == "task_created" {
            bob_created.push((
                v["offset"].as_u64().expect("offset"),
                v["task"]["title"].as_str().expect("title").to_owned(),
            ));
        }
    }
    assert_eq!(
        b.exit_code().await,
        Some(0),
        "the drained node exits cleanly"
    );
    let mut watcher = a.ws(&bob).await;
    let joined = rejoin(&mut watcher, &ws, bob_seen).await;
    assert_eq!(joined["mode"], "replay", "{joined}");
    all_created(&mut watcher, &mut bob_created, &titles).await;
    a.stop().await;
}

#[tokio::test]
async fn a_room_moved_by_the_operator_and_a_node_that_joins_take_rooms_without_a_gap() {
    let cluster = TestCluster::new().await;
    let a = cluster.node("node-a").await;
    let api = a.api();
    let ada = api.register("ada").await;
    // Placed on B once B is there; alone, A runs it.
    let ws = workspace_placed_on(&api, &ada, "node-b", &["node-a", "node-b"]).await;
    let mut member = a.ws(&ada).await;
    member.join(&ws, None).await;
    let mut titles = Vec::new();
    for i in 0..5 {
        member.create_task(&ws, &format!("alone {i}")).await;
        titles.push(format!("alone {i}"));
    }
    assert_eq!(lease_holder(&cluster, &format!("ws:{ws}")), "node-a");

    // B joins: A hands it the room (its share), and the member goes on there by offset.
    let b = cluster.node("node-b").await;
    let (mut seen, mut created) = (0, Vec::new());
    let resync = until_resync(&mut member, &mut seen, &mut created).await;
    assert!(resync["offset"].is_u64(), "{resync}");
    rejoin(&mut member, &ws, seen).await;
    member.create_task(&ws, "on b").await;
    titles.push("on b".into());
    assert_eq!(lease_holder(&cluster, &format!("ws:{ws}")), "node-b");

    // The operator moves it back to A, asking A (the request is passed to B, which runs it).
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/admin/rooms/ws:{ws}/move"),
            Some(ADMIN_TOKEN),
            Some(json!({"node": "node-a"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["from"].as_str(), body["to"].as_str()),
        (Some("node-b"), Some("node-a"))
    );
    until_resync(&mut member, &mut seen, &mut created).await;
    rejoin(&mut member, &ws, seen).await;
    member.create_task(&ws, "back on a").await;
    titles.push("back on a".into());
    assert_eq!(lease_holder(&cluster, &format!("ws:{ws}")), "node-a");

    // The room list shows it on A, with its epoch (claimed anew on every move) and offset.
    let (status, body) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/admin/rooms",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let listed = body["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["room"] == format!("ws:{ws}"))
        .expect("the room is listed")
        .clone();
    assert_eq!(listed["node"], "node-a", "{body}");
    assert!(listed["epoch"].as_u64() >= Some(3), "{listed}");
    assert_eq!(listed["members"], 1);

    // A second member who joins from 0 sees every task once, in order.
    let mut late = b.ws(&ada).await;
    late.join(&ws, Some(0)).await;
    let mut late_created = Vec::new();
    all_created(&mut late, &mut late_created, &titles).await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn members_of_a_lost_node_are_suspect_then_back_or_gone_once() {
    let cluster = TestCluster::new().await;
    let a = cluster
        .node_with("node-a", |c| c.rooms.presence_grace_ms = 3_000)
        .await;
    let storage = Storage {
        dir: tempfile::tempdir().expect("tempdir"),
        db: None,
    };
    let b = cluster.process("node-b", &storage).await;
    lists(&a.base, &["node-a", "node-b"]).await;
    let api = a.api();
    let ada = api.register("ada").await;
    let bob = api.register("bob").await;
    let cat = api.register("cat").await;
    let ws = workspace_placed_on(&api, &ada, "node-a", &["node-a", "node-b"]).await;
    api.add_member(&ada, &ws, &bob, "member").await;
    api.add_member(&ada, &ws, &cat, "member").await;

    let mut watcher = a.ws(&ada).await;
    watcher.join(&ws, None).await;
    let mut bob_b = crate::support::Client::connect(&b.base, &bob.token).await;
    bob_b.join(&ws, None).await;
    let mut cat_b = crate::support::Client::connect(&b.base, &cat.token).await;
    cat_b.join(&ws, None).await;
    for user in [&bob, &cat] {
        watcher
            .next_where(|v| {
                v["type"] == "user_presence"
                    && v["user_id"] == json!(user.id)
                    && v["status"] == "online"
            })
            .await;
    }
    watcher.clear();

    // B dies: Bob and Cat are suspect, not gone.
    b.signal("KILL");
    for user in [&bob, &cat] {
        let said = watcher
            .next_where(|v| v["type"] == "user_presence" && v["user_id"] == json!(user.id))
            .await;
        assert_eq!(said["status"], "suspect", "{said}");
    }
    let mut bob_back = a.ws(&bob).await;
    let joined = bob_back.join(&ws, None).await;
    let status_of = |joined: &Value, user: &str| {
        joined["presence"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["user_id"] == user))
            .map(|p| p["status"].clone())
    };
    assert_eq!(
        status_of(&joined, &cat.id),
        Some(json!("suspect")),
        "{joined}"
    );
    // Bob came back within the grace: online again. Cat did not: offline, once.
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < deadline {
        if let Some(Some(_)) = watcher.closed_within(Duration::from_millis(200)).await {
            panic!("the watcher was closed");
        }
        events.extend(
            watcher
                .pending_frames()
                .into_iter()
                .filter(|v| v["type"] == "user_presence"),
        );
    }
    let said = |user: &str| -> Vec<String> {
        events
            .iter()
            .filter(|v| v["user_id"] == user)
            .map(|v| v["status"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(said(&bob.id), ["online"], "no leave for Bob: {events:?}");
    assert_eq!(said(&cat.id), ["offline"], "Cat gone once: {events:?}");
    drop(bob_back);
    a.stop().await;
}

/// Failed logins are counted in Redis: spread over two nodes (and sent at once), they get no
/// more than one node's budget, and the lockout holds on both.
#[tokio::test]
async fn the_login_lockout_is_counted_across_nodes() {
    let cluster = TestCluster::new().await;
    let a = cluster.node("node-a").await;
    let b = cluster.node("node-b").await;
    let ada = a.api().register("ada").await;
    let http = reqwest::Client::new();
    let statuses = futures_util::future::join_all((0..20).map(|i| {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let req = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": ada.email, "password": "not the password"}))
            .send();
        async move { req.await.expect("login").status().as_u16() }
    }))
    .await;
    let tried = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    // The pair's budget is 5 failures (the default), for the whole cluster.
    assert_eq!((tried, refused), (5, 15), "{statuses:?}");
    for node in [&a, &b] {
        let (status, body) = node
            .api()
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": ada.email, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(status, 429, "locked out on every node: {body}");
    }
    b.stop().await;
    a.stop().await;
}

/// Redis restarts (empty) while members on both nodes write to a room: the rooms keep serving,
/// the nodes register and renew again, and every acknowledged write is kept, each at its own
/// offset.
#[tokio::test]
async fn writes_continue_through_a_redis_restart_and_nothing_acknowledged_is_lost() {
    let cluster = TestCluster::new().await;
    let (a, b) = cluster.two().await;
    let api = a.api();
    let ada = api.register("ada").await;
    let bob = api.register("bob").await;
    let ws = workspace_placed_on(&api, &ada, "node-b", &["node-a", "node-b"]).await;
    api.add_member(&ada, &ws, &bob, "member").await;
    let mut on_a = a.ws(&ada).await;
    on_a.join(&ws, None).await;
    let mut on_b = b.ws(&bob).await;
    on_b.join(&ws, None).await;

    let mut acked = Vec::new();
    for round in 0..3 {
        if round == 1 {
            cluster.redis.down().await;
        }
        if round == 2 {
            cluster.redis.up().await;
            lists(&a.base, &["node-a", "node-b"]).await;
        }
        for i in 0..10 {
            for (c, who) in [(&mut on_a, "a"), (&mut on_b, "b")] {
                let title = format!("{who} {round}.{i}");
                let r = c.create_task(&ws, &title).await;
                acked.push((title, r["offset"].as_u64().expect("offset")));
            }
        }
    }
    // The lease is back in the new Redis, still B's (renewed after the restart).
    let room = format!("ws:{ws}");
    eventually("the lease is set again", || {
        let holder = lease_holder(&cluster, &room);
        async move { holder == "node-b" }
    })
    .await;
    assert_kept(&api, &ada, &ws, &acked).await;
    b.stop().await;
    a.stop().await;
}

/// The operator lists and looks up accounts, workspaces and sessions on any node, and sees
/// where each room runs.
#[tokio::test]
async fn the_operator_lists_and_looks_up_users_workspaces_and_sessions() {
    let cluster = TestCluster::new().await;
    let (a, b) = cluster.two().await;
    let api = a.api();
    let (ada, bob, ws) = api.team("member").await;
    let s = crate::sessions::create_session(&api, &ada, json!({"title": "Town hall"})).await;
    let mut member = a.ws(&bob).await;
    member.join(&ws, None).await;
    let owner = lease_holder(&cluster, &format!("ws:{ws}"));
    let admin = |path: String| {
        let api = b.api();
        async move {
            api.call(reqwest::Method::GET, &path, Some(ADMIN_TOKEN), None)
                .await
        }
    };

    let (status, body) = admin("/api/v1/admin/users?limit=1".into()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["users"][0]["id"],
        json!(bob.id),
        "newest first: {body}"
    );
    assert!(body["users"][0].get("password_hash").is_none());
    let (_, body) = admin(format!("/api/v1/admin/users?limit=1&before={}", bob.id)).await;
    assert_eq!(
        body["users"][0]["id"],
        json!(ada.id),
        "the next page: {body}"
    );
    let (_, body) = admin(format!(
        "/api/v1/admin/users?email={}",
        ada.email.to_uppercase()
    ))
    .await;
    assert_eq!(body["users"][0]["id"], json!(ada.id), "by email: {body}");

    let (status, body) = admin(format!("/api/v1/admin/users/{}", bob.id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["workspaces"][0]["id"].as_str(),
            body["workspaces"][0]["role"].as_str()
        ),
        (Some(ws.as_str()), Some("member"))
    );

    let (_, body) = admin("/api/v1/admin/workspaces".into()).await;
    assert!(
        body["workspaces"]
            .as_array()
            .expect("list")
            .iter()
            .any(|w| w["id"] == json!(ws))
    );
    let (status, body) = admin(format!("/api/v1/admin/workspaces/{ws}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["room"]["node"], json!(owner), "{body}");

    let (_, body) = admin("/api/v1/admin/sessions".into()).await;
    assert_eq!(body["sessions"][0]["id"], json!(s), "{body}");
    let (status, body) = admin(format!("/api/v1/admin/sessions/{s}")).await;
    assert_eq!(
        (status, body["title"].as_str()),
        (200, Some("Town hall")),
        "{body}"
    );
    let runs_on = lease_holder(&cluster, &format!("session:{s}"));
    assert_eq!(body["room"]["node"], json!(runs_on), "{body}");

    let (status, _) = admin(format!("/api/v1/admin/users/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(status, 404);
    let (status, _) = b
        .api()
        .call(
            reqwest::Method::GET,
            "/api/v1/admin/users",
            Some("not the token"),
            None,
        )
        .await;
    assert_eq!(status, 401);
    drop(member);
    b.stop().await;
    a.stop().await;
}

/// The connection caps hold over the cluster: a user at the cap on one node is refused on the
/// other, until one of their connections closes.
#[tokio::test]
async fn the_connection_cap_per_user_is_counted_across_nodes() {
    let cluster = TestCluster::new().await;
    let cap = |c: &mut hub::Config| c.ws.max_conns_per_user = 2;
    let a = cluster.node_with("node-a", cap).await;
    let b = cluster.node_with("node-b", cap).await;
    lists(&b.base, &["node-a", "node-b"]).await;
    let ada = a.api().register("ada").await;
    let first = a.ws(&ada).await;
    let _second = b.ws(&ada).await;
    let url = format!(
        "{}/ws?token={}",
        a.base.replacen("http", "ws", 1),
        ada.token
    );
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(
                resp.status().as_u16(),
                429,
                "a third connection, on either node"
            );
        }
        other => panic!(
            "the third connection was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    drop(first);
    eventually("a slot is free again once one closes", || {
        let url = url.clone();
        async move { tokio_tungstenite::connect_async(url).await.is_ok() }
    })
    .await;
    b.stop().await;
    a.stop().await;
}

/// Asserts that every acknowledged write (title, offset) is among `ws`'s tasks and that no two
/// got the same offset; returns the titles stored.
async fn assert_kept(
    api: &crate::support::Api<'_>,
    user: &crate::support::User,
    ws: &str,
    acked: &[(String, u64)],
) -> Vec<String> {
    let titles: Vec<String> = api
        .tasks(user, ws)
        .await
        .iter()
        .map(|t| t["title"].as_str().expect("title").to_owned())
        .collect();
    for (title, _) in acked {
        assert!(
            titles.contains(title),
            "{title} was acknowledged and is kept"
        );
    }
    let mut offsets: Vec<u64> = acked.iter().map(|(_, o)| *o).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), acked.len(), "no offset given twice");
    titles
}

/// A draining node says so: `/ready` answers 503 (the load balancer sends new clients
/// elsewhere), its registration says `draining`, and the others stop placing rooms on it.
#[tokio::test]
async fn a_draining_node_is_not_ready_and_gets_no_new_rooms() {
    let cluster = TestCluster::new().await;
    let (a, b) = cluster.two().await;
    let hub_a = a.hub.as_ref().expect("running");
    let cluster_a = hub_a.state().cluster.clone().expect("cluster mode");
    cluster_a.announce_draining().await.expect("redis answers");
    let (status, body) = ready(&a.base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["message"], "this node is draining");
    let base = b.base.clone();
    eventually("B sees A draining", || {
        let base = base.clone();
        async move {
            let (_, body) = nodes(&base).await;
            body["nodes"][0]["draining"] == true
        }
    })
    .await;
    // Rooms placement would have given A now start on B.
    let api = b.api();
    let ada = api.register("ada").await;
    let ws = workspace_placed_on(&api, &ada, "node-a", &["node-a", "node-b"]).await;
    let mut member = b.ws(&ada).await;
    member.join(&ws, None).await;
    assert_eq!(lease_holder(&cluster, &format!("ws:{ws}")), "node-b");
    drop(member);
    b.stop().await;
    a.stop().await;
}
