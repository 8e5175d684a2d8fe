//! Loading: the uploaded object streamed through the format reader into batched `COPY` into the
//! import's UNLOGGED staging table. Parsing runs on a blocking thread; batches of about 1 MiB
//! cross a bounded channel, so memory stays flat whatever the file size. The table is filled in
//! slices of `HEXFLOW_WORKER_EARLY_SLICE_BYTES`, each committed with where the load stands, so
//! a later attempt can continue after the last one (`resume`).

use std::{
    cell::RefCell,
    io::{Cursor, Read},
    pin::Pin,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use formats::{Format, Limits, ReadError, Row, RowError, ScanReader};
use futures::FutureExt;
use shared::events::ErrorDetails;
use sqlx::PgPool;
use tokio::{
    io::{AsyncRead, ReadBuf},
    sync::mpsc,
};
use tokio_util::{io::SyncIoBridge, sync::CancellationToken};

use crate::{
    early::EarlyWrites,
    error::{JobError, Result, StepExt},
    import::Import,
    lines::{Indexed, LineIndex},
    progress::{Counters, Reporter},
    resume::ResumePoint,
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
    /// far was new. Every batch ends before a record of its own (nothing spans it); `commit`
    /// says where the load stands when the slice is to be committed after this batch.
    Batch { bytes: Vec<u8>, last_line: u64, unique: bool, commit: Option<Box<ResumePoint>> },
    /// End of file (after the last batch, whose `commit` is at the end).
    Done(Done),
    /// The file cannot be read further.
    Failed(JobError),
}

/// What the parsing thread knows at the end of the file.
struct Done {
    findings: u64,
    staged: Staged,
    row_errors: Vec<RowError>,
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
    /// Where the load stands once `writer`'s rows are staged, with `next_line` (at `offset` in
    /// the file) the first line not staged yet: a point a later attempt can resume from.
    fn resume_point(
        &self,
        next_line: u64,
        offset: Option<u64>,
        writer: &StagingWriter,
        findings: u64,
        row_errors: &[RowError],
    ) -> ResumePoint {
        ResumePoint {
            next_line,
            offset,
            last_line: writer.last_line(),
            rows: self.rows.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
            findings,
            staged: writer.written(),
            folded: writer.folded(),
            row_errors: row_errors.to_vec(),
            at_end: false,
            checks_seen: Vec::new(),
        }
    }

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
    /// The import: its object is read into its staging table, in its format.
    pub import: &'a Import,
    /// Per-line and per-cell caps.
    pub limits: Limits,
    /// Invalid rows kept for the report.
    pub max_row_errors: usize,
    /// Findings written while loading (a first import), fed a slice at a time.
    pub early: Option<EarlyWrites>,
    /// Staging CSV bytes per committed slice (a resume point, and a slice for `early`).
    pub slice_bytes: usize,
    /// Where an earlier attempt's load stopped, when this one continues it.
    pub resume: Option<ResumePoint>,
}

/// Streams the object into the staging table, reporting progress, until the end or a cancel.
/// The table is filled in slices, each committed with its resume point (see `resume`).
pub async fn load(
    db: &PgPool,
    nats: &shared::Nats,
    spec: LoadSpec<'_>,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<Loaded> {
    let live = Arc::new(Live::default());
    // An upload still arriving: the reporter expects the load to speed up once it is whole.
    let arriving = spec.import.arriving.clone().map(|nuid| crate::object::Arriving { nuid, whole: Arc::default() });
    if let Some(arriving) = &arriving {
        reporter.arriving(arriving.whole.clone());
    }
    // Stops the object's readers once the load ends, whatever ended it.
    let reading = CancellationToken::new();
    let _stop_reading = reading.clone().drop_guard();
    let head = crate::object::open(nats, &spec.import.object_key, arriving.clone(), 0, reading.clone()).await?;
    let (head, resume) = match spec.resume {
        None => (CountingReader { inner: head, count: live.bytes.clone() }, None),
        Some(point) => {
            let offset = point.offset.unwrap_or_default();
            live.rows.store(point.rows, Ordering::Relaxed);
            live.invalid.store(point.invalid, Ordering::Relaxed);
            live.staged.store(point.staged, Ordering::Relaxed);
            live.bytes.store(offset, Ordering::Relaxed);
            let tail = crate::object::open(nats, &spec.import.object_key, arriving, offset, reading.clone()).await?;
            let tail = SyncIoBridge::new(CountingReader { inner: tail, count: live.bytes.clone() });
            // Only the header is read again from the head: it does not count as progress.
            (CountingReader { inner: head, count: Arc::default() }, Some((tail, point)))
        }
    };
    let (tx, mut rx) = mpsc::channel::<Message>(4);
    let parser = {
        let live = live.clone();
        let (format, limits, max_errors, slice_bytes) =
            (spec.import.format, spec.limits, spec.max_row_errors, spec.slice_bytes);
        let head = SyncIoBridge::new(head);
        tokio::task::spawn_blocking(move || {
            let settings = ParseSettings { format, limits, max_errors, slice_bytes };
            parse(head, resume, settings, &live, &tx)
        })
    };

    let copy_sql = format!(
        "COPY {} ({}) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (asset, check_id, protocol, output))",
        spec.import.staging,
        crate::staging::COLUMNS
    );
    let mut early = spec.early;
    // Rows up to `written` are committed and handed to the early writer.
    let mut written = 0u64;
    let outcome = loop {
        let slice = match stage_slice(db, &copy_sql, &mut rx, reporter, cancel, &live, &mut early).await {
            Ok(slice) => slice,
            Err(err) => break Err(err),
        };
        if let Some(writes) = early.as_mut().filter(|w| w.active()) {
            match &slice.done {
                None => {
                    writes.write(written, slice.last_line);
                    written = slice.last_line;
                    if writes.keep_up().now_or_never().is_none() {
                        if let Err(err) = reporter.waiting_for_writes(live.counters()).await {
                            break Err(err);
                        }
                        tokio::select! {
                            biased;
                            _ = cancel.cancelled() => break Err(JobError::Cancelled),
                            _ = writes.keep_up() => {}
                        }
                    }
                }
                Some(done) if done.staged.unique => writes.write(written, PAST_LAST_LINE),
                Some(_) => writes.abandon(),
            }
        }
        if let Some(done) = slice.done {
            break Ok(done);
        }
    };
    reading.cancel();
    drop(rx);
    let _ = parser.await;
    let Done { findings, staged, row_errors } = outcome?;
    Ok(Loaded { counters: live.counters(), findings, staged, row_errors, early })
}

/// How one slice of the load ended (committed).
struct Slice {
    /// Line of its last row.
    last_line: u64,
    /// The end of the file, when this was the last slice.
    done: Option<Done>,
}

/// Copies batches into the staging table in one transaction, until a batch says the slice is
/// complete; then records the resume point and commits. On any failure the slice is rolled
/// back (the earlier ones stay, with their resume point).
async fn stage_slice(
    db: &PgPool,
    copy_sql: &str,
    rx: &mut mpsc::Receiver<Message>,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
    live: &Live,
    early: &mut Option<EarlyWrites>,
) -> Result<Slice> {
    let mut tx = db.begin().await.step("starting a slice of staging")?;
    let mut copy = tx.copy_in_raw(copy_sql).await.step("starting COPY into staging")?;
    let ended = loop {
        let message = tokio::select! {
            biased;
            _ = cancel.cancelled() => break Err(JobError::Cancelled),
            message = rx.recv() => message,
        };
        match message {
            Some(Message::Sniffed(format)) => {
                let phase = reporter
                    .phase(shared::Phase::Loading, format!("Loading {} rows into staging", format.name()))
                    .await;
                if let Err(err) = phase {
                    break Err(err);
                }
            }
            Some(Message::Batch { bytes, last_line, unique, commit }) => {
                if !bytes.is_empty()
                    && let Err(e) = copy.send(bytes).await
                {
                    break Err(JobError::transient("copying rows to staging", e));
                }
                if !unique && let Some(writes) = early.as_mut().filter(|w| w.active()) {
                    writes.abandon();
                }
                if let Err(err) = reporter.loading(live.counters()).await {
                    break Err(err);
                }
                let Some(point) = commit else { continue };
                if !point.at_end {
                    break Ok((point, last_line, None));
                }
                match rx.recv().await {
                    Some(Message::Done(done)) => break Ok((point, last_line, Some(done))),
                    Some(Message::Failed(err)) => break Err(err),
                    _ => break Err(parser_stopped()),
                }
            }
            Some(Message::Failed(err)) => break Err(err),
            Some(Message::Done(_)) | None => break Err(parser_stopped()),
        }
    };
    match ended {
        Ok((point, last_line, done)) => {
            copy.finish().await.step("finishing COPY into staging")?;
            crate::resume::record(&mut tx, reporter.fence(), &point).await?;
            tx.commit().await.step("committing a slice of staging")?;
            Ok(Slice { last_line, done })
        }
        Err(err) => {
            // End the COPY, so the connection goes back to the pool clean; the slice is rolled back.
            let _ = copy.abort(err.to_string()).await;
            Err(err)
        }
    }
}

fn parser_stopped() -> JobError {
    JobError::transient("parsing the file", "the parser stopped")
}

/// What the parsing thread is told besides its input.
struct ParseSettings {
    format: Format,
    limits: Limits,
    max_errors: usize,
    slice_bytes: usize,
}

/// The parsing thread: sniff, read rows, write CSV batches. `head` yields the file from its
/// start; `resume`, when given, the file from the resume point's offset on, after the header
/// has been read again from `head`.
fn parse<R: Read + 'static>(
    mut head: R,
    resume: Option<(R, ResumePoint)>,
    settings: ParseSettings,
    live: &Live,
    tx: &mpsc::Sender<Message>,
) {
    let ParseSettings { format, limits, max_errors, slice_bytes } = settings;
    let send = |m: Message| tx.blocking_send(m).is_ok();
    let mut prefix = Vec::with_capacity(64 * 1024);
    if let Err(e) = (&mut head).take(SNIFF_BYTES as u64).read_to_end(&mut prefix) {
        send(Message::Failed(reading_failed(e)));
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
    let header_end = crate::lines::header_end(&prefix, sniffed.header_line);
    // Lines after a resume point are numbered from the header by the reader: `delta` makes
    // them the file's line numbers again.
    let (index, source, delta, mut writer, mut row_errors, mut findings) = match resume {
        None => {
            let index = if header_end.is_some() { LineIndex::new(0, 1) } else { LineIndex::disabled() };
            let index = Rc::new(RefCell::new(index));
            let source: Box<dyn Read> = Box::new(Indexed::new(Cursor::new(prefix).chain(head), index.clone()));
            (index, source, 0, StagingWriter::default(), Vec::new(), 0)
        }
        Some((tail, point)) => {
            drop(head);
            let Some(end) = header_end else {
                let cause = "the header cannot be read apart from the rows";
                send(Message::Failed(JobError::transient("resuming the load", cause)));
                return;
            };
            prefix.truncate(end);
            let index = Rc::new(RefCell::new(LineIndex::new(point.offset.unwrap_or_default(), point.next_line)));
            let source: Box<dyn Read> = Box::new(Cursor::new(prefix).chain(Indexed::new(tail, index.clone())));
            let delta = point.next_line.saturating_sub(sniffed.header_line + 1);
            let writer = StagingWriter::resumed(point.staged, point.last_line, point.folded, point.checks_seen);
            (index, source, delta, writer, point.row_errors, point.findings)
        }
    };
    let mut reader = match ScanReader::new(source, &sniffed, limits) {
        Ok(r) => r,
        Err(e) => {
            send(Message::Failed(read_error(e, delta)));
            return;
        }
    };
    if !send(Message::Sniffed(sniffed.format)) {
        return;
    }
    // Staging CSV since the last committed slice.
    let mut uncommitted = 0usize;
    while let Some(row) = reader.next_row() {
        match row {
            Ok(Row::Findings(mut list)) => {
                for f in &mut list {
                    f.line += delta;
                }
                if let Some(first) = list.first() {
                    let line = first.line;
                    index.borrow_mut().discard_before(line);
                    // A batch ends only before a record whose findings are all still to come.
                    if writer.len() >= BATCH_BYTES && writer.close_before(first) {
                        uncommitted += writer.len();
                        let commit = (uncommitted >= slice_bytes).then(|| {
                            uncommitted = 0;
                            let offset = index.borrow_mut().offset_of(line);
                            Box::new(live.resume_point(line, offset, &writer, findings, &row_errors))
                        });
                        live.staged.store(writer.written(), Ordering::Relaxed);
                        let (last_line, unique) = (writer.last_line(), writer.unique_so_far());
                        if !send(Message::Batch { bytes: writer.take(), last_line, unique, commit }) {
                            return;
                        }
                    }
                }
                live.rows.fetch_add(1, Ordering::Relaxed);
                for finding in list {
                    writer.write(finding);
                    findings += 1;
                }
            }
            Ok(Row::Blank { line }) => index.borrow_mut().discard_before(line + delta),
            Ok(Row::Invalid(mut err)) => {
                err.line += delta;
                index.borrow_mut().discard_before(err.line);
                live.rows.fetch_add(1, Ordering::Relaxed);
                live.invalid.fetch_add(1, Ordering::Relaxed);
                if row_errors.len() < max_errors {
                    row_errors.push(err);
                }
            }
            Err(e) => {
                send(Message::Failed(read_error(e, delta)));
                return;
            }
        }
    }
    writer.flush();
    let end = ResumePoint {
        last_line: PAST_LAST_LINE,
        at_end: true,
        ..live.resume_point(PAST_LAST_LINE, index.borrow().end(), &writer, findings, &row_errors)
    };
    live.staged.store(writer.written(), Ordering::Relaxed);
    let (rest, staged) = writer.finish();
    let batch =
        Message::Batch { bytes: rest, last_line: PAST_LAST_LINE, unique: staged.unique, commit: Some(Box::new(end)) };
    if !send(batch) {
        return;
    }
    send(Message::Done(Done { findings, staged, row_errors }));
}

/// A fatal reading error, its line made the file's line again after a resume (`delta`).
fn read_error(e: ReadError, delta: u64) -> JobError {
    let e = match e {
        ReadError::Io { line, source } => ReadError::Io { line: line + delta, source },
        ReadError::LineTooLong { line, limit } => ReadError::LineTooLong { line: line + delta, limit },
        ReadError::RecordTooLong { line, limit } => ReadError::RecordTooLong { line: line + delta, limit },
        ReadError::UnterminatedQuote { line } => ReadError::UnterminatedQuote { line: line + delta },
        other => other,
    };
    read_error_of(e)
}

fn read_error_of(e: ReadError) -> JobError {
    let e = match e {
        ReadError::Io { source, .. } => return reading_failed(source),
        other => other,
    };
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

/// Reading the upload failed: as the object reader said when it gave the upload up
/// (`UPLOAD_INTERRUPTED`), else a transient failure (the broker went away), which another
/// attempt can get past.
fn reading_failed(e: std::io::Error) -> JobError {
    match e.downcast::<JobError>() {
        Ok(given_up) => given_up,
        Err(e) => JobError::transient("reading the uploaded file", e),
    }
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

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// A Nessus export of about `bytes`: quoted cells spanning lines, adjacent rows repeating a
    /// key (one per CVE), a few invalid rows and blank lines.
    fn nessus(bytes: usize) -> Vec<u8> {
        let mut out = String::from(
            "Plugin ID,CVE,CVSS,Risk,Host,Protocol,Port,Name,Synopsis,Description,Solution,See Also,Plugin Output\r\n",
        );
        let mut i = 0u64;
        while out.len() < bytes {
            let (plugin, host) = (10_000 + (i * 7919) % 3000, format!("10.0.{}.{}", (i / 250) % 250, i % 250 + 1));
            for c in 0..(plugin % 3) + 1 {
                let port = if i % 97 == 5 { "not-a-port".to_owned() } else { ((plugin % 1000) + 1).to_string() };
                let _ = write!(
                    out,
                    "{plugin},CVE-2024-{c:05},5.0,Medium,{host},tcp,{port},\"Plugin {plugin}\",\"Synopsis\",\"Line one\r\nline \"\"two\"\"\",\"Patch.\",,\"Output {i}\nmore\"\r\n"
                );
            }
            if i.is_multiple_of(101) {
                out.push_str("\r\n");
            }
            i += 1;
        }
        out.into_bytes()
    }

    struct Parsed {
        batches: Vec<(Vec<u8>, Option<Box<ResumePoint>>)>,
        done: Done,
    }

    fn run(file: &[u8], resume: Option<ResumePoint>) -> Parsed {
        let (tx, mut rx) = mpsc::channel::<Message>(4);
        let head = Cursor::new(file.to_vec());
        let resume = resume.map(|p| (Cursor::new(file[p.offset.unwrap() as usize..].to_vec()), p));
        let settings = ParseSettings {
            format: Format::parse("nessus").unwrap(),
            limits: Limits::default(),
            max_errors: 10,
            slice_bytes: 1,
        };
        // As `load` does: the counters start where the resumed load stood.
        let live = Live::default();
        if let Some((_, point)) = &resume {
            live.rows.store(point.rows, Ordering::Relaxed);
            live.invalid.store(point.invalid, Ordering::Relaxed);
        }
        let parser = std::thread::spawn(move || parse(head, resume, settings, &live, &tx));
        let mut batches = Vec::new();
        let done = loop {
            match rx.blocking_recv().expect("the parser ends with Done") {
                Message::Sniffed(_) => {}
                Message::Batch { bytes, commit, .. } => batches.push((bytes, commit)),
                Message::Done(done) => break done,
                Message::Failed(e) => panic!("{e}"),
            }
        };
        parser.join().unwrap();
        Parsed { batches, done }
    }

    #[test]
    fn a_load_resumed_at_any_committed_point_stages_what_a_whole_load_stages() {
        let file = nessus(6 * 1024 * 1024);
        let whole = run(&file, None);
        let all: Vec<u8> = whole.batches.iter().flat_map(|(b, _)| b.clone()).collect();
        let points: Vec<usize> = (0..whole.batches.len() - 1).filter(|i| whole.batches[*i].1.is_some()).collect();
        assert!(points.len() >= 2, "several slices were committed");
        for at in points {
            let point = *whole.batches[at].1.clone().unwrap();
            assert!(point.offset.is_some(), "a line boundary is known");
            let before: Vec<u8> = whole.batches[..=at].iter().flat_map(|(b, _)| b.clone()).collect();
            let mut point = point;
            let mut csv = csv::ReaderBuilder::new().has_headers(false).from_reader(before.as_slice());
            point.checks_seen =
                csv.records().map(|r| r.unwrap()).filter(|r| !r[9].is_empty()).map(|r| r[2].to_owned()).collect();
            let resumed = run(&file, Some(point.clone()));
            let after: Vec<u8> = resumed.batches.iter().flat_map(|(b, _)| b.clone()).collect();
            assert!([before, after].concat() == all, "resumed at line {}: the same staging rows", point.next_line);
            let (a, b) = (&whole.done, &resumed.done);
            assert_eq!((a.findings, a.staged.folded), (b.findings, b.staged.folded));
            let lines = |d: &Done| d.row_errors.iter().map(|e| e.line).collect::<Vec<_>>();
            assert_eq!(lines(a), lines(b), "invalid rows keep their lines");
            let end = |p: &Parsed| p.batches.last().unwrap().1.clone().unwrap();
            let (x, y) = (end(&whole), end(&resumed));
            assert_eq!((x.rows, x.invalid, x.staged, x.offset), (y.rows, y.invalid, y.staged, y.offset));
        }
    }

    #[test]
    fn a_file_with_lone_cr_line_ends_gives_no_resume_point() {
        // One record ends with a lone CR early in the file: no offset is trusted after it.
        let mut file = nessus(3 * 1024 * 1024);
        let at = 100_000 + file[100_000..].windows(7).position(|w| w == b"more\"\r\n").unwrap() + 5;
        file.remove(at + 1);
        let whole = run(&file, None);
        assert!(whole.batches.iter().all(|(_, p)| p.as_ref().is_none_or(|p| p.offset.is_none())));
    }
}
