//! `/openapi.json`: every routed path is in it, every path in it is routed, it is whole (every
//! reference resolves, every path parameter is declared), and it names the same routes as the
//! contract in `docs/protocol.md`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{Backend, TestHub};

const ADMIN_TOKEN: &str = "openapi-test-operator-token-0123456789";

/// The protocol document, whose REST sections name every route.
const PROTOCOL: &str = include_str!("../../../docs/protocol.md");

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// The `/api/v1` routes anyone may call.
const PUBLIC: [(&str, &str); 8] = [
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("post", "/api/v1/auth/password/forgot"),
    ("post", "/api/v1/auth/password/reset"),
    ("post", "/api/v1/sessions/{id}/join"),
    ("post", "/api/v1/invitations/accept"),
];

async fn hub() -> TestHub {
    // Fault injection is on in tests, so the `/debug` routes are routed (and must be described).
    TestHub::start_with(Backend::Sqlite, |c| {
        c.admin_token = Some(ADMIN_TOKEN.into())
    })
    .await
}

async fn document(hub: &TestHub) -> Value {
    let resp = hub
        .http
        .get(format!("{}/openapi.json", hub.base))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let doc: Value = resp.json().await.expect("a JSON document");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document: {}",
        doc["openapi"]
    );
    doc
}

/// Every `(METHOD, path)` the document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// A concrete path for a templated one: ids are fresh UUIDs, a node is `local`, a room a
/// workspace room.
fn concrete(path: &str) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    path.split('/')
        .map(|seg| match seg {
            "{room}" => format!("ws:{id}"),
            s if s.starts_with('{') && path.contains("/admin/nodes/") => "local".to_owned(),
            s if s.starts_with('{') => id.clone(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_in_the_document_is_routed_and_the_document_is_whole() {
    let hub = hub().await;
    let doc = document(&hub).await;
    let ops = operations(&doc);
    // The document has the whole API: every area, not a handful of routes.
    assert!(ops.len() >= 80, "only {} operations described", ops.len());
    for must in [
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/workspaces/{id}/sync/push"),
        ("GET", "/api/v1/workspaces/{id}/tasks"),
        ("DELETE", "/api/v1/questions/{id}"),
        ("GET", "/api/v1/admin/jobs"),
        ("GET", "/ws"),
        ("GET", "/openapi.json"),
        ("POST", "/debug/rooms/{id}/crash"),
    ] {
        assert!(
            ops.contains(&(must.0.to_owned(), must.1.to_owned())),
            "{must:?} is not in the document"
        );
    }

    // Routed: answered by a handler (or its extractors), never by the router's fallbacks.
    for (method, path) in &ops {
        let url = format!("{}{}", hub.base, concrete(path));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = hub
            .http
            .request(method.clone(), &url)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_ne!(
            status, 405,
            "{method} {path}: the route does not take its method"
        );
        assert!(
            !(status == 404 && body["error"]["message"] == hub::api::ops::NO_SUCH_ROUTE),
            "{method} {path} is described but not routed"
        );
    }

    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let responses = doc["components"]["responses"]
        .as_object()
        .expect("responses");
    // Every reference resolves.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        let known = match r.split_once("#/components/schemas/") {
            Some((_, name)) => schemas.contains_key(name),
            None => r
                .strip_prefix("#/components/responses/")
                .is_some_and(|name| responses.contains_key(name)),
        };
        assert!(known, "{r} does not resolve");
    }
    // Every operation declares its path parameters, has a success answer and the refusals,
    // and a unique id.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let id = op["operationId"].as_str().expect("operationId");
            assert!(
                ids.insert(id.to_owned()),
                "{m} {path}: operationId {id} twice"
            );
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            assert_eq!(declared, templated, "{m} {path}: path parameters");
            let answers = op["responses"].as_object().expect("responses");
            assert!(
                answers
                    .keys()
                    .any(|k| k.starts_with('2') || k.as_str() == "101"),
                "{m} {path} has no success answer"
            );
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()));
            // Every `/api/v1` route but the ones anyone may call requires a bearer token
            // (accepting an invitation takes one optionally: `{}` is among its choices).
            if path.starts_with("/api/v1/") {
                let choices = op["security"].as_array().cloned().unwrap_or_default();
                let required = !choices.is_empty()
                    && choices
                        .iter()
                        .all(|c| c.as_object().is_some_and(|c| !c.is_empty()));
                let public = PUBLIC.contains(&(m, path.as_str()));
                assert_eq!(required, !public, "{m} {path}: security {}", op["security"]);
            }
        }
    }
    // The shapes clients generate code from are there, fields and all.
    let task = &schemas["Task"]["properties"];
    for field in ["id", "title", "position", "category_id", "tags", "version"] {
        assert!(task.get(field).is_some(), "Task has no {field}");
    }
    assert!(schemas["ErrorBody"]["properties"].get("error").is_some());
    // The body of a task update: the changes' fields, with `base_version` beside them.
    let props = |name: &str| -> BTreeSet<String> {
        schemas[name]["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut update = props("TaskChanges");
    assert!(update.contains("title") && update.insert("base_version".into()));
    assert_eq!(props("TaskUpdateBody"), update);
    let push = &doc["paths"]["/api/v1/workspaces/{id}/sync/push"]["post"];
    assert!(
        push["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/PushBody"))
    );
    assert!(
        doc["components"]["securitySchemes"]
            .get("user")
            .is_some_and(|s| s["scheme"] == "bearer")
    );
    // Answers as the hub sends them fit their schemas (required fields there, no others).
    let api = hub.api();
    let ada = api.register("Ada").await;
    let ws = api.create_workspace(&ada, "Docs").await;
    let (_, task) = api
        .post(
            &format!("/api/v1/workspaces/{ws}/tasks"),
            Some(&ada.token),
            serde_json::json!({"title": "Describe the API"}),
        )
        .await;
    fits(&doc, "Task", &task);
    let (_, detail) = api
        .get(&format!("/api/v1/workspaces/{ws}"), &ada.token)
        .await;
    fits(&doc, "WorkspaceDetail", &detail);
    let (_, nodes) = api.get("/api/v1/admin/nodes", ADMIN_TOKEN).await;
    fits(&doc, "NodeList", &nodes);
    fits(&doc, "NodeRow", &nodes["nodes"][0]);
    hub.stop().await;
}

/// `value` has every field `schema` requires and none it does not describe.
fn fits(doc: &Value, schema: &str, value: &Value) {
    let s = &doc["components"]["schemas"][schema];
    let props = s["properties"].as_object().expect("an object schema");
    let obj = value
        .as_object()
        .unwrap_or_else(|| panic!("{schema}: {value}"));
    for key in obj.keys() {
        assert!(
            props.contains_key(key),
            "{schema} does not describe `{key}`"
        );
    }
    for req in s["required"].as_array().into_iter().flatten() {
        let req = req.as_str().expect("a name");
        assert!(obj.contains_key(req), "{schema} requires `{req}`: {value}");
    }
}

#[tokio::test]
async fn without_fault_injection_the_debug_routes_are_neither_routed_nor_described() {
    let hub = TestHub::start_with(Backend::Sqlite, |c| c.fault_injection = false).await;
    let ops = operations(&document(&hub).await);
    assert!(ops.iter().all(|(_, path)| !path.starts_with("/debug/")));
    assert!(ops.contains(&("GET".to_owned(), "/api/v1/workspaces/{id}/tasks".to_owned())));
    let (status, body) = hub
        .api()
        .post(&concrete("/debug/rooms/{id}/crash"), None, Value::Null)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], hub::api::ops::NO_SUCH_ROUTE);
    hub.stop().await;
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The routes `docs/protocol.md` names: its `#### `METHOD /path`` headings, its
/// `| METHOD | `/path` |` tables, and any `` `METHOD /path` `` in the text; REST paths are
/// relative to `/api/v1` there.
fn protocol_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let top = [
        "/ws",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/debug/",
    ];
    let mut add = |method: &str, path: &str| {
        let path = path.split(['?', ' ']).next().unwrap_or(path);
        let path = path.trim_end_matches(['`', ',', ')', '.']);
        if path.len() < 2 || path.contains('<') || path.contains('*') || path.contains('…') {
            return;
        }
        let full = if path.starts_with("/api/v1/") || top.iter().any(|t| path.starts_with(t)) {
            path.to_owned()
        } else {
            format!("/api/v1{path}")
        };
        out.insert((method.to_owned(), full));
    };
    for line in PROTOCOL.lines() {
        // `| GET | `/admin/users` | ...`
        let unescaped = line.replace("\\|", "/");
        let cells: Vec<&str> = unescaped.split('|').map(str::trim).collect();
        if cells.len() > 3
            && METHODS.contains(&cells[1].to_lowercase().as_str())
            && let Some(path) = cells[2].strip_prefix('`').and_then(|p| p.strip_suffix('`'))
        {
            add(cells[1], path);
        }
        // `METHOD /path` anywhere.
        for (i, _) in line.match_indices('`') {
            let rest = &line[i + 1..];
            for m in METHODS {
                let m = m.to_uppercase();
                if let Some(path) = rest.strip_prefix(&format!("{m} /")) {
                    let path = format!("/{}", path.split('`').next().unwrap_or(""));
                    add(&m, &path);
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_protocol_doc_and_the_openapi_document_name_the_same_routes() {
    let hub = hub().await;
    let described = operations(&document(&hub).await);
    let written = protocol_routes();
    let missing: Vec<_> = written.difference(&described).collect();
    assert!(
        missing.is_empty(),
        "docs/protocol.md names routes the hub does not describe: {missing:?}"
    );
    let undocumented: Vec<_> = described.difference(&written).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/protocol.md: {undocumented:?}"
    );
    hub.stop().await;
}
