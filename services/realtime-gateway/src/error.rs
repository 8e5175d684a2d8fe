//! The gateway's error type and the ack shape `{ok:false, error:{code, message}}` clients get.

use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// Result alias for handlers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with a client event, and the ack code the client gets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `INVALID_REQUEST`: the payload is not `{sessionId: <uuid>}` (or not JSON at all).
    #[error("{0}")]
    InvalidRequest(String),
    /// `SESSION_NOT_FOUND`: no import has this id, or none the caller may see (someone else's
    /// import answers exactly as an unknown one, so ids cannot be probed).
    #[error("no import with id {0}")]
    NotFound(Uuid),
    /// `TOKEN_EXPIRED`: the handshake's token has expired; the socket is disconnected, and the
    /// client reconnects with a fresh token.
    #[error("the token of this socket has expired; reconnect with a fresh token")]
    TokenExpired,
    /// `RATE_LIMITED`: the socket sends events faster than the configured rate.
    #[error("too many requests on this socket; slow down and retry")]
    RateLimited,
    /// `TOO_MANY_ROOMS`: the socket already watches the most imports allowed.
    #[error("this socket already watches {0} imports; leave one first")]
    TooManyRooms(u32),
    /// `ALREADY_FINISHED`: cancel of an import that has ended (as the HTTP cancel answers 409).
    #[error("import {0} has already ended")]
    AlreadyFinished(Uuid),
    /// `UNAVAILABLE`: NATS or PostgreSQL failed; the cause is logged, not sent.
    #[error("{step} failed; retry shortly")]
    Unavailable {
        /// The step that failed, shown to the client.
        step: &'static str,
        /// The cause, logged only.
        cause: String,
    },
}

impl Error {
    /// The stable code of the ack.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "INVALID_REQUEST",
            Error::NotFound(_) => "SESSION_NOT_FOUND",
            Error::TokenExpired => "TOKEN_EXPIRED",
            Error::RateLimited => "RATE_LIMITED",
            Error::TooManyRooms(_) => "TOO_MANY_ROOMS",
            Error::AlreadyFinished(_) => "ALREADY_FINISHED",
            Error::Unavailable { .. } => "UNAVAILABLE",
        }
    }

    /// The ack for this error; an infrastructure cause is logged here, once.
    pub fn to_ack(&self) -> Value {
        if let Error::Unavailable { step, cause } = self {
            tracing::error!(step, %cause, "client request failed");
        }
        json!({ "ok": false, "error": { "code": self.code(), "message": self.to_string() } })
    }
}

/// Shorthand for turning NATS and PostgreSQL errors into [`Error::Unavailable`].
pub trait StepExt<T> {
    /// Names the step that failed.
    fn step(self, step: &'static str) -> Result<T>;
}

impl<T, E: std::fmt::Display> StepExt<T> for std::result::Result<T, E> {
    fn step(self, step: &'static str) -> Result<T> {
        self.map_err(|err| Error::Unavailable { step, cause: err.to_string() })
    }
}

/// A successful ack: `{ok:true, ...fields}`.
pub fn ok_ack(fields: impl Serialize) -> Value {
    let mut value = serde_json::to_value(fields).unwrap_or_else(|_| json!({}));
    if let Some(map) = value.as_object_mut() {
        map.insert("ok".into(), Value::Bool(true));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_carry_the_code_and_a_message() {
        let id = Uuid::nil();
        let ack = Error::NotFound(id).to_ack();
        assert_eq!(ack["ok"], false);
        assert_eq!(ack["error"]["code"], "SESSION_NOT_FOUND");
        assert!(ack["error"]["message"].as_str().unwrap().contains("no import"));
        let unavailable = Error::Unavailable { step: "reading the import", cause: "secret detail".into() }.to_ack();
        assert!(!unavailable.to_string().contains("secret detail"), "causes are not sent");
        assert_eq!(ok_ack(json!({ "sessionId": id })), json!({ "ok": true, "sessionId": id }));
    }
}
