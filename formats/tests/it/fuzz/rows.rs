//! The row mapper on any record under a real header of every format, and quoting round
//! trips: records are written with the csv crate's quoting (delimiters, quotes, CR and LF
//! inside cells), read back, and each gives one row on the line it starts, which passes
//! [`check_row`]. For the generic format, whose columns are public, the text cells must come
//! back verbatim.

use formats::{Format, Limits, Row, ScanReader, sniff};
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::driver::fuzz;
use super::inputs::headers;
use super::{Tally, check_row};

/// Characters that quoting must protect, and some that trimming and BOM stripping could eat.
const TRICKY: &[char] = &['"', ',', ';', '\t', '|', '\r', '\n', ' ', '\u{feff}', '\u{a0}', 'é', '€', '=', '\''];

/// Values some column of some format validates, valid and not.
const VALUES: &[&str] = &[
    "",
    " ",
    "n/a",
    "-",
    "null",
    "0",
    "5",
    "10",
    "75",
    "11.5",
    "-1",
    "1e3",
    "NaN",
    "inf",
    "70000",
    "80 443",
    "high",
    "M",
    "bogus",
    "vv",
    "CVE-2024-3400",
    "NOCVE",
    "2023-02-29",
    "13:00 PM 2021",
    "(CVSS: 8.6)",
];

// Valid values by what a column holds (each format's scale decides about bare numbers).
const SCORES: &[&str] = &["", "0", "5.0", "7.5", "10", "75", "5,9", "8.1 (AV:N/AC:H)", "null", "-", "N/A"];
const PORTS: &[&str] = &["", "0", "22", "443", "65535", "443/tcp", "general/udp", "0/NA", "2083/tcp,2087/tcp", "n/a"];
const SEVERITIES: &[&str] =
    &["info", "Low", "MEDIUM", "high", "Critical", "0", "1", "2", "3", "4", "H", "Log", "None", "Serious"];
const CVES: &[&str] = &["", "CVE-2024-3400", "cve-2021-1234;CVE-2021-1234", "CVE-2019-12345, CVE-2020-1234", "NOCVE"];
const DATES: &[&str] = &[
    "",
    "2024-02-29",
    "2023-06-08T01:58:56.166Z",
    "05/13/2021 07:08:28",
    "22/09/2022 13:01",
    "31-Oct-24",
    "Jan 5, 2021 10:24:08 MST",
    "04 Feb 2026 10:00AM GMT-0500",
    "23.11.2009",
    "2023-02-29",
    "N/A",
];
const STATES: &[&str] = &["", "open", "fixed", "OPEN", "Fixed", "vv", "nv"];
const DATE_WORDS: &[&str] =
    &["seen", "detected", "found", "date", "timestamp", "scan", "since", "observed", "discovered"];

/// Text full of [`TRICKY`] characters.
fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![3 => select(TRICKY), 3 => prop::char::range('a', 'z'), 1 => any::<char>()];
    prop::collection::vec(ch, 0..24).prop_map(|c| c.into_iter().collect::<String>())
}

/// Any short cell: a value some column validates, or text.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![select(VALUES).prop_map(str::to_owned), text()]
}

/// Cells for the column `name`, by what the name says it holds; any cell now and then.
fn cell_for(name: &str) -> BoxedStrategy<String> {
    let n = name.trim().to_lowercase();
    let pool = if ["cvss", "score", "vpr", "priority"].iter().any(|w| n.contains(w)) {
        SCORES
    } else if n.contains("port") {
        PORTS
    } else if n.contains("severity") || n.contains("risk") {
        SEVERITIES
    } else if n.contains("cve") {
        CVES
    } else if DATE_WORDS.iter().any(|w| n.contains(w)) {
        DATES
    } else if n.contains("state") || n.contains("status") || n.contains("result code") {
        STATES
    } else {
        return prop_oneof![19 => text(), 1 => cell()].boxed();
    };
    prop_oneof![18 => select(pool).prop_map(str::to_owned), 1 => text(), 1 => cell()].boxed()
}

/// A record for `header`: one cell per column, sometimes cut short or with cells past its end.
fn record_for(header: &[String], resize: bool) -> impl Strategy<Value = Vec<String>> + use<> {
    let cells: Vec<BoxedStrategy<String>> = header.iter().map(|n| cell_for(n)).collect();
    let extra = prop::option::weighted(0.2, prop::collection::vec(cell(), 1..4));
    let cut = prop::option::weighted(0.1, any::<Index>());
    (cells, extra, cut).prop_map(move |(mut cells, extra, cut)| {
        if resize {
            cells.extend(extra.into_iter().flatten());
            if let Some(cut) = cut {
                cells.truncate(1 + cut.index(cells.len()));
            }
        }
        cells
    })
}

/// Writes `header` and `records` as CSV; returns the file and the line each record starts on.
fn write_csv(
    header: &[String],
    records: &[Vec<String>],
    delimiter: u8,
    crlf: bool,
    always: bool,
) -> (Vec<u8>, Vec<u64>) {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
        .quote_style(if always { csv::QuoteStyle::Always } else { csv::QuoteStyle::Necessary })
        .from_writer(Vec::new());
    let mut lines = Vec::new();
    writer.write_record(header).expect("writing to memory");
    for record in records {
        writer.flush().expect("writing to memory");
        lines.push(1 + line_ends(writer.get_ref()));
        writer.write_record(record).expect("writing to memory");
    }
    (writer.into_inner().expect("writing to memory"), lines)
}

/// How many physical lines `bytes` ends: each LF, CRLF and lone CR (inside quoted cells too).
fn line_ends(bytes: &[u8]) -> u64 {
    let lone_lf = bytes.iter().enumerate().filter(|&(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
    (bytes.iter().filter(|&&b| b == b'\r').count() + lone_lf.count()) as u64
}

/// A row's kind, or an invalid row's code, for the outcome tally.
fn kind(row: &Row) -> &'static str {
    match row {
        Row::Findings(_) => "findings",
        Row::Blank { .. } => "blank",
        Row::Invalid(e) => e.code,
    }
}

/// Sniffs the header line alone (as from a short prefix) and reads every row.
fn read_back(file: &[u8], format: Format) -> Result<Vec<Row>, TestCaseError> {
    let header_end = file.iter().position(|&b| b == b'\n').map_or(file.len(), |i| i + 1);
    let sniffed = sniff(&file[..header_end], false, None).map_err(|e| TestCaseError::fail(format!("sniff: {e}")))?;
    prop_assert_eq!(sniffed.format, format);
    let reader = ScanReader::new(file, &sniffed, Limits::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    reader.collect::<Result<Vec<Row>, _>>().map_err(|e| TestCaseError::fail(format!("read: {e}")))
}

#[test]
fn fuzz_rows_under_real_headers_give_findings_or_name_a_column() {
    let records = (0..headers().len())
        .prop_flat_map(|i| (Just(i), prop::collection::vec(record_for(&headers()[i].1, true), 1..6)));
    let outcomes = Tally::default();
    fuzz("rows", 2000, (records, any::<bool>(), any::<bool>()), |((i, records), crlf, always)| {
        let (format, header, delimiter) = &headers()[i];
        let (file, lines) = write_csv(header, &records, *delimiter, crlf, always);
        let rows = read_back(&file, *format)?;
        prop_assert_eq!(rows.len(), records.len(), "one row per record");
        for ((row, line), record) in rows.iter().zip(&lines).zip(&records) {
            prop_assert_eq!(super::row_line(row), *line);
            check_row(row, Limits::default().max_field_bytes)?;
            outcomes.add(kind(row));
            if let Row::Findings(findings) = row {
                // A title is a cell of the record, verbatim (the format decides which).
                let title = &findings[0].title;
                prop_assert!(title.is_empty() || record.contains(title), "title {:?} is no cell", title);
            }
        }
        Ok(())
    });
    outcomes.print("rows");
}

const DELIMITERS: &[u8] = b",;\t|";

/// The generic format's columns, in `docs/formats.md` order.
const GENERIC: [&str; 15] = [
    "asset",
    "check_id",
    "title",
    "severity",
    "port",
    "protocol",
    "cves",
    "cvss",
    "vpr",
    "description",
    "solution",
    "output",
    "first_seen",
    "last_seen",
    "state",
];

#[test]
fn fuzz_generic_cells_round_trip_through_quoting() {
    // The header's names shuffled, in any case, padded with spaces: still the generic header.
    let name = |n: &'static str| {
        (any::<bool>(), 0usize..3).prop_map(move |(upper, pad)| {
            let n = if upper { n.to_uppercase() } else { n.to_owned() };
            format!("{}{n}{}", " ".repeat(pad), " ".repeat(pad / 2))
        })
    };
    let file = Vec::from(GENERIC.map(name)).prop_shuffle().prop_flat_map(|header| {
        let records = prop::collection::vec(record_for(&header, false), 1..6);
        (Just(header), records)
    });
    let strategy = (file, select(DELIMITERS), any::<bool>(), any::<bool>());
    let outcomes = Tally::default();
    fuzz("generic_round_trip", 2000, strategy, |((header, records), delimiter, crlf, always)| {
        let (file, lines) = write_csv(&header, &records, delimiter, crlf, always);
        let rows = read_back(&file, Format::Generic)?;
        prop_assert_eq!(rows.len(), records.len(), "one row per record");
        let col = |record: &[String], name: &str| -> String {
            let i = header.iter().position(|h| h.trim().eq_ignore_ascii_case(name)).expect("generic column");
            record[i].clone()
        };
        for ((row, line), record) in rows.iter().zip(&lines).zip(&records) {
            prop_assert_eq!(super::row_line(row), *line);
            check_row(row, Limits::default().max_field_bytes)?;
            outcomes.add(kind(row));
            let text = |name: &str| {
                let cell = col(record, name);
                if cell.trim().is_empty() { String::new() } else { cell }
            };
            let blank = record.iter().all(|c| c.bytes().all(|b| b.is_ascii_whitespace()));
            match row {
                Row::Blank { .. } => prop_assert!(blank, "a record with text read as blank"),
                Row::Findings(findings) => {
                    let f = &findings[0];
                    let (asset, check_id) = (col(record, "asset"), col(record, "check_id"));
                    prop_assert_eq!(f.asset.as_str(), asset.trim());
                    prop_assert_eq!(f.check_id.as_str(), check_id.trim());
                    let (title, description, output) = (text("title"), text("description"), text("output"));
                    prop_assert_eq!(&f.title, &title);
                    prop_assert_eq!(&f.description, &description);
                    prop_assert_eq!(&f.output, &output);
                    let solution = text("solution");
                    let solution = if solution.trim().eq_ignore_ascii_case("n/a") { String::new() } else { solution };
                    prop_assert_eq!(&f.solution, &solution);
                }
                Row::Invalid(e) => {
                    prop_assert!(!blank, "a blank record read as invalid");
                    let names: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
                    prop_assert!(names.contains(&e.column), "column {:?} is not in the header", e.column);
                    if col(record, "asset").trim().is_empty() {
                        prop_assert_eq!((e.code, e.column.to_lowercase()), ("MISSING_VALUE", "asset".to_owned()));
                    }
                }
            }
        }
        Ok(())
    });
    outcomes.print("generic_round_trip");
}
