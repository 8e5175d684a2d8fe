//! Every corpus file and every fixture imports, with asserted counts.

use std::time::Duration;

use hexflow_tests::{TestEnv, files};
use shared::Status;

/// (file, format, data rows, findings written, distinct keys, open findings after import)
const CORPUS: &[(&str, &str, u64, u64, u64, i64)] = &[
    ("nessus/nessus-template.csv", "nessus", 5, 5, 5, 5),
    ("nessus/nessus_many_vuln2-all.csv", "nessus", 30, 30, 29, 29),
    ("nessus/nessus_many_vuln2-default.csv", "nessus", 30, 30, 29, 29),
    ("openvas/many_vuln.csv", "openvas", 4, 4, 4, 4),
    ("openvas/no_vuln.csv", "openvas", 0, 0, 0, 0),
    ("openvas/report_detail_v2.csv", "openvas", 1, 1, 1, 1),
    ("openvas/report_using_CVE.csv", "openvas", 43, 43, 43, 43),
    ("openvas/report_using_openVAS.csv", "openvas", 13, 13, 13, 13),
    ("qualys/Qualys_Sample_Report.csv", "qualys", 6, 6, 6, 6),
    ("qualys/empty.csv", "qualys", 0, 0, 0, 0),
    ("qualys_pci/many_finding.csv", "qualys_pci", 4, 4, 4, 4),
    ("qualys_pci/monthly_pci_issue6932.csv", "qualys_pci", 1, 1, 1, 1),
    ("qualys_vmdr/many_vulns_cve.csv", "qualys_vmdr", 5, 5, 5, OPEN_VMDR_CVE),
    ("qualys_vmdr/many_vulns_qid.csv", "qualys_vmdr", 5, 5, 5, OPEN_VMDR_QID),
    ("qualys_vmdr/one_vuln_no_metadata_cve.csv", "qualys_vmdr", 1, 1, 1, 1),
    ("rapidfire/many_vulns.csv", "rapidfire", 9, 14, 14, 14),
    ("saint/saint_ok.csv", "saint", 5, 5, 3, 3),
    ("tenable_io/nessus_new.csv", "tenable_io_findings", 99, 99, 99, 99),
    ("tenable_io/tenable_many_vuln.csv", "tenable_io", 20, 20, 9, 9),
    ("tenable_sc/issue_11102.csv", "tenable_sc", 3, 3, 3, 3),
    ("tenable_sc/issue_9612.csv", "tenable_sc", 3, 3, 3, 3),
    ("tenable_sc/nessus_many_vuln.csv", "tenable_sc", 4, 4, 4, 4),
    ("tenable_was/nessus_was_many_vuln.csv", "tenable_was", 5, 5, 5, 5),
    ("tenable_was/nessus_was_no_vuln.csv", "tenable_was", 0, 0, 0, 0),
];

/// VMDR exports carry their own status; each file has one FIXED detection, which is not opened.
const OPEN_VMDR_CVE: i64 = 4;
const OPEN_VMDR_QID: i64 = 4;

/// (fixture, format, data rows, invalid rows, distinct keys, open findings)
const FIXTURES: &[(&str, &str, u64, u64, u64, i64)] = &[
    ("bom_nessus.csv", "nessus", 4, 0, 3, 3),
    ("crlf_nessus.csv", "nessus", 3, 0, 3, 3),
    ("latin1_generic.csv", "generic", 3, 0, 3, 2),
    ("preamble_qualys.csv", "qualys", 4, 0, 4, 3),
    ("semicolon_generic.csv", "generic", 3, 0, 3, 3),
    ("generic.csv", "generic", 6, 1, 5, 4),
    ("rapid7_insightvm.csv", "rapid7", 12, 0, 12, 11),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_file_imports_with_the_expected_counts() {
    let mut failures = Vec::new();
    for &(file, format, rows, findings, keys, open) in CORPUS {
        let env = TestEnv::start().await;
        let gateway = env.gateway().await;
        let _worker = env.worker().await;
        let bytes =
            std::fs::read(files::corpus_dir().join(file)).unwrap_or_else(|e| panic!("reading corpus {file}: {e}"));
        let (status, body) = gateway.upload(bytes, file, &[]).await;
        assert_eq!(status, 202, "{file}: {body}");
        assert_eq!(body["format"], format, "{file} detected as {}", body["format"]);
        let id = body["sessionId"].as_str().unwrap().parse().unwrap();
        let done = env.wait_for_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(done.status, Status::Completed, "{file}: {:#?}", done.error);
        let s = done.summary.expect("a completed import has a summary");
        let stored = env.scalar("SELECT count(*) FROM vulnerabilities WHERE state = 'open'").await;
        let got = (s.rows, s.validation_errors, findings - s.skipped_duplicates, stored);
        let want = (rows, 0, keys, open);
        println!(
            "{file:45} rows {:>3} invalid {} keys {:>3} open {:>3} new {:>3} dup {}",
            got.0, got.1, got.2, got.3, s.new, s.skipped_duplicates
        );
        if got != want {
            failures.push(format!("{file}: got (rows, invalid, keys, open) {got:?}, want {want:?}"));
        }
        assert_eq!(s.new as i64, stored, "{file}: every open finding is new on an empty database");
        assert!(!env.staging_exists(id).await, "{file}: staging dropped");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_imports_with_the_expected_counts() {
    let mut failures = Vec::new();
    for &(file, format, rows, invalid, keys, open) in FIXTURES {
        let env = TestEnv::start().await;
        let gateway = env.gateway().await;
        let _worker = env.worker().await;
        let (status, body) = gateway.upload(files::fixture(file), file, &[]).await;
        assert_eq!(status, 202, "{file}: {body}");
        assert_eq!(body["format"], format, "{file}");
        let id = body["sessionId"].as_str().unwrap().parse().unwrap();
        let done = env.wait_for_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(done.status, Status::Completed, "{file}: {:#?}", done.error);
        let s = done.summary.unwrap();
        let stored = env.scalar("SELECT count(*) FROM vulnerabilities WHERE state = 'open'").await;
        let distinct = env
            .scalar("SELECT count(*) FROM (SELECT DISTINCT asset, check_id, port, protocol FROM vulnerabilities) k")
            .await;
        println!(
            "{file:25} rows {} invalid {} open {stored} new {} dup {}",
            s.rows, s.validation_errors, s.new, s.skipped_duplicates
        );
        let got = (s.rows, s.validation_errors, stored);
        if got != (rows, invalid, open) || distinct > keys as i64 {
            failures.push(format!(
                "{file}: got (rows, invalid, open) {got:?} distinct {distinct}, want {:?} keys {keys}",
                (rows, invalid, open)
            ));
        }
        let recorded = env.scalar(&format!("SELECT count(*) FROM import_row_errors WHERE import_id = '{id}'")).await;
        assert_eq!(recorded, invalid as i64, "{file}: invalid rows are recorded");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin1_text_is_stored_as_the_right_characters() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let id = gateway.upload_ok(files::fixture("latin1_generic.csv"), "latin1.csv", &[]).await;
    assert_eq!(env.wait_for_terminal(id, Duration::from_secs(30)).await.status, Status::Completed);
    let all: String = sqlx::query_scalar(
        "SELECT string_agg(title || ' ' || description, ' | ' ORDER BY check_id) || ' ' ||
                (SELECT string_agg(asset, ' ') FROM vulnerabilities) FROM scanner_checks",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    for expected in ["srv-münchen-01", "Übertragung", "défaillant", "(€)", "– “smart quotes”"] {
        assert!(all.contains(expected), "{expected} missing from {all}");
    }
    assert!(!all.contains('\u{FFFD}'), "no replacement characters: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_cells_are_stored_verbatim_as_text() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let id = gateway.upload_ok(files::fixture("generic.csv"), "generic.csv", &[]).await;
    assert_eq!(env.wait_for_terminal(id, Duration::from_secs(30)).await.status, Status::Completed);
    let title: String = sqlx::query_scalar("SELECT title FROM scanner_checks WHERE check_id = 'HX-0001'")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(title, "=cmd|' /C calc'!A0");
    let output: String = sqlx::query_scalar("SELECT output FROM vulnerabilities WHERE check_id = 'HX-0001'")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(output, "+SUM(A1:A9)");
}
