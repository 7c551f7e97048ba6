//! The full task model: categories (REST and WebSocket, live events, deleting one unsets its
//! tasks), tags, subtasks, completion time, recurrence rules, and board positions that two
//! clients can move into the same gap without renumbering anything.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub};

async fn categories_are_live_and_deleting_one_unsets_its_tasks(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut b = hub.ws(&bob).await;
    b.join(&ws, None).await;

    let path = format!("/api/v1/workspaces/{ws}/categories");
    let (status, work) = api
        .post(
            &path,
            Some(&ada.token),
            json!({"name": " Work ", "color": "#FF8800"}),
        )
        .await;
    assert_eq!(status, 201, "{work}");
    assert_eq!(
        (work["name"].as_str(), work["color"].as_str()),
        (Some("Work"), Some("#ff8800"))
    );
    let seen = b.next_of("category_created").await;
    assert_eq!(seen["category"]["id"], work["id"]);

    // Names are unique in the workspace, ignoring case; bad colors are refused by field.
    let (status, dup) = api
        .post(&path, Some(&ada.token), json!({"name": "WORK"}))
        .await;
    assert_eq!(
        (status, dup["error"]["code"].as_str()),
        (409, Some("already_exists"))
    );
    let (status, bad) = api
        .post(
            &path,
            Some(&ada.token),
            json!({"name": "x", "color": "red"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("color"),
        "{bad}"
    );

    // Over WebSocket too, acked with the category and its offset.
    let home = b
        .ok(json!({"type": "category_create", "workspace_id": ws, "category": {"name": "Home"}}))
        .await;
    assert_eq!(home["category"]["name"], "Home");
    assert_eq!(home["category"]["position"], 1);
    let renamed = b
        .ok(json!({"type": "category_update", "workspace_id": ws,
                   "category_id": home["category"]["id"], "changes": {"name": "House"}}))
        .await;
    assert_eq!(renamed["category"]["name"], "House");
    let (_, listed) = api.get(&path, &ada.token).await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Work", "House"]);

    // A task in a category; an unknown category is refused.
    let tasks = format!("/api/v1/workspaces/{ws}/tasks");
    let (status, task) = api
        .post(
            &tasks,
            Some(&ada.token),
            json!({"title": "ship", "category_id": work["id"]}),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["category_id"], work["id"]);
    let (status, err) = api
        .post(
            &tasks,
            Some(&ada.token),
            json!({"title": "x", "category_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_payload"))
    );

    b.clear();
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("{path}/{}", work["id"].as_str().unwrap()),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let deleted = b.next_of("category_deleted").await;
    assert_eq!(deleted["tasks"], json!([task["id"]]));
    let (_, after) = api
        .get(
            &format!("{tasks}/{}", task["id"].as_str().unwrap()),
            &ada.token,
        )
        .await;
    assert_eq!(after["category_id"], Value::Null);
    assert_eq!(
        after["version"], 2,
        "unsetting the category is a change of the task"
    );

    // Gone: a second delete, and an update, say so.
    let (status, err) = api
        .call(
            Method::DELETE,
            &format!("{path}/{}", work["id"].as_str().unwrap()),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("category_not_found"))
    );
    let err = b
        .request(json!({"type": "category_update", "workspace_id": ws,
                        "category_id": work["id"], "changes": {"name": "again"}}))
        .await;
    assert_eq!(err["code"], "category_not_found");

    // A viewer cannot touch categories.
    let viewer = api.register("vera").await;
    api.add_member(&ada, &ws, &viewer, "viewer").await;
    let (status, _) = api
        .post(&path, Some(&viewer.token), json!({"name": "mine"}))
        .await;
    assert_eq!(status, 403);
}

async fn tags_subtasks_completion_and_recurrence_are_kept(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, _bob, ws) = api.team("member").await;
    let tasks = format!("/api/v1/workspaces/{ws}/tasks");
    let (status, parent) = api
        .post(
            &tasks,
            Some(&ada.token),
            json!({
                "title": "weekly review", "tags": [" ops ", "ops", "review"],
                "recurrence": {"frequency": "weekly", "interval": 2}
            }),
        )
        .await;
    assert_eq!(status, 201, "{parent}");
    assert_eq!(parent["tags"], json!(["ops", "review"]));
    assert_eq!(
        parent["recurrence"],
        json!({"frequency": "weekly", "interval": 2})
    );
    let pid = parent["id"].as_str().unwrap();
    let (status, child) = api
        .post(
            &tasks,
            Some(&ada.token),
            json!({"title": "collect numbers", "parent_id": pid}),
        )
        .await;
    assert_eq!(status, 201, "{child}");
    let (status, err) = api
        .post(
            &tasks,
            Some(&ada.token),
            json!({"title": "deeper", "parent_id": child["id"]}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    let (status, _) = api
        .post(
            &tasks,
            Some(&ada.token),
            json!({"title": "x", "recurrence": {"frequency": "hourly"}}),
        )
        .await;
    assert_eq!(status, 400);

    let (_, recurring) = api.get(&format!("{tasks}/recurring"), &ada.token).await;
    let ids: Vec<&str> = recurring["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [pid]);

    let (status, done) = api
        .post(
            &format!("{tasks}/{}/complete", child["id"].as_str().unwrap()),
            Some(&ada.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert!(done["completed_at"].is_string(), "{done}");
    let (_, reopened) = api
        .call(
            Method::PUT,
            &format!("{tasks}/{}", child["id"].as_str().unwrap()),
            Some(&ada.token),
            Some(json!({"completed": false})),
        )
        .await;
    assert_eq!(reopened["completed_at"], Value::Null);

    // Deleting the parent deletes its subtask, in one event.
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    a.clear();
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("{tasks}/{pid}"),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let deleted = a.next_of("task_deleted").await;
    assert_eq!(deleted["subtasks"], json!([child["id"]]));
    assert!(api.tasks(&ada, &ws).await.is_empty());
}

async fn two_moves_into_the_same_gap_renumber_nothing(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let mut b = hub.ws(&bob).await;
    b.join(&ws, None).await;
    let mut ids = Vec::new();
    for title in ["one", "two", "three", "four"] {
        let created = a.create_task(&ws, title).await;
        ids.push(created["task"]["id"].as_str().unwrap().to_owned());
    }
    let tasks = format!("/api/v1/workspaces/{ws}/tasks");
    let board = api.tasks(&ada, &ws).await;
    let positions: Vec<&str> = board
        .iter()
        .map(|t| t["position"].as_str().unwrap())
        .collect();
    assert_eq!(positions, ["a0", "a1", "a2", "a3"]);

    // Both move a task between "one" (a0) and "two" (a1), at once: each client computed the
    // key between its neighbours, the way the fractional-indexing package does.
    a.clear();
    let move_to = |task: &str| {
        json!({"type": "task_update", "workspace_id": ws, "task_id": task,
                                       "base_version": 1, "changes": {"position": "a0V"}})
    };
    a.send_text(move_to(&ids[2]).to_string()).await;
    b.send_text(move_to(&ids[3]).to_string()).await;
    let mut moved = 0;
    while moved < 2 {
        let ev = a.next_of("task_updated").await;
        assert_eq!(
            ev["changes"],
            json!({"position": "a0V"}),
            "only the moved task changes: {ev}"
        );
        moved += 1;
    }
    let board = api.tasks(&ada, &ws).await;
    let order: Vec<(&str, &str)> = board
        .iter()
        .map(|t| {
            (
                t["title"].as_str().unwrap(),
                t["position"].as_str().unwrap(),
            )
        })
        .collect();
    // "one" and "two" kept their keys; the two moved tasks sit between them, ordered by
    // creation when their keys are equal.
    assert_eq!(
        order,
        [
            ("one", "a0"),
            ("three", "a0V"),
            ("four", "a0V"),
            ("two", "a1")
        ]
    );

    // A malformed key is refused by field; an integer (older clients) is read as its key.
    let err = a
        .request(
            json!({"type": "task_update", "workspace_id": ws, "task_id": ids[0],
                        "base_version": 1, "changes": {"position": "a0 "}}),
        )
        .await;
    assert_eq!(err["code"], "invalid_payload");
    assert!(
        err["message"].as_str().unwrap().contains("position"),
        "{err}"
    );
    let (status, legacy) = api
        .post(
            &tasks,
            Some(&ada.token),
            json!({"title": "old client", "position": 7}),
        )
        .await;
    assert_eq!((status, legacy["position"].as_str()), (201, Some("a7")));
}

fn titles(page: &Value) -> Vec<String> {
    page["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}

async fn tasks_are_filtered_searched_sorted_and_paged(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let (ada, bob, ws) = api.team("member").await;
    let tasks = format!("/api/v1/workspaces/{ws}/tasks");
    let (_, work) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/categories"),
            Some(&ada.token),
            json!({"name": "Work"}),
        )
        .await;
    let make = [
        json!({"title": "Deploy the release", "priority": "high", "assignee": ada.id,
               "category_id": work["id"], "tags": ["ops"], "due_date": "2030-01-10T00:00:00Z"}),
        json!({"title": "Write release notes", "description": "for the deployment",
               "priority": "medium", "assignee": bob.id, "tags": ["docs", "ops"],
               "due_date": "2030-01-05T00:00:00Z"}),
        json!({"title": "Buy milk", "priority": "low", "completed": true}),
        json!({"title": "Fix the login bug", "priority": "high", "status": "in_progress",
               "category_id": work["id"], "due_date": "2030-02-01T00:00:00Z"}),
        json!({"title": "Plan the offsite", "priority": "low"}),
    ];
    for body in make {
        let (status, t) = api.post(&tasks, Some(&ada.token), body).await;
        assert_eq!(status, 201, "{t}");
    }
    let q = |query: &str| {
        let path = format!("{tasks}?{query}");
        let token = ada.token.clone();
        let api = hub.api();
        async move { api.get(&path, &token).await }
    };
    let ok = |(status, body): (u16, Value)| {
        assert_eq!(status, 200, "{body}");
        titles(&body)
    };
    // Board order by default; filters combine with AND, a list within one with OR.
    assert_eq!(ok(q("").await).len(), 5);
    assert_eq!(
        ok(q("priority=high").await),
        ["Deploy the release", "Fix the login bug"]
    );
    assert_eq!(
        ok(q("priority=high,low&completed=false").await),
        [
            "Deploy the release",
            "Fix the login bug",
            "Plan the offsite"
        ]
    );
    assert_eq!(ok(q("status=in_progress").await), ["Fix the login bug"]);
    assert_eq!(ok(q("assignee=me").await), ["Deploy the release"]);
    assert_eq!(
        ok(q(&format!("assignee={}", bob.id)).await),
        ["Write release notes"]
    );
    assert_eq!(ok(q("assignee=none").await).len(), 3);
    assert_eq!(
        ok(q(&format!("category={}", work["id"].as_str().unwrap())).await),
        ["Deploy the release", "Fix the login bug"]
    );
    assert_eq!(
        ok(q("tag=ops").await),
        ["Deploy the release", "Write release notes"]
    );
    assert_eq!(
        ok(q("due_before=2030-01-09T00:00:00Z").await),
        ["Write release notes"]
    );
    assert_eq!(
        ok(q("due_after=2030-01-06T00:00:00Z").await),
        ["Deploy the release", "Fix the login bug"]
    );
    assert_eq!(ok(q("completed=true").await), ["Buy milk"]);
    // Search: every word, as a word or its beginning, in the title or the description.
    assert_eq!(
        ok(q("q=release").await),
        ["Deploy the release", "Write release notes"]
    );
    assert_eq!(
        ok(q("q=deploy").await),
        ["Deploy the release", "Write release notes"]
    );
    assert_eq!(ok(q("q=LOGIN%20fix").await), ["Fix the login bug"]);
    assert_eq!(ok(q("q=release&tag=docs").await), ["Write release notes"]);
    assert!(ok(q("q=nothing%20matches").await).is_empty());
    // Sorted: due date (none last), priority descending.
    assert_eq!(
        ok(q("sort=due_date").await),
        [
            "Write release notes",
            "Deploy the release",
            "Fix the login bug",
            "Buy milk",
            "Plan the offsite"
        ]
    );
    assert_eq!(
        ok(q("sort=priority&order=desc&limit=2").await),
        ["Fix the login bug", "Deploy the release"]
    );

    // Pages: every task once, in order, whatever the page size; the cursor is for its order only.
    for sort in ["position", "title", "due_date&order=desc", "priority"] {
        let whole = ok(q(&format!("sort={sort}")).await);
        let mut paged = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = q(&format!("sort={sort}&limit=2{cursor}")).await;
            assert_eq!(status, 200, "{page}");
            paged.extend(titles(&page));
            match page["next"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        assert_eq!(paged, whole, "sort={sort}");
    }
    let (_, first) = q("limit=2").await;
    let cursor = first["next"].as_str().unwrap().to_owned();
    let (status, err) = q(&format!("sort=title&cursor={cursor}")).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_payload"))
    );

    // Bad parameters are refused by name.
    for (query, param) in [
        ("status=later", "status"),
        ("priority=urgent", "priority"),
        ("assignee=bob", "assignee"),
        ("due_before=tomorrow", "due_before"),
        ("completed=yes", "completed"),
        ("sort=color", "sort"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=xyz", "cursor"),
        ("q=%20%21%3F", "q"),
        ("colour=red", "colour"),
    ] {
        let (status, err) = q(query).await;
        assert_eq!(status, 400, "{query}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(param),
            "{query}: {err}"
        );
    }

    // Reads follow writes: a change acknowledged over WebSocket is in the next read, and a
    // deleted category leaves its tasks with none.
    let mut a = hub.ws(&ada).await;
    a.join(&ws, None).await;
    let all = api.tasks(&ada, &ws).await;
    let milk = all.iter().find(|t| t["title"] == "Buy milk").unwrap();
    a.ok(
        json!({"type": "task_update", "workspace_id": ws, "task_id": milk["id"], "base_version": 1,
                "changes": {"title": "Buy oat milk", "tags": ["home"]}}),
    )
    .await;
    assert_eq!(ok(q("q=oat").await), ["Buy oat milk"]);
    assert_eq!(ok(q("tag=home").await), ["Buy oat milk"]);
    a.ok(json!({"type": "category_delete", "workspace_id": ws, "category_id": work["id"]}))
        .await;
    assert!(ok(q(&format!("category={}", work["id"].as_str().unwrap())).await).is_empty());
    assert_eq!(ok(q("category=none").await).len(), 5);
    a.ok(json!({"type": "task_delete", "workspace_id": ws, "task_id": milk["id"]}))
        .await;
    assert!(ok(q("q=milk").await).is_empty());

    // Only members read.
    let eve = api.register("eve").await;
    let (status, _) = api.get(&tasks, &eve.token).await;
    assert_eq!(status, 404);
}

/// A workspace whose journal was written while the index did not follow (before it existed) is
/// indexed when its room loads.
async fn a_board_journaled_behind_the_index_is_indexed_when_its_room_loads(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let ws = api.create_workspace(&ada, "Team").await;
    api.create_tasks(&ada, &ws, 3, 1).await;
    let storage = hub.stop().await;
    // 40 events the index did not follow: one more task, changed 39 times.
    crate::support::seed_journal(&storage.database_url(), &ws, &ada.id, 40, false).await;
    let hub = TestHub::start_on(storage, |_| {}).await;
    let api = hub.api();
    let all = api.tasks(&ada, &ws).await;
    assert_eq!(all.len(), 4);
    let (_, found) = api
        .get(
            &format!("/api/v1/workspaces/{ws}/tasks?q=seeded"),
            &ada.token,
        )
        .await;
    assert_eq!(found["tasks"][0]["version"], 40, "{found}");
    assert_eq!(titles(&found).len(), 1);
}

both_backends!(
    tasks_are_filtered_searched_sorted_and_paged,
    a_board_journaled_behind_the_index_is_indexed_when_its_room_loads,
    categories_are_live_and_deleting_one_unsets_its_tasks,
    tags_subtasks_completion_and_recurrence_are_kept,
    two_moves_into_the_same_gap_renumber_nothing,
);
