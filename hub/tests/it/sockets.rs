//! Sockets the hub has given up on are gone within a bounded time, whatever the peer does:
//! a WebSocket client that stops reading, an HTTP client that never finishes its request, an
//! idle keep-alive connection. And the connection caps hold, per user and per address.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both_backends;
use crate::support::{Backend, Stalled, TestHub, WAIT, eventually, gauge, unthrottled};

/// Column `col` of the hub's side of a connection in `/proc/net/tcp`, if the kernel still has
/// the connection.
fn server_side_column(hub_port: u16, client_port: u16, col: usize) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let port = |addr: &str| {
            addr.rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
        };
        (port(cols.get(1)?) == Some(hub_port) && port(cols.get(2)?) == Some(client_port))
            .then(|| cols.get(col).map(|s| (*s).to_owned()))
            .flatten()
    })
}

/// The TCP state of the hub's side of a connection (`01` is ESTABLISHED).
fn server_side_state(hub_port: u16, client_port: u16) -> Option<String> {
    server_side_column(hub_port, client_port, 3)
}

/// The inode of the hub's side of a connection.
fn server_side_inode(hub_port: u16, client_port: u16) -> Option<u64> {
    server_side_column(hub_port, client_port, 9)?.parse().ok()
}

/// Whether the socket with this inode, open in this process (the hub runs in the test
/// process), has `TCP_NODELAY` set.
fn nodelay_of_inode(inode: u64) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        if std::fs::read_link(entry.path()).ok()?.to_string_lossy() != wanted {
            continue;
        }
        let fd: i32 = entry.file_name().to_string_lossy().parse().ok()?;
        // Borrowed for the call only: the hub owns the socket.
        let file = std::mem::ManuallyDrop::new(unsafe {
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
        });
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads one int option of an open socket into a local of the right size.
        let rc = unsafe {
            libc::getsockopt(
                file.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw mut value).cast(),
                &raw mut len,
            )
        };
        return (rc == 0).then_some(value != 0);
    }
    None
}

async fn a_client_that_stops_reading_loses_its_socket(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        unthrottled(c);
        c.ws.write_timeout_secs = 1;
    })
    .await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let addr = hub.hub.as_ref().expect("running").addr;
    let mut slow = Stalled::connect(addr, &bob.token).await;
    slow.send(&json!({"type": "join_workspace", "ref": 1, "workspace_id": ws}).to_string())
        .await;
    assert_eq!(
        server_side_state(addr.port(), slow.port).as_deref(),
        Some("01"),
        "established while it reads nothing"
    );
    // Ada talks until the hub gives up on bob, who never reads a byte.
    let blob = "x".repeat(32 * 1024);
    let mut sent = 0;
    while server_side_state(addr.port(), slow.port).is_some() {
        assert!(sent < 2000, "the hub never let go of the stalled socket");
        a.ok(json!({"type": "broadcast", "workspace_id": ws, "event": "blob", "data": blob}))
            .await;
        sent += 1;
        if sent > 100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Gone from the kernel's table, and from the hub's count (ada's connection remains).
    eventually("the gauge to count only ada", || async {
        gauge(&hub.metrics().await, "hub_connections_open") == 1.0
    })
    .await;
    // Bob's side sees the reset (or the end) once it reads again.
    let mut buf = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match slow.tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled client's connection ended");
    // The room carries on for the others.
    a.ok(json!({"type": "broadcast", "workspace_id": ws, "event": "still", "data": 1}))
        .await;
    hub.stop().await;
}

/// Reads until the server closes the connection; true if it did within `within`.
async fn closed_by_server(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn slow_or_silent_http_clients_are_cut_off(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| c.http.header_timeout_secs = 1).await;
    let addr = hub.hub.as_ref().expect("running").addr;
    // Nothing at all.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    // Half a request head, then nothing.
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Slow: ")
        .await
        .expect("write");
    // A whole request, then an idle keep-alive connection.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .expect("write");
    let mut response = [0u8; 512];
    let n = idle.read(&mut response).await.expect("response");
    assert!(response[..n].starts_with(b"HTTP/1.1 200"));
    for (what, tcp) in [
        ("silent", &mut silent),
        ("half", &mut half),
        ("idle", &mut idle),
    ] {
        assert!(
            closed_by_server(tcp, WAIT).await,
            "the {what} connection was not closed"
        );
    }
    // Ordinary requests are unaffected.
    let (status, _) = hub
        .api()
        .call(reqwest::Method::GET, "/health", None, None)
        .await;
    assert_eq!(status, 200);
    hub.stop().await;
}

/// The status and error code of a refused upgrade.
async fn upgrade_refusal(base: &str, token: &str) -> (u16, String) {
    let url = format!("{}/ws?token={token}", base.replacen("http", "ws", 1));
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => (101, String::new()),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body: serde_json::Value = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (resp.status().as_u16(), code)
        }
        Err(e) => panic!("upgrade failed oddly: {e}"),
    }
}

async fn connections_are_capped_per_user_and_per_address(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        c.ws.max_conns_per_user = 2;
        c.ws.max_conns_per_ip = 3;
    })
    .await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let bob = api.register("bob").await;
    let a1 = hub.ws(&ada).await;
    let _a2 = hub.ws(&ada).await;
    assert_eq!(
        upgrade_refusal(&hub.base, &ada.token).await,
        (429, "too_many_connections".to_owned())
    );
    let _b1 = hub.ws(&bob).await;
    // Three from this address: bob's second is refused by the address's cap.
    assert_eq!(
        upgrade_refusal(&hub.base, &bob.token).await,
        (429, "too_many_connections".to_owned())
    );
    // A closed connection gives its place back.
    drop(a1);
    eventually("a place to come back", || async {
        upgrade_refusal(&hub.base, &ada.token).await.0 == 101
    })
    .await;
    hub.stop().await;
}

/// Every accepted socket has Nagle's algorithm off: small frames go out at once instead of
/// waiting for the client's delayed ACK (which cost a 40 ms latency tail before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_sockets_send_small_frames_without_delay() {
    let hub = TestHub::start(Backend::Sqlite).await;
    let ada = hub.api().register("ada").await;
    let client = hub.ws(&ada).await;
    let hub_port = hub.hub.as_ref().expect("running").addr.port();
    let client_port = client.local_port();
    let inode = server_side_inode(hub_port, client_port).expect("the hub's side of the socket");
    assert_eq!(
        nodelay_of_inode(inode),
        Some(true),
        "TCP_NODELAY on the accepted socket"
    );
    hub.stop().await;
}

both_backends!(
    a_client_that_stops_reading_loses_its_socket,
    slow_or_silent_http_clients_are_cut_off,
    connections_are_capped_per_user_and_per_address,
);
