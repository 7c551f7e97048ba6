//! Test support: a real hub on 127.0.0.1:0 against a fresh SQLite file or a fresh PostgreSQL
//! database, and clients that speak its REST API and WebSocket protocol.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hub::{Config, Hub};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one frame or condition.
pub const WAIT: Duration = Duration::from_secs(10);

/// Which database a hub runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct TestDb {
    admin: String,
    name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin = std::env::var("HUB_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("hub_it_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is not reachable ({e}); run the tests with scripts/test.sh"));
        sqlx::Executor::execute(
            &mut conn,
            sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
        )
        .await
        .expect("create database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        TestDb { admin, name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::Executor::execute(
                        &mut conn,
                        sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// Where a hub keeps its data: a folder, and a PostgreSQL database for that backend.
pub struct Storage {
    pub dir: tempfile::TempDir,
    pub db: Option<TestDb>,
}

impl Storage {
    pub async fn new(backend: Backend) -> Storage {
        Storage {
            dir: tempfile::tempdir().expect("tempdir"),
            db: match backend {
                Backend::Sqlite => None,
                Backend::Postgres => Some(TestDb::create().await),
            },
        }
    }

    pub fn database_url(&self) -> String {
        match &self.db {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", self.dir.path().join("hub.db").display()),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// Lifts the REST and WebSocket rate limits, for tests that produce load rather than test the
/// limits.
pub fn unthrottled(config: &mut Config) {
    let lots: hub::limits::Rate = "100000/s".parse().expect("rate");
    config.limits.read_per_user = lots;
    config.limits.write_per_user = lots;
    config.limits.read_per_ip = lots;
    config.limits.write_per_ip = lots;
    config.limits.sync_per_user = lots;
    config.ws.rate_per_sec = 100_000;
    config.ws.rate_burst = 100_000;
}

/// A config for tests: port 0, fault injection on, everything else default.
pub fn test_config(storage: &Storage) -> Config {
    let mut config = Config::from_env();
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.data_dir = storage.data_dir();
    config.database_url = Some(storage.database_url());
    config.fault_injection = true;
    config.jwt_secret = None;
    config
}

/// A hub running in this process.
pub struct TestHub {
    pub hub: Option<Hub>,
    pub base: String,
    pub http: reqwest::Client,
    pub storage: Storage,
}

impl TestHub {
    pub async fn start(backend: Backend) -> TestHub {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestHub {
        let storage = Storage::new(backend).await;
        Self::start_on(storage, tweak).await
    }

    pub async fn start_on(storage: Storage, tweak: impl FnOnce(&mut Config)) -> TestHub {
        let mut config = test_config(&storage);
        tweak(&mut config);
        let hub = Hub::start(config).await.expect("hub starts");
        let base = format!("http://{}", hub.addr);
        TestHub {
            hub: Some(hub),
            base,
            http: reqwest::Client::new(),
            storage,
        }
    }

    /// Stops gracefully and hands back the storage (to start again on it).
    pub async fn stop(mut self) -> Storage {
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await.expect("clean shutdown");
        }
        self.storage
    }

    pub fn api(&self) -> Api<'_> {
        Api {
            base: &self.base,
            http: &self.http,
        }
    }

    /// The Prometheus exposition.
    pub async fn metrics(&self) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics");
        resp.text().await.expect("metrics body")
    }

    pub async fn ws(&self, user: &User) -> Client {
        Client::connect(&self.base, &user.token).await
    }
}

/// A registered account.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub email: String,
    pub token: String,
    pub refresh: String,
}

/// REST calls against a base URL.
pub struct Api<'a> {
    pub base: &'a str,
    pub http: &'a reqwest::Client,
}

impl Api<'_> {
    /// A request; returns the status and the JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn register(&self, name: &str) -> User {
        let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple());
        let (status, body) = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": email, "password": "correct horse battery", "name": name}),
            )
            .await;
        assert_eq!(status, 201, "register: {body}");
        user_of(&body)
    }

    pub async fn create_workspace(&self, owner: &User, name: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/workspaces",
                Some(&owner.token),
                json!({ "name": name }),
            )
            .await;
        assert_eq!(status, 201, "create workspace: {body}");
        body["id"].as_str().expect("id").to_owned()
    }

    pub async fn add_member(&self, owner: &User, ws: &str, user: &User, role: &str) {
        let (status, body) = self
            .post(
                &format!("/api/v1/workspaces/{ws}/members"),
                Some(&owner.token),
                json!({"email": user.email, "role": role}),
            )
            .await;
        assert_eq!(status, 201, "add member: {body}");
    }

    /// Ada owns a new workspace "Team" and Bob is in it with `role`.
    pub async fn team(&self, role: &str) -> (User, User, String) {
        let ada = self.register("ada").await;
        let bob = self.register("bob").await;
        let ws = self.create_workspace(&ada, "Team").await;
        self.add_member(&ada, &ws, &bob, role).await;
        (ada, bob, ws)
    }

    /// Creates `n` tasks over REST, `in_flight` requests at a time (the room still journals
    /// them one by one). The caller's hub must allow that many writes (see `unthrottled`).
    pub async fn create_tasks(&self, user: &User, ws: &str, n: usize, in_flight: usize) {
        let path = format!("/api/v1/workspaces/{ws}/tasks");
        futures_util::stream::iter(0..n)
            .map(|i| {
                let path = &path;
                async move {
                    let (status, body) = self
                        .post(
                            path,
                            Some(&user.token),
                            json!({ "title": format!("task {i}") }),
                        )
                        .await;
                    assert_eq!(status, 201, "create task {i}: {body}");
                }
            })
            .buffer_unordered(in_flight)
            .collect::<Vec<()>>()
            .await;
    }

    /// Every task of the workspace, in board order, page after page.
    pub async fn tasks(&self, user: &User, ws: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/workspaces/{ws}/tasks?limit=200");
            if let Some(cursor) = &next {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (status, body) = self.get(&path, &user.token).await;
            assert_eq!(status, 200, "list tasks: {body}");
            all.extend(body["tasks"].as_array().expect("tasks").iter().cloned());
            match body["next"].as_str() {
                Some(cursor) => next = Some(cursor.to_owned()),
                None => return all,
            }
        }
    }
}

pub fn user_of(body: &Value) -> User {
    User {
        id: body["user"]["id"].as_str().expect("user id").to_owned(),
        email: body["user"]["email"].as_str().expect("email").to_owned(),
        token: body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned(),
        refresh: body["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned(),
    }
}

/// A WebSocket client (tokio-tungstenite: an independent implementation of the protocol).
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while looking for something else.
    pending: VecDeque<Value>,
    next_ref: u64,
    pub hello: Value,
}

impl Client {
    pub async fn connect(base: &str, token: &str) -> Client {
        let url = format!("{}/ws?token={token}", base.replacen("http", "ws", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        let mut c = Client {
            ws,
            pending: VecDeque::new(),
            next_ref: 1,
            hello: Value::Null,
        };
        c.hello = c.next_of("hello").await;
        c
    }

    /// This client's local port (its side of the TCP connection).
    pub fn local_port(&self) -> u16 {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp.local_addr().expect("local addr").port(),
            _ => panic!("the tests use plain TCP"),
        }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("send");
    }

    /// Sends text frames in one write (the hub reads them as one burst).
    pub async fn send_together(&mut self, texts: Vec<String>) {
        for t in texts {
            self.ws.feed(Message::text(t)).await.expect("feed");
        }
        self.ws.flush().await.expect("flush");
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// Sends a message as it comes (a raw frame, say); false once the socket is closed.
    pub async fn try_send(&mut self, msg: Message) -> bool {
        self.ws.send(msg).await.is_ok()
    }

    /// If the server closes the connection within `within`: its close code (`Some(None)` when
    /// the socket just ended). Data frames read meanwhile are kept for `next`.
    pub async fn closed_within(&mut self, within: Duration) -> Option<Option<u16>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None | Some(Err(_))) => return Some(None),
                Ok(Some(Ok(Message::Close(c)))) => return Some(c.map(|c| u16::from(c.code))),
                Ok(Some(Ok(Message::Text(t)))) => {
                    self.pending
                        .push_back(serde_json::from_str(&t).expect("server sends JSON"));
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next frame from the socket (not the buffer).
    async fn read(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("frame");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
                Message::Close(c) => panic!("closed by server: {c:?}"),
                _ => {}
            }
        }
    }

    /// The next frame, buffered ones first.
    pub async fn next(&mut self) -> Value {
        match self.pending.pop_front() {
            Some(v) => v,
            None => self.read().await,
        }
    }

    /// The first frame matching `pred`, keeping the others for later.
    pub async fn next_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).expect("index");
        }
        loop {
            let v = self.read().await;
            if pred(&v) {
                return v;
            }
            self.pending.push_back(v);
        }
    }

    pub async fn next_of(&mut self, kind: &str) -> Value {
        self.next_where(|v| v["type"] == kind).await
    }

    /// Sends a command with a fresh `ref` and returns its `ack` or `error`.
    pub async fn request(&mut self, mut cmd: Value) -> Value {
        let r = self.next_ref;
        self.next_ref += 1;
        cmd["ref"] = json!(r);
        self.send_text(cmd.to_string()).await;
        self.next_where(|v| v["ref"] == json!(r) && (v["type"] == "ack" || v["type"] == "error"))
            .await
    }

    /// `request`, asserting an ack; returns its result.
    pub async fn ok(&mut self, cmd: Value) -> Value {
        let reply = self.request(cmd.clone()).await;
        assert_eq!(reply["type"], "ack", "{cmd} -> {reply}");
        reply["result"].clone()
    }

    pub async fn join(&mut self, ws: &str, last_offset: Option<u64>) -> Value {
        let mut cmd = json!({"type": "join_workspace", "workspace_id": ws});
        if let Some(o) = last_offset {
            cmd["last_offset"] = json!(o);
        }
        self.ok(cmd).await
    }

    pub async fn create_task(&mut self, ws: &str, title: &str) -> Value {
        self.ok(json!({"type": "task_create", "workspace_id": ws, "task": {"title": title}}))
            .await
    }

    /// Takes the frames buffered while looking for others, in the order they came.
    pub fn pending_frames(&mut self) -> Vec<Value> {
        self.pending.drain(..).collect()
    }

    /// Drops buffered frames.
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Waits for the server to close the socket; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close in time")
            {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => {}
            }
        }
    }
}

/// A WebSocket client made by hand on a raw socket with a tiny receive buffer, so that it can
/// stop reading and leave the hub's writes stuck.
pub struct Stalled {
    pub tcp: TcpStream,
    /// The client's port: the hub's side of the connection is (hub port, this port).
    pub port: u16,
}

impl Stalled {
    pub async fn connect(addr: std::net::SocketAddr, token: &str) -> Stalled {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(4096)
            .expect("small receive buffer");
        let mut tcp = socket.connect(addr).await.expect("connect");
        let request = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("upgrade");
        // Read the 101 response head, byte by byte so that no frame is read with it.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            tcp.read_exact(&mut b).await.expect("response");
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let port = tcp.local_addr().expect("local addr").port();
        Stalled { tcp, port }
    }

    /// Sends one masked text frame.
    pub async fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        let mask = [1u8, 2, 3, 4];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.expect("send frame");
    }

    /// Reads the next whole frame the server sent (unmasked, unfragmented): its opcode and
    /// payload, or `None` once the socket has ended.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        tokio::time::timeout(WAIT, self.tcp.read_exact(&mut head))
            .await
            .expect("a frame in time")
            .ok()?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.tcp.read_exact(&mut b).await.ok()?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.tcp.read_exact(&mut b).await.ok()?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).expect("frame fits")];
        self.tcp.read_exact(&mut payload).await.ok()?;
        Some((head[0] & 0x0f, payload))
    }
}

/// The value of a gauge or counter in a Prometheus text page (0 when absent).
pub fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `check` until it is true or [`WAIT`] passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Reads the latest snapshot of a workspace room straight from the store.
pub async fn stored_snapshot(database_url: &str, ws: &str) -> Option<persistence::Snapshot> {
    let store = persistence::Store::connect(database_url)
        .await
        .expect("store");
    let snap = store
        .snapshot(&format!("ws:{ws}"))
        .await
        .expect("read snapshot");
    store.close().await;
    snap
}

/// Appends `n` events by `author` to a workspace's journal, straight through the store, as a
/// room that had them written while a client was away would have: one `task_created`, then
/// `task_updated`s of that task (so that any `n` fits the board's limits). For tests of what a
/// client far behind gets, without spending minutes producing the events one commit at a time.
/// With `indexed`, the board index follows, as the room's own appends keep it; without, the
/// index is left behind (as for a journal written before the index existed). The hub must be
/// stopped (the seeding claims the room's epoch, as a room start does).
pub async fn seed_journal(database_url: &str, ws: &str, author: &str, n: u64, indexed: bool) {
    use signaling::server::Event;
    use signaling::task::{Priority, Status, Task, TaskChanges};
    let store = persistence::Store::connect(database_url)
        .await
        .expect("store");
    let key = format!("ws:{ws}");
    let workspace: signaling::WorkspaceId = ws.parse().expect("workspace id");
    let epoch = store.claim_room(&key).await.expect("claim");
    let mut next = store
        .journal_since(&key, 0, u32::MAX)
        .await
        .expect("journal")
        .last()
        .map_or(0, |r| r.seq as u64)
        .max(
            store
                .snapshot(&key)
                .await
                .expect("snapshot")
                .map_or(0, |s| s.seq as u64),
        )
        + 1;
    let by: signaling::UserId = author.parse().expect("user id");
    let journal = persistence::Journal::spawn(store.clone(), metrics::Histogram::noop());
    let now = chrono::Utc::now();
    let mut task = Task {
        id: signaling::TaskId::new(),
        title: "seeded 0".into(),
        description: None,
        completed: false,
        priority: Priority::Medium,
        status: Status::Todo,
        position: signaling::rank::Rank::first(),
        assignee: None,
        due_date: None,
        category_id: None,
        tags: Vec::new(),
        parent_id: None,
        completed_at: None,
        recurrence: None,
        version: 0,
        created_by: by,
        created_at: now,
        updated_at: now,
    };
    let end = next + n;
    while next < end {
        let batch_end = (next + 1000).min(end);
        let entries = (next..batch_end)
            .map(|seq| {
                task.version += 1;
                task.title = format!("seeded {seq}");
                let event = if task.version == 1 {
                    Event::TaskCreated {
                        task: task.clone(),
                        by,
                        sync: None,
                    }
                } else {
                    Event::TaskUpdated {
                        task_id: task.id,
                        changes: TaskChanges {
                            title: Some(task.title.clone()),
                            ..TaskChanges::default()
                        },
                        task: task.clone(),
                        by,
                        sync: None,
                    }
                };
                persistence::JournalEntry {
                    seq,
                    event: serde_json::to_string(&event).expect("event json"),
                }
            })
            .collect();
        let effects = if indexed {
            let row = persistence::TaskRow::new(workspace, task.clone()).expect("row");
            vec![persistence::SideEffect::PutTask(Box::new(row))]
        } else {
            Vec::new()
        };
        journal
            .append(persistence::AppendRequest {
                room: key.clone(),
                epoch,
                entries,
                effects,
            })
            .await
            .expect("append");
        next = batch_end;
    }
    drop(journal);
    if !indexed {
        store.invalidate_board(&key).await.expect("invalidate");
    }
    store.close().await;
}

/// The path of the hub binary built for these tests.
pub fn hub_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hub"))
}

/// Generates one test per backend from an `async fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A hub running as its own process.
pub struct Process {
    child: Child,
    pub base: String,
}

impl Process {
    pub async fn start(storage: &Storage) -> Process {
        Self::start_with(storage, &[]).await
    }

    /// Starts with these environment variables added (or overriding the defaults here).
    pub async fn start_with(storage: &Storage, env: &[(&str, String)]) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(hub_binary())
            .env("HUB_LISTEN", format!("127.0.0.1:{port}"))
            .env("HUB_DATA_DIR", storage.data_dir())
            .env("DATABASE_URL", storage.database_url())
            .env("HUB_LOG", "warn")
            // These tests write faster than a person would.
            .env("HUB_RATE_PER_SEC", "1000")
            .env("HUB_RATE_BURST", "1000")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hub binary starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually("the hub process answers /health", || {
            let req = http.get(format!("{base}/health")).send();
            async move { req.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        Process { child, base }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(ok.success());
    }

    pub async fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the hub did not exit");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A failed test must not leave a hub running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
