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
//! - [`ops`]: health, readiness, metrics, this API's OpenAPI document, fault injection.
//! - [`doc`]: the OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes.
//!
//! Around every route: the body limit, the request deadline, a panic turned into a `500`, and,
//! under `/api/v1`, the per-address allowance. Every refusal, including a missing route, a wrong
//! method and a body that cannot be read, has the JSON error shape of [`ApiError`].

pub mod activity;
pub mod admin;
pub mod auth;
pub mod categories;
pub mod doc;
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
use serde::de::DeserializeOwned;
use signaling::ErrorCode;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// The `/api/v1` routes, each registered with its OpenAPI description (see [`doc`]).
fn v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me, auth::delete_me))
        .routes(routes!(invitations::forgot))
        .routes(routes!(invitations::reset))
        .routes(routes!(workspaces::list, workspaces::create))
        .routes(routes!(
            workspaces::get,
            workspaces::rename,
            workspaces::delete
        ))
        .routes(routes!(workspaces::members, workspaces::add_member))
        .routes(routes!(workspaces::set_role, workspaces::remove_member))
        .routes(routes!(workspaces::leave))
        .routes(routes!(tasks::list, tasks::create))
        .routes(routes!(tasks::recurring))
        .routes(routes!(tasks::get, tasks::update, tasks::delete))
        .routes(routes!(tasks::complete))
        .routes(routes!(categories::list, categories::create))
        .routes(routes!(categories::update, categories::delete))
        .routes(routes!(sync::push))
        .routes(routes!(sync::pull))
        .routes(routes!(sync::status))
        .routes(routes!(sync::conflicts))
        .routes(routes!(sync::resolve))
        .routes(routes!(activity::feed))
        .routes(routes!(activity::overview))
        .routes(routes!(activity::trends))
        .routes(routes!(activity::productivity))
        .routes(routes!(invitations::invite))
        .routes(routes!(invitations::list))
        .routes(routes!(invitations::revoke))
        .routes(routes!(invitations::accept))
        .routes(routes!(sessions::list, sessions::create))
        .routes(routes!(sessions::get, sessions::update, sessions::delete))
        .routes(routes!(sessions::start))
        .routes(routes!(sessions::end))
        .routes(routes!(sessions::add_staff))
        .routes(routes!(sessions::remove_staff))
        .routes(routes!(sessions::join))
        .routes(routes!(sessions::leave))
        .routes(routes!(sessions::attendees))
        .routes(routes!(sessions::analytics))
        .routes(routes!(sessions::ice_servers))
        .routes(routes!(sessions::questions, sessions::ask))
        .routes(routes!(sessions::vote))
        .routes(routes!(sessions::patch_question, sessions::delete_question))
        .routes(routes!(admin::nodes))
        .routes(routes!(admin::drain_node))
        .routes(routes!(admin::rooms))
        .routes(routes!(admin::move_room))
        .routes(routes!(admin::list_jobs))
        .routes(routes!(admin::retry_job))
        .routes(routes!(admin::list_users))
        .routes(routes!(admin::get_user, admin::delete_user))
        .routes(routes!(admin::disable_user))
        .routes(routes!(admin::enable_user))
        .routes(routes!(admin::list_workspaces))
        .routes(routes!(admin::get_workspace))
        .routes(routes!(admin::list_sessions))
        .routes(routes!(admin::get_session))
}

/// All routes. Every one is registered through `routes!`, so `/openapi.json` describes exactly
/// what is routed.
pub fn app(state: AppState) -> Router {
    let (v1, v1_doc) = v1().split_for_parts();
    let v1 = v1
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), throttle))
        .layer(middleware::from_fn_with_state(state.clone(), deadline));
    let mut v1 = OpenApiRouter::from(v1);
    *v1.get_openapi_mut() = v1_doc;
    let mut app = OpenApiRouter::with_openapi(doc::ApiDoc::openapi())
        .nest("/api/v1", v1)
        .routes(routes!(crate::ws::upgrade))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi));
    if state.config.fault_injection {
        app = app
            .routes(routes!(ops::crash_room))
            .routes(routes!(ops::crash_session));
    }
    let (app, mut openapi) = app.split_for_parts();
    doc::finish(&mut openapi);
    // Set once per state (a second `app` over the same state describes the same routes).
    let _ = state.openapi.set(doc::render(&openapi));
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
    fn every_route_is_registered_with_its_description() {
        // A route added with a bare `route` call (or a router merged or nested from elsewhere)
        // would be served but missing from `/openapi.json`: every route goes through
        // `routes!`, in `v1` and `app` only.
        fn sources(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((path, text));
                }
            }
        }
        let mut files = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        assert!(files.len() > 20);
        let bare = [
            [".", "route("].concat(),
            [".", "route_service("].concat(),
            [".", "nest_service("].concat(),
            [".", "merge("].concat(),
        ];
        for (path, text) in &files {
            for b in &bare {
                assert!(
                    !text.contains(b.as_str()),
                    "{}: a route registered with `{b}`",
                    path.display()
                );
            }
        }
        let this = include_str!("mod.rs");
        assert!(this.contains(&["routes!(", "auth::login)"].concat()));
    }

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
