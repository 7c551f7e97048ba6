//! The OpenAPI document served at `GET /openapi.json`.
//!
//! It is generated, not written: every handler carries a `#[utoipa::path]` attribute naming its
//! method, path, parameters, body and answers, and the types it takes and returns derive
//! `utoipa::ToSchema`. [`super::app`] registers every route through `utoipa_axum::routes!`, which
//! reads the same attribute, so a route cannot be served without being described, and the path
//! in the document is the path that is routed.

use axum::body::Bytes;
use utoipa::Modify;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

use crate::error::ErrorBody;

/// The document's fixed part: what the hub is, its tags, its security schemes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "hub",
        description = "The hub's REST API. The realtime protocol (WebSocket at `/ws`) and the \
            meaning of every field and error code are in `docs/protocol.md`. Every refusal has \
            the body `{\"error\": {\"code\", \"message\"}}`; `/api/v1` answers carry \
            `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`, and a `429` also \
            `Retry-After`."
    ),
    tags(
        (name = "auth", description = "Accounts, tokens, password resets."),
        (name = "workspaces", description = "Team workspaces and their members."),
        (name = "tasks", description = "A workspace's task board."),
        (name = "categories", description = "A workspace's task categories."),
        (name = "sync", description = "Offline sync and the conflict ledger."),
        (name = "activity", description = "A workspace's activity feed and analytics."),
        (name = "invitations", description = "Invitations by email."),
        (name = "sessions", description = "Conference sessions, attendees and Q&A."),
        (name = "admin", description = "The operator's routes (`HUB_ADMIN_TOKEN`)."),
        (name = "ops", description = "Health, readiness, metrics, this document, the WebSocket."),
    ),
    components(schemas(ErrorBody)),
    modifiers(&Schemes)
)]
pub struct ApiDoc;

/// The name of the response every operation may answer with a refusal.
const REFUSED: &str = "Refused";

/// The bearer tokens: an account's access token (`user`), a guest's session token (`guest`),
/// the operator's token (`operator`).
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |format: &str, description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format(format)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "user",
            bearer(
                "JWT",
                "An account's access token, from `/api/v1/auth/login` or `/auth/refresh`.",
            ),
        );
        components.add_security_scheme(
            "guest",
            bearer(
                "JWT",
                "A guest's token for one session, from `POST /api/v1/sessions/{id}/join`.",
            ),
        );
        components.add_security_scheme(
            "operator",
            bearer("opaque", "The operator's token (`HUB_ADMIN_TOKEN`)."),
        );
        components.responses.insert(
            REFUSED.into(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(
                        "Refused: `error.code` says why (see `docs/protocol.md` for every code).",
                    )
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            ),
        );
    }
}

/// Completes a document gathered from the routes: every operation may also be refused (`4XX`,
/// `5XX`) with the error body, and its id is `<tag>_<handler>` (handlers of different areas
/// share names such as `list`, and client generators need the ids unique).
pub fn finish(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            complete(op);
        }
    }
}

fn complete(op: &mut Operation) {
    if let (Some(tag), Some(id)) = (
        op.tags.as_ref().and_then(|t| t.first()),
        op.operation_id.as_deref(),
    ) && !id.starts_with(&format!("{tag}_"))
    {
        op.operation_id = Some(format!("{tag}_{id}"));
    }
    for status in ["4XX", "5XX"] {
        op.responses
            .responses
            .entry(status.into())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(REFUSED)));
    }
}

/// The document as served.
pub fn render(doc: &OpenApi) -> Bytes {
    match doc.to_json() {
        Ok(json) => Bytes::from(json),
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document could not be written");
            Bytes::from_static(b"{}")
        }
    }
}
