//! The project's own fixtures (`tests/fixtures/`): quirks the corpus lacks.

use formats::{Format, Row, TextEncoding};

use crate::support::{Chunked, Tally, fixtures_dir, import};

/// (file, format, records, findings, blank, invalid, distinct keys)
pub const FIXTURES: &[(&str, Format, usize, usize, usize, usize, usize)] = &[
    ("bom_nessus.csv", Format::Nessus, 4, 4, 0, 0, 3),
    ("crlf_nessus.csv", Format::Nessus, 3, 3, 1, 0, 3),
    ("latin1_generic.csv", Format::Generic, 3, 3, 0, 0, 3),
    ("preamble_qualys.csv", Format::QualysVm, 4, 4, 0, 0, 4),
    ("semicolon_generic.csv", Format::Generic, 3, 3, 0, 0, 3),
    ("generic.csv", Format::Generic, 6, 5, 1, 1, 5),
    ("rapid7_insightvm.csv", Format::Rapid7, 12, 12, 0, 0, 12),
    ("rapidfire_service_names.csv", Format::RapidFire, 6, 9, 0, 1, 9),
    ("utf16le_generic.csv", Format::Generic, 3, 3, 1, 0, 3),
    ("utf16be_generic.csv", Format::Generic, 3, 3, 1, 0, 3),
    ("cr_only_generic.csv", Format::Generic, 4, 3, 1, 1, 3),
];

fn load(file: &str) -> (formats::Sniffed, Tally) {
    import(&fixtures_dir().join(file))
}

#[test]
fn every_fixture_gives_its_expected_numbers() {
    for &(file, format, records, findings, blank, invalid, keys) in FIXTURES {
        let (s, t) = load(file);
        let got = (s.format, t.records, t.findings.len(), t.blank, t.invalid.len(), t.distinct_keys());
        assert_eq!(got, (format, records, findings, blank, invalid, keys), "{file}: {:?}", t.invalid);
    }
}

#[test]
fn the_bom_is_stripped_from_the_first_header_name() {
    let (s, t) = load("bom_nessus.csv");
    assert!(s.bom);
    assert_eq!(s.encoding, TextEncoding::Utf8);
    assert_eq!(s.header[0], "Plugin ID");
    assert_eq!(t.findings[0].check_id, "19506");
    assert_eq!(t.findings[0].solution, "", "n/a sentinel");
    // One row per CVE: same key, two CVEs.
    assert_eq!((t.findings[2].cves[0].as_str(), t.findings[3].cves[0].as_str()), ("CVE-2016-2183", "CVE-2016-6329"));
}

#[test]
fn crlf_lines_are_counted_physically() {
    let bytes = std::fs::read(fixtures_dir().join("crlf_nessus.csv")).unwrap();
    let s = crate::support::sniff_bytes(&bytes, None).unwrap();
    let rows: Vec<Row> = formats::ScanReader::new(Chunked { data: &bytes, chunk: 2 }, &s, Default::default())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let lines: Vec<u64> = rows
        .iter()
        .map(|r| match r {
            Row::Findings(f) => f[0].line,
            Row::Blank { line } => *line,
            Row::Invalid(e) => e.line,
        })
        .collect();
    // Record 1 spans lines 2-4 (a cell with CRLFs), line 5 is empty.
    assert_eq!(lines, [2, 5, 6, 7]);
    let Row::Findings(f) = &rows[0] else { panic!("{:?}", rows[0]) };
    assert_eq!(f[0].output, "The remote web server type is :\r\n\r\nnginx/1.18.0");
    let Row::Findings(f) = &rows[3] else { panic!() };
    assert_eq!((f[0].protocol.as_str(), f[0].port, f[0].severity, f[0].cvss), ("icmp", 0, 1, Some(2.1)));
}

#[test]
fn windows_1252_is_transcoded() {
    let (s, t) = load("latin1_generic.csv");
    assert_eq!(s.encoding, TextEncoding::Windows1252);
    let f = &t.findings;
    assert_eq!(f[0].asset, "srv-münchen-01");
    assert_eq!(f[0].title, "Schwachstelle in der Übertragung (TLS)");
    assert_eq!(f[0].description, "Le contrôle d'accès est défaillant – “smart quotes” inclus.");
    assert_eq!(f[1].title, "Kostenpflichtige Lizenz abgelaufen (€)");
    assert_eq!((f[2].asset.as_str(), f[2].fixed), ("café-pos", true));
}

#[test]
fn a_qualys_preamble_is_skipped() {
    let (s, t) = load("preamble_qualys.csv");
    assert_eq!((s.header_line, s.delimiter), (9, b','));
    let f = &t.findings;
    assert_eq!(f.iter().map(|f| f.line).collect::<Vec<_>>(), [10, 12, 13, 14]);
    assert_eq!((f[0].port, f[0].protocol.as_str(), f[0].severity), (22, "tcp", 2));
    assert_eq!(f[1].cves, ["CVE-2022-4450", "CVE-2023-0215", "CVE-2023-0286"]);
    assert_eq!(f[1].first_seen.as_deref(), Some("2024-01-15T02:04:00+00:00"));
    assert_eq!(f[0].last_seen.as_deref(), Some("2024-03-04T02:10:00+00:00"), "M/D/YYYY");
    assert_eq!(f[3].first_seen.as_deref(), Some("2024-01-13T02:04:00+00:00"), "day > 12");
    assert_eq!((f[2].severity, f[2].fixed), (4, true));
}

#[test]
fn semicolon_files_and_decimal_commas() {
    let (s, t) = load("semicolon_generic.csv");
    assert_eq!(s.delimiter, b';');
    let f = &t.findings;
    assert_eq!(
        (f[0].title.as_str(), f[0].cvss, f[0].protocol.as_str()),
        ("Weak TLS ciphers, 3DES enabled", Some(5.9), "tcp")
    );
    assert_eq!((f[1].severity, f[1].fixed), (2, false));
    assert_eq!(f[2].cves, ["CVE-2023-38408", "CVE-2023-48795"]);
}

#[test]
fn generic_formula_cells_stay_verbatim_and_a_bad_port_is_reported() {
    let (_, t) = load("generic.csv");
    let f = &t.findings;
    assert_eq!(f[0].title, "=cmd|' /C calc'!A0");
    assert_eq!(f[0].output, "+SUM(A1:A9)");
    assert_eq!(
        (f[1].description.as_str(), f[1].solution.as_str()),
        ("-2+3 looks like a formula but is text", "@SUM(1,2)")
    );
    assert_eq!((f[0].severity, f[1].severity, f[2].severity), (4, 1, 2));
    assert_eq!(f[2].cves, ["CVE-2011-3389", "CVE-2015-0204"]);
    assert_eq!(
        (f[3].cves.as_slice(), f[3].fixed, f[3].protocol.as_str()),
        (["CVE-2019-9193".to_owned()].as_slice(), true, "tcp")
    );
    assert_eq!((f[4].port, f[4].severity, f[4].first_seen.as_deref()), (0, 0, None));
    let bad = &t.invalid[0];
    assert_eq!((bad.line, bad.column.as_str(), bad.value.as_str(), bad.code), (5, "port", "70000", "INVALID_PORT"));
    assert!(bad.message.contains("0-65535"), "{}", bad.message);
}

#[test]
fn rapid7_levels_result_codes_and_cve_lists() {
    let (_, t) = load("rapid7_insightvm.csv");
    let f = &t.findings;
    assert_eq!(
        (f[0].asset.as_str(), f[0].check_id.as_str(), f[0].port),
        ("10.50.0.21", "tls-server-cert-expired", 443)
    );
    assert_eq!(f[3].cves.len(), 4);
    assert_eq!(f.iter().map(|f| f.severity).collect::<Vec<_>>(), [3, 2, 4, 2, 4, 1, 4, 2, 1, 3, 1, 4]);
    assert_eq!(f.iter().filter(|f| f.fixed).map(|f| f.check_id.as_str()).collect::<Vec<_>>(), ["msft-cve-2024-38063"]);
    assert_eq!((f[5].cvss, f[11].cvss), (Some(2.6), Some(9.8)), "v2 fallback, v3 preferred");
    assert_eq!(f[0].last_seen.as_deref(), Some("2025-01-14T10:22:31+00:00"));
    assert_eq!(f[0].first_seen.as_deref(), Some("2024-12-01T00:00:00+00:00"));
}

#[test]
fn a_nessus_export_without_plugin_id_keys_on_the_name() {
    // The `dati.csv` variant: `;`-delimited, no `Plugin ID`, no `Protocol`.
    let text = "CVE;CVSS;Risk;Host;Port;Name;Synopsis;Description;Solution;See Also;Plugin Output\n\
                CVE-2016-2183;5,0;Medium;192.0.2.10;443;SSL Medium Strength Cipher Suites Supported (SWEET32);s;d;n/a;;o\n\
                ;;None;192.0.2.10;0;Ping the remote host;s;d;n/a;;\n";
    let s = crate::support::sniff_bytes(text.as_bytes(), None).unwrap();
    assert_eq!((s.format, s.delimiter), (Format::Nessus, b';'));
    let t = crate::support::read_all(text.as_bytes(), &s, Default::default()).unwrap();
    let f = &t.findings;
    assert_eq!(f[0].check_id, "name:SSL Medium Strength Cipher Suites Supported (SWEET32)");
    assert_eq!((f[0].port, f[0].protocol.as_str(), f[0].cvss, f[0].severity), (443, "", Some(5.0), 2));
    assert_eq!((f[1].check_id.as_str(), f[1].severity), ("name:Ping the remote host", 0));
}
