//! Fencing: which attempt of an import may still write.
//!
//! The token is the JetStream delivery number of the job message (`attempt`). The server numbers
//! the deliveries of one message 1, 2, 3… and hands out a redelivery only once the previous
//! delivery went silent for the ack wait (or was nak'ed), so the highest number is the attempt
//! JetStream holds live. The claim records it in `imports.attempts` only when it is higher than
//! the number there, so a stale delivery (a worker frozen past the ack wait, then woken) cannot
//! take an import back. Every write of an attempt is conditional on `attempts = <its token>` and
//! `status = 'processing'`; an attempt whose write finds neither is fenced: it stops without
//! touching the row, publishing or acknowledging (its delivery is no longer the one JetStream
//! tracks, and a nak would start yet another attempt).
//!
//! Intermediate progress events are published by plain NATS publishes and are not confirmed; a
//! fenced attempt must not replace the snapshot with one of them. So the attempt reads its fence
//! (one primary-key lookup) before each event, at most one per `HEXFLOW_WORKER_PROGRESS_INTERVAL_MS`
//! while loading and a few dozen during the merge. A stale event that slips in between the check
//! and the publish is repaired when the attempt finds itself fenced: an ended import gets its
//! terminal event again (`ended::republish`).

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{JobError, Result, StepExt};

/// How [`Fence::hold`] locks the import row.
#[derive(Clone, Copy, Debug)]
pub enum Hold {
    /// `FOR UPDATE`: no newer attempt claims the import until the transaction ends.
    Exclusive,
    /// `FOR SHARE`: enough to commit this attempt's writes under the fence.
    Shared,
}

/// The token of one attempt.
#[derive(Clone, Debug)]
pub struct Fence {
    db: PgPool,
    /// The import.
    pub import_id: Uuid,
    /// The delivery number this attempt claimed the import with.
    pub attempt: u32,
}

impl Fence {
    /// The fence of attempt `attempt` of `import_id`.
    pub fn new(db: PgPool, import_id: Uuid, attempt: u32) -> Self {
        Fence { db, import_id, attempt }
    }

    /// The pool the fence is read from.
    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// `Err(JobError::Fenced)` unless this attempt still holds the running import; else the
    /// row's `last_seq` (a note that the attempt stopped responding, published while it was
    /// stalled, moved it past the attempt's own events).
    pub async fn check(&self) -> Result<u64> {
        let current: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT CASE WHEN attempts = $2 AND status = 'processing' THEN last_seq END FROM imports WHERE id = $1",
        )
        .bind(self.import_id)
        .bind(self.attempt as i32)
        .fetch_optional(&self.db)
        .await
        .step("checking the attempt's fence")?;
        match current {
            Some(Some(last_seq)) => Ok(last_seq.max(0) as u64),
            _ => Err(JobError::Fenced),
        }
    }

    /// Locks the import row in `conn`'s transaction while this attempt holds the import
    /// (`Err(JobError::Fenced)` otherwise).
    pub async fn hold(&self, conn: &mut PgConnection, how: Hold) -> Result<()> {
        let sql = match how {
            Hold::Exclusive => {
                "SELECT 1 FROM imports WHERE id = $1 AND attempts = $2 AND status = 'processing' FOR UPDATE"
            }
            Hold::Shared => "SELECT 1 FROM imports WHERE id = $1 AND attempts = $2 AND status = 'processing' FOR SHARE",
        };
        let held: Option<i32> = sqlx::query_scalar(sql)
            .bind(self.import_id)
            .bind(self.attempt as i32)
            .fetch_optional(conn)
            .await
            .step("checking the attempt's fence")?;
        held.map(|_| ()).ok_or(JobError::Fenced)
    }
}
