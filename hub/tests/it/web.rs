//! What browsers and operators get on every response: CORS for the configured origins only,
//! security headers, a request id, and per-route request metrics.

use crate::support::{Backend, TestHub};

async fn hub_with_origin() -> TestHub {
    TestHub::start_with(Backend::Sqlite, |c| {
        c.http.cors_origins = vec!["https://app.example.com".into()];
    })
    .await
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_answers_and_another_gets_none() {
    let hub = hub_with_origin().await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/workspaces", hub.base),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
    };
    let ok = preflight("https://app.example.com")
        .await
        .expect("preflight");
    let h = ok.headers();
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    let methods = h
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    assert!(
        h.get("x-request-id").is_some(),
        "preflights are stamped too"
    );

    let other = preflight("https://evil.example").await.expect("preflight");
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // A plain request from the allowed origin may read the request id.
    let got = http
        .get(format!("{}/health", hub.base))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("health");
    let exposed = got
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    hub.stop().await;
}

#[tokio::test]
async fn without_configured_origins_no_cors_header_is_sent() {
    let hub = TestHub::start(Backend::Sqlite).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/health", hub.base))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("health");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    hub.stop().await;
}

#[tokio::test]
async fn every_response_has_security_headers_a_request_id_and_is_counted_by_route() {
    let hub = TestHub::start(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let ada = hub.api().register("ada").await;
    for (path, status) in [("/health", 200), ("/no/such/route", 404)] {
        let resp = http
            .get(format!("{}{path}", hub.base))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), status);
        let h = resp.headers();
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
        ] {
            assert_eq!(
                h.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{path}: {name}"
            );
        }
        assert!(h.get("content-security-policy").is_some(), "{path}");
        let id = h
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("a request id");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "a fresh id: {id}");
    }
    // A sane id from the client is kept; a hostile one is replaced.
    let echo = |id: &'static str| {
        http.get(format!("{}/health", hub.base))
            .header("x-request-id", id)
            .send()
    };
    let kept = echo("trace-abc-123").await.expect("health");
    assert_eq!(
        kept.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-abc-123")
    );
    let long: &'static str = Box::leak("x".repeat(200).into_boxed_str());
    let replaced = echo(long).await.expect("health");
    let id = replaced
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "replaced: {id}");

    // Counted by the route's pattern, not the path.
    let ws = hub.api().create_workspace(&ada, "Team").await;
    let (status, _) = hub
        .api()
        .get(&format!("/api/v1/workspaces/{ws}"), &ada.token)
        .await;
    assert_eq!(status, 200);
    let metrics = hub.metrics().await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("hub_http_requests_total{")
                && l.contains(r#"route="/api/v1/workspaces/{id}""#)
                && l.contains(r#"method="GET""#)
                && l.contains(r#"status="200""#)
        })
        .unwrap_or_else(|| panic!("no series for the route: {metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert!(!metrics.contains(&ws), "no series per id");
    assert!(metrics.contains("hub_http_request_duration_seconds_bucket{"));
    hub.stop().await;
}

#[tokio::test]
async fn rest_responses_say_what_is_left_of_the_allowance_and_a_refusal_when_to_retry() {
    let hub = TestHub::start_with(Backend::Sqlite, |c| {
        c.limits.read_per_ip = "3/min".parse().expect("rate");
    })
    .await;
    let ada = hub.api().register("ada").await;
    let http = reqwest::Client::new();
    let get = || {
        http.get(format!("{}/api/v1/workspaces", hub.base))
            .bearer_auth(&ada.token)
            .send()
    };
    let header = |r: &reqwest::Response, name: &str| -> Option<u64> {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    let mut left = Vec::new();
    for _ in 0..3 {
        let r = get().await.expect("list");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(header(&r, "ratelimit-limit"), Some(3));
        assert!(header(&r, "ratelimit-reset").is_some_and(|s| s <= 60));
        left.push(header(&r, "ratelimit-remaining").expect("remaining"));
    }
    assert_eq!(left, [2, 1, 0]);
    let refused = get().await.expect("list");
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(header(&refused, "ratelimit-remaining"), Some(0));
    let retry = header(&refused, "retry-after").expect("Retry-After");
    assert!(
        (1..=20).contains(&retry),
        "one unit comes back every 20 s: {retry}"
    );
    hub.stop().await;
}
