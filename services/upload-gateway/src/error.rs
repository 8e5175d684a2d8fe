//! The gateway's error type and its JSON shape `{error:{code,message,...}}`.

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

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
    /// 409 `SESSION_EXISTS`: the client-chosen id has been used already, by this caller or by
    /// anyone else: the answer is the same whoever owns the import, so it tells nothing about it.
    #[error("sessionId {0} has been used already; expected a new client-chosen random UUID, or no sessionId")]
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

/// The error shape of every answer but 2xx: `{error:{code,message,...}}`.
#[derive(Serialize, Debug)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`] (fields in the byte order of their JSON names, as every body of
/// the API declares them; the optional ones are absent, not `null`, when they do not apply).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Stable, machine-readable: `INVALID_REQUEST`, `SESSION_NOT_FOUND`, ...
    pub code: &'static str,
    /// What a 422 expected instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// The limit a 413 refers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    /// What was wrong and what was expected, for people.
    pub message: String,
}

impl ErrorBody {
    /// A body with only a code and a message.
    pub fn new(code: &'static str, message: impl Into<String>) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code, expected: None, limit_bytes: None, message: message.into() } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut body = ErrorBody::new(code, self.to_string());
        match self {
            ApiError::Unprocessable { expected, .. } => body.error.expected = Some(expected),
            ApiError::TooLarge { limit } => body.error.limit_bytes = Some(limit),
            ApiError::Unavailable { step, cause } => {
                tracing::error!(step, cause, "request failed");
                body.error.message = format!("{step} failed; try again shortly");
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
    (status, Json(ErrorBody::new(code, text))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(err: ApiError) -> String {
        let bytes = axum::body::to_bytes(err.into_response().into_body(), 64 * 1024).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn error_bodies_keep_their_bytes_and_leave_out_what_does_not_apply() {
        let not_found = body_of(ApiError::NotFound(uuid::Uuid::nil())).await;
        assert_eq!(
            not_found,
            r#"{"error":{"code":"SESSION_NOT_FOUND","message":"no import with id 00000000-0000-0000-0000-000000000000"}}"#
        );
        let too_large = body_of(ApiError::TooLarge { limit: 5 }).await;
        assert_eq!(
            too_large,
            r#"{"error":{"code":"FILE_TOO_LARGE","limitBytes":5,"message":"the file is larger than the limit of 5 bytes"}}"#
        );
        let unprocessable =
            body_of(ApiError::Unprocessable { code: "EMPTY_FILE", message: "empty".into(), expected: "rows".into() })
                .await;
        assert_eq!(unprocessable, r#"{"error":{"code":"EMPTY_FILE","expected":"rows","message":"empty"}}"#);
        let unavailable = body_of(ApiError::Unavailable { step: "reading import", cause: "secret cause".into() }).await;
        assert_eq!(
            unavailable,
            r#"{"error":{"code":"UNAVAILABLE","message":"reading import failed; try again shortly"}}"#
        );
    }
}
