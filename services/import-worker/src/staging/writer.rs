//! The rows of the staging table, encoded as CSV for `COPY`. Findings that repeat the previous
//! one's key (scanners write one row per CVE, one after the other) are folded here, as the
//! merge would fold them; and the keys written are tracked, so the merge can skip its own
//! deduplication when they are already unique.

use std::{
    fmt::Write as _,
    hash::{Hash, Hasher},
};

use formats::Finding;
use rustc_hash::{FxHashSet, FxHasher};

/// Bytes of CSV gathered before one `COPY` send.
pub const BATCH_BYTES: usize = 1024 * 1024;
/// Columns of the staging table, in the order rows are written.
pub const COLUMNS: &str = "line, asset, check_id, port, protocol, cves, severity, cvss, vpr, title, description, solution, output, first_seen, last_seen, fixed";
/// Keys tracked for uniqueness; past this the merge deduplicates anyway (a GROUP BY of the whole
/// staging table: 20 s for 3.5M findings). It is what a hash set of 2^22 buckets holds (7/8 of
/// them), 37.7 MB of 9 bytes each: the set reaches that size from 1.84M keys on, so any lower
/// bound costs as much memory and deduplicates files a higher one would not.
const MAX_TRACKED_KEYS: usize = (1 << 22) / 8 * 7;

/// What the writer did besides writing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Staged {
    /// Findings folded into the one before them (same key).
    pub folded: u64,
    /// True when every staged row has a key of its own.
    pub unique: bool,
}

/// Encodes findings as CSV rows of the staging table. Check text is written only with the
/// first finding of each check, since it repeats on every row of the file.
pub struct StagingWriter {
    writer: csv::Writer<Vec<u8>>,
    checks_seen: FxHashSet<String>,
    pending: Option<Finding>,
    keys: Option<FxHashSet<u64>>,
    /// Reused for the fields that are formatted (numbers, the CVE array).
    scratch: String,
    folded: u64,
    last_line: u64,
    written: u64,
}

impl Default for StagingWriter {
    fn default() -> Self {
        StagingWriter {
            writer: new_writer(),
            checks_seen: FxHashSet::default(),
            pending: None,
            keys: Some(FxHashSet::default()),
            scratch: String::new(),
            folded: 0,
            last_line: 0,
            written: 0,
        }
    }
}

fn new_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().has_headers(false).from_writer(Vec::with_capacity(BATCH_BYTES + 64 * 1024))
}

fn same_key(a: &Finding, b: &Finding) -> bool {
    a.asset == b.asset && a.check_id == b.check_id && a.port == b.port && a.protocol == b.protocol
}

/// Folds `next` into `into`, as the merge's GROUP BY does: CVEs united, highest scores, first
/// output, earliest first seen, latest last seen, fixed only if every row says so.
fn fold(into: &mut Finding, next: Finding) {
    into.cves.extend(next.cves);
    into.cves.sort();
    into.cves.dedup();
    into.severity = into.severity.max(next.severity);
    into.cvss = max_opt(into.cvss, next.cvss);
    into.vpr = max_opt(into.vpr, next.vpr);
    into.first_seen = match (into.first_seen.take(), next.first_seen) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    into.last_seen = match (into.last_seen.take(), next.last_seen) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    into.fixed &= next.fixed;
}

fn max_opt(a: Option<f32>, b: Option<f32>) -> Option<f32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

impl StagingWriter {
    /// A writer continuing a load resumed after `written` staged rows, the last one from
    /// `last_line`, `folded` findings folded, the text of `checks_seen` staged. Keys are no
    /// longer tracked (those staged before are not known here), so the merge deduplicates.
    pub fn resumed(written: u64, last_line: u64, folded: u64, checks_seen: Vec<String>) -> Self {
        let checks_seen = checks_seen.into_iter().collect();
        StagingWriter { keys: None, written, last_line, folded, checks_seen, ..StagingWriter::default() }
    }

    /// Findings folded so far.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Writes the finding held for a repeat unless `next` repeats its key: `true` when nothing
    /// is held any more, so every finding before `next` is in the CSV (a resume point).
    pub fn close_before(&mut self, next: &Finding) -> bool {
        match self.pending.take() {
            Some(pending) if same_key(&pending, next) => {
                self.pending = Some(pending);
                false
            }
            Some(pending) => {
                self.encode(&pending);
                true
            }
            None => true,
        }
    }

    /// Bytes flushed so far (the CSV writer's own buffer of a few KiB is not counted).
    pub fn len(&self) -> usize {
        self.writer.get_ref().len()
    }

    /// Line of the last row written (rows are written in line order).
    pub fn last_line(&self) -> u64 {
        self.last_line
    }

    /// Rows written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// True while every key written so far is new.
    pub fn unique_so_far(&self) -> bool {
        self.keys.is_some()
    }

    /// The CSV written so far.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.writer, new_writer()).into_inner().expect("flushing into a Vec cannot fail")
    }

    /// Adds a finding (written once the next one shows a different key).
    pub fn write(&mut self, finding: Finding) {
        match &mut self.pending {
            Some(pending) if same_key(pending, &finding) => {
                fold(pending, finding);
                self.folded += 1;
            }
            _ => {
                if let Some(previous) = self.pending.replace(finding) {
                    self.encode(&previous);
                }
            }
        }
    }

    /// Writes the finding held for a repeat, if any (the end of the file).
    pub fn flush(&mut self) {
        if let Some(last) = self.pending.take() {
            self.encode(&last);
        }
    }

    /// Writes what is pending; returns the last CSV and what was folded.
    pub fn finish(mut self) -> (Vec<u8>, Staged) {
        if let Some(last) = self.pending.take() {
            self.encode(&last);
        }
        let staged = Staged { folded: self.folded, unique: self.keys.is_some() };
        (self.take(), staged)
    }

    fn track_key(&mut self, f: &Finding) {
        let Some(keys) = &mut self.keys else { return };
        let mut h = FxHasher::default();
        (&f.asset, &f.check_id, f.port, &f.protocol).hash(&mut h);
        // A repeated key (or a hash collision, which only costs the merge's own dedup) or too
        // many keys to track: the merge deduplicates.
        if !keys.insert(h.finish()) || keys.len() > MAX_TRACKED_KEYS {
            self.keys = None;
        }
    }

    fn encode(&mut self, f: &Finding) {
        self.track_key(f);
        self.last_line = f.line;
        self.written += 1;
        let first_of_check = !self.checks_seen.contains(&f.check_id);
        if first_of_check {
            self.checks_seen.insert(f.check_id.clone());
        }
        let title = if f.title.trim().is_empty() { f.check_id.as_str() } else { f.title.as_str() };
        let (title, description, solution) =
            if first_of_check { (title, f.description.as_str(), f.solution.as_str()) } else { ("", "", "") };
        let (w, scratch) = (&mut self.writer, &mut self.scratch);
        let result = (|| -> csv::Result<()> {
            w.write_field(formatted(scratch, format_args!("{}", f.line)))?;
            w.write_field(clean(&f.asset).as_ref())?;
            w.write_field(clean(&f.check_id).as_ref())?;
            w.write_field(formatted(scratch, format_args!("{}", f.port)))?;
            w.write_field(clean(&f.protocol).as_ref())?;
            w.write_field(formatted(scratch, format_args!("{{{}}}", CveList(&f.cves))))?;
            w.write_field(formatted(scratch, format_args!("{}", f.severity)))?;
            w.write_field(formatted(scratch, format_args!("{}", OptionalScore(f.cvss))))?;
            w.write_field(formatted(scratch, format_args!("{}", OptionalScore(f.vpr))))?;
            w.write_field(clean(title).as_ref())?;
            w.write_field(clean(description).as_ref())?;
            w.write_field(clean(solution).as_ref())?;
            w.write_field(clean(&f.output).as_ref())?;
            w.write_field(f.first_seen.as_deref().unwrap_or_default())?;
            w.write_field(f.last_seen.as_deref().unwrap_or_default())?;
            w.write_field(if f.fixed { "t" } else { "f" })?;
            w.write_record(None::<&[u8]>)
        })();
        result.expect("writing CSV into a Vec cannot fail");
    }
}

/// `field` formatted into `scratch` (reused from row to row: no allocation per field).
fn formatted<'s>(scratch: &'s mut String, field: std::fmt::Arguments<'_>) -> &'s str {
    scratch.clear();
    // Writing into a String cannot fail.
    let _ = scratch.write_fmt(field);
    scratch.as_str()
}

/// CVE ids joined by commas (the inside of a PostgreSQL array literal).
struct CveList<'a>(&'a [String]);

impl std::fmt::Display for CveList<'_> {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, cve) in self.0.iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            out.write_str(cve)?;
        }
        Ok(())
    }
}

/// A score, or nothing (NULL in the staging CSV).
struct OptionalScore(Option<f32>);

impl std::fmt::Display for OptionalScore {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(score) => write!(out, "{score}"),
            None => Ok(()),
        }
    }
}

/// PostgreSQL text cannot hold NUL; everything else is stored verbatim.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { s.replace('\0', "\u{FFFD}").into() } else { s.into() }
}
