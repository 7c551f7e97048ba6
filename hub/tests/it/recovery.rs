//! Nothing acknowledged is lost: not when a room panics, not when the process is killed, and a
//! graceful stop leaves snapshots behind.

use serde_json::json;

use crate::both_backends;
use crate::support::{Api, Backend, Process, Storage, TestHub, eventually, stored_snapshot};

async fn a_room_made_to_panic_comes_back_with_its_tasks(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let mut last = 0;
    for i in 0..5 {
        last = a.create_task(&ws, &format!("t{i}")).await["offset"]
            .as_u64()
            .unwrap();
    }

    let (status, _) = api
        .post(&format!("/debug/rooms/{ws}/crash"), None, json!({}))
        .await;
    assert_eq!(status, 202);
    let resync = a.next_of("resync").await;
    assert_eq!(
        (resync["workspace_id"].as_str(), resync["offset"].as_u64()),
        (Some(ws.as_str()), Some(last))
    );

    // Still joined: catching up replays nothing, and writing works.
    let ack = a.join(&ws, Some(last)).await;
    assert_eq!(
        (ack["mode"].as_str(), ack["replayed"].as_u64()),
        (Some("replay"), Some(0))
    );
    a.create_task(&ws, "after the crash").await;
    let titles: Vec<String> = api
        .tasks(&ada, &ws)
        .await
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, ["t0", "t1", "t2", "t3", "t4", "after the crash"]);

    let metrics = hub.metrics().await;
    assert!(metrics.contains("hub_room_restarts_total 1"), "{metrics}");
    hub.stop().await;
}

async fn a_hub_killed_with_sigkill_still_has_every_acknowledged_task(backend: Backend) {
    let storage = Storage::new(backend).await;
    let http = reqwest::Client::new();
    let mut first = Process::start(&storage).await;
    let api = Api {
        base: &first.base,
        http: &http,
    };
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let mut a = crate::support::Client::connect(&first.base, &ada.token).await;
    a.join(&ws, None).await;
    let mut acked = Vec::new();
    for i in 0..25 {
        acked.push(a.create_task(&ws, &format!("t{i}")).await["task"]["id"].clone());
    }
    let task = acked[3].clone();
    a.ok(json!({"type": "task_update", "workspace_id": ws, "task_id": task, "base_version": 1, "changes": {"completed": true}})).await;
    first.signal("KILL");
    assert_eq!(first.exit_code().await, None, "killed by a signal");

    let mut second = Process::start(&storage).await;
    let api = Api {
        base: &second.base,
        http: &http,
    };
    let tasks = api.tasks(&ada, &ws).await;
    let ids: Vec<_> = tasks.iter().map(|t| t["id"].clone()).collect();
    assert_eq!(ids, acked);
    assert_eq!(tasks[3]["completed"], true);
    assert_eq!(tasks[3]["version"], 2);
    second.signal("TERM");
    assert_eq!(second.exit_code().await, Some(0));
}

async fn sigterm_closes_sockets_leaves_a_snapshot_and_exits_zero(backend: Backend) {
    let storage = Storage::new(backend).await;
    let http = reqwest::Client::new();
    let mut hub = Process::start(&storage).await;
    let api = Api {
        base: &hub.base,
        http: &http,
    };
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let mut a = crate::support::Client::connect(&hub.base, &ada.token).await;
    a.join(&ws, None).await;
    let mut last = 0;
    for i in 0..7 {
        last = a.create_task(&ws, &format!("t{i}")).await["offset"]
            .as_u64()
            .unwrap();
    }
    assert!(
        stored_snapshot(&storage.database_url(), &ws)
            .await
            .is_none(),
        "no snapshot yet (every 500 events or 30 s)"
    );

    hub.signal("TERM");
    assert_eq!(a.closed().await, Some(1001), "going away");
    assert_eq!(hub.exit_code().await, Some(0));
    let snap = stored_snapshot(&storage.database_url(), &ws)
        .await
        .expect("a final snapshot");
    assert_eq!(snap.seq, i64::try_from(last).unwrap());
    let state: serde_json::Value = serde_json::from_str(&snap.state).unwrap();
    assert_eq!(state["tasks"].as_object().unwrap().len(), 7);
}

async fn an_idle_room_stops_after_a_snapshot_and_restarts_on_use(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| c.rooms.room_idle_secs = 1).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let (status, _) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/tasks"),
            Some(&ada.token),
            json!({"title": "x"}),
        )
        .await;
    assert_eq!(status, 201);
    let router = hub.hub.as_ref().unwrap().state().router.clone();
    assert_eq!(router.active_rooms(), 1);
    eventually("the idle room stops", || {
        let r = router.clone();
        async move { r.active_rooms() == 0 }
    })
    .await;
    let snap = stored_snapshot(&hub.storage.database_url(), &ws)
        .await
        .expect("final snapshot on idle stop");
    assert_eq!(snap.seq, 1);
    assert_eq!(api.tasks(&ada, &ws).await.len(), 1);
    assert_eq!(router.active_rooms(), 1);
    hub.stop().await;
}

async fn a_room_snapshots_on_a_timer_after_changes(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| c.rooms.snapshot_secs = 1).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    for i in 0..3 {
        a.create_task(&ws, &format!("t{i}")).await;
    }
    let url = hub.storage.database_url();
    eventually("a timed snapshot at offset 3", || {
        let (url, ws) = (url.clone(), ws.clone());
        async move { stored_snapshot(&url, &ws).await.is_some_and(|s| s.seq == 3) }
    })
    .await;
    hub.stop().await;
}

both_backends!(
    a_room_snapshots_on_a_timer_after_changes,
    a_room_made_to_panic_comes_back_with_its_tasks,
    a_hub_killed_with_sigkill_still_has_every_acknowledged_task,
    sigterm_closes_sockets_leaves_a_snapshot_and_exits_zero,
    an_idle_room_stops_after_a_snapshot_and_restarts_on_use,
);
