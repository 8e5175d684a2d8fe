//! The CSV source, through the reader, on any file the sniffer accepts: no row comes from a
//! line over the cap (the read stops there instead), chunking changes nothing, the header
//! the sniffer found is found again, rows come in line order, and every row passes
//! [`check_row`].

use std::io::Read;

use formats::{Limits, ReadError, Row, ScanReader, Sniffed, TextEncoding, sniff};
use proptest::prelude::*;

use super::driver::fuzz;
use super::inputs::{Bytes, any_input};
use super::{Tally, check_row, row_line};
use crate::support::Chunked;

/// Everything one read gives: the rows, then the fatal error (code and line), if any.
#[derive(Debug, PartialEq)]
struct Outcome {
    rows: Vec<Row>,
    error: Option<(&'static str, Option<u64>)>,
    /// The reader yielded something after its fatal error, or more rows than line ends.
    runaway: bool,
}

fn read(reader: impl Read, sniffed: &Sniffed, limits: Limits, max_rows: usize) -> Outcome {
    let fatal = |e: ReadError| Some((e.code(), e.line()));
    let mut out = Outcome { rows: Vec::new(), error: None, runaway: false };
    let mut rows = match ScanReader::new(reader, sniffed, limits) {
        Ok(rows) => rows,
        Err(e) => {
            out.error = fatal(e);
            return out;
        }
    };
    while let Some(row) = rows.next_row() {
        match row {
            Ok(row) => out.rows.push(row),
            Err(e) => {
                out.error = fatal(e);
                out.runaway = rows.next_row().is_some();
                break;
            }
        }
        if out.rows.len() > max_rows {
            out.runaway = true;
            break;
        }
    }
    out
}

/// The bytes the source scans: after the BOM, and decoded to UTF-8 when the file is UTF-16.
fn scanned_bytes(bytes: &[u8], sniffed: &Sniffed) -> Vec<u8> {
    let body = if sniffed.bom { &bytes[if sniffed.encoding.is_utf16() { 2 } else { 3 }..] } else { bytes };
    if !sniffed.encoding.is_utf16() {
        return body.to_vec();
    }
    let big_endian = sniffed.encoding == TextEncoding::Utf16Be;
    let unit = |p: &[u8]| if big_endian { u16::from_be_bytes([p[0], p[1]]) } else { u16::from_le_bytes([p[0], p[1]]) };
    let units: Vec<u16> = body.chunks_exact(2).map(unit).collect();
    let mut text = String::from_utf16_lossy(&units);
    if body.len() % 2 == 1 {
        text.push(char::REPLACEMENT_CHARACTER);
    }
    text.into_bytes()
}

/// Checks one read; returns how it ended (the fatal error's code, or `END`).
fn check_read(bytes: &[u8], sniffed: &Sniffed, limits: Limits, chunk: usize) -> Result<&'static str, TestCaseError> {
    // Each row is a record or an empty line, and each ends at a CR, an LF or the end.
    let max_rows = 1 + bytes.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    let whole = read(bytes, sniffed, limits, max_rows);
    let chunked = read(Chunked { data: bytes, chunk }, sniffed, limits, max_rows);
    prop_assert!(!whole.runaway, "more rows than line ends, or rows after a fatal error");
    prop_assert_eq!(&chunked, &whole, "reading in {}-byte chunks differs", chunk);
    prop_assert_ne!(whole.error.map(|e| e.0), Some("NO_HEADER"), "the sniffed header is not found again");

    // The cap counts the bytes of each physical line (ended by LF, CRLF or a lone CR) after
    // the BOM: raw bytes, or the UTF-8 that UTF-16 is decoded to.
    let body = scanned_bytes(bytes, sniffed);
    let long_line =
        formats::physical_lines(&body).iter().position(|l| l.len() > limits.max_line_bytes).map(|i| i as u64 + 1);
    match (long_line, whole.error) {
        (Some(long), Some(("LINE_TOO_LONG", Some(line)))) => prop_assert_eq!(line, long, "wrong line blamed"),
        (Some(long), Some(("RECORD_TOO_LONG", Some(line)))) => prop_assert!(line <= long, "record at {}", line),
        (Some(long), error) => {
            return Err(TestCaseError::fail(format!("line {long} is over the cap, yet the read ended with {error:?}")));
        }
        (None, error) => prop_assert_ne!(error.map(|e| e.0), Some("LINE_TOO_LONG")),
    }
    let mut last = sniffed.header_line;
    for row in &whole.rows {
        let line = row_line(row);
        prop_assert!(line >= last, "row on line {} after line {}", line, last);
        prop_assert!(long_line.is_none_or(|long| line < long), "row on line {} from a line over the cap", line);
        check_row(row, limits.max_field_bytes)?;
        last = line;
    }
    Ok(whole.error.map_or("END", |e| e.0))
}

#[test]
fn fuzz_reader_keeps_the_line_cap_whatever_the_chunking() {
    let limits = |line, field| Limits { max_line_bytes: line, max_field_bytes: field };
    // Small caps cut most seed files; large ones let most of them be read to the end.
    let small = (8usize..700, 1usize..700).prop_map(move |(l, f)| limits(l, f));
    let large = (700usize..8000, 50usize..4000).prop_map(move |(l, f)| limits(l, f));
    let limits = prop_oneof![1 => Just(Limits::default()), 2 => small, 2 => large];
    let strategy = (any_input(), limits, 1usize..300, any::<prop::sample::Index>());
    let outcomes = Tally::default();
    fuzz("reader", 4000, strategy, |(Bytes(bytes), limits, chunk, cut)| {
        // Sniffed like the gateway does: the whole file, or (for a larger one) a prefix.
        let prefix_len = if cut.index(4) == 0 { cut.index(bytes.len() + 1) } else { bytes.len() };
        let Ok(sniffed) = sniff(&bytes[..prefix_len], prefix_len == bytes.len(), None) else {
            outcomes.add("refused by sniff");
            return Ok(());
        };
        outcomes.add(check_read(&bytes, &sniffed, limits, chunk)?);
        Ok(())
    });
    outcomes.print("reader");
}
