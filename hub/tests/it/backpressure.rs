//! Per-class backpressure: a member that stops reading never slows its room or its neighbours.
//! While it is behind, droppable frames are skipped for it, presence is conflated to the latest
//! value per user, and what must arrive still arrives, in order.

use serde_json::{Value, json};

use crate::support::{Backend, Stalled, TestHub, gauge, unthrottled};

const STATUSES: [&str; 3] = ["away", "online", "busy"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_ends_with_the_current_state_and_slows_no_one() {
    let hub = TestHub::start_with(Backend::Sqlite, |c| {
        unthrottled(c);
        c.ws.outbox_frames = 16;
        c.ws.write_timeout_secs = 60;
    })
    .await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let carol = api.register("carol").await;
    api.add_member(&ada, &ws, &carol, "member").await;
    let addr = hub.hub.as_ref().expect("running").addr;

    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    // Carol joins on a socket with a tiny receive buffer, then reads nothing more.
    let mut slow = Stalled::connect(addr, &carol.token).await;
    slow.send(&json!({"type": "join_workspace", "ref": 1, "workspace_id": ws}).to_string())
        .await;
    a.next_where(|v| v["type"] == "user_presence" && v["user_id"] == json!(carol.id))
        .await;
    let mut b = hub.ws(&bob).await;
    b.join(&ws, None).await;

    // Bob keeps reading throughout, until the durable write that ends the test.
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let v = b.next().await;
            let done = v["type"] == "task_created";
            seen.push(v);
            if done {
                return seen;
            }
        }
    });

    // Ada streams droppable broadcasts (cursor positions, say) until the hub starts skipping
    // some for carol, and a few more after that.
    let blob = "x".repeat(32 * 1024);
    let mut sent = 0u64;
    let mut after_first_drop = 0;
    while after_first_drop < 20 {
        assert!(sent < 5000, "carol's queue never filled");
        let cmd = json!({"type": "broadcast", "workspace_id": ws, "event": "cursor",
                         "data": {"seq": sent, "pad": blob}, "droppable": true});
        a.ok(cmd).await;
        a.clear();
        sent += 1;
        let metrics = hub.metrics().await;
        if gauge(&metrics, "hub_events_dropped_total") > 0.0 {
            after_first_drop += 1;
        }
    }
    // Ada changes her status many times while carol is behind, then writes a task.
    let changes = 30;
    for i in 0..changes {
        let status = STATUSES[i % STATUSES.len()];
        a.ok(json!({"type": "presence_update", "workspace_id": ws, "status": status}))
            .await;
    }
    let last_status = STATUSES[(changes - 1) % STATUSES.len()];
    a.create_task(&ws, "after").await;

    // Bob, who keeps up, got everything in order: every broadcast, every status, the task.
    let seen = tokio::time::timeout(crate::support::WAIT, reader)
        .await
        .expect("bob keeps receiving")
        .expect("bob's reader");
    let seqs: Vec<u64> = seen
        .iter()
        .filter(|v| v["type"] == "broadcast")
        .filter_map(|v| v["data"]["seq"].as_u64())
        .collect();
    assert_eq!(seqs, (0..sent).collect::<Vec<_>>(), "bob lost nothing");
    let bob_statuses = statuses_of(&seen, &ada.id);
    assert_eq!(bob_statuses.len(), changes, "bob saw every change");

    // Carol was never disconnected. Reading now, she finds fewer cursors than were sent, ada's
    // status exactly once and current, then the task: nothing stale, nothing lost that mattered.
    let metrics = hub.metrics().await;
    assert_eq!(gauge(&metrics, "hub_slow_consumers_total"), 0.0);
    assert!(
        gauge(&metrics, "hub_events_conflated_total") > 0.0,
        "{metrics}"
    );
    let mut frames = Vec::new();
    loop {
        let (opcode, payload) = slow.read_frame().await.expect("carol's connection is open");
        assert_eq!(opcode, 1, "a text frame, not a close");
        let v: Value = serde_json::from_slice(&payload).expect("JSON");
        let done = v["type"] == "task_created";
        frames.push(v);
        if done {
            break;
        }
    }
    let carol_cursors = frames.iter().filter(|v| v["type"] == "broadcast").count() as u64;
    assert!(carol_cursors < sent, "{carol_cursors} of {sent}");
    assert_eq!(
        statuses_of(&frames, &ada.id),
        vec![last_status],
        "ada's latest status, once"
    );
    assert_eq!(frames.last().expect("frames")["task"]["title"], "after");
    hub.stop().await;
}

/// The statuses `user` showed in `frames`, in order.
fn statuses_of(frames: &[Value], user: &str) -> Vec<String> {
    frames
        .iter()
        .filter(|v| v["type"] == "user_presence" && v["user_id"] == user)
        .filter_map(|v| v["status"].as_str().map(str::to_owned))
        .collect()
}
