//! Shared helpers: where the corpus and fixtures live, and a full read of one file.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use formats::{Finding, Format, Limits, ReadError, Row, RowError, ScanReader, Sniffed, sniff};

/// How many bytes the caller sniffs (the upload gateway reads up to 1 MiB).
pub const PREFIX: usize = 1 << 20;

/// The corpus folder: `HEXFLOW_CORPUS_DIR`, else `../shared/corpus` next to the workspace.
pub fn corpus_dir() -> PathBuf {
    std::env::var_os("HEXFLOW_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus")))
}

/// The project's own fixtures, `tests/fixtures/` at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"))
}

/// A reader that hands out small, odd-sized chunks, so every boundary case in the
/// streaming code (BOM, CRLF, multi-byte characters, quotes) gets exercised.
pub struct Chunked<'a> {
    pub data: &'a [u8],
    pub chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Everything one full pass over a file gives.
#[derive(Debug, Default)]
pub struct Tally {
    /// Non-blank data records (valid or invalid).
    pub records: usize,
    pub findings: Vec<Finding>,
    pub blank: usize,
    pub invalid: Vec<RowError>,
}

impl Tally {
    /// Distinct (asset, check_id, port, protocol) keys.
    pub fn distinct_keys(&self) -> usize {
        self.findings.iter().map(|f| (&f.asset, &f.check_id, f.port, &f.protocol)).collect::<BTreeSet<_>>().len()
    }
}

/// Sniffs `bytes` like the gateway does.
pub fn sniff_bytes(bytes: &[u8], forced: Option<Format>) -> Result<Sniffed, formats::SniffError> {
    let prefix = &bytes[..bytes.len().min(PREFIX)];
    sniff(prefix, bytes.len() <= PREFIX, forced)
}

/// Reads every row of `bytes` (already sniffed) with `limits`.
pub fn read_all(bytes: &[u8], sniffed: &Sniffed, limits: Limits) -> Result<Tally, ReadError> {
    let mut reader = ScanReader::new(Chunked { data: bytes, chunk: 997 }, sniffed, limits)?;
    let mut tally = Tally::default();
    while let Some(row) = reader.next_row() {
        match row? {
            Row::Findings(f) => {
                tally.records += 1;
                tally.findings.extend(f);
            }
            Row::Blank { .. } => tally.blank += 1,
            Row::Invalid(e) => {
                tally.records += 1;
                tally.invalid.push(e);
            }
        }
    }
    Ok(tally)
}

/// Sniffs and reads a file with default limits; panics with the file name on failure.
pub fn import(path: &std::path::Path) -> (Sniffed, Tally) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let sniffed = sniff_bytes(&bytes, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tally = read_all(&bytes, &sniffed, Limits::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (sniffed, tally)
}
