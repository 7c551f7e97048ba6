//! Invitations and password resets by email, through the job outbox: tokens that work once and
//! expire, mail written in the same transaction as the token (so a node that dies before sending
//! leaves it to the next), retries and the dead-letter state.

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub, eventually};

const ADMIN_TOKEN: &str = "an-operator-token-of-at-least-32-bytes!!";

/// The mails written to the folder, as text (quoted-printable soft breaks and `=3D` undone).
fn mails(data_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("mail")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|m| {
            m.replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=")
        })
        .collect()
}

/// The token of the link in the mail to `to`.
async fn token_mailed_to(hub: &TestHub, to: &str) -> String {
    let dir = hub.storage.data_dir();
    eventually(&format!("a mail to {to}"), || {
        let found = mails(&dir).iter().any(|m| m.contains(to));
        async move { found }
    })
    .await;
    let mail = mails(&dir)
        .into_iter()
        .find(|m| m.contains(to))
        .unwrap_or_default();
    let after = mail.split("token=").nth(1).expect("a link with a token");
    after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

async fn invitations_are_accepted_once_by_the_invited_email_logged_in_or_registering(
    backend: Backend,
) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob_member, ws) = api.team("member").await;
    let bob = api.register("bob2").await;
    let invite = format!("/api/v1/workspaces/{ws}/invite");
    let (status, inv) = api
        .post(
            &invite,
            Some(&ada.token),
            json!({"email": bob.email, "role": "admin"}),
        )
        .await;
    assert_eq!(status, 201, "{inv}");
    assert_eq!(
        (inv["status"].as_str(), inv["role"].as_str()),
        (Some("pending"), Some("admin"))
    );
    assert!(inv.get("token").is_none());
    // A plain member cannot invite; an admin cannot invite an owner.
    let (status, _) = api
        .post(
            &invite,
            Some(&bob_member.token),
            json!({"email": "x@example.com"}),
        )
        .await;
    assert_eq!(status, 403);

    let token = token_mailed_to(&hub, &bob.email).await;
    let accept = "/api/v1/invitations/accept";
    // Another account cannot use bob's link.
    let (status, err) = api
        .post(accept, Some(&bob_member.token), json!({"token": token}))
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{err}"
    );
    let (status, joined) = api
        .post(accept, Some(&bob.token), json!({"token": token}))
        .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["member"]["role"], "admin");
    let (_, members) = api
        .get(&format!("/api/v1/workspaces/{ws}/members"), &ada.token)
        .await;
    assert!(members.to_string().contains(&bob.id), "{members}");
    let (status, again) = api
        .post(accept, Some(&bob.token), json!({"token": token}))
        .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (400, Some("invalid_token"))
    );

    // Someone without an account registers through the link, with the invited email.
    let carol = format!("carol-{}@example.com", uuid::Uuid::new_v4().simple());
    api.post(
        &invite,
        Some(&ada.token),
        json!({"email": carol, "role": "viewer"}),
    )
    .await;
    let token = token_mailed_to(&hub, &carol).await;
    let (status, bad) = api
        .post(
            accept,
            None,
            json!({"token": token, "name": "Carol", "password": "short"}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    let (status, reg) = api
        .post(
            accept,
            None,
            json!({"token": token, "name": "Carol", "password": "a long password"}),
        )
        .await;
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["member"]["role"], "viewer");
    let carol_token = reg["auth"]["access_token"].as_str().unwrap();
    let (status, _) = api
        .get(&format!("/api/v1/workspaces/{ws}/tasks"), carol_token)
        .await;
    assert_eq!(status, 200, "carol is a member");

    // A revoked link is dead; the list tells each invitation's state.
    let dave = format!("dave-{}@example.com", uuid::Uuid::new_v4().simple());
    let (_, inv) = api
        .post(&invite, Some(&ada.token), json!({"email": dave}))
        .await;
    let token = token_mailed_to(&hub, &dave).await;
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!(
                "/api/v1/workspaces/{ws}/invitations/{}",
                inv["id"].as_str().unwrap()
            ),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, err) = api
        .post(
            accept,
            None,
            json!({"token": token, "name": "Dave", "password": "a long password"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_token"))
    );
    let (_, list) = api
        .get(&format!("/api/v1/workspaces/{ws}/invitations"), &ada.token)
        .await;
    let mut states: Vec<&str> = list["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    states.sort_unstable();
    assert_eq!(states, ["accepted", "accepted", "revoked"]);
}

async fn an_expired_invitation_does_not_work(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| c.mail.invite_ttl_hours = 0).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let bob = api.register("bob").await;
    let ws = api.create_workspace(&ada, "Team").await;
    api.post(
        &format!("/api/v1/workspaces/{ws}/invite"),
        Some(&ada.token),
        json!({"email": bob.email}),
    )
    .await;
    let token = token_mailed_to(&hub, &bob.email).await;
    let (status, err) = api
        .post(
            "/api/v1/invitations/accept",
            Some(&bob.token),
            json!({"token": token}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_token"))
    );
}

async fn a_reset_link_works_once_and_ends_every_session(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    // An unknown email gets the same answer, and no mail.
    let (status, _) = api
        .post(
            "/api/v1/auth/password/forgot",
            None,
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = api
        .post(
            "/api/v1/auth/password/forgot",
            None,
            json!({"email": ada.email}),
        )
        .await;
    assert_eq!(status, 202);
    let token = token_mailed_to(&hub, &ada.email).await;
    assert!(
        !mails(&hub.storage.data_dir())
            .iter()
            .any(|m| m.contains("nobody@example.com"))
    );

    let reset = "/api/v1/auth/password/reset";
    let (status, _) = api
        .post(
            reset,
            None,
            json!({"token": token, "password": "a brand new password"}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, err) = api
        .post(
            reset,
            None,
            json!({"token": token, "password": "another new password"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_token"))
    );
    // The old refresh token is revoked; the new password logs in, the old one not.
    let (status, _) = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": ada.refresh}),
        )
        .await;
    assert_eq!(status, 401);
    let login = |password: &str| json!({"email": ada.email, "password": password});
    let (status, _) = api
        .post("/api/v1/auth/login", None, login("a brand new password"))
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .post("/api/v1/auth/login", None, login("correct horse battery"))
        .await;
    assert_eq!(status, 401);
}

/// A node that committed an invitation and died before its worker sent the mail: the next hub
/// on the same database sends it.
async fn mail_committed_but_not_sent_is_sent_by_the_next_hub(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| c.mail.job_poll_ms = 0).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let email = format!("late-{}@example.com", uuid::Uuid::new_v4().simple());
    let (status, _) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/invite"),
            Some(&ada.token),
            json!({"email": email}),
        )
        .await;
    assert_eq!(status, 201);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        mails(&hub.storage.data_dir()).is_empty(),
        "no worker, no mail"
    );
    let storage = hub.stop().await;
    let hub = TestHub::start_on(storage, |_| {}).await;
    let token = token_mailed_to(&hub, &email).await;
    assert!(!token.is_empty());
}

async fn failing_mail_is_retried_then_parked_dead_for_the_operator(backend: Backend) {
    let hub = TestHub::start_with(backend, |c| {
        c.admin_token = Some(ADMIN_TOKEN.into());
        // Nothing listens on port 1: every attempt fails.
        c.mail.smtp_url = Some("smtp://127.0.0.1:1".into());
        c.mail.job_max_attempts = 3;
        c.mail.job_backoff_ms = 20;
        c.mail.job_poll_ms = 50;
    })
    .await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    api.post(
        &format!("/api/v1/workspaces/{ws}/invite"),
        Some(&ada.token),
        json!({"email": "x@example.com"}),
    )
    .await;
    let mut dead = Value::Null;
    for _ in 0..200 {
        let (_, body) = api.get("/api/v1/admin/jobs?state=dead", ADMIN_TOKEN).await;
        if body["jobs"].as_array().is_some_and(|j| !j.is_empty()) {
            dead = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let job = &dead["jobs"][0];
    assert_eq!(job["attempts"], 3, "{dead}");
    assert!(job["last_error"].is_string(), "{dead}");
    assert_eq!(job["payload"]["to"], "x@example.com");
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/admin/jobs/{}/retry", job["id"].as_str().unwrap()),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let (_, pending) = api
        .get("/api/v1/admin/jobs?state=pending", ADMIN_TOKEN)
        .await;
    let (_, still_dead) = api.get("/api/v1/admin/jobs?state=dead", ADMIN_TOKEN).await;
    let total =
        pending["jobs"].as_array().unwrap().len() + still_dead["jobs"].as_array().unwrap().len();
    assert_eq!(
        total, 1,
        "the job is back in line (or already failed again): {pending} {still_dead}"
    );
}

both_backends!(
    invitations_are_accepted_once_by_the_invited_email_logged_in_or_registering,
    an_expired_invitation_does_not_work,
    a_reset_link_works_once_and_ends_every_session,
    mail_committed_but_not_sent_is_sent_by_the_next_hub,
    failing_mail_is_retried_then_parked_dead_for_the_operator,
);
