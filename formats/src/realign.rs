//! Records whose cells spill past the last named header column.
//!
//! A non-empty cell to the right of the last *named* column (RapidFire pads its header
//! with 20 unnamed columns, Qualys reports pad every line with commas) means the cells of
//! that record are shifted, so mapping by name would read the wrong cells. RapidFire does
//! this in one known way: it writes the `Vulnerability Detection Result` of a multi-port
//! finding as one cell per port. That case is re-aligned by joining those cells; any other
//! spill makes the row invalid (`WRONG_FIELD_COUNT`).

use csv::ByteRecord;

/// Index of the last non-empty cell at or after `named_width`, if any.
pub(crate) fn spill(rec: &ByteRecord, named_width: usize) -> Option<usize> {
    (named_width..rec.len()).rev().find(|&i| !rec[i].trim_ascii().is_empty())
}

/// Joins cells `col ..= col + extra` into one (separated by a line break) and shifts the
/// rest left, giving the record RapidFire meant to write.
pub(crate) fn join_cells(rec: &ByteRecord, col: usize, extra: usize) -> ByteRecord {
    let mut out = ByteRecord::with_capacity(rec.as_slice().len() + extra, rec.len());
    let mut joined: Vec<u8> = Vec::new();
    for (i, f) in rec.iter().enumerate() {
        if i < col || i > col + extra {
            out.push_field(f);
            continue;
        }
        if i > col {
            joined.push(b'\n');
        }
        joined.extend_from_slice(f);
        if i == col + extra {
            out.push_field(&joined);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_the_split_cells_and_shifts_the_rest_left() {
        let rec = ByteRecord::from(vec!["ip", "r1", "r2", "impact", "fix", "", "x", ""]);
        assert_eq!(spill(&rec, 5), Some(6));
        assert_eq!(spill(&rec, 7), None);
        let fixed = join_cells(&rec, 1, 1);
        assert_eq!(fixed, ByteRecord::from(vec!["ip", "r1\nr2", "impact", "fix", "", "x", ""]));
    }
}
