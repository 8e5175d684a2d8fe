//! Fuzz targets for the sniffer, the CSV source (through the reader) and the row mapper, plus
//! the checks every mapped row must pass. Each target runs a CI-sized budget under
//! `cargo test`; `scripts/fuzz` runs them for longer with fresh seeds (see `driver.rs`). The
//! source's fast path has one more target next to its byte-by-byte reference, in the crate's
//! unit tests (`src/source.rs`).

mod driver;
mod found;
mod inputs;
mod reader;
mod rows;
mod sniff;

use std::cell::RefCell;
use std::collections::BTreeMap;

use formats::Row;
use proptest::prelude::*;

/// How often each outcome came up in a target, to show that its inputs reach every path
/// (formats found, each refusal, each row kind) and are not all refused at the first byte.
#[derive(Default)]
struct Tally(RefCell<BTreeMap<&'static str, u64>>);

impl Tally {
    fn add(&self, outcome: &'static str) {
        *self.0.borrow_mut().entry(outcome).or_default() += 1;
    }

    fn print(&self, target: &str) {
        let counts: Vec<String> = self.0.borrow().iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("fuzz {target} outcomes (shrinking included): {}", counts.join(", "));
    }
}

/// The physical line a row concerns.
fn row_line(row: &Row) -> u64 {
    match row {
        Row::Findings(findings) => findings.first().map_or(0, |f| f.line),
        Row::Blank { line } => *line,
        Row::Invalid(e) => e.line,
    }
}

/// What any mapped row satisfies, whatever the input: findings hold normalised values within
/// the cell cap, and an invalid row names the column at fault in its message.
fn check_row(row: &Row, max_field: usize) -> Result<(), TestCaseError> {
    match row {
        Row::Findings(findings) => {
            prop_assert!(!findings.is_empty(), "a record mapped to no finding");
            for f in findings {
                prop_assert!(!f.asset.is_empty() && f.asset.trim() == f.asset, "asset {:?}", f.asset);
                prop_assert!(!f.check_id.is_empty() && f.check_id.trim() == f.check_id, "check_id {:?}", f.check_id);
                prop_assert!((0..=65535).contains(&f.port), "port {}", f.port);
                prop_assert!(f.severity <= 4, "severity {}", f.severity);
                for score in [f.cvss, f.vpr].into_iter().flatten() {
                    prop_assert!((0.0..=10.0).contains(&score), "score {}", score);
                }
                prop_assert!(f.cves.iter().all(|c| c.starts_with("CVE-")), "cves {:?}", f.cves);
                prop_assert!(f.cves.windows(2).all(|w| w[0] < w[1]), "cves unsorted or repeated: {:?}", f.cves);
                for text in [&f.title, &f.description, &f.solution] {
                    prop_assert!(text.len() <= max_field, "a {}-byte cell over the {} cap", text.len(), max_field);
                }
                for date in [&f.first_seen, &f.last_seen].into_iter().flatten() {
                    prop_assert_eq!(date.len(), "2024-01-02T03:04:05+00:00".len(), "date {}", date);
                }
            }
            prop_assert!(findings.iter().all(|f| f.line == findings[0].line), "findings of one record on two lines");
        }
        Row::Blank { .. } => {}
        Row::Invalid(e) => {
            prop_assert!(formats::ROW_ERROR_CODES.contains(&e.code), "code {}", e.code);
            prop_assert!(!e.column.trim().is_empty(), "an invalid row names no column: {:?}", e);
            let named = format!("column \"{}\"", e.column);
            prop_assert!(e.message.contains(&named), "message {:?} does not name {}", e.message, named);
            prop_assert!(e.value.chars().count() <= 200, "value of {} chars", e.value.chars().count());
            prop_assert!(!e.expected.is_empty());
        }
    }
    Ok(())
}
