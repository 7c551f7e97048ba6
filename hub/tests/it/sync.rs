//! Offline sync: a queued batch merged field by field by the declared rules, with the ledger to
//! prove it; the same batch twice applies once; refusals op by op; pull and status; settling
//! ledger entries; the same push over WebSocket.

use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub};

fn ago(minutes: i64) -> String {
    (Utc::now() - Duration::minutes(minutes)).to_rfc3339()
}

fn statuses(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {body}"))
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn an_offline_batch_is_merged_by_the_rules_once_and_settled_by_choice(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let mut ids = Vec::new();
    for title in ["shared", "doomed", "edited then deleted"] {
        let created = a.create_task(&ws, title).await;
        ids.push(created["task"]["id"].as_str().unwrap().to_owned());
    }
    let (shared, doomed, edited) = (&ids[0], &ids[1], &ids[2]);

    // While bob is offline, ada renames and completes "shared", deletes "doomed" and edits
    // "edited then deleted".
    let update = |id: &str, base: u64, changes: Value| json!({"type": "task_update", "workspace_id": ws, "task_id": id, "base_version": base, "changes": changes});
    a.ok(update(shared, 1, json!({"title": "ada's title"})))
        .await;
    a.ok(update(shared, 2, json!({"completed": true}))).await;
    a.ok(json!({"type": "task_delete", "workspace_id": ws, "task_id": doomed}))
        .await;
    a.ok(update(edited, 1, json!({"description": "ada's notes"})))
        .await;

    // Bob's queue, made before ada's changes (by his clock), based on version 1 of everything.
    let new_id = uuid::Uuid::now_v7().to_string();
    let batch = json!({"ops": [
        {"op_id": "b1", "client_ts": ago(30), "kind": "task_update", "task_id": shared,
         "base_version": 1, "changes": {"title": "bob's title", "priority": "high"}},
        // Stale and by a clock in the future: the completion stands anyway.
        {"op_id": "b2", "client_ts": (Utc::now() + Duration::hours(5)).to_rfc3339(),
         "kind": "task_update", "task_id": shared, "base_version": 1, "changes": {"completed": false}},
        {"op_id": "b3", "client_ts": ago(20), "kind": "task_create",
         "task": {"id": new_id, "title": "made offline"}},
        {"op_id": "b4", "client_ts": ago(20), "kind": "task_rename", "task_id": shared},
        {"op_id": "b5", "client_ts": ago(20), "kind": "task_update", "task_id": doomed,
         "base_version": 1, "changes": {"title": "saving it"}},
        {"op_id": "b6", "client_ts": ago(20), "kind": "task_delete", "task_id": edited,
         "base_version": 1},
        {"op_id": "b7", "workspace_id": uuid::Uuid::now_v7(), "client_ts": ago(20),
         "kind": "task_delete", "task_id": shared, "base_version": 2},
    ]});
    let push = format!("/api/v1/workspaces/{ws}/sync/push");
    let (status, first) = api.post(&push, Some(&bob.token), batch.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        statuses(&first),
        [
            "merged",
            "conflicted",
            "applied",
            "refused",
            "conflicted",
            "merged",
            "refused"
        ]
    );
    let results = first["results"].as_array().unwrap();
    assert_eq!(results[3]["code"], "invalid_payload");
    assert_eq!(results[3]["op_id"], "b4");
    assert!(
        results[6]["message"]
            .as_str()
            .unwrap()
            .contains("workspace_id"),
        "{first}"
    );

    // The rules, field by field: ada's newer title stays (bob's is in the ledger), bob's
    // priority (which nobody else touched) applies, the completion stands.
    let all = api.tasks(&ada, &ws).await;
    let now_shared = all.iter().find(|t| &t["id"] == shared).unwrap();
    assert_eq!(now_shared["title"], "ada's title");
    assert_eq!(now_shared["priority"], "high");
    assert_eq!(now_shared["completed"], true);
    assert!(all.iter().any(|t| t["id"] == new_id.as_str()));
    assert!(
        !all.iter().any(|t| &t["id"] == edited),
        "the delete wins over ada's edit"
    );

    let (_, ledger) = api
        .get(&format!("/api/v1/workspaces/{ws}/conflicts"), &ada.token)
        .await;
    let entries = ledger["conflicts"].as_array().unwrap();
    let mut seen: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["rule"].as_str().unwrap().to_owned(),
                e["op_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("status".into(), "completion_wins".into(), "b2".into()),
            ("task".into(), "delete_wins".into(), "b5".into()),
            ("task".into(), "delete_wins".into(), "b6".into()),
            ("title".into(), "last_writer_wins".into(), "b1".into()),
        ]
    );
    let title_entry = entries.iter().find(|e| e["field"] == "title").unwrap();
    assert_eq!(
        (title_entry["kept"].as_str(), title_entry["lost"].as_str()),
        (Some("ada's title"), Some("bob's title"))
    );
    assert_eq!(title_entry["lost_by"], json!(bob.id));

    // The same batch again: nothing applies twice.
    let (_, status_before) = api
        .get(&format!("/api/v1/workspaces/{ws}/sync/status"), &ada.token)
        .await;
    let (status, again) = api.post(&push, Some(&bob.token), batch).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        statuses(&again),
        [
            "duplicate",
            "duplicate",
            "duplicate",
            "refused",
            "duplicate",
            "duplicate",
            "refused"
        ]
    );
    let (_, status_after) = api
        .get(&format!("/api/v1/workspaces/{ws}/sync/status"), &ada.token)
        .await;
    assert_eq!(status_before["offset"], status_after["offset"]);
    assert_eq!(status_after["open_conflicts"], 4);
    assert_eq!(again["results"][0]["offset"], first["results"][0]["offset"]);

    // Pull: the events since an offset, the merge's ledger entries in them.
    let since = first["results"][0]["offset"].as_u64().unwrap() - 1;
    let (status, pulled) = api
        .get(
            &format!("/api/v1/workspaces/{ws}/sync/pull?since={since}"),
            &bob.token,
        )
        .await;
    assert_eq!(status, 200, "{pulled}");
    assert_eq!(pulled["mode"], "events");
    let events = pulled["events"].as_array().unwrap();
    assert_eq!(events[0]["type"], "task_updated");
    assert_eq!(events[0]["offset"], since + 1);
    assert_eq!(events[0]["sync"]["op_id"], "b1");
    assert_eq!(
        events[0]["changes"],
        json!({"priority": "high"}),
        "only what was applied"
    );
    assert_eq!(pulled["offset"], status_after["offset"]);
    assert_eq!(pulled["more"], false);
    let (status, _) = api
        .get(
            &format!("/api/v1/workspaces/{ws}/sync/pull?since=100000"),
            &bob.token,
        )
        .await;
    assert_eq!(status, 400);

    // Settling: bob's title back; the deleted task back; an edit of a task that is gone can
    // only be dismissed.
    a.clear();
    let resolve = |id: &Value| {
        format!(
            "/api/v1/workspaces/{ws}/conflicts/{}/resolve",
            id.as_str().unwrap()
        )
    };
    let (status, settled) = api
        .post(
            &resolve(&title_entry["id"]),
            Some(&ada.token),
            json!({"choice": "lost"}),
        )
        .await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["task"]["title"], "bob's title");
    let seen = a.next_of("conflict_resolved").await;
    assert_eq!(seen["conflict_id"], title_entry["id"]);
    assert_eq!(seen["task"]["title"], "bob's title");
    let (status, twice) = api
        .post(
            &resolve(&title_entry["id"]),
            Some(&ada.token),
            json!({"choice": "lost"}),
        )
        .await;
    assert_eq!(
        (status, twice["error"]["code"].as_str()),
        (409, Some("invalid_transition"))
    );
    let restore = entries.iter().find(|e| e["op_id"] == "b6").unwrap();
    let (status, back) = api
        .post(
            &resolve(&restore["id"]),
            Some(&ada.token),
            json!({"choice": "lost"}),
        )
        .await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["task"]["description"], "ada's notes");
    assert!(
        api.tasks(&ada, &ws)
            .await
            .iter()
            .any(|t| &t["id"] == edited)
    );
    let gone = entries.iter().find(|e| e["op_id"] == "b5").unwrap();
    let (status, err) = api
        .post(
            &resolve(&gone["id"]),
            Some(&ada.token),
            json!({"choice": "lost"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("task_not_found"))
    );
    let (status, _) = api
        .post(
            &resolve(&gone["id"]),
            Some(&ada.token),
            json!({"choice": "kept"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, open) = api
        .get(&format!("/api/v1/workspaces/{ws}/conflicts"), &ada.token)
        .await;
    assert_eq!(open["conflicts"].as_array().unwrap().len(), 1);
    let (_, done) = api
        .get(
            &format!("/api/v1/workspaces/{ws}/conflicts?status=resolved"),
            &ada.token,
        )
        .await;
    assert_eq!(done["conflicts"].as_array().unwrap().len(), 3);
    assert!(done["conflicts"][0]["resolved"]["choice"].is_string());
}

async fn pushes_are_refused_op_by_op_and_work_over_websocket(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, vic, ws) = api.team("viewer").await;
    let eve = api.register("eve").await;
    let task_id = uuid::Uuid::now_v7();
    let op = |op_id: &str| {
        json!({"op_id": op_id, "client_ts": ago(1), "kind": "task_create",
                                  "task": {"id": task_id, "title": "offline"}})
    };
    let push = format!("/api/v1/workspaces/{ws}/sync/push");
    for (user, code) in [(&vic, "forbidden"), (&eve, "not_a_member")] {
        let (status, body) = api
            .post(
                &push,
                Some(&user.token),
                json!({"ops": [op("x1"), op("x2")]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        for r in body["results"].as_array().unwrap() {
            assert_eq!(
                (r["status"].as_str(), r["code"].as_str()),
                (Some("refused"), Some(code)),
                "{body}"
            );
        }
    }
    let (status, _) = api.post(&push, Some(&ada.token), json!({"ops": []})).await;
    assert_eq!(status, 400);
    let too_many: Vec<Value> = (0..101).map(|i| op(&format!("o{i}"))).collect();
    let (status, _) = api
        .post(&push, Some(&ada.token), json!({"ops": too_many}))
        .await;
    assert_eq!(status, 400);

    // Over WebSocket: the same batch, the same results, in the ack.
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let ack = a
        .ok(json!({"type": "sync_push", "workspace_id": ws, "ops": [op("w1"), {"op_id": "w2"}]}))
        .await;
    let statuses: Vec<&str> = ack["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["applied", "refused"]);
    let created = a.next_of("task_created").await;
    assert_eq!(created["sync"]["op_id"], "w1");
    let again = a
        .ok(json!({"type": "sync_push", "workspace_id": ws, "ops": [op("w1")]}))
        .await;
    assert_eq!(again["results"][0]["status"], "duplicate");
    assert_eq!(again["results"][0]["offset"], ack["results"][0]["offset"]);
    let (_, status) = api
        .get(&format!("/api/v1/workspaces/{ws}/sync/status"), &ada.token)
        .await;
    assert_eq!(status["offset"], ack["offset"]);
    let (code, _) = api
        .call(
            Method::GET,
            &format!("/api/v1/workspaces/{ws}/sync/status"),
            Some(&eve.token),
            None,
        )
        .await;
    assert_eq!(code, 404);
}

/// A client that was away longer than the journal reaches back gets the whole state.
async fn a_pull_from_before_the_journal_gets_a_snapshot(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        c.rooms.snapshot_every = 2;
        c.rooms.journal_retain = 0;
    })
    .await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    api.create_tasks(&ada, &ws, 6, 1).await;
    let path = format!("/api/v1/workspaces/{ws}/sync/status");
    crate::support::eventually("the journal is trimmed behind a snapshot", || {
        let (api, path, token) = (hub.api(), path.clone(), bob.token.clone());
        async move {
            let (_, s) = api.get(&path, &token).await;
            s["oldest_offset"].as_u64().is_some_and(|o| o > 1)
        }
    })
    .await;
    let (_, status) = api.get(&path, &bob.token).await;
    let (code, pulled) = api
        .get(
            &format!("/api/v1/workspaces/{ws}/sync/pull?since=0"),
            &bob.token,
        )
        .await;
    assert_eq!(code, 200, "{pulled}");
    assert_eq!(pulled["mode"], "snapshot");
    assert_eq!(
        pulled["snapshot"]["tasks"].as_array().map(Vec::len),
        Some(6)
    );
    assert_eq!(pulled["offset"], status["offset"]);
    assert_eq!(pulled["snapshot"]["offset"], status["offset"]);
}

/// Sync has its own allowance per user (50 per 10 s by default): the 51st call in a burst is
/// refused with `Retry-After`, and other REST calls are not.
async fn sync_calls_have_their_own_allowance(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let status = format!("{}/api/v1/workspaces/{ws}/sync/status", hub.base);
    // A burst of 50, refilled at 5 a second: refused after 50 and a few more.
    let mut refused = None;
    for n in 0..100 {
        let r = hub
            .http
            .get(&status)
            .bearer_auth(&ada.token)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            refused = Some((n, r));
            break;
        }
        assert_eq!(r.status(), 200, "call {n}");
    }
    let (n, refused) = refused.expect("a refusal");
    assert!((50..=70).contains(&n), "refused at call {n}");
    assert!(refused.headers().get("retry-after").is_some());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    let (code, _) = api
        .get(&format!("/api/v1/workspaces/{ws}/tasks"), &ada.token)
        .await;
    assert_eq!(code, 200);
}

both_backends!(
    sync_calls_have_their_own_allowance,
    a_pull_from_before_the_journal_gets_a_snapshot,
    an_offline_batch_is_merged_by_the_rules_once_and_settled_by_choice,
    pushes_are_refused_op_by_op_and_work_over_websocket,
);
