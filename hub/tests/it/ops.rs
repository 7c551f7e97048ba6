//! Health, readiness, metrics, and connection keepalive.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::support::{Backend, TestHub};

async fn health_ready_and_metrics_answer(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (status, body) = api.call(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = api.call(reqwest::Method::GET, "/ready", None, None).await;
    assert_eq!((status, body["database"].as_str()), (200, Some("up")));

    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let mut c = hub.ws(&ada).await;
    c.join(&ws, None).await;
    c.create_task(&ws, "x").await;
    let text = hub.metrics().await;
    for name in [
        "hub_connections_open 1",
        "hub_rooms_active 1",
        "hub_frames_in_total 2",
        "hub_frames_out_total",
        "hub_events_fanned_out_total",
        "hub_journal_append_seconds_bucket",
        "hub_room_mailbox_depth",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let (status, body) = api.call(reqwest::Method::GET, "/nowhere", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    hub.stop().await;
}

async fn a_silent_client_is_closed_but_a_live_one_is_kept(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        c.ws.ping_secs = 1;
        c.ws.idle_timeout_secs = 2;
    })
    .await;
    let ada = hub.api().register("ada").await;
    let url = format!(
        "{}/ws?token={}",
        hub.base.replacen("http", "ws", 1),
        ada.token
    );

    // Reading keeps the socket answering pings (tungstenite replies to them while reading).
    let (mut live, _) = tokio_tungstenite::connect_async(url.clone()).await.unwrap();
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(Some(msg)) = tokio::time::timeout_at(until, live.next()).await {
        match msg.unwrap() {
            Message::Ping(_) => pings += 1,
            Message::Close(c) => panic!("a live client was closed: {c:?}"),
            _ => {}
        }
    }
    assert!(pings >= 2, "the hub pings ({pings})");

    // Not reading means no pongs: closed as idle. (A raw socket: tungstenite would answer the
    // queued pings as soon as it read, racing the close.)
    assert_eq!(silent_close_code(&hub.base, &ada.token).await, Some(4000));
    drop(live);
    hub.stop().await;
}

both_backends!(
    health_ready_and_metrics_answer,
    a_silent_client_is_closed_but_a_live_one_is_kept
);

/// Upgrades by hand, stays silent for 3 s, then reads everything the hub sent and returns the
/// code of its close frame.
async fn silent_close_code(base: &str, token: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut bytes))
        .await
        .unwrap()
        .unwrap();
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    assert!(bytes.starts_with(b"HTTP/1.1 101"), "upgraded");
    let mut rest = &bytes[head_end..];
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let (len, header) = match rest[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(rest[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            n => (usize::from(n), 2),
        };
        let payload = &rest[header..header + len];
        if opcode == 8 {
            return Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
        rest = &rest[header + len..];
    }
    None
}
