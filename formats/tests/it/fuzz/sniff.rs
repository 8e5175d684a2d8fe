//! The sniffer on any bytes: a format whose required columns the header has, or a refusal
//! with a known code, a message and what was expected instead.

use formats::{Format, SniffError, sniff};
use proptest::prelude::*;
use proptest::sample::select;

use super::Tally;
use super::driver::fuzz;
use super::inputs::{Bytes, any_input};

const SNIFF_CODES: &[&str] = &[
    "EMPTY_FILE",
    "BINARY_FILE",
    "INVALID_ENCODING",
    "NO_HEADER",
    "UNKNOWN_COLUMNS",
    "FORMAT_MISMATCH",
    "LINE_TOO_LONG",
];

/// Checks one sniff; returns the format's name or the refusal's code.
fn check_sniff(prefix: &[u8], complete: bool, forced: Option<Format>) -> Result<&'static str, TestCaseError> {
    let result = sniff(prefix, complete, forced);
    match &result {
        Ok(s) => {
            prop_assert!([b',', b';', b'\t', b'|'].contains(&s.delimiter), "delimiter {:?}", s.delimiter);
            let bom = [&b"\xEF\xBB\xBF"[..], b"\xFF\xFE", b"\xFE\xFF"].iter().any(|m| prefix.starts_with(m));
            prop_assert_eq!(s.bom, bom);
            if let Some(forced) = forced {
                prop_assert_eq!(s.format, forced);
            }
            let names: Vec<String> =
                s.header.iter().map(|h| h.trim_start_matches('\u{feff}').trim().to_lowercase()).collect();
            for column in s.format.required_columns() {
                prop_assert!(names.iter().any(|n| n.eq_ignore_ascii_case(column)), "{} without {}", s.format, column);
            }
            // Every line end (LF, CR, CRLF; in UTF-16 too) has a CR or LF byte.
            let lines = 1 + prefix.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u64;
            prop_assert!((1..=lines).contains(&s.header_line), "header on line {} of {}", s.header_line, lines);
        }
        Err(e) => {
            prop_assert!(SNIFF_CODES.contains(&e.code()), "code {}", e.code());
            prop_assert!(!e.to_string().is_empty() && !e.expected().is_empty(), "{:?} says nothing", e);
            match &e {
                SniffError::Binary { offset } | SniffError::InvalidEncoding { offset, .. } => {
                    prop_assert!(*offset < prefix.len() as u64, "offset {} of {} bytes", offset, prefix.len());
                }
                SniffError::FormatMismatch { forced: f, .. } => prop_assert_eq!(Some(*f), forced),
                SniffError::Empty { .. } => {
                    // Whitespace and a BOM (UTF-16 spells whitespace with NUL bytes).
                    prop_assert!(
                        prefix.iter().all(|b| b.is_ascii_whitespace() || b"\xEF\xBB\xBF\xFF\xFE\0".contains(b))
                    );
                }
                _ => {}
            }
        }
    }
    Ok(result.map_or_else(|e| e.code(), |s| s.format.name()))
}

#[test]
fn fuzz_sniff_finds_a_format_or_refuses_with_a_reason() {
    let forced = prop::option::weighted(0.3, select(Format::ALL));
    let strategy = (any_input(), any::<bool>(), any::<prop::sample::Index>(), forced);
    let outcomes = Tally::default();
    fuzz("sniff", 8000, strategy, |(Bytes(bytes), complete, cut, forced)| {
        // The gateway sniffs the whole of a small file, or a prefix cut anywhere.
        let prefix = if complete { &bytes[..] } else { &bytes[..cut.index(bytes.len() + 1)] };
        let outcome = check_sniff(prefix, complete, forced)?;
        outcomes.add(outcome);
        Ok(())
    });
    outcomes.print("sniff");
}
