//! One import attempt, end to end: claim, load, merge, finalize; and what each failure means for
//! the job message (ack, nak with backoff, term).

use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use formats::{Format, Limits};
use futures::StreamExt;
use shared::{
    ImportJob, Phase,
    events::{ErrorDetails, ErrorInfo, Metadata, Summary},
    names,
    telemetry::TraceContext,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    Worker,
    early::{self, EarlyWriter, EarlyWrites},
    ended::{self, EndedRow},
    error::{JobError, Result, StepExt},
    fence::Fence,
    load::{self, LoadSpec},
    merge::{self, MergeSpec},
    progress::Reporter,
};

/// The state of the import row when a delivery arrives.
#[derive(sqlx::FromRow)]
struct Claim {
    last_seq: i64,
    size_bytes: i64,
}

/// Handles one delivery of a job message, from parse to acknowledgement.
pub async fn handle(worker: Worker, message: Message) {
    let attempt = message.info().map(|i| i.delivered).unwrap_or(1).max(1) as u32;
    let job: ImportJob = match serde_json::from_slice(&message.payload) {
        Ok(job) => job,
        Err(err) => {
            tracing::error!(error = %err, "malformed job message; dropping it");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let trace = TraceContext::from_nats_headers(message.headers.as_ref())
        .or_else(|| job.traceparent.as_deref().and_then(TraceContext::parse));
    let span = tracing::info_span!(
        "import",
        import_id = %job.import_id,
        attempt,
        trace_id = trace.map(|t| t.trace_id_hex()).unwrap_or_default()
    );
    if let Some(parent) = trace {
        shared::telemetry::adopt(&span, parent);
    }
    async move {
        let heartbeat = spawn_heartbeat(message.clone(), worker.config.ack_wait());
        let ack = run(&worker, &job, attempt, trace).await;
        heartbeat.abort();
        let Some(ack) = ack else {
            // This delivery is no longer the one JetStream tracks: an ack or a term would end
            // the live attempt's message, a nak would start yet another attempt.
            tracing::info!("fenced: a newer attempt holds the import, or it has ended; leaving the job alone");
            return;
        };
        if let Err(err) = message.ack_with(ack).await {
            tracing::warn!(error = %err, ?ack, "could not acknowledge the job; it may be delivered again");
        }
    }
    .instrument(span)
    .await
}

/// Tells JetStream the job is alive, a few times per `ack_wait`.
fn spawn_heartbeat(message: Message, ack_wait: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ack_wait / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(err) = message.ack_with(AckKind::Progress).await {
                tracing::warn!(error = %err, "in-progress ack failed");
            }
        }
    })
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

impl AbortOnDrop {
    fn abort(&self) {
        self.0.abort();
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the attempt and decides the acknowledgement (`None`: fenced, none at all).
async fn run(worker: &Worker, job: &ImportJob, attempt: u32, trace: Option<TraceContext>) -> Option<AckKind> {
    let id = job.import_id;
    let staging = names::staging_table(id);
    // Subscribe before looking for an earlier request, so none falls in between.
    let cancel = CancellationToken::new();
    let listener = match worker.nats.client.subscribe(names::cancel_subject(id)).await {
        Ok(mut sub) => {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                if sub.next().await.is_some() {
                    tracing::info!("cancel request received");
                    cancel.cancel();
                }
            })
        }
        Err(err) => {
            return Some(retry_later(worker, job, attempt, &format!("subscribing to cancel requests: {err}")).await);
        }
    };
    let ack = attempt_import(worker, job, attempt, trace, &staging, &cancel).await;
    listener.abort();
    ack
}

async fn attempt_import(
    worker: &Worker,
    job: &ImportJob,
    attempt: u32,
    trace: Option<TraceContext>,
    staging: &str,
    cancel: &CancellationToken,
) -> Option<AckKind> {
    let id = job.import_id;
    let db = &worker.db;
    let row = match EndedRow::load(db, id).await {
        Ok(row) => row,
        Err(err) => return Some(retry_later(worker, job, attempt, &format!("reading the import: {err}")).await),
    };
    let Some(row) = row else {
        tracing::warn!("job for an import that does not exist; dropping it");
        return Some(AckKind::Term);
    };
    if row.is_ended() {
        // A redelivery after the end (a crash between the commit and the terminal event or the
        // ack): the terminal event and the cleanup are finished from the row.
        tracing::info!(
            status = row.status().as_str(),
            "import already ended; finishing its terminal event and cleanup"
        );
        if let Err(err) = ended::finish(worker, id).await {
            tracing::warn!(error = %err, "could not finish the ended import; the sweep will");
        }
        return Some(AckKind::Ack);
    }
    match worker.nats.cancel_requested(id).await {
        Ok(false) => {}
        Ok(true) => {
            // Cancelled while it waited in the queue (or while no worker held it): it does not run.
            crate::cancel::end_unclaimed(worker, id, attempt, shared::Status::Cancelled, None).await;
            return Some(AckKind::Term);
        }
        Err(err) => {
            return Some(retry_later(worker, job, attempt, &format!("checking cancel requests: {err}")).await);
        }
    }
    // The claim records this delivery's number as the fencing token, unless a later delivery
    // already did (this one is stale).
    let claim: Option<Claim> = match sqlx::query_as(
        "UPDATE imports SET status = 'processing', attempts = $2, started_at = coalesce(started_at, clock_timestamp()),
                heartbeat_at = clock_timestamp()
         WHERE id = $1 AND status IN ('queued', 'processing') AND attempts < $2
         RETURNING last_seq, size_bytes",
    )
    .bind(id)
    .bind(attempt as i32)
    .fetch_optional(db)
    .await
    {
        Ok(c) => c,
        Err(err) => return Some(retry_later(worker, job, attempt, &format!("claiming the import: {err}")).await),
    };
    let Some(claim) = claim else {
        return fenced(worker, id).await;
    };
    let fence = Fence::new(db.clone(), id, attempt);
    let liveness = spawn_liveness(fence.clone(), worker.config.liveness().0);
    let snapshot = worker.nats.last_progress(id).await.ok().flatten();
    let snapshot_seq = snapshot.as_ref().map(|e| e.seq).unwrap_or(0);
    let mut reporter = Reporter::new(
        worker.nats.clone(),
        fence.clone(),
        trace.map(TraceContext::for_next_hop),
        snapshot_seq.max(claim.last_seq as u64),
        claim.size_bytes as u64,
        Metadata {
            operation: "csv-import".into(),
            filename: job.filename.clone(),
            format: job.format.clone(),
            scan_date: job.scan_date.clone(),
            current_step: 1,
            total_steps: crate::progress::TOTAL_STEPS,
        },
        Duration::from_millis(worker.config.progress_interval_ms),
        worker.config.progress_events,
        worker.merge_rate(),
    );
    if let Some(shown) = snapshot.filter(|e| e.status == shared::Status::Processing) {
        reporter.shown(shown.progress);
    }
    worker.metrics.jobs_active.add(1);
    let result = pipeline(worker, job, staging, &mut reporter, cancel).await;
    worker.metrics.jobs_active.add(-1);
    liveness.abort();
    let partial = reporter.partial_results();
    let (ended, ack) = match result {
        Ok(summary) => {
            worker.metrics.jobs_completed.inc();
            worker.metrics.rows.add(summary.rows);
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
            (Ok(()), AckKind::Ack)
        }
        Err(JobError::Fenced) => return fenced(worker, id).await,
        Err(JobError::Cancelled) => {
            tracing::info!("import cancelled; findings untouched");
            match reporter.cancelled(partial).await {
                Ok(()) => worker.metrics.jobs_cancelled.inc(),
                Err(JobError::Fenced) => return fenced(worker, id).await,
                Err(err) => {
                    tracing::error!(error = %err, "could not record the cancellation");
                    return Some(AckKind::Nak(Some(Duration::from_secs(1))));
                }
            }
            (Ok(()), AckKind::Term)
        }
        Err(JobError::Invalid(info)) => {
            tracing::warn!(code = %info.code, message = %info.message, "import failed: the file cannot be imported");
            worker.metrics.jobs_failed.inc();
            (reporter.failed(*info, partial).await, AckKind::Term)
        }
        Err(err @ JobError::Transient { .. }) => {
            tracing::warn!(error = %err, "attempt failed");
            if i64::from(attempt) >= worker.config.max_deliver {
                let info = gave_up_error(worker.config.max_deliver, &err.to_string());
                worker.metrics.jobs_failed.inc();
                (reporter.failed(info, partial).await, AckKind::Term)
            } else {
                return retry(worker, &mut reporter, staging, attempt, &err).await;
            }
        }
    };
    match ended {
        Ok(()) => {}
        Err(JobError::Fenced) => return fenced(worker, id).await,
        Err(err) => {
            tracing::error!(error = %err, "could not record the failure");
            return Some(AckKind::Nak(Some(Duration::from_secs(1))));
        }
    }
    if let Err(err) = ended::finish(worker, id).await {
        // The row says how it ended; a redelivery or the sweep publishes and cleans up.
        tracing::warn!(error = %err, "terminal event or cleanup not done; the sweep will finish it");
    }
    Some(ack)
}

/// Hands the job back after a transient failure: this attempt's staging goes first (only while
/// it still holds the import), then the row and a `processing` event say it will be retried.
async fn retry(
    worker: &Worker,
    reporter: &mut Reporter,
    staging: &str,
    attempt: u32,
    err: &JobError,
) -> Option<AckKind> {
    let id = reporter.fence().import_id;
    // A failure can leave the early writer's statement running in PostgreSQL: it is ended. The
    // staging table stays for the next attempt to resume when a resume point goes with it.
    match crate::resume::release(&worker.db, reporter.fence(), staging).await {
        Err(JobError::Fenced) => return fenced(worker, id).await,
        Err(e) => tracing::warn!(error = %e, "could not hand back the staging table; the next attempt will"),
        Ok(()) => {}
    }
    // No attempt holds the import until the redelivery: watchers keep the message below, not
    // one saying that a worker stopped responding.
    let quiet = sqlx::query("UPDATE imports SET heartbeat_at = NULL WHERE id = $1 AND attempts = $2")
        .bind(id)
        .bind(attempt as i32)
        .execute(&worker.db)
        .await;
    if let Err(e) = quiet {
        tracing::warn!(error = %e, "could not clear the heartbeat");
    }
    let delay = backoff(attempt);
    match reporter.retrying(format!("Attempt {attempt} failed ({err}); retrying in {}s", delay.as_secs())).await {
        Err(JobError::Fenced) => fenced(worker, id).await,
        _ => Some(AckKind::Nak(Some(delay))),
    }
}

/// A fenced attempt stops quietly. When the import has ended and a stale event of this attempt
/// slipped in after the terminal one, the terminal event is put back on top.
async fn fenced(worker: &Worker, id: Uuid) -> Option<AckKind> {
    match EndedRow::load(&worker.db, id).await {
        Ok(Some(row)) if row.is_ended() => {
            if let Err(err) = ended::republish(&worker.db, &worker.nats, row).await {
                tracing::warn!(error = %err, "could not check the terminal event");
            }
        }
        _ => {}
    }
    None
}

/// The steps, each behind the previous one's success.
async fn pipeline(
    worker: &Worker,
    job: &ImportJob,
    staging: &str,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<Summary> {
    let db = &worker.db;
    let format = Format::parse(&job.format).ok_or_else(|| {
        JobError::invalid(
            "UNKNOWN_FORMAT",
            format!("format {:?} is not one this worker knows", job.format),
            ErrorDetails::default(),
            &["Upgrade the workers to the gateway's version."],
        )
    })?;
    // An earlier attempt of this job died or failed: its sessions still holding the staging
    // table are ended, and the load goes on after its last committed slice, or starts over.
    let resume = crate::resume::take_over(db, reporter.fence(), staging).await?;
    match &resume {
        Some(point) => {
            let share = reporter.resume_from(point);
            tracing::info!(
                line = point.next_line,
                offset = point.offset,
                "resuming the load after the last committed slice"
            );
            let attempt = reporter.fence().attempt;
            let at = if point.at_end {
                "the merge: the whole file is loaded".to_owned()
            } else {
                format!("{share:.0} % of the file (line {})", point.next_line)
            };
            reporter.phase(Phase::Loading, format!("Attempt {attempt}, resuming at {at}")).await?;
        }
        None => {
            reporter.phase(Phase::Parsing, format!("Reading {} header", format.name())).await?;
            merge::create_staging(db, staging).await?;
        }
    }
    let limits = Limits { max_line_bytes: worker.config.max_line_bytes, ..Limits::default() };
    let target = early::Target {
        import_id: job.import_id,
        tenant: job.tenant.clone(),
        scanner: format.scanner(),
        scan_date: job.scan_date.clone(),
        staging: staging.to_owned(),
    };
    // A resumed load writes no findings early: the staged rows' keys are not tracked any more.
    let early = match resume {
        Some(_) => None,
        None => EarlyWriter::begin(db, target).await?.map(EarlyWriter::start),
    };
    if let Some(writes) = &early {
        tracing::info!("no findings of this scanner yet: writing them while the file loads");
        reporter.writing_early(writes.inserted());
    }
    let spec = LoadSpec {
        object_key: &job.object_key,
        format,
        staging,
        limits,
        max_row_errors: worker.config.max_row_errors,
        early,
        slice_bytes: worker.config.early_slice_bytes,
        resume,
    };
    let loaded = load::load(db, &worker.nats, spec, reporter, cancel).await?;
    reporter.loaded(loaded.counters);
    record_row_errors(db, reporter.fence(), &loaded.row_errors).await?;
    let c = loaded.counters;
    if c.invalid > 0 && c.invalid as f64 > worker.config.max_invalid_ratio * c.rows as f64 {
        let first = loaded.row_errors.first();
        return Err(JobError::Invalid(Box::new(ErrorInfo {
            code: "TOO_MANY_INVALID_ROWS".into(),
            message: format!(
                "{} of {} rows are invalid (more than {:.0}%); nothing was imported. First problem: {}",
                c.invalid,
                c.rows,
                worker.config.max_invalid_ratio * 100.0,
                first.map(|e| format!("line {}: {}", e.line, e.message)).unwrap_or_default()
            ),
            details: first
                .map(|e| ErrorDetails {
                    line: Some(e.line),
                    column: Some(e.column.clone()),
                    value: Some(e.value.clone()),
                    expected: Some(e.expected.clone()),
                })
                .unwrap_or_default(),
            recovery_suggestions: vec![
                "Download the list of invalid rows and fix them in the scanner or the file.".into(),
                "Check that the format detected matches the scanner that produced the file.".into(),
            ],
        })));
    }
    if cancel.is_cancelled() {
        return Err(JobError::Cancelled);
    }
    reporter.phase(Phase::Processing, format!("Merging {} findings", loaded.findings)).await?;
    let merge_started = std::time::Instant::now();
    let summary = Summary {
        rows: c.rows,
        validation_errors: c.invalid,
        skipped_duplicates: loaded.staged.folded,
        ..Summary::default()
    };
    if let Some(writes) = loaded.early {
        let staged = loaded.findings - loaded.staged.folded;
        match finish_early(writes, staged, reporter, cancel).await? {
            Some((writer, inserted)) => return writer.commit(summary, inserted, reporter).await,
            None => tracing::info!("a finding key repeats out of order: the findings are merged after loading instead"),
        }
    }
    let spec = MergeSpec {
        import_id: job.import_id,
        tenant: &job.tenant,
        scanner: format.scanner(),
        scan_date: &job.scan_date,
        staging,
        unique: loaded.staged.unique,
    };
    let summary = merge::merge(db, &spec, summary, reporter, cancel).await?;
    worker.observe_merge(c.rows, merge_started.elapsed());
    Ok(summary)
}

/// Waits for the early writer's last slices, reporting how many of the `expected` findings are
/// written; `None` when it gave up (the ordinary merge runs).
async fn finish_early(
    writes: EarlyWrites,
    expected: u64,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<Option<(EarlyWriter, u64)>> {
    let inserted = writes.inserted();
    let finish = writes.finish();
    tokio::pin!(finish);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(JobError::Cancelled),
            done = &mut finish => return done,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                reporter.writing(inserted.load(std::sync::atomic::Ordering::Relaxed), expected).await?;
            }
        }
    }
}

/// Replaces the import's invalid rows with this attempt's first ones, under the row lock of a
/// fence check (a newer attempt cannot claim the import in between).
async fn record_row_errors(db: &sqlx::PgPool, fence: &Fence, errors: &[formats::RowError]) -> Result<()> {
    let mut tx = db.begin().await.step("recording invalid rows")?;
    let current: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM imports WHERE id = $1 AND attempts = $2 AND status = 'processing' FOR SHARE")
            .bind(fence.import_id)
            .bind(fence.attempt as i32)
            .fetch_optional(&mut *tx)
            .await
            .step("checking the attempt's fence")?;
    if current.is_none() {
        return Err(JobError::Fenced);
    }
    sqlx::query("DELETE FROM import_row_errors WHERE import_id = $1")
        .bind(fence.import_id)
        .execute(&mut *tx)
        .await
        .step("clearing earlier row errors")?;
    if !errors.is_empty() {
        let column = |f: fn(&formats::RowError) -> String| errors.iter().map(f).collect::<Vec<String>>();
        sqlx::query(
            "INSERT INTO import_row_errors (import_id, line, column_name, value, code, expected, message)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])",
        )
        .bind(fence.import_id)
        .bind(errors.iter().map(|e| e.line as i64).collect::<Vec<_>>())
        .bind(column(|e| e.column.clone()))
        .bind(column(|e| e.value.replace('\0', "")))
        .bind(column(|e| e.code.to_string()))
        .bind(column(|e| e.expected.clone()))
        .bind(column(|e| e.message.clone()))
        .execute(&mut *tx)
        .await
        .step("recording invalid rows")?;
    }
    tx.commit().await.step("recording invalid rows")?;
    Ok(())
}

/// Naks a delivery that failed before the import was claimed, or gives up on the last one.
async fn retry_later(worker: &Worker, job: &ImportJob, attempt: u32, cause: &str) -> AckKind {
    tracing::warn!(cause, "attempt could not start");
    if i64::from(attempt) >= worker.config.max_deliver {
        mark_failed(worker, job, attempt, cause).await;
        return AckKind::Term;
    }
    AckKind::Nak(Some(backoff(attempt)))
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

/// Records the failure of an import that was never claimed (used when giving up early).
async fn mark_failed(worker: &Worker, job: &ImportJob, attempt: u32, cause: &str) {
    crate::cancel::end_unclaimed(
        worker,
        job.import_id,
        attempt,
        shared::Status::Error,
        Some(gave_up_error(attempt.into(), cause)),
    )
    .await;
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_secs((2u64 << attempt.min(5)).min(60))
}
