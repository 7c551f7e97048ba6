//! A reconnecting client gets exactly what it missed, however far behind it is: long gaps are
//! replayed a page at a time (never overflowing the outbox, never mistaken for a slow
//! consumer), and a gap beyond the replay budget gets a snapshot.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, Client, TestHub, User, seed_journal, unthrottled};

/// `user` joins the workspace and goes away: the offset they have.
async fn join_and_leave(hub: &TestHub, user: &User, ws: &str) -> u64 {
    let mut c = hub.ws(user).await;
    c.join(ws, None).await["offset"].as_u64().expect("offset")
}

/// Sends `join_workspace` with `last_offset` and the `ref` given.
async fn send_join(c: &mut Client, ws: &str, last: u64, reference: &str) {
    c.send_text(
        json!({"type": "join_workspace", "ref": reference, "workspace_id": ws, "last_offset": last})
            .to_string(),
    )
    .await;
}

/// What came back for a join, up to its ack.
struct Joined {
    /// The offsets of the durable events, in the order they came.
    offsets: Vec<u64>,
    snapshot: Option<Value>,
    /// Errors answering other commands meanwhile.
    errors: Vec<Value>,
    ack: Value,
}

/// Reads until the ack of the join sent with `reference`.
async fn until_ack(c: &mut Client, reference: &str) -> Joined {
    let (mut offsets, mut snapshot, mut errors) = (Vec::new(), None, Vec::new());
    loop {
        let v = c.next().await;
        match v["type"].as_str() {
            Some("task_created" | "task_updated" | "category_created") => {
                offsets.push(v["offset"].as_u64().expect("offset"));
            }
            Some("snapshot") => snapshot = Some(v),
            Some("ack") if v["ref"] == reference => {
                return Joined {
                    offsets,
                    snapshot,
                    errors,
                    ack: v,
                };
            }
            Some("error") => errors.push(v),
            Some("user_presence") => {}
            other => panic!("unexpected {other:?} while joining: {v}"),
        }
    }
}

/// Rejoins with `last_offset` and reads until the join's ack.
async fn rejoin(c: &mut Client, ws: &str, last: u64) -> (Vec<u64>, Option<Value>, Value) {
    send_join(c, ws, last, "rejoin").await;
    let joined = until_ack(c, "rejoin").await;
    assert!(joined.errors.is_empty(), "{:?}", joined.errors);
    (joined.offsets, joined.snapshot, joined.ack)
}

async fn a_client_resumes_after_1024_5000_and_20000_missed_events(backend: Backend) {
    let tweak = |c: &mut hub::Config| {
        unthrottled(c);
        c.rooms.replay_max_events = 50_000;
        c.rooms.journal_retain = 50_000;
    };
    let hub = TestHub::start_with(backend, tweak).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut last = join_and_leave(&hub, &bob, &ws).await;
    // The first two gaps are written by a member through the room while bob is away. The
    // 20 000 are seeded into the journal with the hub stopped (writing them one commit at a time
    // would take minutes); the room replays them from the journal either way.
    let mut hub = Some(hub);
    for missed in [1024u64, 5000, 20_000] {
        let running = match hub.take() {
            Some(running) if missed < 20_000 => {
                running
                    .api()
                    .create_tasks(&ada, &ws, missed as usize, 16)
                    .await;
                running
            }
            Some(running) => {
                let storage = running.stop().await;
                seed_journal(&storage.database_url(), &ws, &ada.id, missed, true).await;
                TestHub::start_on(storage, tweak).await
            }
            None => unreachable!("the hub is put back below"),
        };
        let mut b = running.ws(&bob).await;
        let (offsets, snapshot, ack) = rejoin(&mut b, &ws, last).await;
        assert!(snapshot.is_none(), "a gap of {missed} is within the budget");
        let expected: Vec<u64> = (last + 1..=last + missed).collect();
        assert!(
            offsets == expected,
            "after missing {missed}: got {} events, from {:?} to {:?}",
            offsets.len(),
            offsets.first(),
            offsets.last()
        );
        assert_eq!(ack["result"]["mode"], "replay");
        assert_eq!(ack["result"]["replayed"], missed);
        assert_eq!(ack["result"]["offset"], last + missed);
        last += missed;
        // Joined: live events flow again, right after the replay.
        let (status, body) = running
            .api()
            .post(
                &format!("/api/v1/workspaces/{ws}/categories"),
                Some(&ada.token),
                serde_json::json!({"name": format!("after {missed}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let live = b.next_of("category_created").await;
        assert_eq!(live["offset"], last + 1);
        last += 1;
        drop(b);
        hub = Some(running);
    }
    if let Some(hub) = hub {
        hub.stop().await;
    }
}

async fn a_gap_beyond_the_replay_budget_gets_a_snapshot_with_everything(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        unthrottled(c);
        c.rooms.replay_max_events = 100;
    })
    .await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let last = join_and_leave(&hub, &bob, &ws).await;
    api.create_tasks(&ada, &ws, 150, 16).await;
    let mut b = hub.ws(&bob).await;
    let (offsets, snapshot, ack) = rejoin(&mut b, &ws, last).await;
    assert!(offsets.is_empty());
    let snapshot = snapshot.expect("a snapshot");
    assert_eq!(snapshot["tasks"].as_array().map(Vec::len), Some(150));
    assert_eq!(snapshot["offset"], last + 150);
    assert_eq!(ack["result"]["mode"], "snapshot");
    assert_eq!(ack["result"]["offset"], last + 150);
    hub.stop().await;
}

/// Events written while a long replay is in progress are not lost: they follow it, in order,
/// before the ack.
async fn writes_during_a_long_replay_follow_it_in_order(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        unthrottled(c);
        c.ws.outbox_frames = 64;
    })
    .await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let last = join_and_leave(&hub, &bob, &ws).await;
    api.create_tasks(&ada, &ws, 600, 16).await;
    let mut b = hub.ws(&bob).await;
    send_join(&mut b, &ws, last, "rejoin").await;
    // Writes go on while bob is being caught up (his outbox holds only 64 frames).
    let writer = {
        let base = hub.base.clone();
        let ada = ada.clone();
        let ws = ws.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let api = crate::support::Api {
                base: &base,
                http: &http,
            };
            api.create_tasks(&ada, &ws, 200, 4).await;
        })
    };
    let Joined { offsets, ack, .. } = until_ack(&mut b, "rejoin").await;
    let head = ack["result"]["offset"].as_u64().expect("offset");
    assert!(head >= last + 600);
    assert_eq!(offsets, (last + 1..=head).collect::<Vec<_>>());
    writer.await.expect("writer");
    // And everything after the ack arrives live, with no gap.
    let end = last + 800;
    let mut next = head + 1;
    while next <= end {
        let v = b.next_of("task_created").await;
        assert_eq!(v["offset"], next);
        next += 1;
    }
    hub.stop().await;
}

/// A second join of the same room while the first is still catching up is refused; the first
/// gets every event once, in order (two replays used to run side by side, interleaved).
async fn a_second_join_during_a_catch_up_is_refused_and_nothing_is_duplicated(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        unthrottled(c);
        c.ws.outbox_frames = 64;
    })
    .await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let last = join_and_leave(&hub, &bob, &ws).await;
    api.create_tasks(&ada, &ws, 300, 16).await;
    let mut b = hub.ws(&bob).await;
    for r in ["first", "second"] {
        send_join(&mut b, &ws, last, r).await;
    }
    let Joined {
        offsets,
        errors,
        ack,
        ..
    } = until_ack(&mut b, "first").await;
    let second = match errors.into_iter().find(|e| e["ref"] == "second") {
        Some(v) => v,
        None => b.next_where(|v| v["ref"] == "second").await,
    };
    assert_eq!(second["code"], "join_in_progress", "{second}");
    assert_eq!(offsets, (last + 1..=last + 300).collect::<Vec<_>>());
    assert_eq!(ack["result"]["replayed"], 300);
    hub.stop().await;
}

both_backends!(
    a_second_join_during_a_catch_up_is_refused_and_nothing_is_duplicated,
    a_client_resumes_after_1024_5000_and_20000_missed_events,
    a_gap_beyond_the_replay_budget_gets_a_snapshot_with_everything,
    writes_during_a_long_replay_follow_it_in_order,
);
