//! The REST API under `/api/v1`, plus `/health`, `/ready`, `/metrics` and the WebSocket
//! endpoint `/ws`. `docs/protocol.md` documents every route.
//!
//! - [`auth`]: register, login, refresh, logout, me.
//! - [`workspaces`]: workspaces and their members.
//! - [`tasks`]: the task board (writes go through the room, so members see them live).
//! - [`ops`]: health, readiness, metrics, fault injection.

pub mod auth;
pub mod ops;
pub mod tasks;
pub mod workspaces;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

/// `Json` whose rejections are [`ApiError`]s with stable codes.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Path` whose rejections are [`ApiError`]s (an id that does not parse is `not_found`).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// All routes.
pub fn app(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
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
        .route(
            "/workspaces/{id}/tasks/{task_id}",
            get(tasks::get).put(tasks::update).delete(tasks::delete),
        )
        .route(
            "/workspaces/{id}/tasks/{task_id}/complete",
            post(tasks::complete),
        );
    let mut app = Router::new()
        .nest("/api/v1", v1)
        .route("/ws", get(crate::ws::upgrade))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics));
    if state.config.fault_injection {
        app = app.route("/debug/rooms/{id}/crash", post(ops::crash_room));
    }
    app.fallback(ops::not_found)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
