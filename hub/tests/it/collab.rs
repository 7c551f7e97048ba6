//! Members of a workspace see each other and each other's work, live; reconnecting clients catch
//! up by offset.

use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestHub};

async fn two_users_see_each_others_presence_and_task_changes(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;

    let mut a = hub.ws(&ada).await;
    let joined = a.join(&ws, None).await;
    assert_eq!(joined["mode"], "snapshot");
    assert_eq!(joined["role"], "owner");
    let snapshot = a.next_of("snapshot").await;
    assert_eq!(snapshot["name"], "Team");

    let mut b = hub.ws(&bob).await;
    let joined = b.join(&ws, None).await;
    let present: Vec<_> = joined["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].clone())
        .collect();
    assert!(
        present.contains(&json!(ada.id)),
        "bob sees ada online: {joined}"
    );
    let online = a.next_of("user_presence").await;
    assert_eq!(
        (online["user_id"].as_str(), online["status"].as_str()),
        (Some(bob.id.as_str()), Some("online"))
    );

    b.ok(json!({"type": "presence_update", "workspace_id": ws, "status": "busy"}))
        .await;
    let busy = a
        .next_where(|v| v["type"] == "user_presence" && v["status"] == "busy")
        .await;
    assert_eq!(busy["user_id"], json!(bob.id));

    let created = a.create_task(&ws, "write the docs").await;
    let task_id = created["task"]["id"].as_str().unwrap().to_owned();
    let seen = b.next_of("task_created").await;
    assert_eq!(seen["task"]["title"], "write the docs");
    assert_eq!(seen["workspace_id"], json!(ws));
    assert_eq!(seen["offset"], created["offset"]);

    let updated = b
        .ok(
            json!({"type": "task_update", "workspace_id": ws, "task_id": task_id, "base_version": 1,
                   "changes": {"status": "in_progress", "assignee": bob.id}}),
        )
        .await;
    assert_eq!(updated["task"]["version"], 2);
    let seen = a.next_of("task_updated").await;
    assert_eq!(seen["task"]["status"], "in_progress");
    assert_eq!(seen["changes"]["assignee"], json!(bob.id));
    assert_eq!(seen["by"], json!(bob.id));

    b.ok(json!({"type": "typing", "workspace_id": ws, "task_id": task_id}))
        .await;
    let typing = a.next_of("typing").await;
    assert_eq!(typing["user_id"], json!(bob.id));

    b.ok(json!({"type": "broadcast", "workspace_id": ws, "event": "cursor", "data": {"x": 3}}))
        .await;
    for c in [&mut a, &mut b] {
        let got = c.next_of("broadcast").await;
        assert_eq!(
            (got["event"].as_str(), got["data"]["x"].as_i64()),
            (Some("cursor"), Some(3))
        );
    }

    a.ok(json!({"type": "task_delete", "workspace_id": ws, "task_id": task_id}))
        .await;
    assert_eq!(b.next_of("task_deleted").await["task_id"], json!(task_id));

    b.ok(json!({"type": "leave_workspace", "workspace_id": ws}))
        .await;
    let gone = a
        .next_where(|v| v["type"] == "user_presence" && v["status"] == "offline")
        .await;
    assert_eq!(gone["user_id"], json!(bob.id));
    hub.stop().await;
}

async fn a_stale_base_version_is_reported_as_a_conflict(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let task_id = a.create_task(&ws, "x").await["task"]["id"].clone();
    a.ok(json!({"type": "task_update", "workspace_id": ws, "task_id": task_id, "base_version": 1, "changes": {"title": "y"}}))
        .await;
    let reply = a
        .request(json!({"type": "task_update", "workspace_id": ws, "task_id": task_id, "base_version": 1, "changes": {"title": "z"}}))
        .await;
    assert_eq!(reply["code"], "version_conflict");
    let conflict = a.next_of("conflict_detected").await;
    assert_eq!(conflict["current"]["title"], "y");
    assert_eq!(conflict["current"]["version"], 2);
    assert_eq!(conflict["fields"], json!(["title"]));
    hub.stop().await;
}

async fn rest_writes_reach_members_live(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut b = hub.ws(&bob).await;
    b.join(&ws, None).await;

    let (status, task) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/tasks"),
            Some(&ada.token),
            json!({"title": "from REST", "priority": "high"}),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let seen = b.next_of("task_created").await;
    assert_eq!(seen["task"]["id"], task["id"]);
    assert_eq!(seen["task"]["priority"], "high");

    let (status, done) = api
        .post(
            &format!(
                "/api/v1/workspaces/{ws}/tasks/{}/complete",
                task["id"].as_str().unwrap()
            ),
            Some(&ada.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["completed"].as_bool(), done["status"].as_str()),
        (Some(true), Some("done"))
    );
    let seen = b.next_of("task_updated").await;
    assert_eq!(seen["task"]["completed"], true);

    let path = format!(
        "/api/v1/workspaces/{ws}/tasks/{}",
        task["id"].as_str().unwrap()
    );
    let (status, stale) = api
        .call(
            reqwest::Method::PUT,
            &path,
            Some(&ada.token),
            Some(json!({"title": "t", "base_version": 1})),
        )
        .await;
    assert_eq!(
        (status, stale["error"]["code"].as_str()),
        (409, Some("version_conflict")),
        "{stale}"
    );
    let (status, _) = api
        .call(reqwest::Method::DELETE, &path, Some(&ada.token), None)
        .await;
    assert_eq!(status, 204);
    b.next_of("task_deleted").await;
    assert!(api.tasks(&ada, &ws).await.is_empty());
    hub.stop().await;
}

async fn reconnect_with_last_offset_replays_exactly_the_missed_events(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let mut b = hub.ws(&bob).await;
    let joined = b.join(&ws, None).await;
    let mut last = joined["offset"].as_u64().unwrap();
    a.create_task(&ws, "seen").await;
    last = last.max(b.next_of("task_created").await["offset"].as_u64().unwrap());
    drop(b);

    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(
            a.create_task(&ws, &format!("missed {i}")).await["offset"]
                .as_u64()
                .unwrap(),
        );
    }
    let mut b = hub.ws(&bob).await;
    b.send_text(
        json!({"type": "join_workspace", "ref": "rejoin", "workspace_id": ws, "last_offset": last})
            .to_string(),
    )
    .await;
    let mut replayed = Vec::new();
    let ack = loop {
        let v = b.next().await;
        match v["type"].as_str() {
            Some("task_created") => replayed.push(v["offset"].as_u64().unwrap()),
            Some("ack") => break v,
            Some("user_presence") => {}
            other => panic!("unexpected {other:?}: {v}"),
        }
    };
    assert_eq!(replayed, missed);
    assert_eq!(ack["result"]["mode"], "replay");
    assert_eq!(ack["result"]["replayed"], 3);
    assert_eq!(ack["result"]["offset"].as_u64(), missed.last().copied());

    // Nothing missed: nothing replayed.
    let mut c = hub.ws(&bob).await;
    let ack = c.join(&ws, missed.last().copied()).await;
    assert_eq!(
        (ack["mode"].as_str(), ack["replayed"].as_u64()),
        (Some("replay"), Some(0))
    );
    hub.stop().await;
}

async fn a_client_behind_the_journal_gets_a_snapshot(backend: Backend) {
    // Snapshot every 2 events and keep no journal behind it: old offsets fall off the journal.
    let hub = TestHub::start_with(backend, |c| {
        c.rooms.snapshot_every = 2;
        c.rooms.journal_retain = 0;
    })
    .await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    for i in 0..6 {
        a.create_task(&ws, &format!("t{i}")).await;
    }
    // The room's in-memory replay buffer still has everything; restart the hub to lose it.
    drop(a);
    let storage = hub.stop().await;
    let hub = TestHub::start_on(storage, |c| {
        c.rooms.snapshot_every = 2;
        c.rooms.journal_retain = 0;
    })
    .await;
    let mut a = hub.ws(&ada).await;
    let ack = a.join(&ws, Some(1)).await;
    assert_eq!(ack["mode"], "snapshot");
    let snap = a.next_of("snapshot").await;
    assert_eq!(snap["tasks"].as_array().unwrap().len(), 6);
    assert_eq!(snap["offset"], 6);
    // The room keeps the snapshot it built for reuse; a change makes the next one new.
    a.create_task(&ws, "t6").await;
    let mut b = hub.ws(&ada).await;
    assert_eq!(b.join(&ws, Some(1)).await["mode"], "snapshot");
    let snap = b.next_of("snapshot").await;
    assert_eq!(snap["tasks"].as_array().unwrap().len(), 7);
    assert_eq!(snap["offset"], 7);
    hub.stop().await;
}

both_backends!(
    two_users_see_each_others_presence_and_task_changes,
    a_stale_base_version_is_reported_as_a_conflict,
    rest_writes_reach_members_live,
    reconnect_with_last_offset_replays_exactly_the_missed_events,
    a_client_behind_the_journal_gets_a_snapshot,
);

/// A member that stops reading is closed with 4008 once its outbox is full; the room and the
/// other members carry on, and the slow member resumes by offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_disconnected_and_never_slows_the_room() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let hub = TestHub::start_with(Backend::Sqlite, |c| {
        c.ws.outbox_frames = 16;
        c.ws.rate_per_sec = 100_000;
        c.ws.rate_burst = 100_000;
    })
    .await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;

    // Bob joins, then stops reading.
    let mut slow = hub.ws(&bob).await;
    let joined = slow.join(&ws, None).await;
    let bob_offset = joined["offset"].as_u64().unwrap();

    // Ada floods the room, one broadcast per ack so that she herself keeps up.
    let url = format!(
        "{}/ws?token={}",
        hub.base.replacen("http", "ws", 1),
        ada.token
    );
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut sink, mut stream) = socket.split();
    let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Text(t) = msg
                && t.contains("\"type\":\"ack\"")
            {
                let _ = acked.send(());
            }
        }
    });
    sink.send(Message::text(
        json!({"type": "join_workspace", "ref": 0, "workspace_id": ws}).to_string(),
    ))
    .await
    .unwrap();
    acks.recv().await.unwrap();
    let blob = "x".repeat(60 * 1024);
    let metrics = hub.hub.as_ref().unwrap().state().metrics.clone();
    for i in 1..=1000 {
        if metrics
            .handle
            .render()
            .contains("hub_slow_consumers_total 1")
        {
            break;
        }
        let frame = json!({"type": "broadcast", "ref": i, "workspace_id": ws, "event": "blob", "data": blob});
        sink.send(Message::text(frame.to_string())).await.unwrap();
        tokio::time::timeout(crate::support::WAIT, acks.recv())
            .await
            .expect("ack in time")
            .expect("ada stays connected");
    }
    // A durable write after the flood still succeeds for everyone who keeps up.
    let (status, _) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/tasks"),
            Some(&ada.token),
            json!({"title": "after"}),
        )
        .await;
    assert_eq!(status, 201);

    assert_eq!(
        slow.closed().await,
        Some(4008),
        "the slow member is told why"
    );
    let metrics = hub.metrics().await;
    assert!(metrics.contains("hub_slow_consumers_total 1"), "{metrics}");

    // Bob comes back and catches up from his offset.
    let mut again = hub.ws(&bob).await;
    let ack = again.join(&ws, Some(bob_offset)).await;
    assert_eq!(ack["mode"], "replay");
    let created = again.next_of("task_created").await;
    assert_eq!(created["task"]["title"], "after");

    sink.close().await.unwrap();
    reader.await.unwrap();
    hub.stop().await;
}
