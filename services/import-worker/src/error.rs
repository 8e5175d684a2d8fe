//! How a job can fail, and what the worker does about each.

use std::{error::Error as StdError, fmt};

use shared::events::{ErrorDetails, ErrorInfo};

/// Result alias for job steps.
pub type Result<T, E = JobError> = std::result::Result<T, E>;

/// The cause of a transient failure, kept whole so logs show its chain.
pub type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// Why a job stopped. The variant decides the acknowledgement.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Infrastructure trouble (NATS, PostgreSQL): nak with backoff, another attempt may succeed;
    /// after the last delivery the import ends as `error`.
    #[error("{step}")]
    Transient {
        /// The step that failed.
        step: &'static str,
        /// The cause.
        #[source]
        cause: Cause,
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
    /// A transient failure of `step` caused by `cause` (an error, or a message).
    pub fn transient(step: &'static str, cause: impl Into<Cause>) -> Self {
        JobError::Transient { step, cause: cause.into() }
    }

    /// An invalid-file error with a code, message, details and suggestions.
    pub fn invalid(code: &str, message: impl Into<String>, details: ErrorDetails, suggestions: &[&str]) -> Self {
        JobError::Invalid(Box::new(ErrorInfo {
            code: code.into(),
            message: message.into(),
            details,
            recovery_suggestions: suggestions.iter().map(|s| (*s).to_owned()).collect(),
        }))
    }

    /// The error followed by its causes (`step: cause: cause of the cause`), for logs and for
    /// the messages users see.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

/// Displays an error with every error in its source chain, separated by `: `.
pub struct Chain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

/// Shorthand for wrapping infrastructure errors with the step that failed.
pub trait StepExt<T> {
    /// Turns the error into `JobError::Transient` naming `step`.
    fn step(self, step: &'static str) -> Result<T>;
}

impl<T, E: StdError + Send + Sync + 'static> StepExt<T> for std::result::Result<T, E> {
    fn step(self, step: &'static str) -> Result<T> {
        self.map_err(|e| JobError::transient(step, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_error_keeps_its_cause_for_the_log() {
        let io = std::io::Error::other("connection reset");
        let err = Err::<(), _>(io).step("reading the import").unwrap_err();
        assert_eq!(err.to_string(), "reading the import");
        assert_eq!(err.source().map(ToString::to_string).as_deref(), Some("connection reset"));
        assert_eq!(err.chain().to_string(), "reading the import: connection reset");
    }

    #[test]
    fn a_message_can_be_the_cause() {
        let err = JobError::transient("publishing the terminal event", "other events kept landing");
        assert_eq!(err.chain().to_string(), "publishing the terminal event: other events kept landing");
    }
}
