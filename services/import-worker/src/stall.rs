//! Imports whose worker stopped responding. The attempt holding a processing import touches
//! `imports.heartbeat_at` every few seconds (`Config::liveness`); when a worker dies or freezes,
//! JetStream delivers the job again only after the ack wait. Meanwhile watchers would look at a
//! frozen bar, so every worker checks, as often as heartbeats are written, for processing
//! imports whose heartbeat is stale, and publishes one non-terminal event per attempt saying so.
//!
//! The note is fenced like any event: its seq is recorded first (`last_seq` + 1, past the
//! snapshot, under the condition that the same attempt still holds the import with a stale
//! heartbeat and was not noted yet), so a newer attempt's seq starts above it; and it is
//! published only right after the snapshot it was made from
//! (`Nats-Expected-Last-Subject-Sequence`), so it never lands on a newer attempt's event or a
//! terminal one. Should the attempt only have been slow, its next event goes past the note's
//! seq (`Fence::check` returns `last_seq`).

use std::time::Duration;

use shared::{Status, events::now_ms};
use uuid::Uuid;

use crate::{
    Worker,
    error::{Result, StepExt},
};

/// Imports noted per pass.
const BATCH: i64 = 100;

/// Checks for stalled imports until the task is aborted.
pub async fn run(worker: Worker) {
    let (every, stale) = worker.config.liveness();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(err) = check(&worker, stale).await {
            tracing::debug!(error = %err.chain(), "checking for stalled imports failed; retrying at the next pass");
        }
    }
}

/// One pass: every stalled import not noted yet.
async fn check(worker: &Worker, stale: Duration) -> Result<()> {
    let stalled: Vec<(Uuid, i32, f64)> = sqlx::query_as(
        "SELECT id, attempts, extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 FROM imports
         WHERE status = 'processing' AND heartbeat_at < clock_timestamp() - make_interval(secs => $1)
           AND stalled_attempt IS DISTINCT FROM attempts
         LIMIT $2",
    )
    .bind(stale.as_secs_f64())
    .bind(BATCH)
    .fetch_all(&worker.db)
    .await
    .step("finding stalled imports")?;
    for (id, attempt, age) in stalled {
        if let Err(err) = note(worker, id, attempt, age, stale).await {
            tracing::warn!(import_id = %id, error = %err.chain(), "could not tell watchers the worker stopped responding");
        }
    }
    Ok(())
}

/// Publishes the note for attempt `attempt` of import `id`, whose heartbeat is `age` seconds old.
async fn note(worker: &Worker, id: Uuid, attempt: i32, age: f64, stale: Duration) -> Result<()> {
    let Some((mut event, stream_seq)) = worker.nats.last_progress_entry(id).await.step("reading the snapshot")? else {
        return Ok(());
    };
    if event.is_terminal() {
        return Ok(());
    }
    let seq: Option<i64> = sqlx::query_scalar(
        "UPDATE imports SET last_seq = greatest(last_seq, $2) + 1, stalled_attempt = attempts
         WHERE id = $1 AND status = 'processing' AND attempts = $3
           AND heartbeat_at < clock_timestamp() - make_interval(secs => $4)
           AND stalled_attempt IS DISTINCT FROM attempts
         RETURNING last_seq",
    )
    .bind(id)
    .bind(event.seq as i64)
    .bind(attempt)
    .bind(stale.as_secs_f64())
    .fetch_optional(&worker.db)
    .await
    .step("recording the note's seq")?;
    let Some(seq) = seq else { return Ok(()) };
    let retry_in = (worker.config.ack_wait_secs as f64 - age).max(1.0).round();
    event.seq = seq as u64;
    event.status = Status::Processing;
    event.message = stalled_message(retry_in as u64);
    event.eta_seconds = None;
    event.rows_per_second = 0.0;
    event.timestamp = now_ms();
    let stored = worker.nats.publish_progress_after(&event, Some(stream_seq)).await.step("publishing the note")?;
    if stored {
        tracing::info!(import_id = %id, attempt, heartbeat_age_secs = age, "the worker holding the import stopped responding; watchers told");
    }
    Ok(())
}

/// What watchers read while no worker holds an import whose worker died.
fn stalled_message(retry_in_secs: u64) -> String {
    format!("The worker handling this import stopped responding; it will be retried in about {retry_in_secs} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_says_when_the_import_is_retried() {
        assert_eq!(
            stalled_message(12),
            "The worker handling this import stopped responding; it will be retried in about 12 s"
        );
    }
}
