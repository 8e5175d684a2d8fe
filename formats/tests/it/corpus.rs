//! Every file of the real corpus: detected format and the numbers of a full read.

use std::collections::BTreeSet;
use std::path::PathBuf;

use formats::{Format, Limits};

use crate::support::{Chunked, corpus_dir, import, read_all, sniff_bytes};

/// One corpus file and what a full read must give.
pub struct Expect {
    pub file: &'static str,
    pub format: Format,
    /// Non-blank data records (valid + invalid).
    pub records: usize,
    pub findings: usize,
    /// Blank records: empty lines outside quotes plus all-empty records (`,,,`).
    pub blank: usize,
    pub invalid: usize,
    /// Distinct (asset, check_id, port, protocol).
    pub keys: usize,
}

const fn e(
    file: &'static str,
    format: Format,
    records: usize,
    findings: usize,
    blank: usize,
    invalid: usize,
    keys: usize,
) -> Expect {
    Expect { file, format, records, findings, blank, invalid, keys }
}

/// The corpus expectation table (also in `docs/formats.md`).
pub const CORPUS: &[Expect] = &[
    e("nessus/nessus-template.csv", Format::Nessus, 5, 5, 0, 0, 5),
    e("nessus/nessus_many_vuln2-all.csv", Format::Nessus, 30, 30, 0, 0, 29),
    e("nessus/nessus_many_vuln2-default.csv", Format::Nessus, 30, 30, 0, 0, 29),
    e("openvas/many_vuln.csv", Format::Greenbone, 4, 4, 0, 0, 4),
    e("openvas/no_vuln.csv", Format::Greenbone, 0, 0, 0, 0, 0),
    e("openvas/report_detail_v2.csv", Format::Greenbone, 1, 1, 0, 0, 1),
    e("openvas/report_using_CVE.csv", Format::Greenbone, 43, 43, 0, 0, 43),
    e("openvas/report_using_openVAS.csv", Format::Greenbone, 13, 13, 0, 0, 13),
    e("qualys/Qualys_Sample_Report.csv", Format::QualysVm, 6, 6, 0, 0, 6),
    e("qualys/empty.csv", Format::QualysVm, 0, 0, 2, 0, 0),
    e("qualys_pci/many_finding.csv", Format::QualysPci, 4, 4, 0, 0, 4),
    e("qualys_pci/monthly_pci_issue6932.csv", Format::QualysPci, 1, 1, 0, 0, 1),
    e("qualys_vmdr/many_vulns_cve.csv", Format::QualysVmdr, 5, 5, 0, 0, 5),
    e("qualys_vmdr/many_vulns_qid.csv", Format::QualysVmdr, 5, 5, 0, 0, 5),
    e("qualys_vmdr/one_vuln_no_metadata_cve.csv", Format::QualysVmdr, 1, 1, 0, 0, 1),
    e("rapidfire/many_vulns.csv", Format::RapidFire, 9, 14, 0, 0, 14),
    e("saint/saint_ok.csv", Format::Saint, 5, 5, 0, 0, 3),
    e("tenable_io/nessus_new.csv", Format::TenableIoFindings, 99, 99, 0, 0, 99),
    e("tenable_io/tenable_many_vuln.csv", Format::TenableIo, 20, 20, 2, 0, 9),
    e("tenable_sc/issue_11102.csv", Format::TenableSc, 3, 3, 0, 0, 3),
    e("tenable_sc/issue_9612.csv", Format::TenableSc, 3, 3, 0, 0, 3),
    e("tenable_sc/nessus_many_vuln.csv", Format::TenableSc, 4, 4, 529, 0, 4),
    e("tenable_was/nessus_was_many_vuln.csv", Format::TenableWas, 5, 5, 24, 0, 5),
    e("tenable_was/nessus_was_no_vuln.csv", Format::TenableWas, 0, 0, 0, 0, 0),
];

fn corpus_files() -> BTreeSet<String> {
    let root = corpus_dir();
    let mut out = BTreeSet::new();
    for dir in std::fs::read_dir(&root).expect("corpus dir (set HEXFLOW_CORPUS_DIR)") {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f: PathBuf = f.unwrap().path();
            if f.extension().is_some_and(|x| x == "csv") {
                out.insert(f.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out
}

#[test]
fn the_table_covers_every_corpus_file() {
    let table: BTreeSet<String> = CORPUS.iter().map(|e| e.file.to_owned()).collect();
    assert_eq!(corpus_files(), table);
    assert_eq!(table.len(), 24);
}

#[test]
fn every_corpus_file_is_detected_and_read_completely() {
    println!(
        "| {:42} | {:19} | {:>7} | {:>8} | {:>5} | {:>7} | {:>4} |",
        "file", "format", "records", "findings", "blank", "invalid", "keys"
    );
    println!("|{:-<44}|{:-<21}|{:->9}|{:->10}|{:->7}|{:->9}|{:->6}|", "", "", "", "", "", "", "");
    let mut failures = Vec::new();
    for exp in CORPUS {
        let (sniffed, tally) = import(&corpus_dir().join(exp.file));
        let got = (
            sniffed.format,
            tally.records,
            tally.findings.len(),
            tally.blank,
            tally.invalid.len(),
            tally.distinct_keys(),
        );
        println!(
            "| {:42} | {:19} | {:>7} | {:>8} | {:>5} | {:>7} | {:>4} |",
            exp.file,
            got.0.name(),
            got.1,
            got.2,
            got.3,
            got.4,
            got.5
        );
        let want = (exp.format, exp.records, exp.findings, exp.blank, exp.invalid, exp.keys);
        if got != want {
            failures.push(format!("{}: got {got:?}, want {want:?}; invalid: {:?}", exp.file, tally.invalid));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn byte_by_byte_reading_gives_the_same_findings() {
    for file in ["rapidfire/many_vulns.csv", "qualys_vmdr/many_vulns_qid.csv", "tenable_io/nessus_new.csv"] {
        let bytes = std::fs::read(corpus_dir().join(file)).unwrap();
        let sniffed = sniff_bytes(&bytes, None).unwrap();
        let whole = read_all(&bytes, &sniffed, Limits::default()).unwrap();
        let mut reader =
            formats::ScanReader::new(Chunked { data: &bytes, chunk: 1 }, &sniffed, Limits::default()).unwrap();
        let mut findings = Vec::new();
        while let Some(row) = reader.next_row() {
            if let formats::Row::Findings(f) = row.unwrap() {
                findings.extend(f);
            }
        }
        assert_eq!(findings, whole.findings, "{file}");
    }
}

#[test]
fn mapped_values_follow_each_format() {
    let first = |file: &str| import(&corpus_dir().join(file)).1.findings;

    // Locale damage: CVSS v3 `75` is 7.5 (preferred over v2 `50`), VPR `51` is 5.1.
    let f = &first("nessus/nessus-template.csv")[0];
    assert_eq!((f.cvss, f.vpr, f.severity, f.port), (Some(7.5), Some(5.1), 3, 3389));
    assert_eq!((f.check_id.as_str(), f.cves.as_slice()), ("42873", ["CVE-2016-2183".to_owned()].as_slice()));

    let f = &first("nessus/nessus_many_vuln2-default.csv")[0];
    assert_eq!((f.severity, f.solution.as_str(), f.protocol.as_str()), (0, "", "tcp"));

    let was = first("tenable_was/nessus_was_many_vuln.csv");
    assert_eq!((was[0].severity, was[0].cvss, was[0].port, was[0].protocol.as_str()), (3, Some(7.1), 0, "http"));

    let io = first("tenable_io/tenable_many_vuln.csv");
    assert_eq!((io[0].asset.as_str(), io[0].severity, io[0].vpr, io[0].cvss), ("127.0.0.1", 3, None, Some(7.8)));
    assert_eq!(io[0].first_seen.as_deref(), Some("2023-06-08T01:58:56+00:00"));

    let dotted = first("tenable_io/nessus_new.csv");
    assert_eq!(dotted[0].asset, "aecb524a-c10d-4d41-89d9-fa887ae8fb00");
    assert!(dotted[0].output.starts_with("'\nThe following running daemon"), "kept verbatim");
    assert!(dotted.iter().any(|f| f.cves.len() > 1));

    let sc = first("tenable_sc/nessus_many_vuln.csv");
    assert_eq!(sc[0].first_seen.as_deref(), Some("2021-01-05T10:24:08-07:00"));
    assert!(sc[0].output.starts_with("The following certificates"), "label removed");
    assert!(!first("tenable_sc/issue_11102.csv")[0].solution.is_empty(), "Steps to Remediate");

    let cve = first("openvas/report_using_CVE.csv");
    assert_eq!(
        (cve[0].check_id.as_str(), cve[0].cves.as_slice()),
        ("CVE-2021-26690", ["CVE-2021-26690".to_owned()].as_slice())
    );
    let v2 = &first("openvas/report_detail_v2.csv")[0];
    assert_eq!(v2.last_seen.as_deref(), Some("2025-08-22T16:27:22+02:00"));
    assert_eq!(first("openvas/report_using_openVAS.csv")[1].severity, 0, "Log");

    let q = &first("qualys/Qualys_Sample_Report.csv")[0];
    assert_eq!((q.severity, q.cvss, q.port, q.protocol.as_str()), (4, Some(8.1), 0, ""));
    assert_eq!(q.first_seen.as_deref(), Some("2021-05-13T07:08:28+00:00"));

    let vmdr = first("qualys_vmdr/many_vulns_cve.csv");
    assert_eq!(vmdr.iter().filter(|f| f.fixed).count(), 1);
    assert!(vmdr.iter().all(|f| f.protocol == "tcp" || f.protocol.is_empty()), "'- is no protocol");
    assert_eq!(vmdr[0].last_seen.as_deref(), Some("2026-02-03T07:00:00+00:00"));

    let pci = first("qualys_pci/monthly_pci_issue6932.csv");
    assert_eq!((pci[0].severity, pci[0].last_seen.as_deref()), (2, Some("2022-09-22T13:01:00+00:00")));

    let rf = first("rapidfire/many_vulns.csv");
    assert_eq!((rf[0].port, rf[1].port, rf[0].cvss), (2083, 2087, Some(10.0)));
    assert!(rf[0].solution.starts_with("Update the Apache Tomcat"), "split result re-aligned");
    assert!(rf.iter().any(|f| f.port == 0 && f.protocol.is_empty()), "0/NA");
    assert_eq!(rf[0].last_seen.as_deref(), Some("2024-10-31T00:00:00+00:00"));

    let saint = &first("saint/saint_ok.csv")[0];
    assert_eq!((saint.port, saint.protocol.as_str(), saint.severity), (0, "https", 4));
    assert_eq!(saint.cves, ["CVE-2024-31982"]);
}

#[test]
fn a_forced_format_is_checked_against_the_header() {
    let was = std::fs::read(corpus_dir().join("tenable_was/nessus_was_many_vuln.csv")).unwrap();
    // WAS has every Nessus column, so forcing Nessus is allowed.
    assert_eq!(sniff_bytes(&was, Some(Format::Nessus)).unwrap().format, Format::Nessus);
    let vmdr = std::fs::read(corpus_dir().join("qualys_vmdr/many_vulns_qid.csv")).unwrap();
    let err = sniff_bytes(&vmdr, Some(Format::QualysVm)).unwrap_err();
    assert_eq!(err.code(), "FORMAT_MISMATCH");
    assert!(err.to_string().contains("IP") && err.to_string().contains("qualys_vmdr"), "{err}");
}
