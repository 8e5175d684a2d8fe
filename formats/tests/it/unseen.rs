//! Exports the corpus does not have, met in the field: RapidFire port lists with service
//! names, UTF-16 "Unicode text" from Excel, and old-Mac CR-only line ends.

use formats::{Format, Limits, Row, ScanReader, TextEncoding};

use crate::support::{Chunked, fixtures_dir, import, sniff_bytes};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every row of `bytes`, read in `chunk`-byte pieces.
fn rows(bytes: &[u8], chunk: usize) -> Vec<Row> {
    let sniffed = sniff_bytes(bytes, None).unwrap();
    let reader = ScanReader::new(Chunked { data: bytes, chunk }, &sniffed, Limits::default()).unwrap();
    reader.collect::<Result<Vec<Row>, _>>().unwrap()
}

/// (line, what the row is) for each row.
fn lines(rows: &[Row]) -> Vec<(u64, &'static str)> {
    rows.iter()
        .map(|r| match r {
            Row::Findings(f) => (f[0].line, "findings"),
            Row::Blank { line } => (*line, "blank"),
            Row::Invalid(e) => (e.line, "invalid"),
        })
        .collect()
}

#[test]
fn rapidfire_service_names_are_labels_not_ports() {
    let (s, t) = import(&fixtures_dir().join("rapidfire_service_names.csv"));
    assert_eq!(s.format, Format::RapidFire);
    let ports = |line: u64| -> Vec<(i32, &str)> {
        t.findings.iter().filter(|f| f.line == line).map(|f| (f.port, f.protocol.as_str())).collect()
    };
    // Alone, in a list after a /tcp port, in a list of several names, and bare.
    assert_eq!(ports(2), [(443, "")]);
    assert_eq!(ports(3), [(80, "tcp"), (443, "tcp")]);
    assert_eq!(ports(4), [(22, "tcp"), (3389, "tcp"), (8443, "")]);
    assert_eq!(ports(5), [(25, "tcp"), (587, "tcp")]);
    assert_eq!(ports(6), [(0, "")]);
}

#[test]
fn a_rapidfire_cell_with_a_service_name_and_no_port_is_an_invalid_row_naming_it() {
    let (_, t) = import(&fixtures_dir().join("rapidfire_service_names.csv"));
    let [e] = t.invalid.as_slice() else { panic!("one invalid row expected: {:?}", t.invalid) };
    assert_eq!((e.line, e.column.as_str(), e.value.as_str(), e.code), (7, "Ports", "(telnet)", "INVALID_PORT"));
}

#[test]
fn a_row_error_names_its_line_once() {
    let (_, t) = import(&fixtures_dir().join("generic.csv"));
    let e = &t.invalid[0];
    assert_eq!(e.message, "column \"port\": got \"70000\", expected an integer port 0-65535 (or port/protocol)");
    assert_eq!(e.to_string(), format!("line 5: {}", e.message));
}

#[test]
fn utf16_exports_with_a_bom_are_decoded_in_both_byte_orders() {
    for (file, encoding) in
        [("utf16le_generic.csv", TextEncoding::Utf16Le), ("utf16be_generic.csv", TextEncoding::Utf16Be)]
    {
        let (s, t) = import(&fixtures_dir().join(file));
        assert_eq!((s.encoding, s.bom, s.delimiter, s.header_line), (encoding, true, b'\t', 1), "{file}");
        assert_eq!(s.header[0], "asset", "{file}: the BOM is not part of the first name");
        let assets: Vec<&str> = t.findings.iter().map(|f| f.asset.as_str()).collect();
        assert_eq!(assets, ["café.example.test", "日本.example.test", "db.example.test"], "{file}");
        assert_eq!(t.findings[0].title, "Weak cipher suites – 3DES");
        assert_eq!(t.findings[0].cvss, Some(5.9));
        assert_eq!(t.findings[1].title, "Default page 😀");
        assert_eq!(t.findings[1].output, "line one\r\nline two");
    }
}

#[test]
fn utf16_reads_the_same_in_any_chunking() {
    for file in ["utf16le_generic.csv", "utf16be_generic.csv"] {
        let bytes = fixture(file);
        let whole = rows(&bytes, bytes.len());
        assert_eq!(lines(&whole), [(2, "findings"), (3, "findings"), (5, "blank"), (6, "findings")], "{file}");
        for chunk in [1, 2, 3, 5, 64] {
            assert_eq!(rows(&bytes, chunk), whole, "{file} in {chunk}-byte chunks");
        }
    }
}

#[test]
fn a_utf16_prefix_cut_anywhere_sniffs_like_the_whole_file() {
    let bytes = fixture("utf16le_generic.csv");
    let whole = sniff_bytes(&bytes, None).unwrap();
    for cut in 200..bytes.len() {
        let s = formats::sniff(&bytes[..cut], false, None).unwrap();
        assert_eq!(
            (s.encoding, s.format, s.header),
            (whole.encoding, whole.format, whole.header.clone()),
            "cut at {cut}"
        );
    }
}

#[test]
fn cr_only_line_ends_give_each_row_its_own_line() {
    let bytes = fixture("cr_only_generic.csv");
    let whole = rows(&bytes, bytes.len());
    let expected = [(2, "findings"), (3, "findings"), (5, "blank"), (6, "invalid"), (7, "findings")];
    assert_eq!(lines(&whole), expected);
    for chunk in 1..16 {
        assert_eq!(rows(&bytes, chunk), whole, "{chunk}-byte chunks");
    }
    let Row::Invalid(e) = &whole[3] else { unreachable!() };
    assert_eq!((e.line, e.column.as_str(), e.value.as_str()), (6, "port", "70000"));
    let Row::Findings(f) = &whole[1] else { unreachable!() };
    assert_eq!(f[0].output, "first line\rsecond line");
}
