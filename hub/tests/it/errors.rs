//! Every kind of bad input gets its own stable error code, and the connection lives on.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::support::{Backend, Client, TestHub};

async fn expect_code(c: &mut Client, frame: String, code: &str) -> Value {
    c.send_text(frame).await;
    let err = c.next_of("error").await;
    assert_eq!(err["code"], code, "{err}");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    err
}

async fn each_bad_input_gets_its_own_code_and_the_connection_stays_open(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let vic = api.register("vic").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let other = api.create_workspace(&ada, "Other").await;
    api.add_member(&ada, &ws, &vic, "viewer").await;

    let mut c = hub.ws(&ada).await;
    expect_code(&mut c, "{not json".into(), "bad_json").await;
    expect_code(&mut c, r#"{"ref": 1}"#.into(), "bad_envelope").await;
    let err = expect_code(
        &mut c,
        r#"{"type": "fly", "ref": "r1"}"#.into(),
        "unknown_type",
    )
    .await;
    assert_eq!(err["ref"], "r1");
    expect_code(
        &mut c,
        json!({"type": "join_workspace", "ref": 2, "workspace_id": "nope"}).to_string(),
        "invalid_payload",
    )
    .await;
    expect_code(
        &mut c,
        json!({"type": "task_create", "ref": 3, "workspace_id": ws, "task": {"title": ""}})
            .to_string(),
        "invalid_payload",
    )
    .await;
    let huge = json!({"type": "broadcast", "ref": 4, "workspace_id": ws, "event": "x", "data": "a".repeat(70 * 1024)});
    let err = expect_code(&mut c, huge.to_string(), "frame_too_large").await;
    assert_eq!(err["ref"], 4);
    c.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(c.next_of("error").await["code"], "binary_not_supported");
    let err = expect_code(
        &mut c,
        json!({"type": "task_create", "ref": 5, "workspace_id": ws, "task": {"title": "x"}})
            .to_string(),
        "not_joined",
    )
    .await;
    assert_eq!(err["ref"], 5);

    c.join(&ws, None).await;
    let missing = json!({"type": "task_update", "ref": 6, "workspace_id": ws, "task_id": uuid::Uuid::now_v7(), "base_version": 1, "changes": {"title": "x"}});
    expect_code(&mut c, missing.to_string(), "task_not_found").await;
    let stranger = api.register("eve").await;
    let mut e = hub.ws(&stranger).await;
    let reply = e
        .request(json!({"type": "join_workspace", "workspace_id": ws}))
        .await;
    assert_eq!(reply["code"], "not_a_member");
    let reply = e
        .request(json!({"type": "join_workspace", "workspace_id": uuid::Uuid::now_v7()}))
        .await;
    assert_eq!(
        reply["code"], "not_a_member",
        "a missing workspace looks the same as a foreign one"
    );
    let reply = c
        .request(json!({"type": "leave_workspace", "workspace_id": other}))
        .await;
    assert_eq!(reply["code"], "not_joined");

    // The connection still works after all of that.
    let created = c.create_task(&ws, "still here").await;
    assert_eq!(created["task"]["title"], "still here");
    hub.stop().await;
}

async fn viewer_cannot_write(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let vic = api.register("vic").await;
    let ws = api.create_workspace(&ada, "Team").await;
    api.add_member(&ada, &ws, &vic, "viewer").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let task_id = a.create_task(&ws, "x").await["task"]["id"].clone();

    let mut v = hub.ws(&vic).await;
    assert_eq!(v.join(&ws, None).await["role"], "viewer");
    for cmd in [
        json!({"type": "task_create", "workspace_id": ws, "task": {"title": "no"}}),
        json!({"type": "task_update", "workspace_id": ws, "task_id": task_id, "base_version": 1, "changes": {"title": "no"}}),
        json!({"type": "task_delete", "workspace_id": ws, "task_id": task_id}),
    ] {
        let reply = v.request(cmd).await;
        assert_eq!(reply["code"], "forbidden", "{reply}");
    }
    let (status, body) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/tasks"),
            Some(&vic.token),
            json!({"title": "no"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    // The viewer still reads.
    assert_eq!(api.tasks(&vic, &ws).await.len(), 1);
    hub.stop().await;
}

async fn sending_too_fast_is_rate_limited_without_disconnecting(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let mut c = hub.ws(&ada).await;
    c.join(&ws, None).await;
    for i in 0..30 {
        c.send_text(json!({"type": "typing", "ref": 100 + i, "workspace_id": ws}).to_string())
            .await;
    }
    let limited = c.next_where(|v| v["type"] == "error").await;
    assert_eq!(limited["code"], "rate_limited");
    // The join and 19 typings used the burst of 20; the refusal names the command it refused.
    assert!(
        limited["ref"]
            .as_u64()
            .is_some_and(|r| (119..130).contains(&r)),
        "the refused command's ref: {limited}"
    );
    assert!(
        limited["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 1000),
        "{limited}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    c.clear();
    assert_eq!(
        c.create_task(&ws, "after the pause").await["task"]["title"],
        "after the pause"
    );
    hub.stop().await;
}

async fn websocket_upgrade_requires_a_valid_token(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let url = format!("{}/ws?token=garbage", hub.base.replacen("http", "ws", 1));
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
    let url = format!("{}/ws", hub.base.replacen("http", "ws", 1));
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
    hub.stop().await;
}

async fn a_connection_joins_at_most_64_rooms_and_refused_joins_take_no_slot(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        c.ws.rate_burst = 1000;
        c.limits.workspaces_per_hour = 100;
    })
    .await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let eve = api.register("eve").await;
    let foreign = api.create_workspace(&eve, "Eve's").await;
    let mut c = hub.ws(&ada).await;
    // Refused joins leave nothing behind.
    for _ in 0..3 {
        let reply = c
            .request(json!({"type": "join_workspace", "workspace_id": foreign}))
            .await;
        assert_eq!(reply["code"], "not_a_member");
    }
    let mut rooms = Vec::new();
    for i in 0..65 {
        rooms.push(api.create_workspace(&ada, &format!("w{i}")).await);
    }
    for ws in &rooms[..64] {
        c.join(ws, None).await;
    }
    let reply = c
        .request(json!({"type": "join_workspace", "workspace_id": rooms[64]}))
        .await;
    assert_eq!(reply["code"], "forbidden", "{reply}");
    // Nothing to leave where the join was refused.
    let reply = c
        .request(json!({"type": "leave_workspace", "workspace_id": foreign}))
        .await;
    assert_eq!(reply["code"], "not_joined");
    // Re-joining a joined room is fine; leaving frees a slot.
    c.join(&rooms[0], None).await;
    c.ok(json!({"type": "leave_workspace", "workspace_id": rooms[1]}))
        .await;
    c.join(&rooms[64], None).await;
    hub.stop().await;
}

both_backends!(
    a_connection_joins_at_most_64_rooms_and_refused_joins_take_no_slot,
    each_bad_input_gets_its_own_code_and_the_connection_stays_open,
    viewer_cannot_write,
    sending_too_fast_is_rate_limited_without_disconnecting,
    websocket_upgrade_requires_a_valid_token,
);
