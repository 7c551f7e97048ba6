//! What a hostile client tried, refused cheaply with a clear code: messages made of endless
//! fragments, deeply nested JSON, floods of REST writes, password spraying, mass registration,
//! probing which emails have accounts, workspace spam.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::both_backends;
use crate::support::{Backend, TestHub};

fn text_fragment(data: Vec<u8>, first: bool, last: bool) -> Message {
    let opcode = if first {
        OpCode::Data(Data::Text)
    } else {
        OpCode::Data(Data::Continue)
    };
    Message::Frame(Frame::message(data, opcode, last))
}

async fn a_message_in_endless_fragments_is_cut_off_at_the_hard_cap(backend: Backend) {
    // 1 KiB frames: the hard cap is 16 KiB, however the message is split.
    let hub = TestHub::start_with(backend, |c| c.ws.max_frame_bytes = 1024).await;
    let ada = hub.api().register("ada").await;
    let mut c = hub.ws(&ada).await;
    // A fragmented command within the limit is fine.
    let ws = hub.api().create_workspace(&ada, "Team").await;
    let join = json!({"type": "join_workspace", "ref": "f", "workspace_id": ws}).to_string();
    let (a, rest) = join.as_bytes().split_at(10);
    let (b, d) = rest.split_at(20);
    for (i, part) in [a, b, d].into_iter().enumerate() {
        assert!(
            c.try_send(text_fragment(part.to_vec(), i == 0, i == 2))
                .await
        );
    }
    let ack = c.next_of("ack").await;
    assert_eq!(ack["ref"], "f");
    // Now a message that would be 64 MiB, in 1000-byte fragments.
    let fragment = vec![b' '; 1000];
    let mut sent = 0usize;
    let mut closed = None;
    assert!(c.try_send(text_fragment(b"[".to_vec(), true, false)).await);
    while sent < 64 << 20 {
        if !c
            .try_send(text_fragment(fragment.clone(), false, false))
            .await
        {
            break;
        }
        sent += fragment.len();
        if sent.is_multiple_of(16 * 1000) {
            closed = c.closed_within(Duration::from_millis(50)).await;
            if closed.is_some() {
                break;
            }
        }
    }
    let code = match closed {
        Some(code) => code,
        None => c.closed_within(Duration::from_secs(10)).await.flatten(),
    };
    assert_eq!(code, Some(1009), "closed as too large");
    assert!(
        sent < 1 << 20,
        "the hub read {sent} bytes of one message before closing"
    );
    hub.stop().await;
}

fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

async fn deeply_nested_json_is_refused_and_never_relayed(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let mut b = hub.ws(&bob).await;
    b.join(&ws, None).await;
    let deep = format!(
        r#"{{"type":"broadcast","ref":"deep","workspace_id":"{ws}","event":"x","data":{}}}"#,
        nested(30_000)
    );
    a.send_text(deep).await;
    let err = a.next_of("error").await;
    assert_eq!(err["code"], "nesting_too_deep", "{err}");
    // Bob's next broadcast is the valid one that follows, not the deep one.
    a.ok(json!({"type": "broadcast", "workspace_id": ws, "event": "ok", "data": [[1]]}))
        .await;
    let got = b.next_of("broadcast").await;
    assert_eq!(got["event"], "ok");
    // REST bodies too.
    let resp = hub
        .http
        .post(format!("{}/api/v1/workspaces", hub.base))
        .bearer_auth(&ada.token)
        .header("content-type", "application/json")
        .body(format!(r#"{{"name": "x", "junk": {}}}"#, nested(5000)))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "nesting_too_deep");
    hub.stop().await;
}

async fn rest_writes_and_reads_are_rate_limited_per_user_and_per_address(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        c.limits.write_per_user = "3/min".parse().expect("rate");
        c.limits.read_per_ip = "8/min".parse().expect("rate");
    })
    .await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let path = format!("/api/v1/workspaces/{ws}/tasks");
    for i in 0..2 {
        let (status, body) = api
            .post(&path, Some(&ada.token), json!({ "title": format!("t{i}") }))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let resp = hub
        .http
        .post(format!("{}{path}", hub.base))
        .bearer_auth(&ada.token)
        .json(&json!({"title": "one too many"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=20).contains(&retry), "{retry}");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    // Reads have their own allowance, per address: the writer can still read...
    assert_eq!(api.get(&path, &ada.token).await.0, 200);
    // ...until the address has used its reads, whoever asks.
    let bob = api.register("bob").await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(api.get("/api/v1/workspaces", &bob.token).await.0);
    }
    assert!(
        statuses.contains(&200) && statuses.ends_with(&[429]),
        "{statuses:?}"
    );
    hub.stop().await;
}

async fn login(hub: &TestHub, email: &str, password: &str) -> (u16, Value) {
    hub.api()
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
}

async fn a_password_spray_from_one_address_is_stopped(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        c.limits.login_failures_per_ip = "5/h".parse().expect("rate");
    })
    .await;
    let api = hub.api();
    let victims: Vec<_> = futures_util::future::join_all((0..6).map(|i| {
        let api = &api;
        async move { api.register(&format!("victim{i}")).await }
    }))
    .await;
    for v in &victims[..5] {
        assert_eq!(login(&hub, &v.email, "Password1!").await.0, 401);
    }
    // The address has used its failures: the next account is not even tried, right password
    // or not.
    let (status, body) = login(&hub, &victims[5].email, "correct horse battery").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    hub.stop().await;
}

/// Failures are charged before the password is checked: attempts sent all at once cannot slip
/// under the budget together.
async fn parallel_login_guesses_get_no_more_than_the_budget(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let ada = hub.api().register("ada").await;
    let statuses = futures_util::future::join_all(
        (0..20).map(|_| login(&hub, &ada.email, "not the password")),
    )
    .await;
    let tried = statuses.iter().filter(|(s, _)| *s == 401).count();
    let refused = statuses.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!((tried, refused), (5, 15), "{statuses:?}");
    hub.stop().await;
}

async fn mass_registration_from_one_address_is_stopped(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        c.limits.register_per_ip = "3/h".parse().expect("rate");
    })
    .await;
    let api = hub.api();
    for i in 0..3 {
        api.register(&format!("u{i}")).await;
    }
    let (status, body) = api
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "one-more@example.com", "password": "correct horse battery", "name": "x"}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    hub.stop().await;
}

async fn probing_emails_through_add_member_is_throttled(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        c.limits.lookup_misses_per_user = "3/h".parse().expect("rate");
    })
    .await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let bob = api.register("bob").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let path = format!("/api/v1/workspaces/{ws}/members");
    for i in 0..3 {
        let (status, body) = api
            .post(
                &path,
                Some(&ada.token),
                json!({"email": format!("nobody{i}@example.com"), "role": "member"}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("user_not_found"))
        );
    }
    // Out of misses: even an email that has an account is not looked up, so the answer says
    // nothing about it.
    let (status, body) = api
        .post(
            &path,
            Some(&ada.token),
            json!({"email": bob.email, "role": "member"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    hub.stop().await;
}

async fn workspace_creation_has_an_hourly_quota(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| c.limits.workspaces_per_hour = 3).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    for i in 0..3 {
        api.create_workspace(&ada, &format!("w{i}")).await;
    }
    let resp = hub
        .http
        .post(format!("{}/api/v1/workspaces", hub.base))
        .bearer_auth(&ada.token)
        .json(&json!({"name": "one too many"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    // Someone else's quota is their own.
    let bob = api.register("bob").await;
    api.create_workspace(&bob, "mine").await;
    hub.stop().await;
}

/// Every error has the JSON shape with a stable code, and no message quotes a library.
async fn every_error_is_json_with_a_code_in_plain_words(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, _bob, ws) = api.team("member").await;
    let eve = api.register("eve").await;
    let check = |status: u16, code: &'static str, (s, body): (u16, Value)| {
        assert_eq!(s, status, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!message.is_empty(), "{body}");
        for internal in [
            "Signature",
            "Failed to",
            "u64",
            "struct ",
            "urn:uuid",
            "serde",
            "line 1 column",
        ] {
            assert!(
                !message.contains(internal),
                "{message:?} quotes {internal:?}"
            );
        }
    };
    check(
        404,
        "not_found",
        api.call(Method::GET, "/nowhere", None, None).await,
    );
    check(
        405,
        "method_not_allowed",
        api.call(Method::PATCH, "/api/v1/workspaces", Some(&ada.token), None)
            .await,
    );
    check(
        405,
        "method_not_allowed",
        api.call(Method::DELETE, "/health", None, None).await,
    );
    check(
        404,
        "not_found",
        api.get("/api/v1/workspaces/not-a-uuid", &ada.token).await,
    );
    check(
        401,
        "unauthorized",
        api.get("/api/v1/auth/me", "not.a.token").await,
    );
    check(
        400,
        "invalid_payload",
        api.post(
            &format!("/api/v1/workspaces/{ws}/tasks"),
            Some(&ada.token),
            json!({"title": "x", "position": "first"}),
        )
        .await,
    );
    check(
        400,
        "invalid_payload",
        api.post(
            &format!("/api/v1/workspaces/{ws}/members"),
            Some(&ada.token),
            json!({"email": "x@example.com", "role": "king"}),
        )
        .await,
    );
    // Leaving a workspace one is not in: not a member (not "user not found"), and the same
    // for removing someone from it.
    check(
        404,
        "not_a_member",
        api.post(
            &format!("/api/v1/workspaces/{ws}/leave"),
            Some(&eve.token),
            json!({}),
        )
        .await,
    );
    check(
        404,
        "not_a_member",
        api.call(
            Method::DELETE,
            &format!("/api/v1/workspaces/{ws}/members/{}", ada.id),
            Some(&eve.token),
            None,
        )
        .await,
    );
    // Bodies: not JSON, the wrong content type, too large.
    let raw = |body: &'static str, content_type: &'static str| {
        let req = hub
            .http
            .post(format!("{}/api/v1/workspaces", hub.base))
            .bearer_auth(&ada.token)
            .header("content-type", content_type)
            .body(body);
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or_default())
        }
    };
    check(
        400,
        "bad_json",
        raw("{\"name\": ", "application/json").await,
    );
    check(
        400,
        "invalid_payload",
        raw("{\"name\": \"x\"}", "text/plain").await,
    );
    let big = Box::leak(format!(r#"{{"name": "{}"}}"#, "x".repeat(100 * 1024)).into_boxed_str());
    check(413, "payload_too_large", raw(big, "application/json").await);
    // A request to /ws that is not a WebSocket upgrade.
    check(
        400,
        "invalid_payload",
        api.call(Method::GET, "/ws", Some(&ada.token), None).await,
    );
    // The WebSocket's own messages are plain too.
    let mut c = hub.ws(&ada).await;
    let reply = c
        .request(json!({"type": "join_workspace", "workspace_id": "nope"}))
        .await;
    assert_eq!(reply["code"], "invalid_payload");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(message.contains("workspace_id"), "{message}");
    assert!(
        !message.contains("urn:uuid") && !message.contains("line 1"),
        "{message}"
    );
    hub.stop().await;
}

both_backends!(
    a_message_in_endless_fragments_is_cut_off_at_the_hard_cap,
    deeply_nested_json_is_refused_and_never_relayed,
    rest_writes_and_reads_are_rate_limited_per_user_and_per_address,
    a_password_spray_from_one_address_is_stopped,
    parallel_login_guesses_get_no_more_than_the_budget,
    mass_registration_from_one_address_is_stopped,
    probing_emails_through_add_member_is_throttled,
    workspace_creation_has_an_hourly_quota,
    every_error_is_json_with_a_code_in_plain_words,
);
