//! Files refused at sniff time, fatal read errors, and rows skipped as invalid.

use formats::{Format, Limits, ReadError, Row, ScanReader, sniff};

use crate::support::{read_all, sniff_bytes};

const HEADER: &str =
    "asset,check_id,title,severity,port,protocol,cves,cvss,description,solution,output,first_seen,last_seen,state\n";

#[test]
fn empty_and_whitespace_only_files_are_refused() {
    for input in [&b""[..], b"   \r\n\n\t", b"\xEF\xBB\xBF\n"] {
        let e = sniff(input, true, None).unwrap_err();
        assert_eq!(e.code(), "EMPTY_FILE", "{input:?}");
    }
    assert_eq!(sniff(b"", false, None).unwrap_err().code(), "EMPTY_FILE");
}

#[test]
fn a_png_is_binary() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\x01\0\x08\x06\0\0\0\x5c\x72\xa8\x66";
    let e = sniff(png, true, None).unwrap_err();
    assert_eq!(e.code(), "BINARY_FILE");
    assert!(e.to_string().contains("offset 8"), "{e}");
    assert!(e.expected().contains("CSV text"));
}

#[test]
fn invalid_utf8_next_to_valid_utf8_is_refused_with_its_offset() {
    let mut bytes = b"asset,check_id,title,severity\nh\xC3\xA9,1,caf".to_vec();
    bytes.extend_from_slice(b"\xE9,high\n");
    let e = sniff(&bytes, true, None).unwrap_err();
    assert_eq!(e.code(), "INVALID_ENCODING");
    assert!(e.to_string().contains(&format!("offset {}", bytes.len() - 7)), "{e}");
}

#[test]
fn unknown_columns_list_what_was_found_and_what_is_expected() {
    let e = sniff(b"Hostname,Finding,Score,Whatever\nh,f,1,x\n", true, None).unwrap_err();
    assert_eq!(e.code(), "UNKNOWN_COLUMNS");
    assert!(e.to_string().contains("\"Hostname\", \"Finding\", \"Score\", \"Whatever\""), "{e}");
    let expected = e.expected();
    for f in Format::ALL {
        assert!(expected.contains(&format!("  {} (", f.name())), "{expected}");
    }
    assert!(expected.contains("generic (asset, check_id, title, severity)"));
}

#[test]
fn prose_has_no_header() {
    let e = sniff(b"Dear team,\nplease find the scan attached.\n", true, None).unwrap_err();
    assert_eq!((e.code(), e.to_string().as_str()), ("NO_HEADER", "no header row found in the first 42 bytes"));
}

#[test]
fn a_header_beyond_the_prefix_is_not_found() {
    let mut text = "\"Report\"\n".repeat(200);
    text.push_str(HEADER);
    let e = sniff(&text.as_bytes()[..1000], false, None).unwrap_err();
    assert_eq!(e.code(), "NO_HEADER");
}

#[test]
fn a_first_line_longer_than_the_prefix_is_refused() {
    let prefix = vec![b'a'; 1 << 20];
    let e = sniff(&prefix, false, None).unwrap_err();
    assert_eq!(e.code(), "LINE_TOO_LONG");
}

#[test]
fn a_forced_format_that_does_not_match_is_refused() {
    let e = sniff(HEADER.as_bytes(), true, Some(Format::QualysPci)).unwrap_err();
    assert_eq!(e.code(), "FORMAT_MISMATCH");
    let msg = e.to_string();
    assert!(msg.contains("qualys_pci") && msg.contains("VULN TITLE") && msg.contains("generic"), "{msg}");
}

#[test]
fn a_10_mb_line_stops_the_import() {
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"h,1,ok,high,,,,,,,,,,\n");
    bytes.extend_from_slice(b"h,2,");
    bytes.extend(std::iter::repeat_n(b'x', 10 << 20));
    bytes.extend_from_slice(b",high,,,,,,,,,,\n");
    let s = sniff_bytes(&bytes, None).unwrap();
    let mut reader = ScanReader::new(bytes.as_slice(), &s, Limits::default()).unwrap();
    assert!(matches!(reader.next_row(), Some(Ok(Row::Findings(_)))), "rows before it are read");
    let err = reader.next_row().unwrap().unwrap_err();
    assert_eq!((err.code(), err.line()), ("LINE_TOO_LONG", Some(3)));
    assert!(matches!(err, ReadError::LineTooLong { limit: 4194304, .. }));
    assert!(reader.next_row().is_none(), "fused after a fatal error");
}

#[test]
fn a_huge_cell_is_an_invalid_row_and_the_import_goes_on() {
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"h,1,\"");
    for _ in 0..20_000 {
        bytes.extend_from_slice(&[b'y'; 99]);
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(b"\",high,,,,,,,,,,\nh,2,fine,low,,,,,,,,,,\n");
    let s = sniff_bytes(&bytes, None).unwrap();
    let t = read_all(&bytes, &s, Limits::default()).unwrap();
    assert_eq!((t.records, t.findings.len()), (2, 1));
    let e = &t.invalid[0];
    assert_eq!((e.code, e.line, e.column.as_str(), e.value.chars().count()), ("FIELD_TOO_LONG", 2, "title", 200));
    assert_eq!(t.findings[0].line, 20_003);
}

#[test]
fn a_record_that_never_ends_is_fatal() {
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"h,1,\"");
    for _ in 0..2_000 {
        bytes.extend_from_slice(&[b'z'; 99]);
        bytes.push(b'\n');
    }
    let s = sniff_bytes(&bytes, None).unwrap();
    let small = Limits { max_line_bytes: 1000, max_field_bytes: 1000 };
    let err = read_all(&bytes, &s, small).unwrap_err();
    assert_eq!((err.code(), err.line()), ("RECORD_TOO_LONG", Some(2)));
    let err = read_all(&bytes, &s, Limits::default()).unwrap_err();
    assert_eq!((err.code(), err.line()), ("UNTERMINATED_QUOTE", Some(2)));
}

#[test]
fn invalid_utf8_in_a_record_is_an_invalid_row() {
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice("h\u{e9},1,café,high,,,,,,,,,,\n".as_bytes());
    bytes.extend_from_slice(b"h,2,caf\xE9,high,,,,,,,,,,\nh,3,ok,low,,,,,,,,,,\n");
    // The gateway only sniffs a prefix; the bad byte lies beyond it.
    let s = sniff(&bytes[..HEADER.len() + 10], false, None).unwrap();
    let t = read_all(&bytes, &s, Limits::default()).unwrap();
    assert_eq!(t.findings.len(), 2);
    let e = &t.invalid[0];
    assert_eq!((e.code, e.line, e.column.as_str(), e.value.as_str()), ("INVALID_ENCODING", 3, "title", "caf\u{FFFD}"));
}

#[test]
fn rows_without_asset_or_check_id_or_with_spilled_cells_are_invalid() {
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(
        b" ,1,t,high\nh, ,t,high\nh,1,t,high,,,,,,,,,,,oops\nh,1,t,bogus\nh,1,t,high,,,,99.5\nh,1,t,high,,,,,,,,,,,,\n",
    );
    let s = sniff_bytes(&bytes, None).unwrap();
    let t = read_all(&bytes, &s, Limits::default()).unwrap();
    let codes: Vec<(u64, &str, &str)> = t.invalid.iter().map(|e| (e.line, e.column.as_str(), e.code)).collect();
    assert_eq!(
        codes,
        [
            (2, "asset", "MISSING_VALUE"),
            (3, "check_id", "MISSING_VALUE"),
            (4, "#15", "WRONG_FIELD_COUNT"),
            (5, "severity", "INVALID_SEVERITY"),
            (6, "cvss", "INVALID_NUMBER"),
        ]
    );
    assert_eq!(t.findings.len(), 1, "short rows are padded, empty extra cells are fine");
}
