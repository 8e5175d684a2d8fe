//! The sweep: a periodic pass (every `HEXFLOW_WORKER_SWEEP_SECS`) that finishes what a crash
//! or an outage left behind. Ended imports whose terminal event or cleanup did not complete
//! (`cleaned_at` empty once the ack wait has passed: the worker that ended it normally finishes
//! within it, and a redelivery of its job within it again) are finished from their row
//! (`ended::finish`). Uploads that no queued or running import refers to are removed once they
//! are older than `HEXFLOW_UPLOAD_ORPHAN_GRACE_SECS` (an upload in flight has no row yet), and
//! the metadata the object store keeps for each deleted object (a `deleted` marker) is purged.
//! Every worker runs it; a transaction-scoped advisory lock lets one pass run at a time, and
//! every step is idempotent anyway.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    Worker,
    error::{Result, StepExt},
};

/// Ended imports finished per pass (the rest wait for the next one).
const BATCH: i64 = 100;

/// Runs the sweep every `sweep_secs` until the task is aborted.
pub async fn run(worker: Worker) {
    let mut tick = tokio::time::interval(Duration::from_secs(worker.config.sweep_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(err) = sweep(&worker).await {
            tracing::warn!(error = %err.chain(), "sweep failed; retrying at the next pass");
        }
    }
}

/// One pass, unless another worker is running one.
async fn sweep(worker: &Worker) -> Result<()> {
    let mut lock = worker.db.begin().await.step("starting the sweep")?;
    // No tenant/scanner merge lock key can equal this one: those always hold a '/'.
    let ours: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended('hexflow-worker-sweep', 0))")
            .fetch_one(&mut *lock)
            .await
            .step("taking the sweep lock")?;
    if !ours {
        return Ok(());
    }
    let finished = finish_ended(worker).await;
    let removed = remove_orphans(worker).await;
    lock.commit().await.step("ending the sweep")?;
    finished.and(removed)
}

/// Finishes ended imports whose cleanup is not recorded.
async fn finish_ended(worker: &Worker) -> Result<()> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM imports
         WHERE cleaned_at IS NULL AND status IN ('completed', 'error', 'cancelled')
           AND finished_at < clock_timestamp() - make_interval(secs => $1)
         ORDER BY finished_at LIMIT $2",
    )
    .bind(worker.config.ack_wait_secs as f64)
    .bind(BATCH)
    .fetch_all(&worker.db)
    .await
    .step("finding ended imports left unfinished")?;
    let mut result = Ok(());
    for id in ids {
        tracing::info!(import_id = %id, "sweep: finishing an ended import's terminal event and cleanup");
        if let Err(err) = crate::ended::finish(worker, id).await {
            tracing::warn!(import_id = %id, error = %err.chain(), "sweep: could not finish the ended import");
            result = Err(err);
        }
    }
    result
}

/// Quiet time after which chunks no object names are removed (at most the orphan grace).
const ORPHAN_CHUNKS_QUIET_SECS: u64 = 600;

/// Purges delete markers, and removes uploads past the grace that no queued or running import
/// refers to (never with `HEXFLOW_KEEP_UPLOADS`, which keeps every upload).
async fn remove_orphans(worker: &Worker) -> Result<()> {
    let objects = worker.nats.upload_objects().await.step("listing the uploads")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default();
    let grace = worker.config.upload_orphan_grace_secs as i64;
    let mut old = Vec::new();
    for (subject, info) in objects {
        if info.deleted {
            worker.nats.purge_upload_subject(&subject).await.step("purging a deleted upload's metadata")?;
        } else if !worker.config.keep_uploads && info.modified.is_some_and(|m| now - m.unix_timestamp() > grace) {
            old.push((subject, info.name));
        }
    }
    // Chunks without metadata (their gateway stopped mid-upload): an upload in progress stores
    // a chunk every few seconds, so none of them is quiet for the grace or ten minutes.
    let quiet_for = Duration::from_secs(worker.config.upload_orphan_grace_secs.min(ORPHAN_CHUNKS_QUIET_SECS));
    let purged = worker.nats.purge_orphan_chunks(quiet_for).await.step("removing orphaned chunks")?;
    if purged > 0 {
        tracing::info!(uploads = purged, "sweep: removed the chunks of uploads whose gateway stopped");
    }
    if old.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = old.iter().map(|(_, name)| name.clone()).collect();
    let active: Vec<String> = sqlx::query_scalar(
        "SELECT object_key FROM imports WHERE object_key = ANY($1) AND status IN ('queued', 'processing')",
    )
    .bind(&names)
    .fetch_all(&worker.db)
    .await
    .step("looking up the uploads' imports")?;
    for (subject, name) in old {
        if active.contains(&name) {
            continue;
        }
        tracing::info!(object = %name, "sweep: removing an upload no queued or running import refers to");
        worker.nats.purge_upload_subject(&subject).await.step("removing an orphaned upload")?;
    }
    Ok(())
}
