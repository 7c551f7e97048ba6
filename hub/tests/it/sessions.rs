//! Conference sessions: guests and their tokens, capacity and lifecycle, Q&A with exact vote
//! totals under concurrency, moderation, spam codes, recovery after a panic, and signals held
//! for a peer that is reconnecting.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Api, Backend, Client, TestHub, User, unthrottled};

/// A guest as `POST /sessions/{id}/join` made it.
pub(crate) struct Guest {
    pub(crate) token: String,
    pub(crate) peer: String,
}

pub(crate) async fn create_session(api: &Api<'_>, presenter: &User, body: Value) -> String {
    let (status, body) = api
        .post("/api/v1/sessions", Some(&presenter.token), body)
        .await;
    assert_eq!(status, 201, "create session: {body}");
    body["id"].as_str().expect("id").to_owned()
}

pub(crate) async fn start(api: &Api<'_>, presenter: &User, session: &str) {
    let (status, body) = api
        .post(
            &format!("/api/v1/sessions/{session}/start"),
            Some(&presenter.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "start: {body}");
    assert_eq!(body["status"], "live");
}

pub(crate) async fn guest(api: &Api<'_>, session: &str, name: &str) -> Guest {
    let (status, body) = api
        .post(
            &format!("/api/v1/sessions/{session}/join"),
            None,
            json!({"display_name": name}),
        )
        .await;
    assert_eq!(status, 201, "guest join: {body}");
    Guest {
        token: body["token"].as_str().expect("token").to_owned(),
        peer: body["attendee_id"]
            .as_str()
            .expect("attendee id")
            .to_owned(),
    }
}

/// A live session whose presenter (Ada) has joined over WebSocket.
async fn live_session(hub: &TestHub, body: Value) -> (User, String, Client) {
    let api = hub.api();
    let ada = api.register("ada").await;
    let s = create_session(&api, &ada, body).await;
    start(&api, &ada, &s).await;
    let mut presenter = hub.ws(&ada).await;
    join(&mut presenter, &s, None).await;
    (ada, s, presenter)
}

pub(crate) async fn join(c: &mut Client, session: &str, last_offset: Option<u64>) -> Value {
    let mut cmd = json!({"type": "join_session", "session_id": session});
    if let Some(o) = last_offset {
        cmd["last_offset"] = json!(o);
    }
    c.ok(cmd).await
}

pub(crate) async fn ask(c: &mut Client, session: &str, text: &str) -> Value {
    c.ok(json!({"type": "question_ask", "session_id": session, "text": text}))
        .await
}

pub(crate) fn code(reply: &Value) -> &str {
    assert_eq!(reply["type"], "error", "expected an error: {reply}");
    reply["code"].as_str().unwrap_or("")
}

pub(crate) async fn questions(api: &Api<'_>, token: &str, session: &str) -> Vec<Value> {
    let (status, body) = api
        .get(&format!("/api/v1/sessions/{session}/questions"), token)
        .await;
    assert_eq!(status, 200, "questions: {body}");
    body.as_array().expect("a list").clone()
}

async fn a_guest_token_opens_its_own_session_and_nothing_else(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ours = create_session(&api, &ada, json!({"title": "Ours"})).await;
    let theirs = create_session(&api, &ada, json!({"title": "Theirs"})).await;
    let ws = api.create_workspace(&ada, "Team").await;
    let gus = guest(&api, &ours, "Gus").await;

    let (status, body) = api
        .get(&format!("/api/v1/sessions/{ours}"), &gus.token)
        .await;
    assert_eq!(
        (status, body["your_role"].as_str()),
        (200, Some("attendee"))
    );
    let (status, body) = api
        .get(&format!("/api/v1/sessions/{theirs}"), &gus.token)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    for path in [
        format!("/api/v1/workspaces/{ws}"),
        "/api/v1/auth/me".to_owned(),
        "/api/v1/sessions".to_owned(),
    ] {
        let (status, body) = api.get(&path, &gus.token).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let (status, _) = api
        .post(
            "/api/v1/sessions",
            Some(&gus.token),
            json!({"title": "Mine"}),
        )
        .await;
    assert_eq!(status, 401, "a guest creates nothing");

    let mut c = Client::connect(&hub.base, &gus.token).await;
    assert_eq!(c.hello["user_id"], json!(gus.peer), "hello names the peer");
    let other = c
        .request(json!({"type": "join_session", "session_id": theirs}))
        .await;
    assert_eq!(code(&other), "forbidden");
    let workspace = c
        .request(json!({"type": "join_workspace", "workspace_id": ws}))
        .await;
    assert_eq!(code(&workspace), "forbidden");
    let ack = join(&mut c, &ours, None).await;
    assert_eq!(ack["peer_id"], json!(gus.peer));
    assert_eq!(ack["role"], "attendee");
    // The connection lives on after the refusals.
    ask(&mut c, &ours, "Is this recorded?").await;
}

async fn capacity_and_an_ended_session_refuse_joins(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let s = create_session(&api, &ada, json!({"title": "Small", "capacity": 1})).await;
    start(&api, &ada, &s).await;
    let gus = guest(&api, &s, "Gus").await;
    let kim = guest(&api, &s, "Kim").await;
    let mut g = Client::connect(&hub.base, &gus.token).await;
    join(&mut g, &s, None).await;
    // Staff do not count against capacity.
    let mut presenter = hub.ws(&ada).await;
    let ack = join(&mut presenter, &s, None).await;
    assert_eq!(
        (ack["role"].as_str(), ack["attendee_count"].as_u64()),
        (Some("presenter"), Some(1))
    );

    let (status, body) = api
        .post(
            &format!("/api/v1/sessions/{s}/join"),
            None,
            json!({"display_name": "Lee"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("session_full"))
    );
    let mut k = Client::connect(&hub.base, &kim.token).await;
    let full = k
        .request(json!({"type": "join_session", "session_id": s}))
        .await;
    assert_eq!(
        code(&full),
        "session_full",
        "the WebSocket join checks again"
    );

    // Gus leaves: his seat frees, and the presenter sees him go.
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{s}/leave"),
            Some(&gus.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let left = presenter.next_of("peer_left").await;
    assert_eq!(left["peer_id"], json!(gus.peer));
    join(&mut k, &s, None).await;

    let (status, body) = api
        .post(
            &format!("/api/v1/sessions/{s}/end"),
            Some(&ada.token),
            json!({}),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ended")));
    assert_eq!(k.next_of("session_ended").await["session_id"], json!(s));
    // Kim's connection drops; her seat is held for the grace window, but not past the end.
    drop(k);
    let mut back = Client::connect(&hub.base, &kim.token).await;
    let refused = back
        .request(json!({"type": "join_session", "session_id": s}))
        .await;
    assert_eq!(code(&refused), "session_ended");
    let (status, body) = api
        .post(
            &format!("/api/v1/sessions/{s}/join"),
            None,
            json!({"display_name": "Lee"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("session_ended"))
    );
    let mut late = Client::connect(&hub.base, &gus.token).await;
    let refused = late
        .request(json!({"type": "join_session", "session_id": s}))
        .await;
    assert_eq!(code(&refused), "session_ended");
    let (status, body) = api
        .post(
            &format!("/api/v1/sessions/{s}/start"),
            Some(&ada.token),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("invalid_transition"))
    );
}

/// What each voter does, in order: `up`, then some change their mind, some clear.
fn plan(i: usize) -> Vec<Option<&'static str>> {
    match i % 4 {
        0 => vec![Some("up")],
        1 => vec![Some("up"), Some("down")],
        2 => vec![Some("down"), None],
        _ => vec![Some("up"), Some("up"), None, Some("down")],
    }
}

async fn totals_are_exact_after_200_clients_vote_at_once(backend: Backend) {
    let hub = TestHub::start_with(backend, unthrottled).await;
    let api = hub.api();
    let (ada, s, mut presenter) = live_session(&hub, json!({"title": "Big"})).await;
    let q = ask(&mut presenter, &s, "What ships first?").await["question"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let mut voters = Vec::new();
    for i in 0..200 {
        let base = hub.base.clone();
        let (session, question) = (s.clone(), q.clone());
        let g = guest(&api, &s, &format!("v{i}")).await;
        voters.push(tokio::spawn(async move {
            let mut c = Client::connect(&base, &g.token).await;
            join(&mut c, &session, None).await;
            for vote in plan(i) {
                c.ok(json!({"type": "question_vote", "session_id": session,
                            "question_id": question, "vote": vote}))
                    .await;
            }
        }));
    }
    for v in voters {
        v.await.expect("voter");
    }
    let (mut up, mut down) = (0, 0);
    for i in 0..200 {
        match plan(i).last().copied().flatten() {
            Some("up") => up += 1,
            Some("down") => down += 1,
            _ => {}
        }
    }
    let listed = questions(&api, &ada.token, &s).await;
    assert_eq!(
        (listed[0]["up"].as_u64(), listed[0]["down"].as_u64()),
        (Some(up), Some(down)),
        "REST totals"
    );
    // The presenter's stream may have coalesced steps, but its last word is the final total.
    let mut last = Value::Null;
    while last["question"]["up"].as_u64() != Some(up)
        || last["question"]["down"].as_u64() != Some(down)
    {
        last = presenter
            .next_where(|v| v["type"] == "question" && v["change"] == "voted")
            .await;
    }
    // A late joiner's snapshot says the same.
    let mut late = hub.ws(&ada).await;
    join(&mut late, &s, None).await;
    let snap = late.next_of("session_snapshot").await;
    assert_eq!(
        snap["questions"][0]["score"].as_i64(),
        Some(up as i64 - down as i64)
    );
}

async fn moderation_is_seen_by_everyone_and_pending_questions_only_by_staff(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let s = create_session(
        &api,
        &ada,
        json!({"title": "Moderated", "settings": {"moderation": true, "anonymous_questions": false, "qa_open": true}}),
    )
    .await;
    start(&api, &ada, &s).await;
    let mut presenter = hub.ws(&ada).await;
    join(&mut presenter, &s, None).await;
    let (gus, kim) = (guest(&api, &s, "Gus").await, guest(&api, &s, "Kim").await);
    let mut g = Client::connect(&hub.base, &gus.token).await;
    let mut k = Client::connect(&hub.base, &kim.token).await;
    join(&mut g, &s, None).await;
    let kim_join = join(&mut k, &s, None).await;

    let anon = g
        .request(json!({"type": "question_ask", "session_id": s, "text": "Who pays?", "anonymous": true}))
        .await;
    assert_eq!(code(&anon), "anonymous_not_allowed");
    let asked = ask(&mut g, &s, "Is there a free tier?").await;
    let id = asked["question"]["id"].as_str().expect("id").to_owned();
    assert_eq!(asked["question"]["status"], "pending");
    assert_eq!(asked["question"]["author_name"], "Gus");
    let seen = presenter.next_of("question").await;
    assert_eq!(
        (seen["change"].as_str(), seen["question"]["id"].as_str()),
        (Some("asked"), Some(id.as_str()))
    );
    assert!(
        questions(&api, &kim.token, &s).await.is_empty(),
        "attendees do not see it yet"
    );
    let vote = k
        .request(json!({"type": "question_vote", "session_id": s, "question_id": id, "vote": "up"}))
        .await;
    assert_eq!(
        code(&vote),
        "question_not_found",
        "a pending question is hidden from attendees"
    );
    let forbidden = k
        .request(json!({"type": "question_moderate", "session_id": s, "question_id": id, "action": "approve"}))
        .await;
    assert_eq!(code(&forbidden), "forbidden");

    // Bob, an attendee with an account, is made a moderator while joined: he now sees the
    // pending question, and may moderate.
    let bob = api.register("bob").await;
    let mut b = hub.ws(&bob).await;
    let as_attendee = join(&mut b, &s, None).await;
    assert_eq!(as_attendee["role"], "attendee");
    let hidden = b.next_of("session_snapshot").await;
    assert!(
        hidden["questions"]
            .as_array()
            .expect("questions")
            .is_empty()
    );
    let (status, body) = api
        .post(
            &format!("/api/v1/sessions/{s}/staff"),
            Some(&ada.token),
            json!({"email": bob.email, "role": "moderator"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(b.next_of("staff_changed").await["role"], "moderator");
    // Told to join again; the join, with whatever offset, gets a snapshot for the new role.
    let resync = b.next_of("session_resync").await;
    let as_moderator = join(&mut b, &s, resync["offset"].as_u64()).await;
    assert_eq!(
        (as_moderator["role"].as_str(), as_moderator["mode"].as_str()),
        (Some("moderator"), Some("snapshot"))
    );
    let now_staff = b.next_of("session_snapshot").await;
    assert_eq!(
        now_staff["questions"][0]["id"],
        json!(id),
        "the pending question"
    );
    let pinned = b
        .ok(json!({"type": "question_moderate", "session_id": s, "question_id": id, "action": "pin"}))
        .await;
    assert_eq!(pinned["question"]["pinned"], true);

    let approved = presenter
        .ok(json!({"type": "question_moderate", "session_id": s, "question_id": id, "action": "approve"}))
        .await;
    assert_eq!(approved["question"]["status"], "open");
    let on_kim = k.next_of("question").await;
    assert_eq!(
        (
            on_kim["change"].as_str(),
            on_kim["question"]["text"].as_str()
        ),
        (Some("approved"), Some("Is there a free tier?"))
    );
    // Kim's offsets skipped the pending question's event: she resumes from what she saw.
    assert!(on_kim["offset"].as_u64() > kim_join["offset"].as_u64().map(|o| o + 1));
    presenter
        .ok(json!({"type": "question_moderate", "session_id": s, "question_id": id, "action": "answer"}))
        .await;
    assert_eq!(
        g.next_where(|v| v["type"] == "question" && v["change"] == "answered")
            .await["question"]["status"],
        "answered"
    );
    assert_eq!(
        k.next_where(|v| v["type"] == "question" && v["change"] == "answered")
            .await["question"]["id"],
        json!(id)
    );

    // An approved question edited under moderation goes back to pending: attendees are told
    // it is hidden, and never see the new text until it is approved again.
    let third = ask(&mut g, &s, "Is the API stable?").await["question"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    presenter
        .ok(json!({"type": "question_moderate", "session_id": s, "question_id": third, "action": "approve"}))
        .await;
    k.next_where(|v| v["type"] == "question" && v["question"]["id"] == json!(third))
        .await;
    let edited = g
        .ok(json!({"type": "question_edit", "session_id": s, "question_id": third, "text": "Something rude"}))
        .await;
    assert_eq!(edited["question"]["status"], "pending");
    let hidden = k
        .next_where(|v| v["question_id"] == json!(third) || v["question"]["id"] == json!(third))
        .await;
    assert_eq!(hidden["type"], "question_hidden", "{hidden}");
    assert!(!hidden.to_string().contains("rude"));
    assert!(
        !questions(&api, &kim.token, &s)
            .await
            .iter()
            .any(|q| q["id"] == json!(third))
    );
    // REST moderation goes through the same room.
    let second = ask(&mut k, &s, "Can we self-host?").await["question"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, body) = api
        .call(
            Method::PATCH,
            &format!("/api/v1/questions/{second}"),
            Some(&ada.token),
            Some(json!({"action": "dismiss"})),
        )
        .await;
    assert_eq!(
        (status, body["question"]["status"].as_str()),
        (200, Some("dismissed"))
    );
    let (status, _) = api
        .call(
            Method::PATCH,
            &format!("/api/v1/questions/{second}"),
            Some(&kim.token),
            Some(json!({"action": "pin"})),
        )
        .await;
    assert_eq!(status, 403);
}

async fn each_spam_rule_refuses_with_its_own_code(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        c.rooms.qa_blocklist = vec!["casino".into()];
    })
    .await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let s = create_session(&api, &ada, json!({"title": "Spam"})).await;
    start(&api, &ada, &s).await;
    let gus = guest(&api, &s, "Gus").await;
    let mut g = Client::connect(&hub.base, &gus.token).await;
    join(&mut g, &s, None).await;
    let mut try_ask = async |text: &str| {
        g.request(json!({"type": "question_ask", "session_id": s, "text": text}))
            .await
    };
    let blocked = try_ask("Best CASINO bonus?").await;
    assert_eq!(code(&blocked), "blocked_content");
    let links = try_ask("see https://a.example and https://b.example").await;
    assert_eq!(code(&links), "too_many_links");
    let empty = try_ask("   ").await;
    assert_eq!(code(&empty), "invalid_payload");
    assert_eq!(try_ask("First?").await["type"], "ack");
    let dup = try_ask("  first? ").await;
    assert_eq!(code(&dup), "duplicate_question");
    assert_eq!(try_ask("Second?").await["type"], "ack");
    assert_eq!(try_ask("Third?").await["type"], "ack");
    let rate = try_ask("Fourth?").await;
    assert_eq!(code(&rate), "question_rate_limited");
    // Over REST the same rule answers with its status.
    let (status, body) = api
        .post(
            &format!("/api/v1/sessions/{s}/questions"),
            Some(&gus.token),
            json!({"text": "Fifth?"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("question_rate_limited"))
    );
}

async fn a_session_room_that_panics_mid_vote_keeps_every_acknowledged_vote(backend: Backend) {
    let hub = TestHub::start_with(backend, unthrottled).await;
    let api = hub.api();
    let (ada, s, mut presenter) = live_session(&hub, json!({"title": "Crash"})).await;
    let q = ask(&mut presenter, &s, "Will it hold?").await["question"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut clients = Vec::new();
    for i in 0..20 {
        let g = guest(&api, &s, &format!("v{i}")).await;
        let mut c = Client::connect(&hub.base, &g.token).await;
        join(&mut c, &s, None).await;
        clients.push(c);
    }
    // Every client votes once; the room panics halfway. A client whose vote met the crash
    // rejoins on `session_resync` (as any client would) and votes again.
    for (i, c) in clients.iter_mut().enumerate() {
        let vote = if i % 3 == 0 { "down" } else { "up" };
        let cmd = json!({"type": "question_vote", "session_id": s, "question_id": q, "vote": vote});
        loop {
            let reply = c.request(cmd.clone()).await;
            if reply["type"] == "ack" {
                break;
            }
            assert!(
                ["unavailable", "not_joined"].contains(&code(&reply)),
                "only the crash refuses: {reply}"
            );
            let resync = c.next_of("session_resync").await;
            join(c, &s, resync["offset"].as_u64()).await;
        }
        if i == 9 {
            let (status, _) = api
                .post(&format!("/debug/sessions/{s}/crash"), None, json!({}))
                .await;
            assert_eq!(status, 202);
        }
    }
    let resync = presenter.next_of("session_resync").await;
    assert_eq!(resync["session_id"], json!(s));
    join(&mut presenter, &s, resync["offset"].as_u64()).await;
    let listed = questions(&api, &ada.token, &s).await;
    let (up, down) = (0..20).fold(
        (0, 0),
        |(u, d), i| if i % 3 == 0 { (u, d + 1) } else { (u + 1, d) },
    );
    assert_eq!(
        (listed[0]["up"].as_u64(), listed[0]["down"].as_u64()),
        (Some(up), Some(down)),
        "every acknowledged vote survived the crash"
    );
}

/// Votes until one is acknowledged; a vote the crash refused is sent again after the
/// `session_resync` every member of the crashed room is owed.
async fn vote_through_crash(c: &mut Client, s: &str, q: &str, vote: &str) {
    let cmd = json!({"type": "question_vote", "session_id": s, "question_id": q, "vote": vote});
    loop {
        let reply = c.request(cmd.clone()).await;
        if reply["type"] == "ack" {
            return;
        }
        assert!(
            ["unavailable", "not_joined"].contains(&code(&reply)),
            "only the crash refuses: {reply}"
        );
        let resync = c.next_of("session_resync").await;
        join(c, s, resync["offset"].as_u64()).await;
    }
}

async fn members_speaking_as_their_room_dies_are_all_told_to_resync(backend: Backend) {
    let hub = TestHub::start_with(backend, unthrottled).await;
    let api = hub.api();
    let (ada, s, mut presenter) = live_session(&hub, json!({"title": "Race"})).await;
    let q = ask(&mut presenter, &s, "Still here?").await["question"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut clients = Vec::new();
    for i in 0..20 {
        let g = guest(&api, &s, &format!("r{i}")).await;
        let mut c = Client::connect(&hub.base, &g.token).await;
        join(&mut c, &s, None).await;
        clients.push(c);
    }
    // Every guest votes (and keeps voting until acknowledged) while the room panics: messages
    // meet the room alive, dying and dead, and the restarted room must still know them all.
    let crash_path = format!("/debug/sessions/{s}/crash");
    let crash = api.post(&crash_path, None, json!({}));
    let votes = futures_util::future::join_all(
        clients
            .iter_mut()
            .map(|c| vote_through_crash(c, &s, &q, "up")),
    );
    let ((status, _), _) = tokio::join!(crash, votes);
    assert_eq!(status, 202);
    let resync = presenter.next_of("session_resync").await;
    join(&mut presenter, &s, resync["offset"].as_u64()).await;
    let listed = questions(&api, &ada.token, &s).await;
    assert_eq!(
        listed[0]["up"].as_u64(),
        Some(20),
        "every guest's vote counted once"
    );
}

pub(crate) const OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
    a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
    c=IN IP4 0.0.0.0\r\na=mid:0\r\na=sctp-port:5000\r\n";

async fn a_signal_sent_while_its_target_reconnects_arrives_once_after_it_resumes(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (_, s, mut presenter) = live_session(&hub, json!({"title": "Signals"})).await;
    let gus = guest(&api, &s, "Gus").await;
    let mut g = Client::connect(&hub.base, &gus.token).await;
    let ack = join(&mut g, &s, None).await;
    let ada_peer = ack["peers"][0]["peer_id"]
        .as_str()
        .expect("presenter peer")
        .to_owned();
    assert_eq!(
        ack["peers"][0]["polite"], true,
        "the attendee is the polite side"
    );
    let joined = presenter.next_of("peer_joined").await;
    assert_eq!(
        (joined["peer_id"].as_str(), joined["polite"].as_bool()),
        (Some(gus.peer.as_str()), Some(false))
    );

    let bad = presenter
        .request(json!({"type": "signal", "session_id": s, "to": gus.peer, "signal": {"kind": "offer", "sdp": "hello"}}))
        .await;
    assert_eq!(code(&bad), "invalid_sdp");
    let sent = presenter
        .ok(json!({"type": "signal", "session_id": s, "to": gus.peer, "signal": {"kind": "offer", "sdp": OFFER}}))
        .await;
    assert_eq!(
        (sent["seq"].as_u64(), sent["held"].as_bool()),
        (Some(1), Some(false))
    );
    let got = g.next_of("signal").await;
    assert_eq!(
        (got["from"].as_str(), got["seq"].as_u64()),
        (Some(ada_peer.as_str()), Some(1))
    );

    // Gus's connection drops; what Ada sends meanwhile is held for him.
    drop(g);
    let cand = "candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host";
    let mut held = HashMap::new();
    for _ in 0..50 {
        let r = presenter
            .request(json!({"type": "signal", "session_id": s, "to": gus.peer, "signal": {"kind": "candidate", "candidate": cand, "sdp_mid": "0"}}))
            .await;
        assert_eq!(r["type"], "ack", "{r}");
        if r["result"]["held"] == true {
            held.insert(r["result"]["seq"].as_u64().expect("seq"), ());
            if held.len() == 2 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(held.len(), 2, "the hub noticed the drop and held signals");
    let mut g = Client::connect(&hub.base, &gus.token).await;
    let back = join(&mut g, &s, None).await;
    assert_eq!(back["peer_id"], json!(gus.peer));
    let mut seqs = Vec::new();
    for _ in 0..held.len() {
        seqs.push(g.next_of("signal").await["seq"].as_u64().expect("seq"));
    }
    let mut expected: Vec<u64> = held.keys().copied().collect();
    expected.sort_unstable();
    assert_eq!(seqs, expected, "in order");
    // Nothing more comes: a marker round trip after them, and no second copy before it.
    let after = presenter
        .ok(json!({"type": "signal", "session_id": s, "to": gus.peer, "signal": {"kind": "candidate", "candidate": ""}}))
        .await;
    let next = g.next_of("signal").await;
    assert_eq!(next["seq"], after["seq"], "each held signal came once");
}

async fn analytics_count_attendance_questions_votes_quality_and_presenter_actions(
    backend: Backend,
) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, s, mut presenter) = live_session(&hub, json!({"title": "Measured"})).await;
    let (gus, kim) = (guest(&api, &s, "Gus").await, guest(&api, &s, "=Kim").await);
    let mut g = Client::connect(&hub.base, &gus.token).await;
    let mut k = Client::connect(&hub.base, &kim.token).await;
    join(&mut g, &s, None).await;
    join(&mut k, &s, None).await;
    let q = ask(&mut g, &s, "Numbers?").await["question"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (c, vote) in [(&mut g, "up"), (&mut k, "up")] {
        c.ok(json!({"type": "question_vote", "session_id": s, "question_id": q, "vote": vote}))
            .await;
    }
    g.ok(json!({"type": "quality_report", "session_id": s, "rtt_ms": 40, "packet_loss": 0.02, "bitrate_kbps": 1500}))
        .await;
    presenter
        .ok(json!({"type": "screen_share", "session_id": s, "active": true, "stream_id": "screen-1"}))
        .await;
    assert_eq!(g.next_of("screen_share").await["stream_id"], "screen-1");
    k.ok(json!({"type": "leave_session", "session_id": s}))
        .await;
    let (status, _) = api
        .post(
            &format!("/api/v1/sessions/{s}/end"),
            Some(&ada.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    let path = format!("/api/v1/sessions/{s}/analytics");
    let (status, body) = api.get(&path, &gus.token).await;
    assert_eq!(status, 401, "guests do not read analytics: {body}");
    let bob = api.register("bob").await;
    let (status, _) = api.get(&path, &bob.token).await;
    assert_eq!(status, 403, "nor does anyone off the staff");
    // The facts are written off the room: wait until the last of them is in.
    crate::support::eventually("analytics written", || {
        let api = hub.api();
        let (token, path) = (ada.token.clone(), path.clone());
        async move {
            let (status, body) = api.get(&path, &token).await;
            status == 200
                && body["report"]["actions"].as_array().map(Vec::len) == Some(3)
                && body["report"]["quality"]["samples"] == 1
        }
    })
    .await;
    let (_, body) = api.get(&path, &ada.token).await;
    let report = body["report"].clone();
    assert_eq!(
        (report["questions"].as_u64(), report["votes"].as_u64()),
        (Some(1), Some(2))
    );
    let kinds: Vec<&str> = report["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["session_started", "screen_share_started", "session_ended"]
    );
    assert_eq!(
        report["attendance"]["peak"], 3,
        "the presenter and two guests"
    );
    assert_eq!(report["quality"]["rtt_ms_p50"], 40);
    let engagement = report["engagement"].as_array().expect("engagement");
    let gus_row = engagement
        .iter()
        .find(|e| e["display_name"] == "Gus")
        .expect("gus");
    assert_eq!(
        (gus_row["questions"].as_u64(), gus_row["votes"].as_u64()),
        (Some(1), Some(1))
    );
    let kim_row = engagement
        .iter()
        .find(|e| e["display_name"] == "=Kim")
        .expect("kim");
    assert!(kim_row["left_at"].is_string(), "kim left");

    let resp = hub
        .http
        .get(format!("{}{path}?format=csv", hub.base))
        .bearer_auth(&ada.token)
        .send()
        .await
        .expect("csv");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/csv")
    );
    let csv = resp.text().await.expect("body");
    assert_eq!(
        csv.lines().count(),
        4,
        "a header and three attendees: {csv}"
    );
    assert!(
        csv.contains(",'=Kim,"),
        "a name that looks like a formula is defused: {csv}"
    );
}

async fn a_presenter_signals_beyond_the_message_rate_but_other_commands_do_not(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let s = create_session(&api, &ada, json!({"title": "Busy presenter"})).await;
    start(&api, &ada, &s).await;
    let mut presenter = hub.ws(&ada).await;
    assert_eq!(presenter.hello["limits"]["signal_burst"], 500);
    join(&mut presenter, &s, None).await;
    let gus = guest(&api, &s, "Gus").await;
    let mut g = Client::connect(&hub.base, &gus.token).await;
    join(&mut g, &s, None).await;
    let cand = "candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host";
    // Far more than the 20-message burst, back to back: the signal budget takes them.
    let n = 120;
    for i in 0..n {
        presenter
            .send_text(
                json!({"type": "signal", "ref": i, "session_id": s, "to": gus.peer,
                       "signal": {"kind": "candidate", "candidate": cand}})
                .to_string(),
            )
            .await;
    }
    for i in 0..n {
        let r = presenter
            .next_where(|v| v["ref"] == json!(i) && (v["type"] == "ack" || v["type"] == "error"))
            .await;
        assert_eq!(r["type"], "ack", "signal {i}: {r}");
    }
    for _ in 0..n {
        g.next_of("signal").await;
    }
    // An attendee is held to far less: it signals one presenter, and must not flood it.
    let ada_peer =
        g.ok(json!({"type": "join_session", "session_id": s})).await["peers"][0]["peer_id"].clone();
    assert!(!ada_peer.is_null());
    let m = 60;
    for i in 0..m {
        g.send_text(
            json!({"type": "signal", "ref": 1000 + i, "session_id": s, "to": ada_peer,
                   "signal": {"kind": "candidate", "candidate": cand}})
            .to_string(),
        )
        .await;
    }
    let mut refused = 0;
    for i in 0..m {
        let r = g
            .next_where(|v| {
                v["ref"] == json!(1000 + i) && (v["type"] == "ack" || v["type"] == "error")
            })
            .await;
        if r["type"] == "error" {
            assert_eq!(code(&r), "rate_limited", "{r}");
            refused += 1;
        }
    }
    assert!(
        (10..=25).contains(&refused),
        "about 40 of 60 taken at once: {refused} refused"
    );
    // The message budget itself is spent: anything else is throttled.
    let mut limited = 0;
    for _ in 0..25 {
        let r = presenter
            .request(json!({"type": "quality_report", "session_id": s, "rtt_ms": 5, "packet_loss": 0.0, "bitrate_kbps": 1}))
            .await;
        if r["type"] == "error" {
            assert_eq!(code(&r), "rate_limited");
            limited += 1;
        }
    }
    assert!(limited > 0, "other commands keep the message rate");
}

async fn vote_totals_reach_members_coalesced_but_the_last_is_exact(backend: Backend) {
    let hub = TestHub::start_with(backend, unthrottled).await;
    let api = hub.api();
    let (_, s, mut presenter) = live_session(&hub, json!({"title": "Storm"})).await;
    let q = ask(&mut presenter, &s, "Which?").await["question"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let gus = guest(&api, &s, "Gus").await;
    let mut g = Client::connect(&hub.base, &gus.token).await;
    join(&mut g, &s, None).await;
    // 40 changes of mind, back to back, each acknowledged.
    let n: u64 = 40;
    for i in 0..n {
        let vote = if i % 2 == 0 { "up" } else { "down" };
        g.send_text(
            json!({"type": "question_vote", "ref": i, "session_id": s, "question_id": q, "vote": vote})
                .to_string(),
        )
        .await;
    }
    let mut final_offset = 0;
    for i in 0..n {
        let r = g.next_where(|v| v["ref"] == json!(i)).await;
        assert_eq!(r["type"], "ack", "{r}");
        final_offset = r["result"]["offset"].as_u64().expect("offset");
    }
    // The presenter sees the totals up to the last vote's, in offset order, in fewer frames than
    // votes; the last says what the last vote made true.
    let mut frames = 0;
    let mut last_offset = 0;
    let last = loop {
        let f = presenter
            .next_where(|v| v["type"] == "question" && v["change"] == "voted")
            .await;
        frames += 1;
        let offset = f["offset"].as_u64().expect("offset");
        assert!(offset > last_offset, "in offset order");
        last_offset = offset;
        if offset == final_offset {
            break f;
        }
    };
    assert_eq!(
        (
            last["question"]["up"].as_u64(),
            last["question"]["down"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert!(frames < n, "{frames} frames for {n} votes: coalesced");
}

async fn an_answer_decided_on_a_vote_in_flight_comes_after_that_votes_ack(backend: Backend) {
    let hub = TestHub::start_with(backend, unthrottled).await;
    let api = hub.api();
    let (_, s, mut presenter) = live_session(&hub, json!({"title": "Order"})).await;
    let q = ask(&mut presenter, &s, "Which?").await["question"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let gus = guest(&api, &s, "Gus").await;
    let mut g = Client::connect(&hub.base, &gus.token).await;
    join(&mut g, &s, None).await;
    g.clear();
    for round in 0..10u64 {
        let vote = if round % 2 == 0 { "up" } else { "down" };
        // A change, then the same vote again: the second changes nothing, decided while the
        // first is still being journaled. Its answer must not overtake the first's.
        let frames = (0..2)
            .map(|i| {
                json!({"type": "question_vote", "ref": round * 2 + i, "session_id": s,
                       "question_id": q, "vote": vote})
                .to_string()
            })
            .collect();
        g.send_together(frames).await;
        let first = g
            .next_where(|v| v["type"] == "ack" || v["type"] == "error")
            .await;
        let second = g
            .next_where(|v| v["type"] == "ack" || v["type"] == "error")
            .await;
        assert_eq!(
            (first["ref"].as_u64(), second["ref"].as_u64()),
            (Some(round * 2), Some(round * 2 + 1)),
            "round {round}"
        );
        assert!(first["result"]["offset"].is_u64(), "{first}");
        assert!(second["result"]["offset"].is_null(), "{second}");
    }
}

both_backends!(
    an_answer_decided_on_a_vote_in_flight_comes_after_that_votes_ack,
    vote_totals_reach_members_coalesced_but_the_last_is_exact,
    a_presenter_signals_beyond_the_message_rate_but_other_commands_do_not,
    analytics_count_attendance_questions_votes_quality_and_presenter_actions,
    a_guest_token_opens_its_own_session_and_nothing_else,
    capacity_and_an_ended_session_refuse_joins,
    totals_are_exact_after_200_clients_vote_at_once,
    moderation_is_seen_by_everyone_and_pending_questions_only_by_staff,
    each_spam_rule_refuses_with_its_own_code,
    a_session_room_that_panics_mid_vote_keeps_every_acknowledged_vote,
    members_speaking_as_their_room_dies_are_all_told_to_resync,
    a_signal_sent_while_its_target_reconnects_arrives_once_after_it_resumes,
);
