//! Writing a first import's findings while the file is still loading. When a tenant has no
//! findings of the scanner yet, every staged row is a new finding: a second connection takes the
//! merge's advisory lock, opens the merge transaction, and inserts each slice of staging rows as
//! soon as its `COPY` commits, so PostgreSQL writes findings on one core while the worker parses
//! on the other. The transaction commits only at the end, with the import marked completed, so
//! a cancel or a crash still leaves the final tables untouched. When a key turns out to repeat
//! out of order (the merge would fold it), the transaction is rolled back and the ordinary merge
//! runs after loading.
//!
//! The load stays at most [`LEAD_SLICES`] slices ahead of the writer. The writer is the longer
//! of the two and runs on one connection; left to itself the load took both cores and finished
//! first, and the writer then wrote the rest alone while the other core idled. Held back, the
//! load leaves the writer its core, and little is left to write when the load ends.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use shared::events::Summary;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    error::{JobError, Result, StepExt},
    estimate::MergeKind,
    import::Import,
    merge,
    progress::Reporter,
};

/// Slices the load may have committed that the writer has not finished. With 2 the load
/// waited so often that a core idled a fifth of the time; with 5 the writer has about 3 s of
/// writing left when the load ends (one finding per row, 2 cores), and the import ended sooner.
pub const LEAD_SLICES: u64 = 5;

/// The open merge transaction of a first import.
pub struct EarlyWriter {
    tx: Transaction<'static, Postgres>,
    /// The import (shared with the attempt, for the writer's task).
    import: Arc<Import>,
}

impl EarlyWriter {
    /// Opens the merge transaction when this import can write early: its tenant has no findings
    /// of this scanner, and no other merge of them is running (else `None`, and the ordinary
    /// merge runs after loading). The staging table gets an index on `line` for the slices.
    pub async fn begin(db: &PgPool, import: Arc<Import>) -> Result<Option<EarlyWriter>> {
        let mut tx = db.begin().await.step("opening the merge transaction")?;
        merge::settings(&mut tx).await.step("setting up the merge transaction")?;
        let first: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {}
                    AND NOT EXISTS (SELECT 1 FROM vulnerabilities WHERE tenant = $1 AND scanner = $2)",
            merge::merge_lock(false)
        )))
        .bind(&import.tenant)
        .bind(import.scanner())
        .fetch_one(&mut *tx)
        .await
        .step("checking for known findings")?;
        if !first {
            return Ok(None);
        }
        // The transaction holds the staging table from now on, so whatever ends the sessions
        // holding it (a later attempt of this import, the sweep) ends this one too, and with it
        // the advisory lock, which would otherwise keep every later merge of the tenant and
        // scanner waiting on a worker that is frozen or gone.
        sqlx::query(AssertSqlSafe(format!("LOCK TABLE {} IN ACCESS SHARE MODE", import.staging)))
            .execute(&mut *tx)
            .await
            .step("holding the staging table")?;
        // Outside the transaction: an index built inside it would hold a lock that keeps the
        // loading connection's COPY waiting until the commit.
        sqlx::query(AssertSqlSafe(format!("CREATE INDEX ON {} (line)", import.staging)))
            .execute(db)
            .await
            .step("indexing the staging table")?;
        Ok(Some(EarlyWriter { tx, import }))
    }

    /// Hands the transaction to a task that writes each slice it is sent.
    pub fn start(self) -> EarlyWrites {
        let (ranges, mut rx) = mpsc::unbounded_channel::<(u64, u64)>();
        let (lead, slices_done) = Lead::new();
        let tally = WriterTally::default();
        let fixed = Arc::new(AtomicU64::new(0));
        let abandoned = Arc::new(AtomicBool::new(false));
        let (written, fixed_count, stop) = (tally.clone(), fixed.clone(), abandoned.clone());
        let task = tokio::spawn(async move {
            let mut writer = self;
            while let Some((after, upto)) = rx.recv().await {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let insert = merge::insert_new(&writer.import.staging);
                let sql = format!(
                    "WITH written AS ({insert} AND line > {after} AND line <= {upto} RETURNING state)
                     SELECT count(*), count(*) FILTER (WHERE state = 'resolved') FROM written"
                );
                let began = written.begin();
                let (all, resolved): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(&writer.import.tenant)
                    .bind(writer.import.scanner())
                    .bind(&writer.import.scan_date)
                    .bind(writer.import.id)
                    .fetch_one(&mut *writer.tx)
                    .await?;
                let took = began.elapsed();
                written.record(all as u64, took);
                tracing::debug!(
                    after,
                    upto,
                    findings = all,
                    took_ms = took.as_millis() as u64,
                    "wrote a slice of findings"
                );
                fixed_count.fetch_add(resolved as u64, Ordering::Relaxed);
                slices_done.send_modify(|done| *done += 1);
            }
            Ok(writer)
        });
        EarlyWrites { ranges: Some(ranges), lead, task: Some(task), tally, fixed, abandoned }
    }

    /// Records the scanner checks, marks the import completed with `summary` (what was
    /// `written`: new findings, and those already reported fixed, as resolved), and commits;
    /// `Err(JobError::Fenced)` (rolled back) when a newer attempt holds the import.
    pub async fn commit(mut self, mut summary: Summary, written: Written, reporter: &mut Reporter) -> Result<Summary> {
        reporter.finalizing("Recording scanner checks and the summary", crate::progress::EARLY_COMMIT_SECS).await?;
        merge::record_checks(&mut self.tx, &self.import).await.step("recording scanner checks")?;
        (summary.new, summary.resolved) = (written.inserted - written.fixed, written.fixed);
        merge::refresh_statistics(&mut self.tx, written.inserted).await.step("analysing findings")?;
        let done =
            merge::complete(&mut self.tx, &summary, reporter, MergeKind::First).await.step("completing the import")?;
        let Some(summary) = done else { return Err(JobError::Fenced) };
        self.tx.commit().await.step("committing the merge")?;
        Ok(summary)
    }
}

/// What the writer wrote.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Findings inserted.
    pub inserted: u64,
    /// Of those, findings the scanner already reports fixed (inserted as resolved).
    pub fixed: u64,
}

/// What the early writer has done so far, shared with the progress reporter: the findings it
/// inserted, the time its statements took (not the time it waited for the next slice), and
/// when the statement under way began.
#[derive(Debug, Clone, Default)]
pub struct WriterTally {
    inserted: Arc<AtomicU64>,
    slices: Arc<AtomicU64>,
    busy_nanos: Arc<AtomicU64>,
    under_way: Arc<Mutex<Option<Instant>>>,
}

impl WriterTally {
    /// Findings inserted so far.
    pub fn inserted(&self) -> u64 {
        self.inserted.load(Ordering::Relaxed)
    }

    /// The counts now.
    pub fn now(&self) -> Tallied {
        Tallied {
            inserted: self.inserted(),
            slices: self.slices.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
        }
    }

    /// How long the statement under way has run, if one is.
    pub fn under_way(&self) -> Option<Duration> {
        self.under_way.lock().expect("the tally's lock is never poisoned").map(|began| began.elapsed())
    }

    fn begin(&self) -> Instant {
        let now = Instant::now();
        *self.under_way.lock().expect("the tally's lock is never poisoned") = Some(now);
        now
    }

    fn record(&self, inserted: u64, took: Duration) {
        self.busy_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.inserted.fetch_add(inserted, Ordering::Relaxed);
        self.slices.fetch_add(1, Ordering::Relaxed);
        *self.under_way.lock().expect("the tally's lock is never poisoned") = None;
    }
}

/// A reading of a [`WriterTally`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tallied {
    /// Findings inserted.
    pub inserted: u64,
    /// Slices written.
    pub slices: u64,
    /// Time the statements that inserted them took.
    pub busy: Duration,
}

impl Tallied {
    /// Time the statements must have taken for their pace to say something.
    const MIN_BUSY: Duration = Duration::from_millis(300);

    /// Findings per second of the statements since `earlier`, once they took
    /// [`Self::MIN_BUSY`]: how fast the writer writes, whether it keeps up with the load (and
    /// waits for slices) or not.
    pub fn rate_since(&self, earlier: Tallied) -> Option<f64> {
        let busy = self.busy.saturating_sub(earlier.busy);
        (busy >= Self::MIN_BUSY).then(|| self.inserted.saturating_sub(earlier.inserted) as f64 / busy.as_secs_f64())
    }

    /// Findings per slice written so far, once one is.
    pub fn per_slice(&self) -> Option<f64> {
        (self.slices > 0).then(|| self.inserted as f64 / self.slices as f64)
    }
}

/// How many slices the load has handed to the writer that it has not written yet.
struct Lead {
    sent: u64,
    written: watch::Receiver<u64>,
}

impl Lead {
    /// A lead of none, and the sender the writer counts its written slices on.
    fn new() -> (Lead, watch::Sender<u64>) {
        let (done, written) = watch::channel(0);
        (Lead { sent: 0, written }, done)
    }

    fn sent(&mut self) {
        self.sent += 1;
    }

    /// Returns once at most `slices` are left to write, or at once when the writer has ended.
    async fn at_most(&mut self, slices: u64) {
        let sent = self.sent;
        let _ = self.written.wait_for(|written| sent.saturating_sub(*written) <= slices).await;
    }
}

/// The writer's task, fed with line ranges of committed staging rows.
pub struct EarlyWrites {
    ranges: Option<mpsc::UnboundedSender<(u64, u64)>>,
    lead: Lead,
    task: Option<JoinHandle<sqlx::Result<EarlyWriter>>>,
    tally: WriterTally,
    fixed: Arc<AtomicU64>,
    abandoned: Arc<AtomicBool>,
}

impl EarlyWrites {
    /// True until [`EarlyWrites::abandon`].
    pub fn active(&self) -> bool {
        !self.abandoned.load(Ordering::Relaxed)
    }

    /// What the writer has done so far (it goes on counting).
    pub fn tally(&self) -> WriterTally {
        self.tally.clone()
    }

    /// Writes the staged rows with `after < line <= upto` (committed by then).
    pub fn write(&mut self, after: u64, upto: u64) {
        if let Some(ranges) = &self.ranges {
            let _ = ranges.send((after, upto));
            self.lead.sent();
        }
    }

    /// Returns once the writer has at most [`LEAD_SLICES`] slices to write (at once when the
    /// writing was abandoned or its task has ended: [`EarlyWrites::finish`] tells why).
    pub async fn keep_up(&mut self) {
        if self.active() {
            self.lead.at_most(LEAD_SLICES).await;
        }
    }

    /// Gives up writing early (a key repeats): the transaction is rolled back.
    pub fn abandon(&mut self) {
        self.abandoned.store(true, Ordering::Relaxed);
        self.ranges = None;
    }

    /// Waits for the last slice; `None` when the writing was abandoned.
    pub async fn finish(mut self) -> Result<Option<(EarlyWriter, Written)>> {
        self.ranges = None;
        let task = self.task.take().expect("finished once");
        let writer = task.await.step("writing findings")?;
        if !self.active() {
            // Whatever the task did is rolled back with it.
            return Ok(None);
        }
        let writer = writer.step("writing findings")?;
        let written = Written { inserted: self.tally.inserted(), fixed: self.fixed.load(Ordering::Relaxed) };
        Ok(Some((writer, written)))
    }
}

impl std::fmt::Debug for EarlyWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyWrites").field("active", &self.active()).field("inserted", &self.tally.inserted()).finish()
    }
}

impl Drop for EarlyWrites {
    fn drop(&mut self) {
        // A cancel or a failure: the transaction goes with the task, rolled back.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn the_load_waits_while_the_writer_is_more_than_its_lead_behind() {
        let (mut lead, done) = Lead::new();
        for _ in 0..=LEAD_SLICES {
            lead.sent();
        }
        assert_eq!(lead.at_most(LEAD_SLICES).now_or_never(), None, "one slice too many ahead");
        done.send_modify(|written| *written += 1);
        assert_eq!(lead.at_most(LEAD_SLICES).now_or_never(), Some(()), "the writer caught up by one");
        lead.sent();
        assert_eq!(lead.at_most(LEAD_SLICES).now_or_never(), None);
        drop(done);
        assert_eq!(lead.at_most(LEAD_SLICES).now_or_never(), Some(()), "a writer that ended holds nothing back");
    }

    #[test]
    fn the_writers_pace_is_its_statements_time_not_its_waits() {
        let tally = WriterTally::default();
        let start = tally.now();
        tally.begin();
        assert!(tally.under_way().is_some(), "a statement is under way");
        tally.record(10_000, Duration::from_millis(200));
        assert_eq!(tally.under_way(), None);
        assert_eq!(tally.now().rate_since(start), None, "0.2 s of writing says too little");
        // However long the writer then waits for the next slice, only its statements count.
        let first = tally.now();
        tally.record(20_000, Duration::from_millis(300));
        assert_eq!(tally.inserted(), 30_000);
        assert_eq!(tally.now().per_slice(), Some(15_000.0), "two slices");
        assert_eq!(tally.now().rate_since(start), Some(60_000.0));
        assert!((tally.now().rate_since(first).unwrap() - 66_666.67).abs() < 0.01, "the pace since a reading");
    }
}
