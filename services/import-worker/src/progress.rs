//! Progress of one import: phase weights, coalescing (at most one intermediate event per
//! interval), strictly increasing `seq`, ETA from measured throughput, and the `imports` row
//! kept in step at phase changes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use shared::{
    Nats, Phase, ProgressEvent, Status,
    events::{ErrorInfo, Metadata, PartialResults, Summary, now_ms},
    telemetry::TraceContext,
};
use sqlx::PgPool;

use crate::{
    Worker,
    early::{LEAD_SLICES, Tallied, WriterTally},
    error::{JobError, Result, StepExt},
    estimate::{MergeKind, MergePace, SlicedPace, Speedup},
    fence::Fence,
    resume::ResumePoint,
};

/// Findings written per second after an early-writing load, before any has been written, as a
/// multiple of the rows read per second while loading: 0.43–0.69, median 0.61, over sixteen
/// million-row first imports of two shapes on a 2-core machine (`docs/benchmarks.md`).
const EARLY_TAIL_RATIO: f64 = 0.6;
/// How much faster the early writer's statements are expected to run once the file is whole
/// than while it arrives (the upload then takes part of the machine), until that pace is
/// measured: 0.84–1.86, median 1.4, over six million-row first imports of two shapes on a
/// 2-core machine (`docs/benchmarks.md`).
const WRITER_ARRIVING_SPEEDUP: f64 = 1.4;
/// Scanner checks, statistics and commit after the last finding of a million-row first import
/// (0.1 s on 2 cores: the checks read by index, a sampled `ANALYZE`, then the commit).
pub const EARLY_COMMIT_SECS: f64 = 0.15;
/// How long a load must have run since its file became whole before that pace is believed.
const WHOLE_PACE_MIN: Duration = Duration::from_secs(1);
/// From a merge's finalizing event to its commit: the import row is written and the
/// transaction commits (well under 0.1 s for a million rows).
pub const FINALIZE_SECS: f64 = 0.1;

/// Counters of the loading phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Data rows read.
    pub rows: u64,
    /// Bytes of the file consumed.
    pub bytes: u64,
    /// Invalid rows seen.
    pub invalid: u64,
    /// Rows written to staging (findings, after folding repeats).
    pub staged: u64,
}

/// Where an attempt's progress starts.
pub struct Start {
    /// This attempt's token.
    pub fence: Fence,
    /// Trace context the events carry.
    pub trace: Option<TraceContext>,
    /// The highest seq any earlier event of the import had: this attempt's events come after it.
    pub last_seq: u64,
    /// Size of the file.
    pub total_bytes: u64,
    /// Static facts about the import.
    pub metadata: Metadata,
}

/// Publishes the progress of one import attempt.
pub struct Reporter {
    nats: Nats,
    db: PgPool,
    /// This attempt's token: checked before every event, part of every row update.
    fence: Fence,
    trace: Option<TraceContext>,
    event: ProgressEvent,
    interval: Duration,
    intermediate: bool,
    last_sent: Option<Instant>,
    load_started: Option<Instant>,
    /// When every row had been read (the merge's start).
    merge_started: Option<Instant>,
    merge_pace: MergePace,
    /// Findings staged so far (all of them once loading is over).
    staged: u64,
    invalid_rows: u64,
    /// What the early writer has done, when the findings are written while the file loads.
    early: Option<WriterTally>,
    /// What it had done when the file became whole, if it was arriving as the load started.
    writes_at_whole: Option<Tallied>,
    /// The pace of the findings written after an early-writing load.
    writing: SlicedPace,
    /// Where a resumed load started: throughput counts only what this attempt read.
    base: Counters,
    /// Progress of the snapshot when this attempt started.
    shown_progress: f64,
    /// Raised once the file is whole, when it was still arriving as the load started.
    arriving: Option<Arc<AtomicBool>>,
    /// When the file was seen whole while it loaded: then, the bytes read, and the load's seconds.
    whole_at: Option<(Instant, u64, f64)>,
    /// How much faster than its average so far the rest of the load is expected to run.
    load_speedup: f64,
    /// This worker's measure of that speed-up.
    arriving_speedup: Speedup,
    /// This worker's measure of how much faster the early writer goes once the load is over or
    /// waits for it.
    writer_alone_speedup: Speedup,
    /// This worker's measure of how much faster the early writer's last slices go once a load
    /// that waited for it is over.
    writer_tail_speedup: Speedup,
    /// What the early writer had done when the load ended, and the pace of its statements then.
    writes_at_load_end: Option<(Tallied, Option<f64>)>,
    /// What the early writer had done when the load first waited for it, and the pace of its
    /// statements then.
    writes_at_hold: Option<(Tallied, Option<f64>)>,
}

impl Reporter {
    /// The reporter of the attempt `start` describes, publishing as `worker` is configured to.
    pub fn new(worker: &Worker, start: Start) -> Self {
        let Start { fence, trace, last_seq, total_bytes, metadata } = start;
        let db = fence.db().clone();
        let event = ProgressEvent {
            total_bytes,
            attempt: fence.attempt,
            ..ProgressEvent::new(fence.import_id, last_seq, Status::Processing, Phase::Parsing, metadata)
        };
        Reporter {
            nats: worker.nats.clone(),
            db,
            fence,
            trace,
            event,
            interval: Duration::from_millis(worker.config.progress_interval_ms),
            intermediate: worker.config.progress_events,
            last_sent: None,
            load_started: None,
            merge_started: None,
            merge_pace: worker.merge_rates.pace(MergeKind::First),
            staged: 0,
            invalid_rows: 0,
            early: None,
            writes_at_whole: None,
            writing: SlicedPace::default(),
            base: Counters::default(),
            arriving: None,
            whole_at: None,
            load_speedup: 1.0,
            arriving_speedup: worker.arriving_speedup.clone(),
            writer_alone_speedup: worker.writer_alone_speedup.clone(),
            writer_tail_speedup: worker.writer_tail_speedup.clone(),
            writes_at_load_end: None,
            writes_at_hold: None,
            shown_progress: 0.0,
        }
    }

    /// This attempt's token.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// How far the attempt got, for an error or cancel event.
    pub fn partial_results(&self) -> PartialResults {
        PartialResults {
            processed_rows: self.event.processed_rows,
            bytes_processed: self.event.bytes_processed,
            validation_errors: self.invalid_rows,
        }
    }

    /// The progress watchers were last shown (by an earlier attempt): a resumed load does not
    /// go back below it.
    pub fn shown(&mut self, progress: f64) {
        self.shown_progress = progress;
    }

    /// Continues a load from `point`: counters and progress start where it stands (never below
    /// what watchers were shown). Returns the share of the file already loaded, in percent.
    pub fn resume_from(&mut self, point: &ResumePoint) -> f64 {
        let bytes = point.offset.unwrap_or_default().min(self.event.total_bytes);
        self.base = Counters { rows: point.rows, bytes, invalid: point.invalid, staged: point.staged };
        self.event.processed_rows = point.rows;
        self.event.bytes_processed = bytes;
        self.invalid_rows = point.invalid;
        let share = if self.event.total_bytes == 0 { 1.0 } else { bytes as f64 / self.event.total_bytes as f64 };
        let progress = (Phase::Loading.overall(share) * 100.0).round() / 100.0;
        self.event.progress = progress.max(self.shown_progress);
        share * 100.0
    }

    /// The findings are written while loading: the ETA counts the rows still to write, not a
    /// whole merge after the load.
    pub fn writing_early(&mut self, tally: WriterTally) {
        self.early = Some(tally);
    }

    fn advance(&mut self, phase: Phase, fraction: f64, message: String) {
        self.event.seq += 1;
        self.event.phase = phase;
        // Never backwards within an attempt (nor below where a resumed load starts).
        let before = self.last_progress();
        self.event.progress = ((phase.overall(fraction) * 100.0).round() / 100.0).max(before);
        self.event.message = message;
        self.event.metadata.current_step = phase.step();
        self.event.timestamp = now_ms();
    }

    fn last_progress(&self) -> f64 {
        self.event.progress
    }

    /// Enters a phase: always published (confirmed) and written to the `imports` row.
    pub async fn phase(&mut self, phase: Phase, message: impl Into<String>) -> Result<()> {
        if phase == Phase::Loading {
            self.load_started = Some(Instant::now());
        }
        self.advance(phase, 0.0, message.into());
        self.publish(true).await?;
        self.save().await
    }

    /// Enters the finalizing phase (95 %), expected to end in `secs`.
    pub async fn finalizing(&mut self, message: &str, secs: f64) -> Result<()> {
        self.event.eta_seconds = Some(round1(secs));
        self.phase(Phase::Finalizing, message).await
    }

    /// The merge is now expected to take `factor` times what was expected: below 1 when steps
    /// it counted on turned out to have nothing to write, either way when its pace so far says so.
    pub fn rescale_merge(&mut self, factor: f64) {
        if factor > 0.0 {
            self.merge_pace = self.merge_pace.faster(1.0 / factor);
        }
    }

    /// Findings per second expected once an early-writing load is over: the pace since the load
    /// first waited for the writer, faster by this worker's measure of the last slices'
    /// speed-up; else as [`early_tail_pace`] says.
    fn early_tail_pace(&self) -> f64 {
        match self.held_pace() {
            Some(pace) => pace * self.writer_tail_speedup.expected(),
            None => {
                early_tail_pace(self.writer_pace(), self.writer_alone_speedup.expected(), self.alone_rows_per_second())
            }
        }
    }

    /// The pace of the early writer's statements from the load's first wait for it to the
    /// load's end (or to now, while it loads): from then on the writer sets the pace, and no
    /// longer shares the machine with a load running ahead.
    fn held_pace(&self) -> Option<f64> {
        let (held, _) = self.writes_at_hold?;
        let until = match self.writes_at_load_end {
            Some((ended, _)) => ended,
            None => self.early.as_ref()?.now(),
        };
        until.rate_since(held)
    }

    /// The pace of the early writer's statements: since the file became whole once measured
    /// (`true`), else over all of them.
    fn statement_pace(&self) -> Option<(f64, bool)> {
        let now = self.early.as_ref()?.now();
        if let Some(rate) = self.writes_at_whole.and_then(|whole| now.rate_since(whole)) {
            return Some((rate, true));
        }
        now.rate_since(Tallied::default()).map(|rate| (rate, false))
    }

    /// Findings per second the early writer is expected to write at until the load ends: the
    /// pace of its statements (not of the time it ran: while it keeps up with the load it waits
    /// for slices), since the file became whole once that is measured; before, its pace so far,
    /// faster by [`WRITER_ARRIVING_SPEEDUP`] when the file was arriving.
    fn writer_pace(&self) -> Option<f64> {
        let (rate, since_whole) = self.statement_pace()?;
        Some(if self.arriving.is_some() && !since_whole { rate * WRITER_ARRIVING_SPEEDUP } else { rate })
    }

    /// The early writer has written its last finding: its pace once the load no longer ran
    /// beside it (from the load's first wait for it, else from the load's end) over its pace
    /// before is what this worker expects of the next first import.
    pub fn early_writes_done(&self) {
        let (Some((alone_from, Some(before))), Some(writer)) =
            (self.writes_at_hold.or(self.writes_at_load_end), &self.early)
        else {
            return;
        };
        if let Some(after) = writer.now().rate_since(alone_from) {
            self.writer_alone_speedup.observe(before, after);
            let held = self.writes_at_hold.is_some();
            tracing::debug!(before, after, held, "the early writer's pace beside the load and once alone");
        }
        // A load that waited for the writer: its last slices' pace over the pace while it waited.
        if let (Some(held), Some((ended, _))) = (self.held_pace(), self.writes_at_load_end)
            && let Some(tail) = writer.now().rate_since(ended)
        {
            self.writer_tail_speedup.observe(held, tail);
            tracing::debug!(held, tail, "the early writer's pace while the load waited for it and after the load");
        }
    }

    /// The load's rate in rows per second without the upload beside it (see `load_speedup`):
    /// the default merge paces are ratios to it.
    fn alone_rows_per_second(&self) -> f64 {
        self.event.rows_per_second * self.load_speedup
    }

    /// The time the merge is expected to take, from the rows read, the findings staged and the
    /// expected merge pace.
    pub fn expected_merge_secs(&self) -> f64 {
        let rows = self.event.total_rows.unwrap_or(self.event.processed_rows) as f64;
        self.merge_pace.secs(rows, self.staged as f64, self.alone_rows_per_second())
    }

    /// The file is still arriving as the load starts: `whole` is raised once it is stored whole.
    /// Until then the load shares the machine with the upload, and the estimates expect it to
    /// speed up afterwards.
    pub fn arriving(&mut self, whole: Arc<AtomicBool>) {
        self.arriving = Some(whole);
        self.load_speedup = self.arriving_speedup.expected();
    }

    /// How much faster than its average so far the rest of the load is expected to run: 1 for a
    /// file stored before the load; for one still arriving, this worker's measure (or the
    /// default) until the load's pace since the file became whole is measured over a second.
    fn measure_speedup(&mut self, c: Counters, secs: f64) {
        let Some(whole) = &self.arriving else { return };
        if self.whole_at.is_none() && whole.load(Ordering::Relaxed) {
            self.whole_at = Some((Instant::now(), c.bytes, secs));
            self.writes_at_whole = self.early.as_ref().map(WriterTally::now);
        }
        let average = c.bytes.saturating_sub(self.base.bytes) as f64 / secs;
        if let Some((at, bytes, _)) = self.whole_at
            && at.elapsed() >= WHOLE_PACE_MIN
            && c.bytes > bytes
            && average > 0.0
        {
            let since = c.bytes.saturating_sub(bytes) as f64 / at.elapsed().as_secs_f64();
            self.load_speedup = (since / average).max(1.0);
        }
    }

    /// Loading progress, measured by bytes consumed; published at most once per interval.
    pub async fn loading(&mut self, counters: Counters) -> Result<()> {
        self.event.processed_rows = counters.rows;
        self.event.bytes_processed = counters.bytes;
        self.invalid_rows = counters.invalid;
        self.staged = counters.staged;
        let secs = self.load_started.map(|t| t.elapsed().as_secs_f64()).unwrap_or_default();
        if secs > 0.0 {
            self.event.rows_per_second = (counters.rows.saturating_sub(self.base.rows) as f64 / secs).round();
        }
        if secs > 0.0 {
            self.measure_speedup(counters, secs);
        }
        self.event.eta_seconds = self.eta(counters, secs);
        if !self.due() {
            return Ok(());
        }
        let message = format!("Loading rows: {} read", counters.rows);
        self.advance(Phase::Loading, self.load_fraction(counters), message);
        self.publish(false).await
    }

    /// The load waits for the findings written while it loads to catch up: said at once, so a
    /// bar that stops moving says why.
    pub async fn waiting_for_writes(&mut self, counters: Counters) -> Result<()> {
        if self.writes_at_hold.is_none() {
            self.writes_at_hold =
                self.early.as_ref().map(|writer| (writer.now(), self.statement_pace().map(|(rate, _)| rate)));
        }
        if !self.intermediate {
            return Ok(());
        }
        let message = format!("Loading rows: {} read; writing their findings", counters.rows);
        self.advance(Phase::Loading, self.load_fraction(counters), message);
        self.last_sent = Some(Instant::now());
        self.publish(false).await
    }

    fn load_fraction(&self, counters: Counters) -> f64 {
        if self.event.total_bytes == 0 { 1.0 } else { counters.bytes as f64 / self.event.total_bytes as f64 }
    }

    /// The merge of this import is expected at `pace` (the tenant's last merge of its kind and
    /// format, this worker's measure, or the kind's ratio to the load rate), not at the pace it
    /// started with.
    pub fn expect_merge(&mut self, pace: MergePace) {
        self.merge_pace = pace;
    }

    /// Time since every row was read (zero before).
    pub fn merge_elapsed(&self) -> Duration {
        self.merge_started.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Merge progress: `fraction` (0–1) of the merge's steps is behind. The time left is the
    /// expected merge time less the time spent while the merge is within it; past it, the steps
    /// left at the expected rate.
    pub async fn processing(&mut self, fraction: f64, message: &str) -> Result<()> {
        let expected = self.expected_merge_secs();
        let spent = self.merge_elapsed().as_secs_f64();
        let left = if spent < expected { expected - spent } else { expected * (1.0 - fraction) };
        self.event.eta_seconds = Some(round1(left + FINALIZE_SECS));
        self.advance(Phase::Processing, fraction, message.into());
        self.publish_intermediate().await
    }

    /// Progress of the findings still being written after an early-writing load: `written` of
    /// `expected`. The count grows a slice at a time, so its pace is timed between growths
    /// (see [`SlicedPace`]); until two are seen, at the pace of the writes while loading, sped
    /// up as [`Reporter::early_tail_pace`] says.
    pub async fn writing(&mut self, written: u64, expected: u64) -> Result<()> {
        let now = Instant::now();
        self.writing.observe(now, written);
        let default_pace = self.early_tail_pace();
        let left = self.writing.secs_to(now, expected, default_pace);
        self.event.eta_seconds = Some(round1(left + EARLY_COMMIT_SECS));
        let fraction = (written as f64 / expected.max(1) as f64).min(1.0);
        self.advance(Phase::Processing, fraction, "Writing new findings".into());
        self.publish_intermediate().await
    }

    /// Publishes a merge-phase event (each is a step of its own, so none is coalesced away).
    async fn publish_intermediate(&mut self) -> Result<()> {
        if self.intermediate {
            self.publish(false).await?;
            self.last_sent = Some(Instant::now());
        }
        Ok(())
    }

    /// Records that every row has been read.
    pub fn loaded(&mut self, counters: Counters) {
        // A load whose file arrived while it ran: its pace before and after, for the next one.
        if let (Some((at, bytes, before_secs)), Some(started)) = (self.whole_at, self.load_started)
            && before_secs >= WHOLE_PACE_MIN.as_secs_f64()
            && at.elapsed() >= WHOLE_PACE_MIN
        {
            let before = bytes.saturating_sub(self.base.bytes) as f64 / before_secs;
            let after = counters.bytes.saturating_sub(bytes) as f64 / at.elapsed().as_secs_f64();
            self.arriving_speedup.observe(before, after);
            tracing::debug!(
                before,
                after,
                load_secs = started.elapsed().as_secs_f64(),
                "the load's pace before and after its file was whole"
            );
        }
        self.writes_at_load_end =
            self.early.as_ref().map(|writer| (writer.now(), self.statement_pace().map(|(rate, _)| rate)));
        self.merge_started = Some(Instant::now());
        self.invalid_rows = counters.invalid;
        self.staged = counters.staged;
        self.event.processed_rows = counters.rows;
        self.event.bytes_processed = counters.bytes;
        self.event.total_rows = Some(counters.rows);
    }

    fn due(&mut self) -> bool {
        if !self.intermediate {
            return false;
        }
        let due = self.last_sent.is_none_or(|t| t.elapsed() >= self.interval);
        if due {
            self.last_sent = Some(Instant::now());
        }
        due
    }

    /// Remaining load time from the byte rate, plus the merge of the rows expected in the file at
    /// the measured merge rate (rows per second). Given once a fifth of a second or a twentieth of
    /// the file is behind, so that even a short load shows one.
    fn eta(&self, c: Counters, secs: f64) -> Option<f64> {
        let total = self.event.total_bytes.max(c.bytes) as f64;
        let read = c.bytes.saturating_sub(self.base.bytes) as f64;
        let measured = secs >= 0.2 || read >= total / 20.0;
        if !measured || secs <= 0.0 || read == 0.0 || c.rows == 0 {
            return None;
        }
        let load_left = (total - c.bytes as f64) / (read / secs * self.load_speedup);
        let rows_expected = c.rows as f64 * total / c.bytes as f64;
        let staged_expected = c.staged as f64 * total / c.bytes as f64;
        if let Some(writer) = &self.early {
            // Findings go on being written at the writer's pace until the load ends (never
            // ahead of the rows loaded), the statement under way included, and the rest faster
            // once the parser no longer shares the machine.
            let written = writer.inserted() as f64;
            if let Some(pace) = self.held_pace() {
                // The load waits for the writer: what is left is the writer's, at its pace since,
                // but for the slices still to write once the load is over, which go faster.
                let under_way = writer.under_way().unwrap_or_default().as_secs_f64();
                let per_slice = writer.now().per_slice().unwrap_or_default();
                let writes = held_writes_secs(
                    staged_expected - written,
                    per_slice * (LEAD_SLICES + 1) as f64,
                    pace,
                    self.writer_tail_speedup.expected(),
                    under_way,
                );
                return Some(round1(writes.max(load_left) + EARLY_COMMIT_SECS));
            }
            let at_load_end = match self.writer_pace() {
                Some(pace) => {
                    let under_way = writer.under_way().unwrap_or_default().as_secs_f64();
                    written + pace * (under_way + load_left)
                }
                None => written * (1.0 + load_left * self.load_speedup / secs),
            }
            .min(staged_expected);
            let tail = (staged_expected - at_load_end) / self.early_tail_pace();
            return Some(round1(load_left + tail + EARLY_COMMIT_SECS));
        }
        let merge = self.merge_pace.secs(rows_expected, staged_expected, self.alone_rows_per_second());
        Some(round1(load_left + merge))
    }

    /// The seq the terminal event will have, recorded on the row with the completed status.
    pub fn next_seq(&self) -> u64 {
        self.event.seq + 1
    }

    /// The error, on the row (the terminal event is published from it by `ended::finish`).
    pub async fn failed(&mut self, error: ErrorInfo, partial: PartialResults) -> Result<()> {
        let progress = self.event.progress;
        self.advance(Phase::Error, 0.0, error.message.clone());
        self.event.progress = progress;
        self.event.status = Status::Error;
        self.event.eta_seconds = None;
        self.event.error = Some(error);
        self.event.partial_results = Some(partial);
        self.save().await
    }

    /// The cancellation, on the row (the terminal event is published from it).
    pub async fn cancelled(&mut self, partial: PartialResults) -> Result<()> {
        let progress = self.event.progress;
        self.advance(Phase::Cancelled, 0.0, "Cancelled; nothing was written to the findings".into());
        self.event.progress = progress;
        self.event.status = Status::Cancelled;
        self.event.eta_seconds = None;
        self.event.partial_results = Some(partial);
        self.save().await
    }

    /// A non-terminal note that this attempt failed and the job goes back to the queue.
    pub async fn retrying(&mut self, message: String) -> Result<()> {
        self.event.seq += 1;
        self.event.message = message;
        self.event.timestamp = now_ms();
        self.event.eta_seconds = None;
        self.save().await?;
        self.fence.check().await?;
        self.nats.publish_progress(&self.event, self.trace, true).await.step("publishing progress")
    }

    /// Publishes a non-terminal event, once the fence says this attempt still holds the import;
    /// its seq goes past a note published about this attempt meanwhile.
    async fn publish(&mut self, confirm: bool) -> Result<()> {
        let last_seq = self.fence.check().await?;
        if last_seq >= self.event.seq {
            self.event.seq = last_seq + 1;
        }
        self.nats.publish_progress(&self.event, self.trace, confirm).await.step("publishing progress")
    }

    /// Writes the event's state to the `imports` row (phase changes and the end only), if this
    /// attempt still holds the running import (`Err(JobError::Fenced)` otherwise).
    async fn save(&self) -> Result<()> {
        let e = &self.event;
        let terminal = e.status.is_terminal();
        let updated = sqlx::query(
            "UPDATE imports SET status = $2, phase = $3, progress = $4, processed_rows = $5, total_rows = $6,
                    bytes_processed = $7, last_seq = greatest(last_seq, $8), message = $9,
                    error = coalesce($10, error), validation_errors = coalesce($11, validation_errors),
                    finished_at = CASE WHEN $12 THEN clock_timestamp() ELSE finished_at END
             WHERE id = $1 AND status = 'processing' AND attempts = $13",
        )
        .bind(e.session_id)
        .bind(e.status.as_str())
        .bind(e.phase.as_str())
        .bind(e.progress)
        .bind(e.processed_rows as i64)
        .bind(e.total_rows.map(|n| n as i64))
        .bind(e.bytes_processed as i64)
        .bind(e.seq as i64)
        .bind(&e.message)
        .bind(e.error.as_ref().map(|err| serde_json::to_value(err).expect("error info serialises")))
        .bind(e.partial_results.as_ref().map(|p| p.validation_errors as i64))
        .bind(terminal)
        .bind(self.fence.attempt as i32)
        .execute(&self.db)
        .await
        .step("updating the import row")?;
        if updated.rows_affected() == 0 {
            return Err(JobError::Fenced);
        }
        Ok(())
    }
}

/// Findings per second expected once an early-writing load is over, before their pace after it
/// is measured: `speedup` times their pace while loading (`while_loading`), or, before that is
/// measured, [`EARLY_TAIL_RATIO`] of the load's rate (`load_rows_per_second`).
fn early_tail_pace(while_loading: Option<f64>, speedup: f64, load_rows_per_second: f64) -> f64 {
    match while_loading {
        Some(pace) => speedup * pace,
        None => 1.0 / MergePace::RelativeToLoad(EARLY_TAIL_RATIO).secs(0.0, 1.0, load_rows_per_second),
    }
}

/// Seconds the early writer needs for the `findings` left, the statement under way for
/// `under_way` seconds already (its findings are counted when it ends): the last `tail` of them
/// once the load is over, at `pace` times `tail_speedup`, the rest before at `pace`.
fn held_writes_secs(findings: f64, tail: f64, pace: f64, tail_speedup: f64, under_way: f64) -> f64 {
    let tail = tail.clamp(0.0, findings.max(0.0));
    let before = (findings - tail) / pace;
    (before + tail / (pace * tail_speedup) - under_way).max(0.0)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The plain-text line shown when an import completes.
pub fn completion_message(s: &Summary) -> String {
    format!(
        "Imported {} rows: {} new, {} updated, {} unchanged, {} resolved, {} reopened; {} invalid rows skipped",
        s.rows, s.new, s.updated, s.unchanged, s.resolved, s.reopened, s.validation_errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_load_waits_for_the_findings_left_at_the_writers_pace_and_its_last_slices_faster() {
        assert_eq!(held_writes_secs(100_000.0, 0.0, 50_000.0, 2.0, 0.0), 2.0, "no tail");
        assert_eq!(
            held_writes_secs(100_000.0, 0.0, 50_000.0, 2.0, 0.5),
            1.5,
            "the statement under way is half a second in"
        );
        assert_eq!(held_writes_secs(10_000.0, 0.0, 50_000.0, 2.0, 0.5), 0.0, "never below nothing");
        assert_eq!(
            held_writes_secs(200_000.0, 100_000.0, 50_000.0, 2.0, 0.0),
            3.0,
            "2 s before the load ends, 1 s after"
        );
        assert_eq!(held_writes_secs(50_000.0, 100_000.0, 50_000.0, 2.0, 0.0), 0.5, "all of it in the tail");
    }

    #[test]
    fn the_writes_after_a_load_are_expected_faster_than_while_it_ran_once_some_are_written() {
        assert_eq!(early_tail_pace(None, 1.6, 200_000.0), EARLY_TAIL_RATIO * 200_000.0, "no pace measured yet");
        let pace = early_tail_pace(Some(50_000.0), 1.6, 200_000.0);
        assert!((pace - 1.6 * 50_000.0).abs() < 1e-6, "{pace}");
        assert_eq!(
            early_tail_pace(Some(50_000.0), 1.6, 400_000.0),
            pace,
            "a faster parser does not make the database write faster"
        );
    }
}
