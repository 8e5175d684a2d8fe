//! Ended imports. The `imports` row is the truth about how an import ended: its terminal event
//! is derived from the row (same seq, same content, whoever publishes it), and whatever finds an
//! import ended without its cleanup done — the attempt that ended it, a redelivery of its job,
//! the periodic sweep — finishes it the same way: terminal event on the progress stream (unless
//! the snapshot already shows it), staging table and its resume point dropped, upload removed for good, `cleaned_at`
//! recorded. Every step is idempotent, so two workers finishing one import do no harm, and one
//! that fails (NATS unreachable) leaves `cleaned_at` empty for the next to retry.

use shared::{Nats, ProgressEvent, ProgressRow, Status, import_row::COLUMNS, names};
use sqlx::PgPool;
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
    /// What the terminal event is made from.
    #[sqlx(flatten)]
    record: ProgressRow,
    /// Name of the uploaded object.
    pub object_key: String,
}

impl EndedRow {
    /// The row of import `id`, whatever its status.
    pub async fn load(db: &PgPool, id: Uuid) -> Result<Option<EndedRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS}, object_key FROM imports WHERE id = $1")))
            .bind(id)
            .fetch_optional(db)
            .await
            .step("reading the import")
    }

    /// The import's status.
    pub fn status(&self) -> Status {
        self.record.status()
    }

    /// True when the import has ended.
    pub fn is_ended(&self) -> bool {
        self.status().is_terminal()
    }

    /// The terminal event, as the row records it.
    pub fn event(&self) -> ProgressEvent {
        self.record.event()
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
    crate::staging::drop(&worker.db, &names::staging_table(id)).await?;
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
        let snapshot = nats.last_progress_entry(row.record.id).await.step("reading the progress snapshot")?;
        if let Some((shown, _)) = &snapshot {
            if shown.is_terminal() && shown.seq >= row.record.last_seq as u64 {
                return Ok(());
            }
            if shown.seq >= row.record.last_seq as u64 {
                let seq = shown.seq as i64 + 1;
                sqlx::query("UPDATE imports SET last_seq = greatest(last_seq, $2) WHERE id = $1")
                    .bind(row.record.id)
                    .bind(seq)
                    .execute(db)
                    .await
                    .step("recording the terminal event's seq")?;
                row.record.last_seq = row.record.last_seq.max(seq);
            }
        }
        let stored = nats
            .publish_progress_after(&row.event(), snapshot.map(|(_, stream_seq)| stream_seq))
            .await
            .step("publishing the terminal event")?;
        if stored {
            tracing::info!(import_id = %row.record.id, seq = row.record.last_seq, status = %row.record.status, "terminal event published");
            return Ok(());
        }
    }
    Err(JobError::transient("publishing the terminal event", "other events kept landing on the import's subject"))
}
