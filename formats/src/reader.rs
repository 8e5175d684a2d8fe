//! [`ScanReader`]: streams findings out of a whole file.

use std::io::Read;

use csv::ByteRecord;

use crate::error::ReadError;
use crate::mapping::{self, Resolved};
use crate::row::{Mapper, Row};
use crate::sniff::Sniffed;
use crate::source::{Source, SourceError};

/// Size caps that keep a hostile file from exhausting memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest physical line, in bytes; longer is fatal ([`ReadError::LineTooLong`]).
    pub max_line_bytes: usize,
    /// Longest single cell, in bytes; longer makes the row invalid (`FIELD_TOO_LONG`).
    pub max_field_bytes: usize,
}

impl Default for Limits {
    /// 4 MiB lines, 1 MiB cells.
    fn default() -> Limits {
        Limits { max_line_bytes: 4 << 20, max_field_bytes: 1 << 20 }
    }
}

impl Limits {
    /// Largest record (a quoted cell may span many short lines) held in memory: eight times
    /// the larger cap, 32 MiB by default. Longer is fatal ([`ReadError::RecordTooLong`]).
    fn max_record_bytes(&self) -> usize {
        self.max_line_bytes.max(self.max_field_bytes).saturating_mul(8)
    }
}

/// Streams findings out of a whole file, one record at a time; never holds the file in
/// memory. Works on a blocking [`Read`].
pub struct ScanReader<R: Read> {
    csv: csv::Reader<Source<R>>,
    mapper: Mapper,
    record: ByteRecord,
    /// The header's physical line: empty lines up to it are preamble, not blank rows.
    header_line: u64,
    /// Start line of a record read but not yet returned (blank lines before it go first).
    pending: Option<u64>,
    at_eof: bool,
    done: bool,
}

impl<R: Read> std::fmt::Debug for ScanReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanReader")
            .field("format", &self.mapper.spec.format)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Turns a csv error into a [`ReadError`], unwrapping the adapter's own errors.
/// `line` is the source's physical line (csv's own line count is off after empty lines and
/// with CRLF, so its position is not used).
fn read_error(e: csv::Error, line: u64) -> ReadError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<SourceError>()) {
            Some(SourceError::LineTooLong { line, limit }) => ReadError::LineTooLong { line: *line, limit: *limit },
            Some(SourceError::RecordTooLong { line, limit }) => ReadError::RecordTooLong { line: *line, limit: *limit },
            Some(SourceError::UnterminatedQuote { line }) => ReadError::UnterminatedQuote { line: *line },
            None => ReadError::Io { line, source: io },
        },
        // With `flexible` and byte records the parser itself does not fail; keep the
        // message if a future version does.
        other => ReadError::Io { line, source: std::io::Error::other(format!("{other:?}")) },
    }
}

impl<R: Read> ScanReader<R> {
    /// Starts reading. `reader` yields the raw file bytes from byte 0 (BOM included). Strips
    /// the BOM, transcodes Windows-1252 and UTF-16 to UTF-8 when `sniffed` says so, and skips
    /// the preamble up to and including the header record.
    pub fn new(reader: R, sniffed: &Sniffed, limits: Limits) -> Result<Self, ReadError> {
        let source = Source::new(
            reader,
            sniffed.bom,
            sniffed.encoding,
            sniffed.delimiter,
            limits.max_line_bytes,
            limits.max_record_bytes(),
        );
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(sniffed.delimiter)
            .from_reader(source);
        let mut record = ByteRecord::new();
        let header = loop {
            let more = match csv.read_byte_record(&mut record) {
                Ok(more) => more,
                Err(e) => return Err(read_error(e, csv.get_ref().line())),
            };
            let line = csv.get_mut().pop_record_line().unwrap_or(0);
            if !more || line > sniffed.header_line {
                return Err(ReadError::MissingHeader { line: sniffed.header_line });
            }
            // The header is the record on its line that has the names the sniffer read.
            // (Trimmed as the sniffer trims; trimming its names again could change them.)
            let names: Vec<String> = record.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
            let trimmed = names.iter().map(|n| n.trim_start_matches('\u{feff}').trim());
            if line == sniffed.header_line && trimmed.eq(sniffed.header.iter().map(String::as_str)) {
                break names;
            }
        };
        let spec = mapping::spec(sniffed.format);
        let mapper = Mapper { spec, resolved: Resolved::new(spec, &header), max_field: limits.max_field_bytes };
        let header_line = sniffed.header_line;
        Ok(ScanReader { csv, mapper, record, header_line, pending: None, at_eof: false, done: false })
    }

    /// The next data record, mapped; `None` at the end of the file (and after a fatal error).
    pub fn next_row(&mut self) -> Option<Result<Row, ReadError>> {
        if self.done {
            return None;
        }
        if self.pending.is_none() && !self.at_eof {
            match self.csv.read_byte_record(&mut self.record) {
                Ok(true) => {
                    let line = self.csv.get_mut().pop_record_line();
                    self.pending = Some(line.unwrap_or_else(|| self.csv.get_ref().line()));
                }
                Ok(false) => self.at_eof = true,
                Err(e) => {
                    self.done = true;
                    let line = self.csv.get_ref().line();
                    return Some(Err(read_error(e, line)));
                }
            }
        }
        let before = self.pending.unwrap_or(u64::MAX);
        while let Some(line) = self.csv.get_mut().pop_blank_before(before) {
            // Empty lines up to the header's line are preamble, even those the source scans
            // only after the header was read.
            if line > self.header_line {
                return Some(Ok(Row::Blank { line }));
            }
        }
        match self.pending.take() {
            Some(line) => Some(Ok(self.mapper.map(&self.record, line))),
            None => {
                self.done = true;
                None
            }
        }
    }
}

impl<R: Read> Iterator for ScanReader<R> {
    type Item = Result<Row, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}
