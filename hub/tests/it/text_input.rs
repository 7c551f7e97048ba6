//! Human text on its way in: NUL bytes (which PostgreSQL refuses and SQLite stores), invisible
//! and bidi characters that make look-alikes, and the text that must pass untouched. Both
//! backends answer the same input the same way: a 400 with a code, never a 503.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Api, Backend, TestHub};

/// The password `Api::register` gives every account.
const PASSWORD: &str = "correct horse battery";
/// A family: three emoji joined by zero-width joiners, which must survive as typed.
const FAMILY: &str = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn register(api: &Api<'_>, email: &str, name: &str) -> (u16, Value) {
    api.post(
        "/api/v1/auth/register",
        None,
        json!({"email": email, "password": PASSWORD, "name": name}),
    )
    .await
}

async fn registration_refuses_nul_invisible_and_bidi_characters_naming_the_field(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ok_email = format!("ada-{}@example.com", unique());
    for (email, name, field) in [
        (ok_email.as_str(), "A\u{0}da", "name"),
        ("a\u{0}da@example.com", "Ada", "email"),
        ("a\u{200B}da@example.com", "Ada", "email"),
        (ok_email.as_str(), "\u{202E}Ada", "name"),
    ] {
        let (status, body) = register(&api, email, name).await;
        assert_eq!(
            (status, code(&body)),
            (400, Some("invalid_payload")),
            "{email:?} {name:?}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{email:?} {name:?}: the message names `{field}`: {body}"
        );
    }
    // None of them made an account: the clean email is still free.
    let (status, body) = register(&api, &ok_email, "Ada").await;
    assert_eq!(status, 201, "{body}");
    hub.stop().await;
}

async fn a_fullwidth_email_registers_as_ascii_and_has_no_look_alike_twin(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let suffix = unique();
    let fullwidth = format!(
        "\u{FF21}\u{FF24}\u{FF21}{suffix}@\u{FF25}\u{FF38}\u{FF21}\u{FF2D}\u{FF30}\u{FF2C}\u{FF25}.\u{FF43}\u{FF4F}\u{FF4D}"
    );
    let ascii = format!("ada{suffix}@example.com");

    let (status, body) = register(&api, &fullwidth, "Ada").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["user"]["email"], json!(ascii), "{body}");

    let (status, body) = register(&api, &ascii, "Ada's twin").await;
    assert_eq!(
        (status, code(&body)),
        (409, Some("already_exists")),
        "{body}"
    );
    let (status, body) = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": ascii, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "the ASCII form signs in: {body}");
    hub.stop().await;
}

async fn login_with_a_nul_in_the_email_is_a_bad_request(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (status, body) = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "a\u{0}da@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (400, Some("invalid_payload")),
        "{body}"
    );
    hub.stop().await;
}

async fn workspace_names_refuse_nul_and_keep_emoji_sequences(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;

    let (status, body) = api
        .post(
            "/api/v1/workspaces",
            Some(&ada.token),
            json!({"name": "Te\u{0}am"}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (400, Some("invalid_payload")),
        "{body}"
    );

    let family = format!("Family {FAMILY}");
    let (status, body) = api
        .post(
            "/api/v1/workspaces",
            Some(&ada.token),
            json!({ "name": family }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], json!(family), "comes back identical");
    let ws = body["id"].as_str().expect("id").to_owned();

    let path = format!("/api/v1/workspaces/{ws}");
    let (status, body) = api
        .call(
            Method::PUT,
            &path,
            Some(&ada.token),
            Some(json!({"name": "Re\u{0}named"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (400, Some("invalid_payload")),
        "{body}"
    );
    let (status, body) = api
        .call(
            Method::PUT,
            &path,
            Some(&ada.token),
            Some(json!({ "name": FAMILY })),
        )
        .await;
    assert_eq!((status, &body["name"]), (200, &json!(FAMILY)), "{body}");
    let (status, body) = api.get(&path, &ada.token).await;
    assert_eq!((status, &body["name"]), (200, &json!(FAMILY)), "{body}");
    hub.stop().await;
}

async fn adding_a_member_by_an_email_with_nul_is_a_bad_request(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let bob = api.register("bob").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let members = format!("/api/v1/workspaces/{ws}/members");

    let (status, body) = api
        .post(
            &members,
            Some(&ada.token),
            json!({"email": format!("\u{0}{}", bob.email), "role": "member"}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (400, Some("invalid_payload")),
        "{body}"
    );
    let (_, list) = api.get(&members, &ada.token).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    hub.stop().await;
}

async fn task_titles_refuse_nul_and_line_breaks_over_rest_and_websocket(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let mut socket = hub.ws(&ada).await;
    socket.join(&ws, None).await;

    for title in ["a\u{0}b", "first line\nsecond line"] {
        let (status, body) = api
            .post(
                &format!("/api/v1/workspaces/{ws}/tasks"),
                Some(&ada.token),
                json!({ "title": title }),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (400, Some("invalid_payload")),
            "REST {title:?}: {body}"
        );
        let reply = socket
            .request(json!({"type": "task_create", "workspace_id": ws, "task": {"title": title}}))
            .await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("invalid_payload")),
            "WebSocket {title:?}: {reply}"
        );
    }
    assert_eq!(api.tasks(&ada, &ws).await, Vec::<Value>::new());
    hub.stop().await;
}

async fn task_descriptions_keep_newlines_and_tabs_and_titles_are_trimmed(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let description = "Steps:\n\t1. open\n\t2. close\n\nDone.\n";

    let (status, body) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/tasks"),
            Some(&ada.token),
            json!({"title": "  Ship it \t", "description": description}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["title"], &body["description"]),
        (&json!("Ship it"), &json!(description))
    );

    let mut socket = hub.ws(&ada).await;
    socket.join(&ws, None).await;
    let result = socket
        .ok(json!({"type": "task_create", "workspace_id": ws,
                   "task": {"title": " Over the socket ", "description": description}}))
        .await;
    assert_eq!(
        (&result["task"]["title"], &result["task"]["description"]),
        (&json!("Over the socket"), &json!(description))
    );

    // Stored that way, not just echoed.
    let tasks = api.tasks(&ada, &ws).await;
    let stored: Vec<_> = tasks
        .iter()
        .map(|t| (t["title"].clone(), t["description"].clone()))
        .collect();
    assert_eq!(
        stored,
        [
            (json!("Ship it"), json!(description)),
            (json!("Over the socket"), json!(description)),
        ]
    );
    hub.stop().await;
}

async fn a_broadcast_event_name_with_nul_is_refused_and_not_relayed(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let mut b = hub.ws(&bob).await;
    b.join(&ws, None).await;

    let reply = a
        .request(
            json!({"type": "broadcast", "workspace_id": ws, "event": "cur\u{0}sor", "data": 1}),
        )
        .await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("invalid_payload")),
        "{reply}"
    );
    a.ok(json!({"type": "broadcast", "workspace_id": ws, "event": "cursor", "data": 2}))
        .await;

    // The first broadcast either of them sees is the valid one.
    for (who, client) in [("bob", &mut b), ("ada", &mut a)] {
        let got = client.next_of("broadcast").await;
        assert_eq!(
            (&got["event"], &got["data"], &got["from"]),
            (&json!("cursor"), &json!(2), &json!(ada.id)),
            "{who}: {got}"
        );
    }
    hub.stop().await;
}

both_backends!(
    registration_refuses_nul_invisible_and_bidi_characters_naming_the_field,
    a_fullwidth_email_registers_as_ascii_and_has_no_look_alike_twin,
    login_with_a_nul_in_the_email_is_a_bad_request,
    workspace_names_refuse_nul_and_keep_emoji_sequences,
    adding_a_member_by_an_email_with_nul_is_a_bad_request,
    task_titles_refuse_nul_and_line_breaks_over_rest_and_websocket,
    task_descriptions_keep_newlines_and_tabs_and_titles_are_trimmed,
    a_broadcast_event_name_with_nul_is_refused_and_not_relayed,
);
