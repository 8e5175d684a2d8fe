//! Ending imports no worker holds: cancel requests for queued imports, and jobs whose deliveries
//! ran out (the worker holding the last one died). Every worker runs these watchers in one queue
//! group, so each request is handled once; the conditional update makes a repeat harmless.

use futures::StreamExt;
use serde::Deserialize;
use shared::{
    ImportJob, Phase, ProgressEvent, Status,
    events::{ErrorInfo, Metadata, PartialResults, now_ms},
    names,
};
use uuid::Uuid;

use crate::Worker;

/// Queue group of the watchers.
const QUEUE_GROUP: &str = "hexflow-import-workers";

/// Listens for cancel requests and ends the import if it is still queued (a running import is
/// stopped by the worker that holds it, which listens on the same subject).
pub async fn watch_cancel_requests(worker: Worker) {
    let subject = format!("{}.*", names::CANCEL_PREFIX);
    let mut sub = match worker.nats.client.queue_subscribe(subject, QUEUE_GROUP.into()).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch cancel requests; queued imports will be cancelled when picked up");
            return;
        }
    };
    while let Some(message) = sub.next().await {
        let Some(id) = names::import_id_of_subject(&message.subject) else { continue };
        end_unclaimed(&worker, id, 0, Status::Cancelled, None).await;
    }
}

/// The advisory JetStream publishes when a job has used all its deliveries.
#[derive(Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
}

/// Ends as `error` the imports whose job ran out of deliveries without a worker ending it.
pub async fn watch_exhausted_jobs(worker: Worker) {
    let subject =
        format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}", names::JOBS_STREAM, names::WORKERS_CONSUMER);
    let mut sub = match worker.nats.client.queue_subscribe(subject, QUEUE_GROUP.into()).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch exhausted jobs");
            return;
        }
    };
    while let Some(message) = sub.next().await {
        let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&message.payload) else { continue };
        let Ok(stream) = worker.nats.js.get_stream(names::JOBS_STREAM).await else { continue };
        let Ok(stored) = stream.get_raw_message(advisory.stream_seq).await else { continue };
        let Ok(job) = serde_json::from_slice::<ImportJob>(&stored.payload) else { continue };
        let attempts = worker.config.max_deliver;
        let info =
            crate::job::gave_up_error(attempts, "the worker running it stopped responding (crashed or was killed)");
        tracing::warn!(import_id = %job.import_id, attempts, "job ran out of deliveries");
        // What the dead attempt left, before the import is said to be over: its staging table
        // (and the session still working on it, if PostgreSQL has not noticed the death yet)
        // and the uploaded file.
        let staging = names::staging_table(job.import_id);
        if let Err(err) = crate::merge::drop_staging(&worker.db, &staging).await {
            tracing::warn!(import_id = %job.import_id, error = %err, "could not drop the staging table");
        }
        crate::job::delete_upload(&worker, &job).await;
        end_unclaimed(&worker, job.import_id, attempts as u32, Status::Error, Some(info)).await;
        let _ = stream.delete_message(advisory.stream_seq).await;
    }
}

#[derive(sqlx::FromRow)]
struct Ended {
    last_seq: i64,
    filename: String,
    format: String,
    scan_date: String,
    size_bytes: i64,
    processed_rows: i64,
    bytes_processed: i64,
}

/// Moves an import that no worker is running to `status` (cancelled or error) and publishes the
/// terminal event. Only a queued import can be cancelled this way; an error may also end one
/// left `processing` by a dead worker.
pub async fn end_unclaimed(worker: &Worker, id: Uuid, attempt: u32, status: Status, error: Option<ErrorInfo>) {
    let (phase, allowed, message) = match status {
        Status::Cancelled => (Phase::Cancelled, &["queued"][..], "Cancelled before it started".to_owned()),
        _ => (
            Phase::Error,
            &["queued", "processing"][..],
            error.as_ref().map(|e| e.message.clone()).unwrap_or_else(|| "Import failed".into()),
        ),
    };
    let ended: Result<Option<Ended>, sqlx::Error> = sqlx::query_as(
        r#"UPDATE imports SET status = $2, phase = $3, message = $4, error = $5, finished_at = now(),
                  cancel_requested_at = CASE WHEN $2 = 'cancelled' THEN coalesce(cancel_requested_at, now()) ELSE cancel_requested_at END,
                  last_seq = last_seq + 1
           WHERE id = $1 AND status = ANY($6)
           RETURNING last_seq, filename, format,
                     to_char(scan_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS scan_date,
                     size_bytes, processed_rows, bytes_processed"#,
    )
    .bind(id)
    .bind(status.as_str())
    .bind(phase.as_str())
    .bind(&message)
    .bind(error.as_ref().map(|e| serde_json::to_value(e).expect("error info serialises")))
    .bind(allowed)
    .fetch_optional(&worker.db)
    .await;
    let ended = match ended {
        Ok(Some(ended)) => ended,
        Ok(None) => return,
        Err(err) => {
            tracing::error!(import_id = %id, error = %err, "could not end the import");
            return;
        }
    };
    let snapshot = worker.nats.last_progress(id).await.ok().flatten();
    let seq = (ended.last_seq as u64).max(snapshot.as_ref().map(|s| s.seq + 1).unwrap_or(0));
    if seq > ended.last_seq as u64 {
        let _ = sqlx::query("UPDATE imports SET last_seq = $2 WHERE id = $1")
            .bind(id)
            .bind(seq as i64)
            .execute(&worker.db)
            .await;
    }
    let event = ProgressEvent {
        session_id: id,
        seq,
        status,
        phase,
        progress: snapshot.as_ref().map(|s| s.progress).unwrap_or(0.0),
        message,
        processed_rows: ended.processed_rows as u64,
        total_rows: None,
        bytes_processed: ended.bytes_processed as u64,
        total_bytes: ended.size_bytes as u64,
        eta_seconds: None,
        rows_per_second: 0.0,
        attempt,
        timestamp: now_ms(),
        metadata: Metadata {
            operation: "csv-import".into(),
            filename: ended.filename,
            format: ended.format,
            scan_date: ended.scan_date,
            current_step: 0,
            total_steps: crate::progress::TOTAL_STEPS,
        },
        summary: None,
        error,
        partial_results: Some(PartialResults {
            processed_rows: ended.processed_rows as u64,
            bytes_processed: ended.bytes_processed as u64,
            validation_errors: 0,
        }),
    };
    if let Err(err) = worker.nats.publish_progress(&event, None, true).await {
        tracing::error!(import_id = %id, error = %err, "could not publish the terminal event");
    }
    tracing::info!(import_id = %id, status = status.as_str(), "import ended without running");
}
