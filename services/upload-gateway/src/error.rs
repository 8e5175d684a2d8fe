//! The gateway's error type and its JSON shape `{error:{code,message,...}}`.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// Result alias for handlers.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// What went wrong, and what the client gets.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `INVALID_REQUEST`: a field is missing or malformed.
    #[error("{message}")]
    BadRequest {
        /// What was wrong and what was expected.
        message: String,
    },
    /// 404 `SESSION_NOT_FOUND`.
    #[error("no import with id {0}")]
    NotFound(uuid::Uuid),
    /// 409 `SESSION_EXISTS`: the client-chosen id is taken.
    #[error("an import with id {0} already exists; choose a new sessionId")]
    SessionExists(uuid::Uuid),
    /// 409 `ALREADY_FINISHED`: cancel of an import that has ended.
    #[error("import {id} has already ended with status {status}")]
    AlreadyFinished {
        /// The import.
        id: uuid::Uuid,
        /// Its final status.
        status: String,
    },
    /// 413 `FILE_TOO_LARGE`.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// 422: the file is not an importable scan export (code from the sniffer).
    #[error("{message}")]
    Unprocessable {
        /// Stable code (`EMPTY_FILE`, `BINARY_FILE`, `UNKNOWN_COLUMNS`, ...).
        code: &'static str,
        /// What was wrong.
        message: String,
        /// What was expected.
        expected: String,
    },
    /// 503 `UNAVAILABLE`: NATS or PostgreSQL failed; the cause is logged, not returned.
    #[error("{step}")]
    Unavailable {
        /// The step that failed, shown to the client.
        step: &'static str,
        /// The cause, logged only.
        cause: String,
    },
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "SESSION_NOT_FOUND"),
            ApiError::SessionExists(_) => (StatusCode::CONFLICT, "SESSION_EXISTS"),
            ApiError::AlreadyFinished { .. } => (StatusCode::CONFLICT, "ALREADY_FINISHED"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "FILE_TOO_LARGE"),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        }
    }
}

/// Shorthand for `.map_err(...)` on sqlx/NATS results.
pub trait StepExt<T> {
    /// Turns the error into `ApiError::Unavailable` naming `step`.
    fn step(self, step: &'static str) -> Result<T>;
}

impl<T, E: std::fmt::Display> StepExt<T> for std::result::Result<T, E> {
    fn step(self, step: &'static str) -> Result<T> {
        self.map_err(|e| ApiError::Unavailable { step, cause: e.to_string() })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut body = json!({ "error": { "code": code, "message": self.to_string() } });
        match &self {
            ApiError::Unprocessable { expected, .. } => body["error"]["expected"] = json!(expected),
            ApiError::TooLarge { limit } => body["error"]["limitBytes"] = json!(limit),
            ApiError::Unavailable { step, cause } => {
                tracing::error!(step, cause, "request failed");
                body["error"]["message"] = json!(format!("{step} failed; try again shortly"));
            }
            _ => {}
        }
        (status, Json(body)).into_response()
    }
}
