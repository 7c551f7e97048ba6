//! The REST API under `/api/v1`, plus `/health`, `/ready`, `/metrics` and the WebSocket
//! endpoint `/ws`. `docs/protocol.md` documents every route.
//!
//! - [`auth`]: register, login, refresh, logout, me, deleting one's account.
//! - [`workspaces`]: workspaces and their members.
//! - [`tasks`]: the task board (writes go through the room, so members see them live);
//!   [`categories`]: the board's categories; [`sync`]: offline sync and the conflict ledger.
//! - [`activity`]: the workspace's activity feed and analytics.
//! - [`invitations`]: invitations by email, password resets (mailed through the outbox).
//! - [`admin`]: the operator's routes (the cluster's nodes; disable, enable, delete accounts).
//! - [`ops`]: health, readiness, metrics, fault injection.
//!
//! Around every route: the body limit, the request deadline, a panic turned into a `500`, and,
//! under `/api/v1`, the per-address allowance. Every refusal, including a missing route, a wrong
//! method and a body that cannot be read, has the JSON error shape of [`ApiError`].

pub mod activity;
pub mod admin;
pub mod auth;
pub mod categories;
pub mod forward;
pub mod invitations;
pub mod ops;
pub mod sessions;
pub mod sync;
pub mod tasks;
pub mod web;
pub mod workspaces;

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use signaling::ErrorCode;

use crate::error::ApiError;
use crate::http::ClientIp;
use crate::limits::Access;
use crate::state::AppState;

/// A JSON body: `Content-Type: application/json`, within the body limit, nested at most
/// `signaling::json::MAX_DEPTH` deep, and of the right shape, each refusal with its own code.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::invalid(
                "expected `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    "request body too large",
                )
            }
            _ => ApiError::invalid("the request body could not be read"),
        })?;
        signaling::json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message))
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .is_some_and(|mime| {
            mime.eq_ignore_ascii_case("application/json")
                || (mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case("+json"))
        })
}

/// `Path` whose rejections are [`ApiError`]s (an id that does not parse is `not_found`).
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NotFound,
                    "not found: the path names no valid id",
                )
            })
    }
}

/// `Query` whose rejections are [`ApiError`]s: `400 invalid_payload` saying which parameter.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

/// All routes.
pub fn app(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me).delete(auth::delete_me))
        .route(
            "/workspaces",
            get(workspaces::list).post(workspaces::create),
        )
        .route(
            "/workspaces/{id}",
            get(workspaces::get)
                .put(workspaces::rename)
                .delete(workspaces::delete),
        )
        .route(
            "/workspaces/{id}/members",
            get(workspaces::members).post(workspaces::add_member),
        )
        .route(
            "/workspaces/{id}/members/{user_id}",
            axum::routing::put(workspaces::set_role).delete(workspaces::remove_member),
        )
        .route("/workspaces/{id}/leave", post(workspaces::leave))
        .route(
            "/workspaces/{id}/tasks",
            get(tasks::list).post(tasks::create),
        )
        .route("/workspaces/{id}/tasks/recurring", get(tasks::recurring))
        .route("/workspaces/{id}/activity", get(activity::feed))
        .route(
            "/workspaces/{id}/analytics/overview",
            get(activity::overview),
        )
        .route("/workspaces/{id}/analytics/trends", get(activity::trends))
        .route(
            "/workspaces/{id}/analytics/productivity",
            get(activity::productivity),
        )
        .route("/workspaces/{id}/invite", post(invitations::invite))
        .route("/workspaces/{id}/invitations", get(invitations::list))
        .route(
            "/workspaces/{id}/invitations/{invitation_id}",
            axum::routing::delete(invitations::revoke),
        )
        .route("/invitations/accept", post(invitations::accept))
        .route("/auth/password/forgot", post(invitations::forgot))
        .route("/auth/password/reset", post(invitations::reset))
        .route("/workspaces/{id}/sync/push", post(sync::push))
        .route("/workspaces/{id}/sync/pull", get(sync::pull))
        .route("/workspaces/{id}/sync/status", get(sync::status))
        .route("/workspaces/{id}/conflicts", get(sync::conflicts))
        .route(
            "/workspaces/{id}/conflicts/{conflict_id}/resolve",
            post(sync::resolve),
        )
        .route(
            "/workspaces/{id}/categories",
            get(categories::list).post(categories::create),
        )
        .route(
            "/workspaces/{id}/categories/{category_id}",
            axum::routing::put(categories::update).delete(categories::delete),
        )
        .route(
            "/workspaces/{id}/tasks/{task_id}",
            get(tasks::get).put(tasks::update).delete(tasks::delete),
        )
        .route(
            "/workspaces/{id}/tasks/{task_id}/complete",
            post(tasks::complete),
        )
        .route("/sessions", get(sessions::list).post(sessions::create))
        .route(
            "/sessions/{id}",
            get(sessions::get)
                .patch(sessions::update)
                .delete(sessions::delete),
        )
        .route("/sessions/{id}/start", post(sessions::start))
        .route("/sessions/{id}/end", post(sessions::end))
        .route("/sessions/{id}/staff", post(sessions::add_staff))
        .route(
            "/sessions/{id}/staff/{user_id}",
            axum::routing::delete(sessions::remove_staff),
        )
        .route("/sessions/{id}/join", post(sessions::join))
        .route("/sessions/{id}/leave", post(sessions::leave))
        .route("/sessions/{id}/attendees", get(sessions::attendees))
        .route("/sessions/{id}/analytics", get(sessions::analytics))
        .route("/sessions/{id}/ice-servers", get(sessions::ice_servers))
        .route(
            "/sessions/{id}/questions",
            get(sessions::questions).post(sessions::ask),
        )
        .route("/questions/{id}/vote", post(sessions::vote))
        .route(
            "/questions/{id}",
            axum::routing::patch(sessions::patch_question).delete(sessions::delete_question),
        )
        .route("/admin/nodes", get(admin::nodes))
        .route("/admin/jobs", get(admin::list_jobs))
        .route("/admin/jobs/{id}/retry", post(admin::retry_job))
        .route("/admin/nodes/{id}/drain", post(admin::drain_node))
        .route("/admin/rooms", get(admin::rooms))
        .route("/admin/rooms/{room}/move", post(admin::move_room))
        .route("/admin/users", get(admin::list_users))
        .route("/admin/workspaces", get(admin::list_workspaces))
        .route("/admin/workspaces/{id}", get(admin::get_workspace))
        .route("/admin/sessions", get(admin::list_sessions))
        .route("/admin/sessions/{id}", get(admin::get_session))
        .route("/admin/users/{id}/disable", post(admin::disable_user))
        .route("/admin/users/{id}/enable", post(admin::enable_user))
        .route(
            "/admin/users/{id}",
            get(admin::get_user).delete(admin::delete_user),
        )
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), throttle))
        .layer(middleware::from_fn_with_state(state.clone(), deadline));
    let mut app = Router::new()
        .nest("/api/v1", v1)
        .route("/ws", get(crate::ws::upgrade))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics));
    if state.config.fault_injection {
        app = app
            .route("/debug/rooms/{id}/crash", post(ops::crash_room))
            .route("/debug/sessions/{id}/crash", post(ops::crash_session));
    }
    let app = app
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            forward::to_owner,
        ));
    let app = match web::cors(&state.config.http.cors_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(DefaultBodyLimit::max(state.config.http.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal(&"a request handler panicked").into_response()
            },
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        // Outermost: every answer is stamped and counted, preflights and panics included.
        .layer(middleware::from_fn_with_state(state.clone(), web::stamp))
        .with_state(state)
}

/// Charges every `/api/v1` request to its client address.
async fn throttle(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
    next: Next,
) -> Response {
    match state
        .limits
        .request_from(ip, Access::of(req.method()))
        .await
    {
        Ok(allowance) => {
            let mut response = next.run(req).await;
            allowance.set_headers(response.headers_mut());
            response
        }
        Err(e) => {
            state.metrics.rate_limited.increment(1);
            e.into_response()
        }
    }
}

/// Bounds how long a request may take, body upload included.
async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_secs(state.config.http.request_timeout_secs.max(1));
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            "the request took too long",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognized() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!is_json(&h));
        for (value, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("json", false),
        ] {
            h.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&h), ok, "{value}");
        }
    }
}
