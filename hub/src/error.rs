//! REST errors: every failure maps, in this one place, to a status and a stable code, with a body
//! `{"error": {"code": "...", "message": "..."}}`. Internals never reach the client; they are
//! logged.

use actors::workspace::RoomError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use persistence::StoreError;
use serde_json::json;
use signaling::ErrorCode;

/// An error answered to a REST client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: ErrorCode,
    /// For humans.
    pub message: String,
    /// Seconds until a retry is accepted (sent as `Retry-After`).
    pub retry_after: Option<u64>,
    /// Extra fields for the error object (a conflict's current task).
    pub details: Option<serde_json::Value>,
    /// The allowance a `429` ran out of (sent as `RateLimit-*` headers).
    pub allowance: Option<crate::limits::Allowance>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allowance: None,
            details: None,
        }
    }

    /// 400 `invalid_payload`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidPayload, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// 401 `account_disabled`.
    pub fn account_disabled() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::AccountDisabled,
            "this account is disabled",
        )
    }

    /// 500 `internal`, logging the cause.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error",
        )
    }
}

/// The body of every refusal: `{"error": {"code", "message", ...}}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorObject,
}

/// A refusal's stable code and message, with extra fields for some codes (a `version_conflict`
/// carries the task as it is now, `current`, and the `fields` that clashed).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// Stable: clients branch on it.
    pub code: ErrorCode,
    /// For humans; may change.
    pub message: String,
    /// Extra fields of some codes.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let details = match self.details {
            Some(serde_json::Value::Object(extra)) => Some(extra),
            _ => None,
        };
        let error = ErrorObject {
            code: self.code,
            message: self.message,
            details,
        };
        let mut response = (self.status, Json(ErrorBody { error })).into_response();
        if let Some(v) = self
            .retry_after
            .and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Some(allowance) = self.allowance {
            allowance.set_headers(response.headers_mut());
        }
        response
    }
}

impl From<RoomError> for ApiError {
    fn from(e: RoomError) -> Self {
        let status = match &e {
            RoomError::NotAMember
            | RoomError::TaskNotFound
            | RoomError::UserNotFound
            | RoomError::CategoryNotFound => StatusCode::NOT_FOUND,
            RoomError::Forbidden(_) => StatusCode::FORBIDDEN,
            RoomError::NotJoined
            | RoomError::JoinInProgress
            | RoomError::AlreadyExists(_)
            | RoomError::LastOwner
            | RoomError::LimitReached(_)
            | RoomError::Settled
            | RoomError::Conflict { .. } => StatusCode::CONFLICT,
            RoomError::Invalid(_) => StatusCode::BAD_REQUEST,
            RoomError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut err = ApiError::new(status, e.code(), e.to_string());
        if let RoomError::Conflict {
            current, fields, ..
        } = &e
        {
            err.details = Some(json!({ "current": current, "fields": fields }));
        }
        err
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyExists,
                "already exists",
            ),
            // The caller's view was stale (a record it names was deleted meanwhile); retrying
            // the same request cannot help, so this is not `unavailable`.
            StoreError::Missing => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "a record this request refers to no longer exists",
            ),
            // Unreadable stored data is a bug or corruption, not an outage: retrying won't help.
            StoreError::Corrupt(_) => ApiError::internal(&e),
            other => {
                tracing::error!(error = %other, "storage error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "storage unavailable; retry",
                )
            }
        }
    }
}

impl From<signaling::text::FieldError> for ApiError {
    fn from(e: signaling::text::FieldError) -> Self {
        ApiError::invalid(e.to_string())
    }
}
