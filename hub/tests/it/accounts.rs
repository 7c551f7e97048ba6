//! Disabled and deleted accounts: the operator's routes, deleting one's own account, and what
//! happens to the tokens, sockets and workspaces such an account leaves behind.

use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use crate::both_backends;
use crate::support::{Api, Backend, TestHub, User, user_of};

/// The operator token the hubs in these tests are configured with (at least 32 bytes).
const ADMIN_TOKEN: &str = "operator-token-for-tests-0123456789abcdef";
/// The password `Api::register` gives every account.
const PASSWORD: &str = "correct horse battery";

async fn hub_with_operator(backend: Backend) -> TestHub {
    TestHub::start_with(backend, |c| c.admin_token = Some(ADMIN_TOKEN.into())).await
}

/// An operator call (`path` under `/api/v1/admin`) with `token` as the bearer.
async fn admin(api: &Api<'_>, method: Method, path: &str, token: Option<&str>) -> (u16, Value) {
    api.call(method, &format!("/api/v1/admin{path}"), token, None)
        .await
}

async fn delete_account(api: &Api<'_>, user: &User, password: &str) -> (u16, Value) {
    api.call(
        Method::DELETE,
        "/api/v1/auth/me",
        Some(&user.token),
        Some(json!({ "password": password })),
    )
    .await
}

async fn login(api: &Api<'_>, email: &str) -> (u16, Value) {
    api.post(
        "/api/v1/auth/login",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await
}

async fn refresh(api: &Api<'_>, user: &User) -> (u16, Value) {
    api.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": user.refresh}),
    )
    .await
}

/// A WebSocket upgrade the hub must refuse: its HTTP status and JSON body.
async fn refused_upgrade(hub: &TestHub, token: &str) -> (u16, Value) {
    let url = format!("{}/ws?token={token}", hub.base.replacen("http", "ws", 1));
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("the hub upgraded a connection it should have refused"),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (resp.status().as_u16(), body)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

fn member_ids(members: &Value) -> Vec<String> {
    members
        .as_array()
        .expect("members array")
        .iter()
        .map(|m| m["user_id"].as_str().expect("user_id").to_owned())
        .collect()
}

async fn operator_routes_exist_only_with_an_admin_token_and_check_it(backend: Backend) {
    // Without the setting, the routes are not there, whatever the caller presents.
    let plain = TestHub::start(backend).await;
    let api = plain.api();
    let ada = api.register("ada").await;
    for (method, path) in [
        (Method::POST, format!("/users/{}/disable", ada.id)),
        (Method::POST, format!("/users/{}/enable", ada.id)),
        (Method::DELETE, format!("/users/{}", ada.id)),
    ] {
        let (status, body) = admin(&api, method, &path, Some(ADMIN_TOKEN)).await;
        assert_eq!(
            (status, code(&body)),
            (404, Some("not_found")),
            "{path}: {body}"
        );
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let (status, _) = api.get("/api/v1/auth/me", &ada.token).await;
    assert_eq!(status, 200, "nothing happened to the account");
    plain.stop().await;

    // With it, only that token opens them.
    let hub = hub_with_operator(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let disable = format!("/users/{}/disable", ada.id);
    for token in [
        None,
        Some("operator-token-for-tests-0123456789abcdeX"),
        Some(ada.token.as_str()),
    ] {
        let (status, body) = admin(&api, Method::POST, &disable, token).await;
        assert_eq!(
            (status, code(&body)),
            (401, Some("unauthorized")),
            "{token:?}: {body}"
        );
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let (status, _) = api.get("/api/v1/auth/me", &ada.token).await;
    assert_eq!(status, 200, "a refused operator call disables nobody");

    // An account that does not exist is not found.
    let nobody = uuid::Uuid::new_v4();
    for (method, path) in [
        (Method::POST, format!("/users/{nobody}/disable")),
        (Method::POST, format!("/users/{nobody}/enable")),
        (Method::DELETE, format!("/users/{nobody}")),
    ] {
        let (status, body) = admin(&api, method, &path, Some(ADMIN_TOKEN)).await;
        assert_eq!(
            (status, code(&body)),
            (404, Some("not_found")),
            "{path}: {body}"
        );
    }
    hub.stop().await;
}

async fn a_disabled_account_is_refused_everywhere_at_once(backend: Backend) {
    let hub = hub_with_operator(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let mut socket = hub.ws(&ada).await;

    let (status, body) = admin(
        &api,
        Method::POST,
        &format!("/users/{}/disable", ada.id),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 204, "{body}");

    assert_eq!(
        socket.closed().await,
        Some(4001),
        "the open socket is closed"
    );
    let (status, body) = api.get("/api/v1/auth/me", &ada.token).await;
    assert_eq!(
        (status, code(&body)),
        (401, Some("account_disabled")),
        "the unexpired access token: {body}"
    );
    let (status, body) = refused_upgrade(&hub, &ada.token).await;
    assert_eq!(status, 401, "no new socket: {body}");
    let (status, body) = refresh(&api, &ada).await;
    assert_eq!(status, 401, "no new tokens: {body}");
    let (status, body) = login(&api, &ada.email).await;
    assert_eq!(
        (status, code(&body)),
        (401, Some("account_disabled")),
        "even with the right password: {body}"
    );
    hub.stop().await;
}

async fn an_enabled_account_logs_in_afresh_but_its_old_refresh_tokens_stay_revoked(
    backend: Backend,
) {
    let hub = hub_with_operator(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    for action in ["disable", "enable"] {
        let (status, body) = admin(
            &api,
            Method::POST,
            &format!("/users/{}/{action}", ada.id),
            Some(ADMIN_TOKEN),
        )
        .await;
        assert_eq!(status, 204, "{action}: {body}");
    }

    let (status, body) = login(&api, &ada.email).await;
    assert_eq!(status, 200, "{body}");
    let fresh = user_of(&body);
    let (status, me) = api.get("/api/v1/auth/me", &fresh.token).await;
    assert_eq!((status, me["id"].as_str()), (200, Some(ada.id.as_str())));
    let socket = hub.ws(&fresh).await;
    assert_eq!(socket.hello["type"], "hello");

    let (status, body) = refresh(&api, &ada).await;
    assert_eq!(status, 401, "revoked when disabled: {body}");
    let (status, body) = refresh(&api, &fresh).await;
    assert_eq!(status, 200, "the new login's token works: {body}");
    hub.stop().await;
}

async fn deleting_ones_account_takes_the_password_and_ends_every_session(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let mut socket = hub.ws(&ada).await;

    let (status, body) = delete_account(&api, &ada, "not my password").await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    let (status, _) = api.get("/api/v1/auth/me", &ada.token).await;
    assert_eq!(status, 200, "a wrong password deletes nothing");

    let (status, body) = delete_account(&api, &ada, PASSWORD).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        socket.closed().await,
        Some(4001),
        "the open socket is closed"
    );
    let (status, body) = api.get("/api/v1/auth/me", &ada.token).await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    let (status, body) = refused_upgrade(&hub, &ada.token).await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    let (status, body) = refresh(&api, &ada).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = login(&api, &ada.email).await;
    assert_eq!(status, 401, "{body}");
    hub.stop().await;
}

async fn a_deleted_account_leaves_shared_workspaces_and_its_own_are_deleted(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, team) = api.team("member").await;
    let solo = api.create_workspace(&bob, "Bob's notes").await;
    let mut a = hub.ws(&ada).await;
    a.join(&team, None).await;

    let (status, body) = delete_account(&api, &bob, PASSWORD).await;
    assert_eq!(status, 204, "{body}");

    let left = a.next_of("member_left").await;
    assert_eq!(left["user_id"], json!(bob.id), "{left}");
    assert_eq!(left["workspace_id"], json!(team), "{left}");
    assert!(left["offset"].as_u64().is_some(), "durable: {left}");
    let (status, members) = api
        .get(&format!("/api/v1/workspaces/{team}/members"), &ada.token)
        .await;
    assert_eq!(status, 200, "{members}");
    assert_eq!(member_ids(&members), [ada.id.as_str()]);

    // The email is free again, and the new account inherits nothing.
    let (status, body) = api
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": bob.email, "password": PASSWORD, "name": "bob again"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let again = user_of(&body);
    assert_ne!(again.id, bob.id);
    let (status, list) = api.get("/api/v1/workspaces", &again.token).await;
    assert_eq!((status, list), (200, json!([])));
    let (status, _) = api
        .get(&format!("/api/v1/workspaces/{solo}"), &again.token)
        .await;
    assert_eq!(status, 404);
    hub.stop().await;
}

async fn the_only_owner_of_a_shared_workspace_hands_it_over_before_deleting_their_account(
    backend: Backend,
) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, team) = api.team("member").await;
    let notes = api.create_workspace(&ada, "Ada's notes").await;

    let (status, body) = delete_account(&api, &ada, PASSWORD).await;
    assert_eq!((status, code(&body)), (409, Some("last_owner")), "{body}");
    assert_eq!(body["error"]["workspaces"], json!([team]), "{body}");

    // Nothing changed: not the account, not the shared workspace, not her own.
    let (status, _) = api.get("/api/v1/auth/me", &ada.token).await;
    assert_eq!(status, 200);
    let (_, members) = api
        .get(&format!("/api/v1/workspaces/{team}/members"), &bob.token)
        .await;
    assert_eq!(member_ids(&members), [ada.id.as_str(), bob.id.as_str()]);
    assert_eq!(members[0]["role"], "owner");
    let (status, _) = api
        .get(&format!("/api/v1/workspaces/{notes}"), &ada.token)
        .await;
    assert_eq!(status, 200, "her own workspace is still there");

    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/v1/workspaces/{team}/members/{}", bob.id),
            Some(&ada.token),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = delete_account(&api, &ada, PASSWORD).await;
    assert_eq!(status, 204, "{body}");

    let (status, detail) = api
        .get(&format!("/api/v1/workspaces/{team}"), &bob.token)
        .await;
    assert_eq!(status, 200, "the workspace survives: {detail}");
    assert_eq!(member_ids(&detail["members"]), [bob.id.as_str()]);
    assert_eq!(detail["members"][0]["role"], "owner");
    hub.stop().await;
}

async fn an_operator_deletes_an_account_like_its_owner_would(backend: Backend) {
    let hub = hub_with_operator(backend).await;
    let api = hub.api();
    let (ada, bob, team) = api.team("member").await;
    let mut a = hub.ws(&ada).await;
    a.join(&team, None).await;
    let mut b = hub.ws(&bob).await;

    // The operator may not orphan a shared workspace either.
    let (status, body) = admin(
        &api,
        Method::DELETE,
        &format!("/users/{}", ada.id),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!((status, code(&body)), (409, Some("last_owner")), "{body}");
    assert_eq!(body["error"]["workspaces"], json!([team]), "{body}");
    let (status, _) = api.get("/api/v1/auth/me", &ada.token).await;
    assert_eq!(status, 200, "ada's account is untouched");

    let (status, body) = admin(
        &api,
        Method::DELETE,
        &format!("/users/{}", bob.id),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(b.closed().await, Some(4001));
    let (status, body) = api.get("/api/v1/auth/me", &bob.token).await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    assert_eq!(a.next_of("member_left").await["user_id"], json!(bob.id));
    let (_, members) = api
        .get(&format!("/api/v1/workspaces/{team}/members"), &ada.token)
        .await;
    assert_eq!(member_ids(&members), [ada.id.as_str()]);
    hub.stop().await;
}

/// The bug this hardening fixes: a token outliving its account got 503 on writes (the insert
/// failed on a missing user) and a `hello` on the socket.
async fn a_deleted_accounts_token_gets_401_not_503_on_writes_and_no_socket(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Mine").await;
    let (status, body) = delete_account(&api, &ada, PASSWORD).await;
    assert_eq!(status, 204, "{body}");

    let (status, body) = api
        .post(
            "/api/v1/workspaces",
            Some(&ada.token),
            json!({"name": "Ghost"}),
        )
        .await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    let (status, body) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/tasks"),
            Some(&ada.token),
            json!({"title": "Ghost task"}),
        )
        .await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    let (status, body) = refused_upgrade(&hub, &ada.token).await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    hub.stop().await;
}

both_backends!(
    operator_routes_exist_only_with_an_admin_token_and_check_it,
    a_disabled_account_is_refused_everywhere_at_once,
    an_enabled_account_logs_in_afresh_but_its_old_refresh_tokens_stay_revoked,
    deleting_ones_account_takes_the_password_and_ends_every_session,
    a_deleted_account_leaves_shared_workspaces_and_its_own_are_deleted,
    the_only_owner_of_a_shared_workspace_hands_it_over_before_deleting_their_account,
    an_operator_deletes_an_account_like_its_owner_would,
    a_deleted_accounts_token_gets_401_not_503_on_writes_and_no_socket,
);
