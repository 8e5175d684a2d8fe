//! How a job can fail, and what the worker does about each.

use shared::events::{ErrorDetails, ErrorInfo};

/// Result alias for job steps.
pub type Result<T, E = JobError> = std::result::Result<T, E>;

/// Why a job stopped. The variant decides the acknowledgement.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Infrastructure trouble (NATS, PostgreSQL): nak with backoff, another attempt may succeed;
    /// after the last delivery the import ends as `error`.
    #[error("{step}: {cause}")]
    Transient {
        /// The step that failed.
        step: &'static str,
        /// The cause.
        cause: String,
    },
    /// The file cannot be imported: term, `error` event with this info.
    #[error("{}", .0.message)]
    Invalid(Box<ErrorInfo>),
    /// A cancel request arrived: term, `cancelled` event.
    #[error("cancelled")]
    Cancelled,
    /// A newer attempt holds the import, or it has ended (see `fence`): no row change, no event,
    /// no acknowledgement.
    #[error("a newer attempt holds the import, or it has ended")]
    Fenced,
}

impl JobError {
    /// An invalid-file error with a code, message, details and suggestions.
    pub fn invalid(code: &str, message: impl Into<String>, details: ErrorDetails, suggestions: &[&str]) -> Self {
        JobError::Invalid(Box::new(ErrorInfo {
            code: code.into(),
            message: message.into(),
            details,
            recovery_suggestions: suggestions.iter().map(|s| (*s).to_owned()).collect(),
        }))
    }
}

/// Shorthand for wrapping infrastructure errors with the step that failed.
pub trait StepExt<T> {
    /// Turns the error into `JobError::Transient` naming `step`.
    fn step(self, step: &'static str) -> Result<T>;
}

impl<T, E: std::fmt::Display> StepExt<T> for std::result::Result<T, E> {
    fn step(self, step: &'static str) -> Result<T> {
        self.map_err(|e| JobError::Transient { step, cause: e.to_string() })
    }
}
