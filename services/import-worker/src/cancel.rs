//! Ending imports no worker holds: cancel requests for queued imports, and jobs whose deliveries
//! ran out (the worker holding the last one died). Every worker runs these watchers in one queue
//! group, so each request is handled once; the conditional update makes a repeat harmless.

use futures::StreamExt;
use serde::Deserialize;
use shared::{ImportJob, Phase, Status, events::ErrorInfo, names};
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
            crate::outcome::gave_up_error(attempts, "the worker running it stopped responding (crashed or was killed)");
        tracing::warn!(import_id = %job.import_id, attempts, "job ran out of deliveries");
        // What the dead attempt left, before the import is said to be over: its staging table
        // (and the session still working on it, if PostgreSQL has not noticed the death yet)
        // and the uploaded file.
        let staging = names::staging_table(job.import_id);
        if let Err(err) = crate::staging::drop(&worker.db, &staging).await {
            tracing::warn!(import_id = %job.import_id, error = %err.chain(), "could not drop the staging table");
        }
        end_unclaimed(&worker, job.import_id, attempts as u32, Status::Error, Some(info)).await;
        let _ = stream.delete_message(advisory.stream_seq).await;
    }
}

/// Moves an import that no worker is running to `status` (cancelled or error), then publishes
/// its terminal event and cleans up (`ended::finish`). A queued import can always be ended this
/// way. A `processing` one only by a delivery of its job (`attempt` > 0) whose number is above
/// the one that claimed it (the holder is gone), or as `error` by the max-deliveries advisory
/// (`attempt` is then the last delivery's number): the cancel watcher (`attempt` 0) never ends
/// a running import, whose worker hears the request itself.
pub async fn end_unclaimed(worker: &Worker, id: Uuid, attempt: u32, status: Status, error: Option<ErrorInfo>) {
    let (phase, message) = match status {
        Status::Cancelled => (Phase::Cancelled, "Cancelled before it started".to_owned()),
        _ => (Phase::Error, error.as_ref().map(|e| e.message.clone()).unwrap_or_else(|| "Import failed".into())),
    };
    let holder_at_most = holder_at_most(status, attempt);
    // The terminal event goes after whatever the stream shows, and its seq is the row's.
    let shown = worker.nats.last_progress(id).await.ok().flatten().map(|s| s.seq).unwrap_or(0);
    let ended = sqlx::query(
        "UPDATE imports SET status = $2, phase = $3, message = $4, error = $5, finished_at = clock_timestamp(),
                cancel_requested_at = CASE WHEN $2 = 'cancelled' THEN coalesce(cancel_requested_at, clock_timestamp())
                                           ELSE cancel_requested_at END,
                last_seq = greatest(last_seq, $6) + 1
         WHERE id = $1 AND (status = 'queued' OR (status = 'processing' AND attempts <= $7))",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(phase.as_str())
    .bind(&message)
    .bind(error.as_ref().map(|e| serde_json::to_value(e).expect("error info serialises")))
    .bind(shown as i64)
    .bind(holder_at_most)
    .execute(&worker.db)
    .await;
    match ended {
        Ok(done) if done.rows_affected() == 0 => return,
        Ok(_) => {}
        Err(err) => {
            tracing::error!(import_id = %id, error = %err, "could not end the import");
            return;
        }
    }
    tracing::info!(import_id = %id, status = status.as_str(), "import ended without running");
    if let Err(err) = crate::ended::finish(worker, id).await {
        tracing::warn!(import_id = %id, error = %err.chain(), "terminal event or cleanup not done; the sweep will finish it");
    }
}

/// The highest `attempts` (the token of the attempt that claimed it) of a `processing` import
/// that [`end_unclaimed`] may end: none for the cancel watcher (`attempt` 0); below its own
/// number for a delivery that finds a cancel request (the holder it replaces is gone); up to
/// the last delivery's number for the max-deliveries advisory or a last delivery giving up.
fn holder_at_most(status: Status, attempt: u32) -> i64 {
    match (status, attempt) {
        (_, 0) => -1,
        (Status::Cancelled, n) => i64::from(n) - 1,
        (_, n) => i64::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cancel_watcher_never_ends_a_running_import() {
        assert_eq!(holder_at_most(Status::Cancelled, 0), -1);
    }

    #[test]
    fn a_delivery_cancels_only_an_import_an_earlier_delivery_claimed() {
        assert_eq!(holder_at_most(Status::Cancelled, 3), 2);
    }

    #[test]
    fn the_last_delivery_may_end_the_import_it_claimed_itself_as_error() {
        assert_eq!(holder_at_most(Status::Error, 5), 5);
    }
}
