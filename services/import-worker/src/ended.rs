//! Ended imports. The `imports` row is the truth about how an import ended: its terminal event
//! is derived from the row (same seq, same content, whoever publishes it), and whatever finds an
//! import ended without its cleanup done — the attempt that ended it, a redelivery of its job,
//! the periodic sweep — finishes it the same way: terminal event on the progress stream (unless
//! the snapshot already shows it), staging table and its resume point dropped, upload removed for good, `cleaned_at`
//! recorded. Every step is idempotent, so two workers finishing one import do no harm, and one
//! that fails (NATS unreachable) leaves `cleaned_at` empty for the next to retry.

use shared::{
    Nats, Phase, ProgressEvent, Status,
    events::{ErrorInfo, Metadata, PartialResults, Summary},
    names,
};
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use crate::{
    Worker,
    error::{JobError, Result, StepExt},
};

/// Tries to put the terminal event after the snapshot when other events keep landing in
/// between (a stale attempt's last event, another worker's re-publication).
const PUBLISH_TRIES: u32 = 5;

/// What an ended import's terminal event and cleanup are made from.
#[derive(sqlx::FromRow, Debug)]
pub struct EndedRow {
    id: Uuid,
    status: String,
    phase: String,
    progress: f64,
    message: String,
    processed_rows: i64,
    total_rows: Option<i64>,
    bytes_processed: i64,
    size_bytes: i64,
    validation_errors: i64,
    summary: Option<Json<Summary>>,
    error: Option<Json<ErrorInfo>>,
    attempts: i32,
    last_seq: i64,
    finished_ms: Option<i64>,
    started: bool,
    filename: String,
    format: String,
    scan_date: String,
    /// Name of the uploaded object.
    pub object_key: String,
}

/// Columns of [`EndedRow`], for `SELECT ... FROM imports`.
pub const COLUMNS: &str = r#"id, status, phase, progress, message, processed_rows, total_rows, bytes_processed,
    size_bytes, validation_errors, summary, error, attempts, last_seq,
    (extract(epoch FROM finished_at) * 1000)::bigint AS finished_ms, started_at IS NOT NULL AS started,
    filename, format, to_char(scan_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS scan_date,
    object_key"#;

impl EndedRow {
    /// The row of import `id`, whatever its status.
    pub async fn load(db: &PgPool, id: Uuid) -> Result<Option<EndedRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM imports WHERE id = $1")))
            .bind(id)
            .fetch_optional(db)
            .await
            .step("reading the import")
    }

    /// The import's status.
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Queued)
    }

    /// True when the import has ended.
    pub fn is_ended(&self) -> bool {
        self.status().is_terminal()
    }

    /// The terminal event, as the row records it.
    pub fn event(&self) -> ProgressEvent {
        let status = self.status();
        let summary = self.summary.as_ref().map(|s| s.0.clone());
        let partial = (status != Status::Completed).then_some(PartialResults {
            processed_rows: self.processed_rows as u64,
            bytes_processed: self.bytes_processed as u64,
            validation_errors: self.validation_errors as u64,
        });
        ProgressEvent {
            session_id: self.id,
            seq: self.last_seq as u64,
            status,
            phase: Phase::parse(&self.phase).unwrap_or(Phase::Error),
            progress: self.progress,
            message: self.message.clone(),
            processed_rows: self.processed_rows as u64,
            total_rows: self.total_rows.map(|n| n as u64),
            bytes_processed: self.bytes_processed as u64,
            total_bytes: self.size_bytes as u64,
            eta_seconds: (status == Status::Completed).then_some(0.0),
            rows_per_second: summary.as_ref().map(|s| s.rows_per_second).unwrap_or_default(),
            attempt: self.attempts.max(0) as u32,
            timestamp: self.finished_ms.unwrap_or_else(shared::events::now_ms),
            metadata: Metadata {
                operation: "csv-import".into(),
                filename: self.filename.clone(),
                format: self.format.clone(),
                scan_date: self.scan_date.clone(),
                current_step: if self.started { crate::progress::TOTAL_STEPS } else { 0 },
                total_steps: crate::progress::TOTAL_STEPS,
            },
            summary,
            error: self.error.as_ref().map(|e| e.0.clone()),
            partial_results: partial,
        }
    }
}

/// Finishes the cleanup of import `id` if it has ended (see the module doc). `Ok(false)` when
/// the import is not over (nothing done).
pub async fn finish(worker: &Worker, id: Uuid) -> Result<bool> {
    let Some(row) = EndedRow::load(&worker.db, id).await? else { return Ok(false) };
    if !row.is_ended() {
        return Ok(false);
    }
    let key = row.object_key.clone();
    republish(&worker.db, &worker.nats, row).await?;
    crate::merge::drop_staging(&worker.db, &names::staging_table(id)).await?;
    crate::resume::forget_import(&worker.db, id).await?;
    if !worker.config.keep_uploads {
        worker.nats.purge_upload(&key).await.step("removing the uploaded file")?;
    }
    sqlx::query("UPDATE imports SET cleaned_at = clock_timestamp() WHERE id = $1 AND cleaned_at IS NULL")
        .bind(id)
        .execute(&worker.db)
        .await
        .step("recording the cleanup")?;
    Ok(true)
}

/// Puts the terminal event of an ended import on the progress stream unless the snapshot
/// already shows it. Published only right after the snapshot read (JetStream's expected last
/// subject sequence), so of several workers doing this at once one stores it. Should the
/// snapshot hold a later seq than the row (an event of a stale attempt), the row's `last_seq`
/// moves past it first: clients drop events older than one they saw.
pub async fn republish(db: &PgPool, nats: &Nats, mut row: EndedRow) -> Result<()> {
    for _ in 0..PUBLISH_TRIES {
        let snapshot = nats.last_progress_entry(row.id).await.step("reading the progress snapshot")?;
        if let Some((shown, _)) = &snapshot {
            if shown.is_terminal() && shown.seq >= row.last_seq as u64 {
                return Ok(());
            }
            if shown.seq >= row.last_seq as u64 {
                let seq = shown.seq as i64 + 1;
                sqlx::query("UPDATE imports SET last_seq = greatest(last_seq, $2) WHERE id = $1")
                    .bind(row.id)
                    .bind(seq)
                    .execute(db)
                    .await
                    .step("recording the terminal event's seq")?;
                row.last_seq = row.last_seq.max(seq);
            }
        }
        let stored = nats
            .publish_progress_after(&row.event(), snapshot.map(|(_, stream_seq)| stream_seq))
            .await
            .step("publishing the terminal event")?;
        if stored {
            tracing::info!(import_id = %row.id, seq = row.last_seq, status = %row.status, "terminal event published");
            return Ok(());
        }
    }
    Err(JobError::Transient {
        step: "publishing the terminal event",
        cause: "other events kept landing on the import's subject".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str) -> EndedRow {
        EndedRow {
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
            finished_ms: Some(1_767_225_600_123),
            started: true,
            filename: "scan.csv".into(),
            format: "nessus".into(),
            scan_date: "2026-01-01T00:00:00Z".into(),
            object_key: "key".into(),
        }
    }

    #[test]
    fn the_terminal_event_carries_the_rows_seq_time_and_attempt() {
        let event = row("completed").event();
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
            let event = row(status).event();
            assert!(event.is_terminal(), "{status}");
            assert_eq!(event.progress, 42.0);
            let partial = event.partial_results.expect("partial results");
            assert_eq!((partial.processed_rows, partial.bytes_processed, partial.validation_errors), (10, 100, 1));
        }
    }

    #[test]
    fn the_same_row_always_gives_the_same_event() {
        let ended = row("error");
        let (a, b) = (serde_json::to_value(ended.event()).unwrap(), serde_json::to_value(ended.event()).unwrap());
        assert_eq!(a, b);
    }
}
