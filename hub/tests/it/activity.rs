//! The activity feed (kept past the journal's trimming) and the board's analytics.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestHub};

async fn the_feed_outlives_the_journal_and_analytics_count_the_board(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        // Snapshots every 2 events, keeping no journal behind them.
        c.rooms.snapshot_every = 2;
        c.rooms.journal_retain = 0;
    })
    .await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let tasks = format!("/api/v1/workspaces/{ws}/tasks");
    let mut ids = Vec::new();
    for (title, priority) in [("one", "high"), ("two", "low"), ("three", "high")] {
        let (status, t) = api
            .post(
                &tasks,
                Some(&ada.token),
                json!({"title": title, "priority": priority}),
            )
            .await;
        assert_eq!(status, 201, "{t}");
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    let (status, _) = api
        .post(
            &format!("{tasks}/{}/complete", ids[0]),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    api.call(
        Method::PUT,
        &format!("{tasks}/{}", ids[1]),
        Some(&bob.token),
        Some(json!({"title": "two!"})),
    )
    .await;
    api.call(
        Method::DELETE,
        &format!("{tasks}/{}", ids[2]),
        Some(&ada.token),
        None,
    )
    .await;

    let feed = format!("/api/v1/workspaces/{ws}/activity");
    let (status, page) = api.get(&feed, &ada.token).await;
    assert_eq!(status, 200, "{page}");
    let kinds: Vec<&str> = page["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    // Newest first, back to the member joining (the team's setup).
    assert_eq!(
        kinds[..6],
        [
            "task_deleted",
            "task_updated",
            "task_completed",
            "task_created",
            "task_created",
            "task_created"
        ]
    );
    assert!(kinds.contains(&"member_joined"), "{kinds:?}");
    let done = &page["activity"][2];
    assert_eq!(
        (done["actor"].as_str(), done["subject"].as_str()),
        (Some(bob.id.as_str()), Some(ids[0].as_str()))
    );
    assert_eq!(page["activity"][1]["detail"]["fields"], json!(["title"]));
    // The journal behind the last snapshot is gone; the feed is not.
    let (_, status) = api
        .get(&format!("/api/v1/workspaces/{ws}/sync/status"), &ada.token)
        .await;
    assert!(status["oldest_offset"].as_u64().unwrap() > 1, "{status}");
    // Pages.
    let (_, first) = api.get(&format!("{feed}?limit=4"), &ada.token).await;
    let next = first["next"].as_u64().expect("a next page");
    let (_, second) = api
        .get(&format!("{feed}?limit=4&before={next}"), &ada.token)
        .await;
    let seqs: Vec<u64> = first["activity"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["activity"].as_array().unwrap())
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] == w[1] + 1), "{seqs:?}");

    let analytics = |what: &str| format!("/api/v1/workspaces/{ws}/analytics/{what}");
    let (status, o) = api.get(&analytics("overview"), &ada.token).await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["total"], 2);
    assert_eq!(
        (
            o["by_status"]["done"].as_u64(),
            o["by_status"]["todo"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(
        (
            o["by_priority"]["high"].as_u64(),
            o["by_priority"]["low"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(
        o["mean_completion_hours"]
            .as_f64()
            .is_some_and(|h| h >= 0.0),
        "{o}"
    );
    let (_, t) = api
        .get(&format!("{}?days=7", analytics("trends")), &ada.token)
        .await;
    let days = t["days"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    let today = days.last().unwrap();
    assert_eq!(
        (today["created"].as_u64(), today["completed"].as_u64()),
        (Some(3), Some(1)),
        "{t}"
    );
    let (_, p) = api.get(&analytics("productivity"), &ada.token).await;
    let by = |id: &str| {
        p["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (
            by(&bob.id)["completed"].as_u64(),
            by(&bob.id)["updated"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(by(&ada.id)["created"], 3);
    let (status, _) = api
        .get(&format!("{}?days=0", analytics("trends")), &ada.token)
        .await;
    assert_eq!(status, 400);
    let eve = api.register("eve").await;
    let (status, _) = api.get(&feed, &eve.token).await;
    assert_eq!(status, 404);
}

both_backends!(the_feed_outlives_the_journal_and_analytics_count_the_board);
