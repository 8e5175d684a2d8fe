//! Loading: the uploaded object streamed through the format reader into batched `COPY` into the
//! import's UNLOGGED staging table. Parsing runs on a blocking thread; batches of about 1 MiB
//! cross a bounded channel, so memory stays flat whatever the file size.

use std::{
    io::{Cursor, Read},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use formats::{Format, Limits, ReadError, Row, RowError, ScanReader};
use shared::events::ErrorDetails;
use sqlx::{PgPool, postgres::PgPoolCopyExt};
use tokio::{
    io::{AsyncRead, ReadBuf},
    sync::mpsc,
};
use tokio_util::{io::SyncIoBridge, sync::CancellationToken};

use crate::{
    early::EarlyWrites,
    error::{JobError, Result, StepExt},
    progress::{Counters, Reporter},
    staging::{BATCH_BYTES, Staged, StagingWriter},
};

/// A line number past every line of a file (and within PostgreSQL's `bigint`): the end of the
/// last batch and of the last slice.
const PAST_LAST_LINE: u64 = i64::MAX as u64;
/// Bytes read before parsing to find the encoding, delimiter and header.
const SNIFF_BYTES: usize = 1024 * 1024;

/// What loading produced.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Rows, bytes and invalid rows.
    pub counters: Counters,
    /// Findings read (a row can give several, e.g. one per port).
    pub findings: u64,
    /// What the staging writer folded and whether the staged keys are unique.
    pub staged: Staged,
    /// The first invalid rows (capped).
    pub row_errors: Vec<RowError>,
    /// The findings written while loading, when that went on to the end.
    pub early: Option<EarlyWrites>,
}

/// What crosses from the parsing thread to the COPY loop.
enum Message {
    /// The header was found; loading begins.
    Sniffed(Format),
    /// CSV text for the staging table: rows up to `last_line`, and whether every key written so
    /// far was new.
    Batch { bytes: Vec<u8>, last_line: u64, unique: bool },
    /// End of file.
    Done { findings: u64, staged: Staged, row_errors: Vec<RowError> },
    /// The file cannot be read further.
    Failed(JobError),
}

/// Live counters shared with the parsing thread.
#[derive(Default)]
struct Live {
    rows: AtomicU64,
    bytes: Arc<AtomicU64>,
    invalid: AtomicU64,
    staged: AtomicU64,
}

impl Live {
    fn counters(&self) -> Counters {
        Counters {
            rows: self.rows.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
            staged: self.staged.load(Ordering::Relaxed),
        }
    }
}

/// Settings of one load.
pub struct LoadSpec<'a> {
    /// Name of the uploaded object.
    pub object_key: &'a str,
    /// Format recorded at upload.
    pub format: Format,
    /// The staging table to fill.
    pub staging: &'a str,
    /// Per-line and per-cell caps.
    pub limits: Limits,
    /// Invalid rows kept for the report.
    pub max_row_errors: usize,
    /// Findings written while loading (a first import), fed a slice at a time.
    pub early: Option<EarlyWrites>,
    /// Staging CSV bytes per slice handed to `early`.
    pub slice_bytes: usize,
}

/// Streams the object into the staging table, reporting progress, until the end or a cancel.
pub async fn load(
    db: &PgPool,
    nats: &shared::Nats,
    spec: LoadSpec<'_>,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<Loaded> {
    let object = crate::object::open(nats, spec.object_key).await?;
    let live = Arc::new(Live::default());
    let counting = CountingReader { inner: object, count: live.bytes.clone() };
    let (tx, mut rx) = mpsc::channel::<Message>(4);
    let parser = {
        let live = live.clone();
        let (format, limits, max_errors) = (spec.format, spec.limits, spec.max_row_errors);
        tokio::task::spawn_blocking(move || parse(SyncIoBridge::new(counting), format, limits, max_errors, &live, &tx))
    };

    let copy_sql = format!(
        "COPY {} ({}) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (asset, check_id, protocol, output))",
        spec.staging,
        crate::staging::COLUMNS
    );
    let mut copy = db.copy_in_raw(&copy_sql).await.step("starting COPY into staging")?;
    let mut early = spec.early;
    // Rows up to `written` are committed and handed to the early writer; `slice` bytes since.
    let (mut written, mut slice) = (0u64, 0usize);
    let outcome = loop {
        let message = tokio::select! {
            biased;
            _ = cancel.cancelled() => break Err(JobError::Cancelled),
            message = rx.recv() => message,
        };
        match message {
            Some(Message::Sniffed(format)) => {
                reporter.phase(shared::Phase::Loading, format!("Loading {} rows into staging", format.name())).await?;
            }
            Some(Message::Batch { bytes, last_line, unique }) => {
                slice += bytes.len();
                if let Err(e) = copy.send(bytes).await {
                    break Err(JobError::Transient { step: "copying rows to staging", cause: e.to_string() });
                }
                if let Some(writes) = early.as_mut().filter(|w| w.active()) {
                    if !unique {
                        writes.abandon();
                    } else if slice >= spec.slice_bytes {
                        // Commit this slice, so the writer's connection sees it.
                        copy.finish().await.step("finishing COPY into staging")?;
                        writes.write(written, last_line);
                        (written, slice) = (last_line, 0);
                        copy = db.copy_in_raw(&copy_sql).await.step("starting COPY into staging")?;
                    }
                }
                reporter.loading(live.counters()).await?;
            }
            Some(Message::Done { findings, staged, row_errors }) => break Ok((findings, staged, row_errors)),
            Some(Message::Failed(err)) => break Err(err),
            None => break Err(JobError::Transient { step: "parsing the file", cause: "the parser stopped".into() }),
        }
    };
    drop(rx);
    match outcome {
        Ok((findings, staged, row_errors)) => {
            copy.finish().await.step("finishing COPY into staging")?;
            let _ = parser.await;
            if let Some(writes) = early.as_mut().filter(|w| w.active()) {
                if staged.unique {
                    writes.write(written, PAST_LAST_LINE);
                } else {
                    writes.abandon();
                }
            }
            Ok(Loaded { counters: live.counters(), findings, staged, row_errors, early })
        }
        Err(err) => {
            // Always end the COPY, so the connection goes back to the pool clean.
            let _ = copy.abort(err.to_string()).await;
            let _ = parser.await;
            Err(err)
        }
    }
}

/// The parsing thread: sniff, read rows, write CSV batches.
fn parse(
    mut raw: impl Read,
    format: Format,
    limits: Limits,
    max_errors: usize,
    live: &Live,
    tx: &mpsc::Sender<Message>,
) {
    let send = |m: Message| tx.blocking_send(m).is_ok();
    let mut prefix = Vec::with_capacity(64 * 1024);
    if let Err(e) = (&mut raw).take(SNIFF_BYTES as u64).read_to_end(&mut prefix) {
        send(Message::Failed(JobError::Transient { step: "reading the uploaded file", cause: e.to_string() }));
        return;
    }
    let complete = prefix.len() < SNIFF_BYTES;
    let sniffed = match formats::sniff(&prefix, complete, Some(format)) {
        Ok(s) => s,
        Err(e) => {
            let suggestions = [
                "Check that the file is the scanner's CSV export, unchanged.",
                "Choose the format explicitly if detection picked the wrong one.",
            ];
            send(Message::Failed(JobError::invalid(
                e.code(),
                e.to_string(),
                ErrorDetails { expected: Some(e.expected()), ..Default::default() },
                &suggestions,
            )));
            return;
        }
    };
    let mut reader = match ScanReader::new(Cursor::new(prefix).chain(raw), &sniffed, limits) {
        Ok(r) => r,
        Err(e) => {
            send(Message::Failed(read_error(e)));
            return;
        }
    };
    if !send(Message::Sniffed(sniffed.format)) {
        return;
    }
    let mut writer = StagingWriter::default();
    let mut row_errors = Vec::new();
    let mut findings = 0u64;
    while let Some(row) = reader.next_row() {
        match row {
            Ok(Row::Findings(list)) => {
                live.rows.fetch_add(1, Ordering::Relaxed);
                for finding in list {
                    writer.write(finding);
                    findings += 1;
                }
            }
            Ok(Row::Blank { .. }) => {}
            Ok(Row::Invalid(err)) => {
                live.rows.fetch_add(1, Ordering::Relaxed);
                live.invalid.fetch_add(1, Ordering::Relaxed);
                if row_errors.len() < max_errors {
                    row_errors.push(err);
                }
            }
            Err(e) => {
                send(Message::Failed(read_error(e)));
                return;
            }
        }
        if writer.len() >= BATCH_BYTES {
            live.staged.store(writer.written(), Ordering::Relaxed);
            let (last_line, unique) = (writer.last_line(), writer.unique_so_far());
            if !send(Message::Batch { bytes: writer.take(), last_line, unique }) {
                return;
            }
        }
    }
    let (rest, staged) = writer.finish();
    if !rest.is_empty() && !send(Message::Batch { bytes: rest, last_line: PAST_LAST_LINE, unique: staged.unique }) {
        return;
    }
    send(Message::Done { findings, staged, row_errors });
}

fn read_error(e: ReadError) -> JobError {
    // Reading the upload failed (the broker went away): another attempt can succeed.
    if e.code() == "IO_ERROR" {
        return JobError::Transient { step: "reading the uploaded file", cause: e.to_string() };
    }
    let suggestions: &[&str] = match e.code() {
        "LINE_TOO_LONG" => &[
            "Check that the file is a CSV export and not another kind of file.",
            "Raise HEXFLOW_MAX_LINE_BYTES if such lines are expected.",
        ],
        _ => &[
            "Check that the file is complete and was exported as CSV.",
            "Export it again from the scanner and re-upload.",
        ],
    };
    JobError::invalid(e.code(), e.to_string(), ErrorDetails { line: e.line(), ..Default::default() }, suggestions)
}

/// Counts the bytes read from the object, for progress by bytes consumed.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for CountingReader<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        result
    }
}
