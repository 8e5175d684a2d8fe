//! The gateway's error type and its JSON shape `{error:{code,message,...}}`.

use axum::{
    Json,
    http::{StatusCode, header},
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

/// Longest part of a framework's plain-text rejection repeated in the JSON message.
const REJECTION_QUOTE_BYTES: usize = 200;

/// Middleware: gives the errors axum and tower answer on their own (a query string that does
/// not parse, a bad multipart boundary, a request timeout) the same JSON shape as ours, with at
/// most a short prefix of their text.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        return response;
    }
    let text = if content_type.starts_with("text/plain") {
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match text.char_indices().nth(REJECTION_QUOTE_BYTES) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    } else {
        status.canonical_reason().unwrap_or("error").to_owned()
    };
    let code = match status {
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::REQUEST_TIMEOUT => "REQUEST_TIMEOUT",
        StatusCode::PAYLOAD_TOO_LARGE => "FILE_TOO_LARGE",
        s if s.is_server_error() => "UNAVAILABLE",
        _ => "INVALID_REQUEST",
    };
    (status, Json(json!({ "error": { "code": code, "message": text } }))).into_response()
}
