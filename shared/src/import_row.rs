//! The `imports` row as a progress event. The row is written at phase changes and at the end,
//! so the event it gives is the last one the import published at such a moment: the worker
//! publishes an ended import's terminal event from it, and the upload gateway answers from it
//! when the progress snapshot has expired. Both read it with [`COLUMNS`] into [`ProgressRow`].

use sqlx::types::Json;
use uuid::Uuid;

use crate::events::{ErrorInfo, Metadata, PartialResults, Phase, ProgressEvent, Status, Summary};

/// The columns of `imports` a [`ProgressRow`] reads, for `SELECT {COLUMNS} FROM imports`.
pub const COLUMNS: &str = r#"id, status, phase, progress, message, processed_rows, total_rows, bytes_processed,
    size_bytes, validation_errors, summary, error, attempts, last_seq,
    (extract(epoch FROM coalesce(finished_at, started_at, created_at)) * 1000)::bigint AS updated_ms,
    started_at IS NOT NULL AS started, filename, format,
    to_char(scan_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS scan_date"#;

/// What a progress event is made from, as the `imports` row records it.
#[derive(sqlx::FromRow, Debug, Clone, PartialEq)]
pub struct ProgressRow {
    /// The import id.
    pub id: Uuid,
    /// `imports.status` (see [`Status::as_str`]).
    pub status: String,
    /// `imports.phase` (see [`Phase::as_str`]).
    pub phase: String,
    /// 0–100.
    pub progress: f64,
    /// The last message.
    pub message: String,
    /// Data rows read.
    pub processed_rows: i64,
    /// Data rows in the file, once known.
    pub total_rows: Option<i64>,
    /// Bytes of the file consumed.
    pub bytes_processed: i64,
    /// Size of the file.
    pub size_bytes: i64,
    /// Invalid rows seen.
    pub validation_errors: i64,
    /// On completion.
    pub summary: Option<Json<Summary>>,
    /// On error.
    pub error: Option<Json<ErrorInfo>>,
    /// Deliveries of the job that claimed the import (0 while queued).
    pub attempts: i32,
    /// Seq of the last event written to the row.
    pub last_seq: i64,
    /// When the row last changed state, ms since the epoch: `finished_at`, else `started_at`,
    /// else `created_at`.
    pub updated_ms: i64,
    /// True once a worker claimed the import.
    pub started: bool,
    /// The uploaded file's name.
    pub filename: String,
    /// Format name.
    pub format: String,
    /// Scan date, RFC 3339.
    pub scan_date: String,
}

impl ProgressRow {
    /// The import's status (`queued` if the row holds an unknown one).
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Queued)
    }

    /// The event the row records: the same row always gives the same event. A completed import
    /// has an ETA of 0 and its summary's speed; an error or cancel says how far it got.
    pub fn event(&self) -> ProgressEvent {
        let status = self.status();
        let fallback = match status {
            Status::Queued => Phase::Queued,
            Status::Processing => Phase::Parsing,
            Status::Completed => Phase::Complete,
            Status::Error => Phase::Error,
            Status::Cancelled => Phase::Cancelled,
        };
        let phase = Phase::parse(&self.phase).unwrap_or(fallback);
        let summary = self.summary.as_ref().map(|s| s.0.clone());
        let partial = matches!(status, Status::Error | Status::Cancelled).then_some(PartialResults {
            processed_rows: self.processed_rows as u64,
            bytes_processed: self.bytes_processed as u64,
            validation_errors: self.validation_errors as u64,
        });
        let step = if self.started { phase.step() } else { 0 };
        ProgressEvent {
            progress: self.progress,
            message: self.message.clone(),
            processed_rows: self.processed_rows as u64,
            total_rows: self.total_rows.map(|n| n as u64),
            bytes_processed: self.bytes_processed as u64,
            total_bytes: self.size_bytes as u64,
            eta_seconds: (status == Status::Completed).then_some(0.0),
            rows_per_second: summary.as_ref().map(|s| s.rows_per_second).unwrap_or_default(),
            attempt: self.attempts.max(0) as u32,
            timestamp: self.updated_ms,
            summary,
            error: self.error.as_ref().map(|e| e.0.clone()),
            partial_results: partial,
            ..ProgressEvent::new(
                self.id,
                self.last_seq as u64,
                status,
                phase,
                Metadata::new(&self.filename, &self.format, &self.scan_date, step),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, started: bool) -> ProgressRow {
        ProgressRow {
            id: Uuid::now_v7(),
            status: status.into(),
            phase: if status == "completed" { "complete".into() } else { status.into() },
            progress: if status == "completed" { 100.0 } else { 42.0 },
            message: "done".into(),
            processed_rows: 10,
            total_rows: Some(10),
            bytes_processed: 100,
            size_bytes: 100,
            validation_errors: 1,
            summary: (status == "completed")
                .then(|| Json(Summary { rows: 10, duration_ms: 1000, rows_per_second: 10.0, ..Summary::default() })),
            error: None,
            attempts: 2,
            last_seq: 17,
            updated_ms: 1_767_225_600_123,
            started,
            filename: "scan.csv".into(),
            format: "nessus".into(),
            scan_date: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_terminal_event_carries_the_rows_seq_time_and_attempt() {
        let event = row("completed", true).event();
        assert!(event.is_terminal());
        assert_eq!((event.seq, event.timestamp, event.attempt), (17, 1_767_225_600_123, 2));
        assert_eq!((event.status, event.phase), (Status::Completed, Phase::Complete));
        assert_eq!(event.eta_seconds, Some(0.0));
        assert_eq!(event.rows_per_second, 10.0);
        assert!(event.partial_results.is_none());
        assert_eq!(event.summary.unwrap().duration_ms, 1000);
    }

    #[test]
    fn an_error_or_cancel_event_says_how_far_the_import_got() {
        for status in ["error", "cancelled"] {
            let event = row(status, true).event();
            assert!(event.is_terminal(), "{status}");
            assert_eq!(event.progress, 42.0);
            let partial = event.partial_results.expect("partial results");
            assert_eq!((partial.processed_rows, partial.bytes_processed, partial.validation_errors), (10, 100, 1));
        }
    }

    #[test]
    fn the_same_row_always_gives_the_same_event() {
        let ended = row("error", true);
        let (a, b) = (serde_json::to_value(ended.event()).unwrap(), serde_json::to_value(ended.event()).unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn a_running_import_shows_the_step_of_its_phase_and_no_result() {
        let mut running = row("processing", true);
        running.phase = "loading".into();
        let event = running.event();
        assert_eq!((event.status, event.phase, event.metadata.current_step), (Status::Processing, Phase::Loading, 2));
        assert_eq!((event.eta_seconds, event.partial_results), (None, None));
        assert_eq!(event.metadata.operation, crate::events::OPERATION);
    }

    #[test]
    fn an_import_no_worker_claimed_is_at_step_zero_even_when_it_ended() {
        let event = row("cancelled", false).event();
        assert_eq!((event.phase, event.metadata.current_step), (Phase::Cancelled, 0));
        assert_eq!(row("cancelled", true).event().metadata.current_step, crate::events::TOTAL_STEPS);
    }

    #[test]
    fn an_unknown_phase_falls_back_to_the_one_its_status_implies() {
        let mut ended = row("error", true);
        ended.phase = "compacting".into();
        assert_eq!(ended.event().phase, Phase::Error);
    }
}
