//! Access tokens on open sockets: told ahead of expiry, renewed in band, closed with 4002 at
//! expiry otherwise; logout and a revoked token family close the account's sockets.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestHub};

async fn an_expiring_token_is_announced_renewed_in_band_or_closes_the_socket(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| c.auth.access_ttl_secs = 4).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;

    // Not renewed: told about it, then closed at expiry with 4002.
    let started = Instant::now();
    let mut b = hub.ws(&bob).await;
    b.join(&ws, None).await;
    let notice = b.next_of("token_expiring").await;
    assert!(
        notice["in_ms"].as_u64().is_some_and(|ms| ms <= 4000),
        "{notice}"
    );
    assert!(notice["expires_at"].is_string());
    assert_eq!(b.closed().await, Some(4002));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "closed before its token expired"
    );

    // Renewed with a fresh token: the socket outlives the first token.
    let refresh = |token: String| {
        let api = hub.api();
        async move {
            let (status, fresh) = api
                .post(
                    "/api/v1/auth/refresh",
                    None,
                    json!({"refresh_token": token}),
                )
                .await;
            assert_eq!(status, 200, "{fresh}");
            fresh
        }
    };
    let ada = crate::support::user_of(&refresh(ada.refresh.clone()).await);
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let first = a.next_of("token_expiring").await;
    let fresh = refresh(ada.refresh.clone()).await;
    let bob = crate::support::user_of(&refresh(bob.refresh.clone()).await);
    // Someone else's token is refused, and changes nothing.
    let err = a
        .request(json!({"type": "auth", "ref": "x", "token": bob.token}))
        .await;
    assert_eq!(err["code"], "forbidden");
    let ack = a
        .ok(json!({"type": "auth", "token": fresh["access_token"]}))
        .await;
    assert!(
        ack["expires_at"].as_str() > first["expires_at"].as_str(),
        "{ack} {first}"
    );
    // Past the first token's expiry, still there and working.
    tokio::time::sleep(Duration::from_millis(
        first["in_ms"].as_u64().unwrap_or(2000) + 600,
    ))
    .await;
    a.create_task(&ws, "still connected").await;
    // A malformed `auth` is answered, not fatal.
    let err = a.request(json!({"type": "auth", "ref": 9})).await;
    assert_eq!(err["code"], "invalid_payload");
}

async fn logout_and_a_reused_refresh_token_close_the_accounts_sockets(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let mut a = hub.ws(&ada).await;
    let (status, _) = api
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": ada.refresh}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(a.closed().await, Some(4001));
    // Logging in again opens sockets as before.
    let (status, again) = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": ada.email, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    let again = crate::support::user_of(&again);
    let mut a = hub.ws(&again).await;
    // A refresh token used twice revokes its family: the sockets close too.
    let (status, _) = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": again.refresh}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": again.refresh}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(a.closed().await, Some(4001));
}

both_backends!(
    an_expiring_token_is_announced_renewed_in_band_or_closes_the_socket,
    logout_and_a_reused_refresh_token_close_the_accounts_sockets,
);
