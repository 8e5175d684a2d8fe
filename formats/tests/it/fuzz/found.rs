//! What the fuzz targets found, kept as named tests.

use formats::{Format, Limits, Row, sniff};

use crate::support::{Chunked, read_all};

fn rows(bytes: &[u8], chunk: usize) -> Vec<Row> {
    let sniffed = sniff(bytes, true, None).unwrap();
    let reader = formats::ScanReader::new(Chunked { data: bytes, chunk }, &sniffed, Limits::default()).unwrap();
    reader.collect::<Result<Vec<Row>, _>>().unwrap()
}

/// Found by `reader`: with CR-only line ends every record was counted on line 1, and the
/// reader took the first record of line 1 (here the preamble's "Report") as the header, so
/// every row was invalid. Lone CRs now end lines, so the header and the row have lines of
/// their own.
#[test]
fn cr_only_line_ends_take_the_header_the_sniffer_found() {
    let bytes = b"Report,04 Feb 2026\r\rQID,Title,Asset Id\r\r38173,SSL Certificate,9001\r";
    let s = sniff(bytes, true, None).unwrap();
    assert_eq!((s.format, s.header_line), (Format::QualysVmdr, 3));
    let t = read_all(bytes, &s, Limits::default()).unwrap();
    assert_eq!((t.findings.len(), t.invalid.len()), (1, 0), "{:?}", t.invalid);
    assert_eq!((t.findings[0].check_id.as_str(), t.findings[0].asset.as_str()), ("38173", "9001"));
    assert_eq!(t.findings[0].line, 5);
}

/// Found by `reader`: an empty CR-only line after the header was preamble when the source had
/// scanned it before the header was read, and a blank row when it had not: the rows depended
/// on how the upload arrived in chunks. With lone CRs ending lines, the rows are those of the
/// same file with LFs.
#[test]
fn empty_cr_lines_after_the_header_do_not_depend_on_chunking() {
    let bytes = b"asset,check_id,title,severity\r\r\rh,1,t,high\r\r";
    let whole = rows(bytes, bytes.len());
    for chunk in 1..bytes.len() {
        assert_eq!(rows(bytes, chunk), whole, "{chunk}-byte chunks");
    }
    let with_lf: Vec<u8> = bytes.iter().map(|&b| if b == b'\r' { b'\n' } else { b }).collect();
    assert_eq!(whole, rows(&with_lf, with_lf.len()));
    assert!(
        matches!(
            whole.as_slice(),
            [Row::Blank { line: 2 }, Row::Blank { line: 3 }, Row::Findings(_), Row::Blank { line: 5 }]
        ),
        "{whole:?}"
    );
}

/// Found by `reader` in the fix above: the header's names were trimmed twice, and trimming
/// " \u{feff}Plugin ID" again removes a BOM that the sniffer kept, so the header was missed.
#[test]
fn a_header_name_with_a_bom_after_a_space_is_still_the_header() {
    let bytes = b" \xEF\xBB\xBFPlugin ID,Risk,Host,Port,Name\n1,High,h,0,n\n";
    let s = sniff(bytes, true, None).unwrap();
    assert_eq!((s.format, s.header[0].as_str()), (Format::Nessus, "\u{feff}Plugin ID"));
    let t = read_all(bytes, &s, Limits::default()).unwrap();
    assert_eq!((t.findings.len(), t.invalid.len()), (1, 0));
}
