//! Pipelined writes in one room: a client that does not wait for its acks gets them (and every
//! member the events) strictly in offset order, each after its commit; an append the database
//! refuses fails it and every write queued behind it, and the room starts over from the store.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub, unthrottled};

/// Runs SQL on the hub's database (to make it refuse some appends).
async fn exec(backend: Backend, url: &str, sql: &str) {
    match backend {
        Backend::Postgres => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                .await
                .expect("connect");
            sqlx::Executor::execute(&mut c, sqlx::AssertSqlSafe(sql.to_owned()))
                .await
                .expect("sql");
        }
        Backend::Sqlite => {
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
                .await
                .expect("connect");
            sqlx::Executor::execute(&mut c, sqlx::AssertSqlSafe(sql.to_owned()))
                .await
                .expect("sql");
        }
    }
}

async fn writes_sent_without_waiting_are_acknowledged_and_broadcast_in_offset_order(
    backend: Backend,
) {
    let hub = TestHub::start_with(backend, unthrottled).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut a = hub.ws(&ada).await;
    let mut b = hub.ws(&bob).await;
    let base = a.join(&ws, None).await["offset"].as_u64().expect("offset");
    b.join(&ws, None).await;
    a.clear();
    b.clear();

    let n = 100;
    for i in 0..n {
        a.send_text(
            json!({"type": "task_create", "ref": i, "workspace_id": ws, "task": {"title": format!("t{i}")}})
                .to_string(),
        )
        .await;
    }
    // Ada: each event before its ack, acks in the order sent, offsets 1..=n.
    let mut seen_events = HashMap::new();
    let mut acked = Vec::new();
    while acked.len() < n {
        let f = a.next().await;
        match f["type"].as_str() {
            Some("task_created") => {
                seen_events.insert(f["offset"].as_u64().expect("offset"), ());
            }
            Some("ack") => {
                let offset = f["result"]["offset"].as_u64().expect("offset");
                assert!(
                    seen_events.contains_key(&offset),
                    "the event went out before the ack"
                );
                acked.push((f["ref"].as_u64().expect("ref"), offset));
            }
            Some("user_presence" | "snapshot") => {}
            _ => panic!("unexpected frame {f}"),
        }
    }
    let expected: Vec<(u64, u64)> = (0..n as u64).map(|i| (i, base + i + 1)).collect();
    assert_eq!(acked, expected, "acks in order, offsets without gaps");
    // Bob: the same events, in offset order.
    let mut offsets = Vec::new();
    while offsets.len() < n {
        let f = b.next_where(|v| v["type"] == "task_created").await;
        offsets.push(f["offset"].as_u64().expect("offset"));
    }
    assert_eq!(offsets, (base + 1..=base + n as u64).collect::<Vec<_>>());
}

async fn a_refused_append_fails_it_and_the_writes_behind_it_and_the_room_starts_over(
    backend: Backend,
) {
    let hub = TestHub::start_with(backend, unthrottled).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut a = hub.ws(&ada).await;
    let mut b = hub.ws(&bob).await;
    let base = a.join(&ws, None).await["offset"].as_u64().expect("offset");
    b.join(&ws, None).await;
    // The database refuses any journal entry holding "boom".
    let url = hub.storage.database_url();
    match backend {
        Backend::Postgres => {
            exec(
                backend,
                &url,
                "CREATE FUNCTION refuse_boom() RETURNS trigger AS $$ BEGIN \
                 IF NEW.event LIKE '%boom%' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; \
                 END $$ LANGUAGE plpgsql",
            )
            .await;
            exec(
                backend,
                &url,
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON room_journal \
                 FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
            )
            .await;
        }
        Backend::Sqlite => {
            exec(
                backend,
                &url,
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON room_journal \
                 WHEN NEW.event LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'boom'); END",
            )
            .await;
        }
    }

    let titles = ["a", "b", "boom", "c", "d"];
    for (i, t) in titles.iter().enumerate() {
        a.send_text(
            json!({"type": "task_create", "ref": i, "workspace_id": ws, "task": {"title": t}})
                .to_string(),
        )
        .await;
    }
    let mut replies: Vec<Value> = Vec::new();
    for i in 0..titles.len() {
        replies.push(
            a.next_where(|v| v["ref"] == json!(i) && (v["type"] == "ack" || v["type"] == "error"))
                .await,
        );
    }
    let outcome: Vec<(&str, Option<u64>)> = replies
        .iter()
        .map(|r| {
            let kind = r["type"].as_str().unwrap_or("");
            let code = if kind == "ack" {
                "ack"
            } else {
                r["code"].as_str().unwrap_or("")
            };
            (code, r["result"]["offset"].as_u64())
        })
        .collect();
    assert_eq!(
        outcome,
        [
            ("ack", Some(base + 1)),
            ("ack", Some(base + 2)),
            ("unavailable", None),
            ("unavailable", None),
            ("unavailable", None),
        ],
        "what was before the refused append is kept, it and what came after fail"
    );
    // The room starts over from the store and says so; Bob heard of a and b only.
    let resync = b.next_of("resync").await;
    assert_eq!(resync["offset"], base + 2);
    let created: Vec<Value> = b
        .pending_frames()
        .into_iter()
        .filter(|v| v["type"] == "task_created")
        .collect();
    let titles_seen: Vec<&str> = created
        .iter()
        .filter_map(|v| v["task"]["title"].as_str())
        .collect();
    assert_eq!(titles_seen, ["a", "b"]);
    assert_eq!(a.next_of("resync").await["offset"], base + 2);
    let tasks = api.tasks(&ada, &ws).await;
    let stored: Vec<&str> = tasks.iter().filter_map(|t| t["title"].as_str()).collect();
    assert_eq!(stored, ["a", "b"]);
    // Writing goes on from the store's head.
    let next = a.create_task(&ws, "e").await;
    assert_eq!(next["offset"], base + 3);
}

async fn a_broadcast_sent_after_a_write_reaches_members_after_that_writes_event(backend: Backend) {
    let hub = TestHub::start_with(backend, unthrottled).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut a = hub.ws(&ada).await;
    let mut b = hub.ws(&bob).await;
    a.join(&ws, None).await;
    b.join(&ws, None).await;
    b.clear();
    for round in 0..10 {
        // A task, then an event about it, in one write: members see them in that order.
        let frames = vec![
            json!({"type": "task_create", "workspace_id": ws, "task": {"title": format!("t{round}")}})
                .to_string(),
            json!({"type": "broadcast", "workspace_id": ws, "event": "made", "data": {"round": round}})
                .to_string(),
        ];
        a.send_together(frames).await;
        let first = b
            .next_where(|v| v["type"] == "task_created" || v["type"] == "broadcast")
            .await;
        let second = b
            .next_where(|v| v["type"] == "task_created" || v["type"] == "broadcast")
            .await;
        assert_eq!(
            (first["type"].as_str(), second["type"].as_str()),
            (Some("task_created"), Some("broadcast")),
            "round {round}"
        );
    }
}

both_backends!(
    a_broadcast_sent_after_a_write_reaches_members_after_that_writes_event,
    writes_sent_without_waiting_are_acknowledged_and_broadcast_in_offset_order,
    a_refused_append_fails_it_and_the_writes_behind_it_and_the_room_starts_over,
);
