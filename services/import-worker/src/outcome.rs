//! How an attempt ended, and the one place that acts on it: metrics, the end recorded on the
//! row (under the attempt's fence once it claimed the import, else as an import no worker
//! runs), the terminal event and the cleanup (`ended::finish`), and the acknowledgement
//! (ack, nak with backoff, term, or none at all when fenced).

use std::time::Duration;

use async_nats::jetstream::AckKind;
use shared::{
    Status,
    events::{ErrorDetails, ErrorInfo, Summary},
};
use uuid::Uuid;

use shared::backoff::Backoff;

use crate::{
    Worker,
    attempt::Attempt,
    ended::{self, EndedRow},
    error::JobError,
};

/// Delays before the redelivery of a job whose attempt failed: up to 4 s after the first
/// attempt, doubling, up to a minute.
const REDELIVERY_BACKOFF: Backoff = Backoff::new(Duration::from_secs(4), Duration::from_secs(60));

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// No import has the job's id: the message is dropped (term).
    Missing,
    /// The import had ended (with this status) before this delivery (a crash between the end
    /// and the ack): its terminal event and cleanup are finished, and the job acked.
    AlreadyEnded(Status),
    /// Merged and marked completed (in one transaction): ack.
    Completed(Summary),
    /// A cancel request arrived, before or after the claim: the import ends cancelled, term.
    Cancelled,
    /// The file cannot be imported: the import ends in error, term.
    Invalid(Box<ErrorInfo>),
    /// Infrastructure trouble: nak with backoff, or, on the last delivery, the import ends in
    /// error and the job is termed.
    Transient(JobError),
    /// A newer attempt holds the import, or it has ended: no row change, no event, no
    /// acknowledgement.
    Fenced,
}

impl From<JobError> for Outcome {
    fn from(err: JobError) -> Self {
        match err {
            JobError::Invalid(info) => Outcome::Invalid(info),
            JobError::Cancelled => Outcome::Cancelled,
            JobError::Fenced => Outcome::Fenced,
            err @ JobError::Transient { .. } => Outcome::Transient(err),
        }
    }
}

impl Attempt<'_> {
    /// Acts on the outcome; returns the acknowledgement (`None`: fenced, none at all).
    pub async fn finish(mut self, outcome: Outcome) -> Option<AckKind> {
        let (worker, id) = (self.worker, self.job.import_id);
        let metrics = &worker.metrics;
        match outcome {
            Outcome::Missing => {
                tracing::warn!("job for an import that does not exist; dropping it");
                Some(AckKind::Term)
            }
            Outcome::AlreadyEnded(status) => {
                tracing::info!(
                    status = status.as_str(),
                    "import already ended; finishing its terminal event and cleanup"
                );
                if let Err(err) = ended::finish(worker, id).await {
                    tracing::warn!(error = %err.chain(), "could not finish the ended import; the sweep will");
                }
                Some(AckKind::Ack)
            }
            Outcome::Fenced => fenced(worker, id).await,
            Outcome::Completed(summary) => {
                metrics.jobs_completed.inc();
                metrics.rows.add(summary.rows);
                tracing::info!(
                    rows = summary.rows,
                    new = summary.new,
                    resolved = summary.resolved,
                    ms = summary.duration_ms,
                    "import completed"
                );
                if worker.config.test_delay_after_commit_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(worker.config.test_delay_after_commit_ms)).await;
                }
                clean_up(worker, id).await;
                Some(AckKind::Ack)
            }
            Outcome::Cancelled => {
                tracing::info!("import cancelled; findings untouched");
                metrics.jobs_cancelled.inc();
                self.end(Status::Cancelled, None).await
            }
            Outcome::Invalid(info) => {
                tracing::warn!(code = %info.code, message = %info.message, "import failed: the file cannot be imported");
                metrics.jobs_failed.inc();
                self.end(Status::Error, Some(*info)).await
            }
            Outcome::Transient(err) => {
                let claimed = self.reporter.is_some();
                tracing::warn!(error = %err.chain(), claimed, "attempt failed");
                if i64::from(self.number) < worker.config.max_deliver {
                    return self.retry(&err).await;
                }
                metrics.jobs_failed.inc();
                let info = gave_up_error(worker.config.max_deliver, &err.chain().to_string());
                self.end(Status::Error, Some(info)).await
            }
        }
    }

    /// Records the end (`error` with `error`, or `cancelled`), then publishes the terminal event
    /// and cleans up; the job is termed. Nak when the end could not be recorded.
    async fn end(&mut self, status: Status, error: Option<ErrorInfo>) -> Option<AckKind> {
        let (worker, id) = (self.worker, self.job.import_id);
        let Some(reporter) = self.reporter.as_mut() else {
            // Never claimed: ended as an import no worker runs (terminal event and cleanup included).
            crate::cancel::end_unclaimed(worker, id, self.number, status, error).await;
            return Some(AckKind::Term);
        };
        let partial = reporter.partial_results();
        let recorded = match error {
            Some(info) => reporter.failed(info, partial).await,
            None => reporter.cancelled(partial).await,
        };
        match recorded {
            Ok(()) => {}
            Err(JobError::Fenced) => return fenced(worker, id).await,
            Err(err) => {
                tracing::error!(error = %err.chain(), status = status.as_str(), "could not record how the import ended");
                return Some(AckKind::Nak(Some(Duration::from_secs(1))));
            }
        }
        clean_up(worker, id).await;
        Some(AckKind::Term)
    }

    /// Hands the job back after a transient failure, to be delivered again after a backoff. An
    /// attempt that claimed the import hands back its staging table first (only while it still
    /// holds the import), then the row and a `processing` event say it will be retried.
    async fn retry(&mut self, err: &JobError) -> Option<AckKind> {
        let (worker, id, number) = (self.worker, self.job.import_id, self.number);
        let delay = REDELIVERY_BACKOFF.delay(number);
        let Some(reporter) = self.reporter.as_mut() else {
            return Some(AckKind::Nak(Some(delay)));
        };
        // A failure can leave the early writer's statement running in PostgreSQL: it is ended. The
        // staging table stays for the next attempt to resume when a resume point goes with it.
        let staging = shared::names::staging_table(id);
        match crate::resume::release(&worker.db, reporter.fence(), &staging).await {
            Err(JobError::Fenced) => return fenced(worker, id).await,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "could not hand back the staging table; the next attempt will")
            }
            Ok(()) => {}
        }
        // No attempt holds the import until the redelivery: watchers keep the message below, not
        // one saying that a worker stopped responding.
        let quiet = sqlx::query("UPDATE imports SET heartbeat_at = NULL WHERE id = $1 AND attempts = $2")
            .bind(id)
            .bind(number as i32)
            .execute(&worker.db)
            .await;
        if let Err(e) = quiet {
            tracing::warn!(error = %e, "could not clear the heartbeat");
        }
        let note = format!("Attempt {number} failed ({}); retrying in {}s", err.chain(), delay.as_secs());
        match reporter.retrying(note).await {
            Err(JobError::Fenced) => fenced(worker, id).await,
            _ => Some(AckKind::Nak(Some(delay))),
        }
    }
}

/// Publishes the terminal event of the ended import and cleans up after it.
async fn clean_up(worker: &Worker, id: Uuid) {
    if let Err(err) = ended::finish(worker, id).await {
        // The row says how it ended; a redelivery or the sweep publishes and cleans up.
        tracing::warn!(error = %err.chain(), "terminal event or cleanup not done; the sweep will finish it");
    }
}

/// A fenced attempt stops quietly. When the import has ended and a stale event of this attempt
/// slipped in after the terminal one, the terminal event is put back on top.
async fn fenced(worker: &Worker, id: Uuid) -> Option<AckKind> {
    match EndedRow::load(&worker.db, id).await {
        Ok(Some(row)) if row.is_ended() => {
            if let Err(err) = ended::republish(&worker.db, &worker.nats, row).await {
                tracing::warn!(error = %err.chain(), "could not check the terminal event");
            }
        }
        _ => {}
    }
    None
}

/// The error shown when every delivery failed for reasons outside the file.
pub fn gave_up_error(attempts: i64, cause: &str) -> ErrorInfo {
    ErrorInfo {
        code: "IMPORT_FAILED".into(),
        message: format!("The import failed {attempts} times and was given up. Last cause: {cause}"),
        details: ErrorDetails::default(),
        recovery_suggestions: vec![
            "Upload the file again once the service is healthy (see /readyz).".into(),
            "If it keeps failing, send the worker logs for this import id to your operator.".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_job_error_maps_to_the_outcome_of_the_same_name() {
        assert!(matches!(Outcome::from(JobError::Cancelled), Outcome::Cancelled));
        assert!(matches!(Outcome::from(JobError::Fenced), Outcome::Fenced));
        let invalid = JobError::invalid("LINE_TOO_LONG", "too long", ErrorDetails::default(), &[]);
        assert!(matches!(Outcome::from(invalid), Outcome::Invalid(info) if info.code == "LINE_TOO_LONG"));
        let transient = JobError::transient("claiming the import", "connection reset");
        assert!(matches!(Outcome::from(transient), Outcome::Transient(_)));
    }

    #[test]
    fn giving_up_names_the_attempts_and_the_last_cause() {
        let err = JobError::transient("claiming the import", "connection reset");
        let info = gave_up_error(5, &err.chain().to_string());
        assert_eq!(info.code, "IMPORT_FAILED");
        assert!(
            info.message
                .ends_with("failed 5 times and was given up. Last cause: claiming the import: connection reset")
        );
    }

    #[test]
    fn a_redelivery_waits_longer_after_each_failed_attempt_up_to_a_minute() {
        for (attempt, full) in [(1, 4), (2, 8), (3, 16), (6, 60), (9, 60)] {
            let delay = REDELIVERY_BACKOFF.delay(attempt);
            let full = Duration::from_secs(full);
            assert!(delay >= full / 2 && delay <= full, "attempt {attempt}: {delay:?}");
        }
    }
}
