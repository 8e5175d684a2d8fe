//! [`sniff`]: encoding, delimiter, preamble and format, from the first bytes of an upload.

use crate::encoding::{Classified, TextEncoding, Utf16Broken, bom_encoding, classify, decode_utf16_prefix};
use crate::error::SniffError;
use crate::format::Format;
use crate::mapping::{self, normalize_name};
use crate::source::Source;

/// Delimiters tried, in order of preference on a tie.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// How many leading records may be shown as "the columns found" in an error.
const HEADER_LIKE_RECORDS: usize = 64;

/// What the first bytes of a file say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    /// The text encoding.
    pub encoding: TextEncoding,
    /// Whether the file starts with a byte order mark (of `encoding`: UTF-8 or UTF-16).
    pub bom: bool,
    /// The field delimiter: `,`, `;`, `\t` or `|`.
    pub delimiter: u8,
    /// The detected (or forced and verified) format.
    pub format: Format,
    /// The header names, trimmed, BOM removed, in file order (empty names kept as "").
    pub header: Vec<String>,
    /// 1-based physical line of the header.
    pub header_line: u64,
}

/// A header row found with one delimiter.
struct Hit {
    format: Format,
    delimiter: u8,
    names: Vec<String>,
    line: u64,
}

/// The result of scanning the prefix with one delimiter.
struct Scan {
    hit: Option<Hit>,
    /// The most header-like record (most non-empty cells) among the first ones.
    best: Vec<String>,
}

fn non_empty(names: &[String]) -> usize {
    names.iter().filter(|n| !n.is_empty()).count()
}

/// Parses `text` with `delimiter` and looks for the first record that is the header of
/// `forced` (or, without one, of any format).
fn scan(text: &str, delimiter: u8, forced: Option<Format>) -> Scan {
    // The source counts physical lines the way the reader will (csv's own count is off).
    let source = Source::new(text.as_bytes(), false, TextEncoding::Utf8, delimiter, usize::MAX, usize::MAX);
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(source);
    let mut record = csv::StringRecord::new();
    let mut best: Vec<String> = Vec::new();
    let mut seen = 0usize;
    while let Ok(true) = rdr.read_record(&mut record) {
        let names: Vec<String> = record.iter().map(|n| n.trim_start_matches('\u{feff}').trim().to_owned()).collect();
        let normalized: Vec<String> = names.iter().map(|n| normalize_name(n)).collect();
        let format = match forced {
            Some(f) => mapping::spec(f).matches(&normalized).then_some(f),
            None => mapping::detect(&normalized),
        };
        let line = rdr.get_mut().pop_record_line().unwrap_or(1);
        if let Some(format) = format {
            return Scan { hit: Some(Hit { format, delimiter, names, line }), best };
        }
        if seen < HEADER_LIKE_RECORDS && non_empty(&names) > non_empty(&best) {
            best = names;
        }
        seen += 1;
    }
    Scan { hit: None, best }
}

/// Scans with every delimiter; the earliest header wins, then the one with more columns.
fn find_header(text: &str, forced: Option<Format>) -> (Option<Hit>, Vec<String>) {
    let mut hit: Option<Hit> = None;
    let mut best: Vec<String> = Vec::new();
    for d in DELIMITERS {
        let s = scan(text, d, forced);
        if non_empty(&s.best) > non_empty(&best) {
            best = s.best;
        }
        if let Some(h) = s.hit {
            let better = match &hit {
                None => true,
                Some(cur) => h.line < cur.line || (h.line == cur.line && h.names.len() > cur.names.len()),
            };
            if better {
                hit = Some(h);
            }
        }
    }
    (hit, best)
}

/// Inspects the first bytes of an upload.
///
/// `prefix` is the first up-to-N bytes (the caller reads up to 1 MiB, or the whole file if
/// smaller); `complete` is true when `prefix` is the whole file. `forced` is a format the
/// user chose: the header must still contain that format's required columns, else
/// [`SniffError::FormatMismatch`].
pub fn sniff(prefix: &[u8], complete: bool, forced: Option<Format>) -> Result<Sniffed, SniffError> {
    let announced = bom_encoding(prefix);
    let bom_len = announced.map_or(0, TextEncoding::bom_len);
    let bom = announced.is_some();
    let body = &prefix[bom_len..];
    let offset = |o: usize| (o + bom_len) as u64;
    let (encoding, text) = match announced {
        Some(utf16 @ (TextEncoding::Utf16Le | TextEncoding::Utf16Be)) => {
            match decode_utf16_prefix(body, utf16 == TextEncoding::Utf16Be, complete) {
                Ok(text) if text.chars().all(|c| c.is_ascii_whitespace()) && (complete || body.is_empty()) => {
                    return Err(SniffError::Empty { whitespace_only: !body.is_empty() });
                }
                Ok(text) => (utf16, text),
                Err(Utf16Broken::Nul(o)) => return Err(SniffError::Binary { offset: offset(o) }),
                Err(Utf16Broken::Invalid(o)) => {
                    return Err(SniffError::InvalidEncoding { offset: offset(o), encoding: utf16 });
                }
            }
        }
        _ => {
            if body.iter().all(u8::is_ascii_whitespace) && (complete || body.is_empty()) {
                return Err(SniffError::Empty { whitespace_only: !prefix.is_empty() });
            }
            match classify(body, complete, bom) {
                Classified::Utf8(s) => (TextEncoding::Utf8, s),
                Classified::Windows1252(s) => (TextEncoding::Windows1252, s),
                Classified::Binary(o) => return Err(SniffError::Binary { offset: offset(o) }),
                Classified::Invalid(o) => {
                    return Err(SniffError::InvalidEncoding { offset: offset(o), encoding: TextEncoding::Utf8 });
                }
            }
        }
    };
    let scanned_bytes = prefix.len() as u64;
    // A partial prefix: only whole lines count (the last one may be cut anywhere).
    let text = if complete {
        text.as_str()
    } else {
        match text.rfind(['\n', '\r']) {
            Some(end) => &text[..=end],
            None => return Err(SniffError::LineTooLong { scanned_bytes }),
        }
    };
    let (hit, best) = find_header(text, forced);
    if let Some(h) = hit {
        return Ok(Sniffed {
            encoding,
            bom,
            delimiter: h.delimiter,
            format: h.format,
            header: h.names,
            header_line: h.line,
        });
    }
    if let Some(forced) = forced {
        let (auto, auto_best) = find_header(text, None);
        let (detected, found) = match auto {
            Some(h) => (Some(h.format), h.names),
            None => (None, auto_best),
        };
        let normalized: Vec<String> = found.iter().map(|n| normalize_name(n)).collect();
        let missing = mapping::spec(forced).missing(&normalized);
        return Err(SniffError::FormatMismatch { forced, detected, missing, found });
    }
    if non_empty(&best) >= 2 {
        Err(SniffError::UnknownColumns { found: best })
    } else {
        Err(SniffError::NoHeader { scanned_bytes })
    }
}

/// Checks a format the user chose against a header sniffed without that choice (the upload
/// form may name the format after the file). The rule is the one [`sniff`] applies to a
/// forced format, and the worker applies when it reads the file: every required column, and
/// one of the format's distinguishing columns when it has such a group. A mismatch is
/// [`SniffError::FormatMismatch`], naming what is missing and what the file looks like.
pub fn check_forced_format(forced: Format, sniffed: &Sniffed) -> Result<(), SniffError> {
    let normalized: Vec<String> = sniffed.header.iter().map(|n| normalize_name(n)).collect();
    let spec = mapping::spec(forced);
    if forced == sniffed.format || spec.matches(&normalized) {
        return Ok(());
    }
    Err(SniffError::FormatMismatch {
        forced,
        detected: Some(sniffed.format),
        missing: spec.missing(&normalized),
        found: sniffed.header.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_header_after_a_preamble_with_other_field_counts() {
        let text =
            "\"Report\",\"04 Feb 2026\",\"1\"\n\"A\",\"B\"\n\n\"QID\",\"Title\",\"Asset Id\"\n\"1\",\"t\",\"9\"\n";
        let s = sniff(text.as_bytes(), true, None).unwrap();
        assert_eq!((s.format, s.header_line, s.delimiter), (Format::QualysVmdr, 4, b','));
        assert_eq!(s.header, ["QID", "Title", "Asset Id"]);
    }

    #[test]
    fn sniffs_semicolons_tabs_and_pipes() {
        for d in [';', '\t', '|'] {
            let text = format!("asset{d}check_id{d}title{d}severity\nh{d}1{d}t{d}high\n");
            let s = sniff(text.as_bytes(), true, None).unwrap();
            assert_eq!((s.format, s.delimiter), (Format::Generic, d as u8));
        }
    }

    #[test]
    fn a_cut_last_line_is_ignored_in_a_partial_prefix() {
        let s = sniff(b"asset,check_id,title,severity\nh,1,t,hi", false, None).unwrap();
        assert_eq!(s.format, Format::Generic);
        let e = sniff(b"asset,check_id,title,sev", false, None).unwrap_err();
        assert_eq!(e.code(), "LINE_TOO_LONG");
    }

    #[test]
    fn a_format_chosen_after_sniffing_needs_its_distinguishing_columns_too() {
        // Tenable.io needs Plugin ID and Name, and one of its own columns besides.
        let text = b"Plugin ID,Name,Host,Port\n19506,Scan Information,h1,0\n";
        let sniffed = sniff(text, true, None).unwrap();
        assert_eq!(sniffed.format, Format::Nessus);
        assert!(check_forced_format(Format::Nessus, &sniffed).is_ok());
        let e = check_forced_format(Format::TenableIo, &sniffed).unwrap_err();
        assert_eq!(e.code(), "FORMAT_MISMATCH");
        let msg = e.to_string();
        assert!(msg.contains("one of Vulnerability State / Asset UUID") && msg.contains("looks like nessus"), "{msg}");
        // The same choice made before sniffing is refused the same way.
        assert_eq!(sniff(text, true, Some(Format::TenableIo)).unwrap_err().code(), "FORMAT_MISMATCH");
    }

    #[test]
    fn forced_format_must_match() {
        let text = b"asset,check_id,title,severity\n";
        assert_eq!(sniff(text, true, Some(Format::Generic)).unwrap().format, Format::Generic);
        let e = sniff(text, true, Some(Format::Nessus)).unwrap_err();
        assert_eq!(e.code(), "FORMAT_MISMATCH");
        let msg = e.to_string();
        assert!(msg.contains("Host") && msg.contains("looks like generic"), "{msg}");
        assert!(e.expected().contains("nessus (Host, Port, Name"));
    }
}
