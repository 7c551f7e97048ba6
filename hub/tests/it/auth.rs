//! Accounts and tokens over REST.

use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestHub, user_of};

async fn reuse_of_a_rotated_refresh_token_revokes_the_family(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;

    let (status, first) = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": ada.refresh}),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let rotated = user_of(&first);
    assert_ne!(rotated.refresh, ada.refresh);

    // The old token again: refused, and the family is gone.
    let (status, reused) = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": ada.refresh}),
        )
        .await;
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (401, Some("refresh_token_reused"))
    );
    let (status, body) = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": rotated.refresh}),
        )
        .await;
    assert_eq!(
        status, 401,
        "the newest token of the family is revoked too: {body}"
    );

    // Another login is another family, untouched.
    let (status, login) = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": ada.email, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let fresh = user_of(&login);
    let (status, _) = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": fresh.refresh}),
        )
        .await;
    assert_eq!(status, 200);
    hub.stop().await;
}

async fn logout_revokes_the_refresh_token_and_me_needs_a_token(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let (status, me) = api.get("/api/v1/auth/me", &ada.token).await;
    assert_eq!(
        (status, me["email"].as_str()),
        (200, Some(ada.email.as_str()))
    );
    let (status, body) = api
        .call(reqwest::Method::GET, "/api/v1/auth/me", None, None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = api
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": ada.refresh}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": ada.refresh}),
        )
        .await;
    assert_eq!(status, 401);
    hub.stop().await;
}

async fn registration_validates_and_refuses_duplicates(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    for (body, why) in [
        (
            json!({"email": "not-an-email", "password": "long enough pw", "name": "x"}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": "short", "name": "x"}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "long enough pw", "name": " "}),
            "name",
        ),
        (json!({"email": "a@example.com"}), "missing fields"),
    ] {
        let (status, resp) = api.post("/api/v1/auth/register", None, body).await;
        assert_eq!(
            (status, resp["error"]["code"].as_str()),
            (400, Some("invalid_payload")),
            "{why}: {resp}"
        );
    }
    let (status, resp) = api
        .call(reqwest::Method::POST, "/api/v1/auth/register", None, None)
        .await;
    assert_eq!(status, 400, "no body: {resp}");
    let ada = api.register("ada").await;
    let (status, resp) = api
        .post("/api/v1/auth/register", None, json!({"email": ada.email.to_uppercase(), "password": "long enough pw", "name": "again"}))
        .await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (409, Some("already_exists"))
    );
    hub.stop().await;
}

async fn five_failed_logins_lock_out_that_email_from_that_address(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    for _ in 0..5 {
        let (status, _) = api
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": ada.email, "password": "wrong password"}),
            )
            .await;
        assert_eq!(status, 401);
    }
    let resp = hub
        .http
        .post(format!("{}/api/v1/auth/login", hub.base))
        .json(&json!({"email": ada.email, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429, "even the right password waits");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    hub.stop().await;
}

both_backends!(
    reuse_of_a_rotated_refresh_token_revokes_the_family,
    logout_revokes_the_refresh_token_and_me_needs_a_token,
    registration_validates_and_refuses_duplicates,
    five_failed_logins_lock_out_that_email_from_that_address,
);
