//! One attempt at an import, up to its outcome: the checks before the claim (does the import
//! exist, has it ended, was it cancelled while queued), the claim with this delivery's number as
//! fencing token, then the pipeline. What the outcome means for the row, the events, the
//! cleanup and the job message is decided in one place, `outcome`.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use shared::{ImportJob, Phase, Status, names, telemetry::TraceContext};
use tokio_util::sync::CancellationToken;

use crate::{
    Worker,
    ended::EndedRow,
    error::{JobError, StepExt},
    fence::Fence,
    import::{self, Import},
    outcome::Outcome,
    pipeline,
    progress::{Reporter, Start},
};

/// The state of the import row when a delivery arrives.
#[derive(sqlx::FromRow)]
struct Claim {
    last_seq: i64,
    size_bytes: i64,
}

/// One delivery's attempt at its import.
pub struct Attempt<'a> {
    /// Database, NATS and settings.
    pub(crate) worker: &'a Worker,
    /// The job message.
    pub(crate) job: &'a ImportJob,
    /// The delivery number: this attempt's fencing token.
    pub(crate) number: u32,
    /// Trace context of the upload, continued by the events.
    trace: Option<TraceContext>,
    /// Set once this attempt has claimed the import: events and row updates go through it.
    pub(crate) reporter: Option<Reporter>,
}

impl<'a> Attempt<'a> {
    /// The attempt of delivery `number` of `job`.
    pub fn new(worker: &'a Worker, job: &'a ImportJob, number: u32, trace: Option<TraceContext>) -> Self {
        Attempt { worker, job, number, trace, reporter: None }
    }

    /// Runs the attempt as far as it goes, listening for cancel requests meanwhile.
    pub async fn run(&mut self) -> Outcome {
        // Subscribe before looking for an earlier request, so none falls in between.
        let cancel = CancellationToken::new();
        let subject = names::cancel_subject(self.job.import_id);
        let listener = match self.worker.nats.client.subscribe(subject).await {
            Ok(mut sub) => {
                let cancel = cancel.clone();
                AbortOnDrop(tokio::spawn(async move {
                    if sub.next().await.is_some() {
                        tracing::info!("cancel request received");
                        cancel.cancel();
                    }
                }))
            }
            Err(err) => return Outcome::Transient(JobError::transient("subscribing to cancel requests", err)),
        };
        let outcome = self.claim_and_import(&cancel).await;
        drop(listener);
        outcome
    }

    async fn claim_and_import(&mut self, cancel: &CancellationToken) -> Outcome {
        let (worker, id) = (self.worker, self.job.import_id);
        let row = match EndedRow::load(&worker.db, id).await {
            Ok(row) => row,
            Err(err) => return Outcome::Transient(err),
        };
        let Some(row) = row else { return Outcome::Missing };
        if row.is_ended() {
            return Outcome::AlreadyEnded(row.status());
        }
        match worker.nats.cancel_requested(id).await {
            Ok(false) => {}
            // Cancelled while it waited in the queue (or while no worker held it): it does not run.
            Ok(true) => return Outcome::Cancelled,
            Err(err) => return Outcome::Transient(JobError::transient("checking cancel requests", err)),
        }
        let claim = match self.claim().await {
            Ok(Some(claim)) => claim,
            Ok(None) => return Outcome::Fenced,
            Err(err) => return Outcome::Transient(err),
        };
        let fence = Fence::new(worker.db.clone(), id, self.number);
        let liveness = spawn_liveness(fence.clone(), worker.config.liveness().0);
        let snapshot = worker.nats.last_progress(id).await.ok().flatten();
        let snapshot_seq = snapshot.as_ref().map(|e| e.seq).unwrap_or(0);
        let start = Start {
            fence,
            trace: self.trace.map(TraceContext::for_next_hop),
            last_seq: snapshot_seq.max(claim.last_seq as u64),
            total_bytes: claim.size_bytes as u64,
            metadata: import::metadata(self.job, Phase::Parsing.step()),
        };
        let reporter = self.reporter.insert(Reporter::new(worker, start));
        if let Some(shown) = snapshot.filter(|e| e.status == Status::Processing) {
            reporter.shown(shown.progress);
        }
        let import = match Import::new(self.job) {
            Ok(import) => Arc::new(import),
            Err(err) => return err.into(),
        };
        worker.metrics.jobs_active.add(1);
        let result = pipeline::run(worker, &import, reporter, cancel).await;
        worker.metrics.jobs_active.add(-1);
        drop(liveness);
        match result {
            Ok(summary) => Outcome::Completed(summary),
            Err(err) => err.into(),
        }
    }

    /// Claims the import: records this delivery's number as the fencing token, unless a later
    /// delivery already did (`None`: this one is stale).
    async fn claim(&self) -> crate::error::Result<Option<Claim>> {
        sqlx::query_as(
            "UPDATE imports SET status = 'processing', attempts = $2, started_at = coalesce(started_at, clock_timestamp()),
                    heartbeat_at = clock_timestamp()
             WHERE id = $1 AND status IN ('queued', 'processing') AND attempts < $2
             RETURNING last_seq, size_bytes",
        )
        .bind(self.job.import_id)
        .bind(self.number as i32)
        .fetch_optional(&self.worker.db)
        .await
        .step("claiming the import")
    }
}

/// Touches the import's `heartbeat_at` every `every` while this attempt holds it, so watchers
/// can be told when its worker stops responding (`stall`).
fn spawn_liveness(fence: Fence, every: Duration) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let touched = sqlx::query(
                "UPDATE imports SET heartbeat_at = clock_timestamp()
                 WHERE id = $1 AND attempts = $2 AND status = 'processing'",
            )
            .bind(fence.import_id)
            .bind(fence.attempt as i32)
            .execute(fence.db())
            .await;
            if let Err(err) = touched {
                tracing::warn!(error = %err, "could not record the attempt's heartbeat");
            }
        }
    }))
}

/// A background task that ends with its owner, however the owner ends (an attempt aborted at
/// shutdown too).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
