//! The steps of an import once claimed, each behind the previous one's success: take over what
//! an earlier attempt left (or start the staging table afresh), load the file (writing a first
//! import's findings as it goes), record the invalid rows, and merge.

use std::{sync::Arc, time::Duration};

use formats::Limits;
use shared::{
    Phase,
    events::{ErrorDetails, ErrorInfo, Summary},
};
use tokio_util::sync::CancellationToken;

use crate::{
    Worker,
    early::{self, EarlyWriter, EarlyWrites},
    error::{JobError, Result, StepExt},
    estimate,
    fence::{Fence, Hold},
    import::Import,
    load::{self, LoadSpec},
    merge,
    progress::Reporter,
};

/// Runs the steps for `import`, reporting through `reporter`, until the end or a cancel.
pub async fn run(
    worker: &Worker,
    import: &Arc<Import>,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<Summary> {
    let db = &worker.db;
    let format = import.format;
    // An earlier attempt of this job died or failed: its sessions still holding the staging
    // table are ended, and the load goes on after its last committed slice, or starts over.
    let resume = crate::resume::take_over(db, reporter.fence(), &import.staging).await?;
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
            crate::staging::create(db, &import.staging).await?;
        }
    }
    let limits = Limits { max_line_bytes: worker.config.max_line_bytes, ..Limits::default() };
    // A resumed load writes no findings early: the staged rows' keys are not tracked any more.
    let early = match resume {
        Some(_) => None,
        None => EarlyWriter::begin(db, import.clone()).await?.map(EarlyWriter::start),
    };
    if let Some(writes) = &early {
        tracing::info!("no findings of this scanner yet: writing them while the file loads");
        reporter.writing_early(writes.tally());
    }
    let (kind, history) = estimate::expect(db, &import.tenant, import.scanner(), format.name(), &import.scan_date)
        .await
        .step("estimating the merge")?;
    reporter.expect_merge(history.map_or_else(|| worker.merge_rates.pace(kind), estimate::MergePace::Measured));
    let spec = LoadSpec {
        import,
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
            Some((writer, written)) => {
                reporter.early_writes_done();
                return writer.commit(summary, written, reporter).await;
            }
            None => tracing::info!("a finding key repeats out of order: the findings are merged after loading instead"),
        }
    }
    let plan = merge::Plan {
        unique: loaded.staged.unique,
        kind,
        pause: Duration::from_millis(worker.config.test_merge_step_delay_ms),
    };
    let summary = merge::merge(db, import, plan, summary, reporter, cancel).await?;
    worker.merge_rates.observe(kind, c.rows, merge_started.elapsed());
    Ok(summary)
}

/// Waits for the early writer's last slices, reporting how many of the `expected` findings are
/// written; `None` when it gave up (the ordinary merge runs).
async fn finish_early(
    writes: EarlyWrites,
    expected: u64,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<Option<(EarlyWriter, early::Written)>> {
    let tally = writes.tally();
    let finish = writes.finish();
    tokio::pin!(finish);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(JobError::Cancelled),
            done = &mut finish => return done,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                reporter.writing(tally.inserted(), expected).await?;
            }
        }
    }
}

/// Replaces the import's invalid rows with this attempt's first ones, under the row lock of a
/// fence check (a newer attempt cannot claim the import in between).
async fn record_row_errors(db: &sqlx::PgPool, fence: &Fence, errors: &[formats::RowError]) -> Result<()> {
    let mut tx = db.begin().await.step("recording invalid rows")?;
    fence.hold(&mut tx, Hold::Shared).await?;
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
