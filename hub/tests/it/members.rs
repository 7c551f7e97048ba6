//! Workspaces and their members over REST, and how membership changes reach the room.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestHub};

async fn owners_manage_members_and_the_last_owner_stays(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let bob = api.register("bob").await;
    let cat = api.register("cat").await;
    let ws = api.create_workspace(&ada, "Team").await;
    api.add_member(&ada, &ws, &bob, "admin").await;

    let (status, list) = api.get("/api/v1/workspaces", &bob.token).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["role"], "admin");

    // Admins add members but cannot make owners; unknown emails are user_not_found.
    let base = format!("/api/v1/workspaces/{ws}/members");
    let (status, body) = api
        .post(
            &base,
            Some(&bob.token),
            json!({"email": cat.email, "role": "owner"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, body) = api
        .post(
            &base,
            Some(&bob.token),
            json!({"email": "nobody@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("user_not_found"))
    );
    api.add_member(&bob, &ws, &cat, "member").await;
    let (status, body) = api
        .post(
            &base,
            Some(&bob.token),
            json!({"email": cat.email, "role": "member"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_exists"))
    );
    // Members cannot manage.
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("{base}/{}", bob.id),
            Some(&cat.token),
            None,
        )
        .await;
    assert_eq!(status, 403);

    // The last owner can neither leave nor be demoted.
    let (status, body) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/leave"),
            Some(&ada.token),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("last_owner"))
    );
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("{base}/{}", ada.id),
            Some(&ada.token),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("last_owner"))
    );
    // With a second owner, the first may step down.
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("{base}/{}", bob.id),
            Some(&ada.token),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(
        (status, body["role"].as_str()),
        (200, Some("owner")),
        "{body}"
    );
    let (status, _) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/leave"),
            Some(&ada.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, members) = api.get(&base, &bob.token).await;
    assert_eq!(status, 200);
    let roles: Vec<_> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(roles, ["owner", "member"]);
    // Ada is out: the workspace is invisible to her.
    let (status, body) = api
        .get(&format!("/api/v1/workspaces/{ws}"), &ada.token)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_a_member"))
    );
    hub.stop().await;
}

async fn membership_changes_are_events_and_removal_ends_the_session(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let bob = api.register("bob").await;
    let ws = api.create_workspace(&ada, "Team").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;

    api.add_member(&ada, &ws, &bob, "member").await;
    let joined = a.next_of("member_joined").await;
    assert_eq!(
        (
            joined["member"]["user_id"].as_str(),
            joined["member"]["role"].as_str()
        ),
        (Some(bob.id.as_str()), Some("member"))
    );
    assert!(joined["offset"].as_u64().is_some());

    let mut b = hub.ws(&bob).await;
    b.join(&ws, None).await;
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/v1/workspaces/{ws}"),
            Some(&ada.token),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(b.next_of("workspace_renamed").await["name"], "Renamed");

    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/workspaces/{ws}/members/{}", bob.id),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(b.next_of("member_left").await["user_id"], json!(bob.id));
    let offline = a
        .next_where(|v| v["type"] == "user_presence" && v["status"] == "offline")
        .await;
    assert_eq!(offline["user_id"], json!(bob.id));
    let reply = b
        .request(json!({"type": "task_create", "workspace_id": ws, "task": {"title": "x"}}))
        .await;
    assert_eq!(reply["code"], "not_joined", "{reply}");

    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/workspaces/{ws}"),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        a.next_of("workspace_deleted").await["workspace_id"],
        json!(ws)
    );
    let (status, _) = api
        .get(&format!("/api/v1/workspaces/{ws}"), &ada.token)
        .await;
    assert_eq!(status, 404);
    let (_, list) = api.get("/api/v1/workspaces", &ada.token).await;
    assert_eq!(list, json!([]));
    hub.stop().await;
}

both_backends!(
    owners_manage_members_and_the_last_owner_stays,
    membership_changes_are_events_and_removal_ends_the_session,
);
