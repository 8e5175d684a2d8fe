//! Scanner CSV formats for hexflow: sniffing an upload (encoding, delimiter, preamble,
//! header, format) and streaming its records as normalised [`Finding`]s.
//!
//! The upload gateway calls [`sniff`] on the first bytes of an upload to refuse bad files
//! early with a [`SniffError`] that says what was wrong and what was expected. The import
//! worker calls [`sniff`] again on the stored object's prefix, then reads the whole object
//! through a [`ScanReader`], which yields one [`Row`] per record: findings, a blank record,
//! or an invalid row ([`RowError`]) to skip and report. A [`ReadError`] stops the file.
//!
//! This crate does no I/O of its own and knows nothing about the database; the formats and
//! their mapping tables are documented in `docs/formats.md`.
//!
//! # Layout
//!
//! - `format`: the [`Format`] enum and its names and families.
//! - `mapping/`: one mapping table per format (field → candidate header names), and
//!   detection by required columns.
//! - `encoding`: UTF-8 / Windows-1252 / UTF-16 (with a BOM) classification and decoding.
//! - `sniff`: [`sniff`], [`Sniffed`] and [`check_forced_format`] (a format chosen after sniffing).
//! - `source`: the `Read` adapter enforcing line/record caps, noticing blank lines and
//!   unterminated quotes, stripping the BOM and transcoding.
//! - `reader`: [`ScanReader`] and [`Limits`].
//! - `row`: record → [`Finding`]s; `realign`: records that spill past the header; `normalize`: cell normalisation; `dates`: date parser.
//! - `error`: [`SniffError`], [`ReadError`], [`RowError`].

mod dates;
mod encoding;
mod error;
mod format;
mod mapping;
mod normalize;
mod reader;
mod realign;
mod row;
mod sniff;
mod source;

pub use encoding::TextEncoding;
pub use error::{ROW_ERROR_CODES, ReadError, RowError, SniffError};
pub use format::Format;
pub use reader::{Limits, ScanReader};
pub use row::{Finding, Row};
pub use sniff::{Sniffed, check_forced_format, sniff};
pub use source::physical_lines;
