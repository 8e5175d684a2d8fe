//! Errors: [`SniffError`] refuses a file before import, [`ReadError`] stops an import,
//! [`RowError`] skips one row.

use std::fmt;

use crate::encoding::TextEncoding;
use crate::format::Format;
use crate::mapping;

/// How many found column names an error message lists.
const LISTED_COLUMNS: usize = 15;

/// Lists header names for a message: the first [`LISTED_COLUMNS`], then how many more.
fn list_columns(found: &[String]) -> String {
    let shown: Vec<String> = found.iter().take(LISTED_COLUMNS).map(|c| format!("\"{c}\"")).collect();
    let mut s = shown.join(", ");
    if found.len() > LISTED_COLUMNS {
        s.push_str(&format!(" … ({} more)", found.len() - LISTED_COLUMNS));
    }
    if s.is_empty() {
        s.push_str("(none)");
    }
    s
}

/// What every known format needs, one per line.
fn all_formats_expected() -> String {
    let lines: Vec<String> = Format::ALL.iter().map(|&f| format!("  {}", mapping::spec(f).describe())).collect();
    format!("a header row with the columns of one of:\n{}", lines.join("\n"))
}

/// Why a file was refused before import.
#[derive(Debug, thiserror::Error)]
pub enum SniffError {
    /// The file has no bytes, or only whitespace (and perhaps a BOM).
    #[error("the file is empty{}", if *.whitespace_only { " (only whitespace)" } else { "" })]
    Empty {
        /// True when there were bytes, but only whitespace.
        whitespace_only: bool,
    },
    /// NUL bytes or many control bytes: not a text file.
    #[error("the file looks binary (control byte at offset {offset}), not like CSV text")]
    Binary {
        /// Byte offset of the first NUL or control byte.
        offset: u64,
    },
    /// Neither valid UTF-8 nor plausible Windows-1252, or broken UTF-16 after a UTF-16 BOM.
    #[error("the file is not valid {encoding}: invalid byte at offset {offset}")]
    InvalidEncoding {
        /// Byte offset (from the start of the file) of the first invalid byte.
        offset: u64,
        /// The encoding the file claims (by its BOM) or seems to have.
        encoding: TextEncoding,
    },
    /// No record in the inspected prefix looks like a header row.
    #[error("no header row found in the first {scanned_bytes} bytes")]
    NoHeader {
        /// How many bytes were inspected.
        scanned_bytes: u64,
    },
    /// A header-like row was found, but its columns match no known format.
    #[error("unknown columns: found {}", list_columns(.found))]
    UnknownColumns {
        /// The column names of the most header-like row found.
        found: Vec<String>,
    },
    /// The user chose a format, but the header lacks its required columns.
    #[error(
        "the file does not look like {forced}: missing column(s) {}{}; found {}",
        .missing.join(", "),
        .detected.map(|d| format!(" (it looks like {d})")).unwrap_or_default(),
        list_columns(.found)
    )]
    FormatMismatch {
        /// The format the user chose.
        forced: Format,
        /// The format auto-detection found instead, if any.
        detected: Option<Format>,
        /// The required columns the header lacks.
        missing: Vec<String>,
        /// The column names of the header (or most header-like row).
        found: Vec<String>,
    },
    /// The first line is longer than the inspected prefix.
    #[error("the first line is longer than {scanned_bytes} bytes without a line break")]
    LineTooLong {
        /// How many bytes were inspected.
        scanned_bytes: u64,
    },
}

impl SniffError {
    /// A stable SCREAMING_SNAKE code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            SniffError::Empty { .. } => "EMPTY_FILE",
            SniffError::Binary { .. } => "BINARY_FILE",
            SniffError::InvalidEncoding { .. } => "INVALID_ENCODING",
            SniffError::NoHeader { .. } => "NO_HEADER",
            SniffError::UnknownColumns { .. } => "UNKNOWN_COLUMNS",
            SniffError::FormatMismatch { .. } => "FORMAT_MISMATCH",
            SniffError::LineTooLong { .. } => "LINE_TOO_LONG",
        }
    }

    /// What was expected instead, in words, for the user.
    pub fn expected(&self) -> String {
        match self {
            SniffError::Empty { .. } => "a CSV export with a header row and findings".into(),
            SniffError::Binary { .. } => "a CSV text file (UTF-8, Windows-1252, or UTF-16 with a BOM)".into(),
            SniffError::InvalidEncoding { .. } => {
                "UTF-8 text (with or without BOM), Windows-1252 text, or UTF-16 text with a BOM".into()
            }
            SniffError::NoHeader { .. } | SniffError::UnknownColumns { .. } => all_formats_expected(),
            SniffError::FormatMismatch { forced, .. } => {
                format!("a header row with the columns of {}", mapping::spec(*forced).describe())
            }
            SniffError::LineTooLong { .. } => "CSV lines separated by line breaks (LF, CRLF or CR)".into(),
        }
    }
}

/// An error that stops reading the whole file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the underlying stream failed.
    #[error("reading the file failed near line {line}: {source}")]
    Io {
        /// Physical line being read.
        line: u64,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A physical line is longer than `Limits::max_line_bytes`; the parser cannot resync.
    #[error("line {line} is longer than {limit} bytes")]
    LineTooLong {
        /// The over-long physical line.
        line: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// One record (a quoted cell spanning many lines) is too large to hold in memory.
    #[error("the record starting at line {line} is longer than {limit} bytes")]
    RecordTooLong {
        /// Line where the record starts.
        line: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// The file ends inside a quoted cell.
    #[error("the file ends inside a quoted cell that starts at line {line}")]
    UnterminatedQuote {
        /// Line where the quoted cell starts.
        line: u64,
    },
    /// The header row the sniffer found is not in the stream.
    #[error("the header row expected at line {line} was not found")]
    MissingHeader {
        /// The expected header line.
        line: u64,
    },
}

impl ReadError {
    /// A stable SCREAMING_SNAKE code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            ReadError::Io { .. } => "IO_ERROR",
            ReadError::LineTooLong { .. } => "LINE_TOO_LONG",
            ReadError::RecordTooLong { .. } => "RECORD_TOO_LONG",
            ReadError::UnterminatedQuote { .. } => "UNTERMINATED_QUOTE",
            ReadError::MissingHeader { .. } => "NO_HEADER",
        }
    }

    /// The physical line the error concerns.
    pub fn line(&self) -> Option<u64> {
        match self {
            ReadError::Io { line, .. }
            | ReadError::LineTooLong { line, .. }
            | ReadError::RecordTooLong { line, .. }
            | ReadError::UnterminatedQuote { line }
            | ReadError::MissingHeader { line } => Some(*line),
        }
    }
}

/// Every code a [`RowError`] may carry (stable: stored with the row errors and shown to users).
pub const ROW_ERROR_CODES: &[&str] = &[
    "MISSING_VALUE",
    "INVALID_NUMBER",
    "INVALID_PORT",
    "INVALID_SEVERITY",
    "INVALID_VALUE",
    "INVALID_ENCODING",
    "FIELD_TOO_LONG",
    "WRONG_FIELD_COUNT",
];

/// Why one row was skipped; the import goes on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    /// 1-based physical line where the record starts.
    pub line: u64,
    /// The column at fault (header name, or `#n` for a cell beyond the header).
    pub column: String,
    /// The offending value, truncated to 200 characters.
    pub value: String,
    /// Stable code, one of [`ROW_ERROR_CODES`].
    pub code: &'static str,
    /// What a valid value looks like, e.g. "an integer port 0-65535".
    pub expected: String,
    /// A one-line message naming the column, value and expectation. It leaves the line out:
    /// every place that shows the message shows [`RowError::line`] next to it (the worker's
    /// "First problem: line 2: …", the error list's own column), so naming it here too
    /// would say it twice.
    pub message: String,
}

/// Longest value kept in a [`RowError`], in characters.
const MAX_ERROR_VALUE_CHARS: usize = 200;

impl RowError {
    /// Builds a row error; the value is truncated and the message composed here.
    pub(crate) fn new(
        line: u64,
        column: impl Into<String>,
        value: &str,
        code: &'static str,
        expected: impl Into<String>,
    ) -> RowError {
        let column = column.into();
        let expected = expected.into();
        let value: String = value.chars().take(MAX_ERROR_VALUE_CHARS).collect();
        let message = format!("column \"{column}\": got \"{value}\", expected {expected}");
        RowError { line, column, value, code, expected, message }
    }
}

/// `line 7: column "Port": got …`: the line once, then the message.
impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for RowError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_columns_lists_found_and_expected() {
        let found: Vec<String> = (1..=20).map(|i| format!("col{i}")).collect();
        let e = SniffError::UnknownColumns { found };
        let msg = e.to_string();
        assert!(msg.contains("\"col15\"") && !msg.contains("col16") && msg.contains("5 more"));
        assert!(e.expected().contains("nessus (Host, Port, Name"));
        assert!(e.expected().contains("qualys_vmdr (QID, Title, Asset Id)"));
        assert_eq!(e.code(), "UNKNOWN_COLUMNS");
    }

    #[test]
    fn row_error_truncates_value() {
        let e = RowError::new(7, "Port", &"9".repeat(300), "INVALID_PORT", "an integer port 0-65535");
        assert_eq!(e.value.len(), 200);
        assert_eq!(e.message, format!("column \"Port\": got \"{}\", expected an integer port 0-65535", e.value));
        assert!(e.to_string().starts_with("line 7: column \"Port\""), "{e}");
        assert_eq!(e.to_string().matches("line").count(), 1, "the line is named once: {e}");
    }
}
