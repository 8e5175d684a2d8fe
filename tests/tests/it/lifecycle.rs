//! The merge lifecycle across imports: new, unchanged, updated, resolved, reopened.

use std::time::Duration;

use hexflow_tests::{
    TestEnv,
    files::{self, Row},
};
use shared::{Status, events::Summary};

async fn import(env: &TestEnv, gateway: &hexflow_tests::GatewayHandle, rows: &[Row], scan_date: &str) -> Summary {
    import_bytes(env, gateway, files::generic_csv(rows), scan_date).await
}

fn scan(hosts: &[&str], checks: &[&str]) -> Vec<Row> {
    hosts.iter().flat_map(|h| checks.iter().map(move |c| Row::new(h, c, 443))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimporting_the_same_file_changes_nothing() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let rows = scan(&["h1", "h2"], &["C1", "C2", "C3"]);
    let first = import(&env, &gateway, &rows, "2026-01-01").await;
    assert_eq!((first.new, first.unchanged), (6, 0));
    let before = env.findings_dump().await;

    let again = import(&env, &gateway, &rows, "2026-01-01").await;

    assert_eq!((again.new, again.updated, again.unchanged, again.resolved, again.reopened), (0, 0, 6, 0, 0));
    assert_eq!(env.findings_dump().await, before, "the final tables are unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_findings_resolve_and_come_back_reopened() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    import(&env, &gateway, &scan(&["h1", "h2"], &["C1", "C2", "C3"]), "2026-01-01").await;

    // A week later C3 is gone from both hosts and C1 changed on h1.
    let mut week2 = scan(&["h1", "h2"], &["C1", "C2"]);
    week2[0].output = "new evidence".into();
    let s2 = import(&env, &gateway, &week2, "2026-01-08").await;
    assert_eq!((s2.new, s2.updated, s2.unchanged, s2.resolved, s2.reopened), (0, 1, 3, 2, 0));
    assert_eq!(
        env.scalar("SELECT count(*) FROM vulnerabilities WHERE state = 'resolved' AND check_id = 'C3'").await,
        2
    );

    // C3 is back on h2: reopened; still absent on h1.
    let mut week3 = week2.clone();
    week3.push(Row::new("h2", "C3", 443));
    let s3 = import(&env, &gateway, &week3, "2026-01-15").await;
    assert_eq!((s3.new, s3.updated, s3.unchanged, s3.resolved, s3.reopened), (0, 0, 4, 0, 1));
    let state: String = sqlx::query_scalar("SELECT state FROM vulnerabilities WHERE asset = 'h2' AND check_id = 'C3'")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(state, "open");
    let last_seen: String = sqlx::query_scalar(
        "SELECT to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM vulnerabilities WHERE asset = 'h1' AND check_id = 'C2'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(last_seen, "2026-01-15", "last_seen follows the scan date");
}

/// A generic-format scan of host h1 with one finding per `(check, severity, cves, cvss, output)`.
fn detailed(rows: &[(&str, &str, &str, &str, &str)]) -> Vec<u8> {
    let mut out = format!("{}\n", files::GENERIC_HEADER);
    for (check, severity, cves, cvss, output) in rows {
        out.push_str(&format!("h1,{check},Check {check},{severity},443,tcp,\"{cves}\",{cvss},d,s,\"{output}\"\n"));
    }
    out.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_detail_the_lifecycle_compares_makes_a_finding_updated_on_its_own() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let base = ("high", "CVE-2024-0001, CVE-2024-0002", "7.5", "evidence");
    let checks = ["SEV", "CVSS", "NOCVSS", "MORECVE", "NOCVE", "OUT", "SAME"];
    let week1: Vec<_> = checks.iter().map(|c| (*c, base.0, base.1, base.2, base.3)).collect();
    let first = import_bytes(&env, &gateway, detailed(&week1), "2026-01-01").await;
    assert_eq!(first.new, 7);

    // Each finding but the last differs from last week's in one detail only.
    let week2 = [
        ("SEV", "medium", base.1, base.2, base.3),
        ("CVSS", base.0, base.1, "7.6", base.3),
        ("NOCVSS", base.0, base.1, "", base.3),
        ("MORECVE", base.0, "CVE-2024-0001, CVE-2024-0002, CVE-2024-0003", base.2, base.3),
        ("NOCVE", base.0, "", base.2, base.3),
        ("OUT", base.0, base.1, base.2, "other evidence"),
        ("SAME", base.0, base.1, base.2, base.3),
    ];
    let s2 = import_bytes(&env, &gateway, detailed(&week2), "2026-01-08").await;
    assert_eq!((s2.new, s2.updated, s2.unchanged, s2.resolved, s2.reopened), (0, 6, 1, 0, 0), "{s2:?}");

    // The details as stored compare equal to the same scan read again.
    let s3 = import_bytes(&env, &gateway, detailed(&week2), "2026-01-15").await;
    assert_eq!((s3.new, s3.updated, s3.unchanged, s3.resolved, s3.reopened), (0, 0, 7, 0, 0), "{s3:?}");
}

async fn import_bytes(
    env: &TestEnv,
    gateway: &hexflow_tests::GatewayHandle,
    bytes: Vec<u8>,
    scan_date: &str,
) -> Summary {
    let id = gateway.upload_ok(bytes, "scan.csv", &[("scanDate", scan_date)]).await;
    let done = env.wait_for_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    done.summary.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_other_hosts_resolves_nothing_elsewhere() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    import(&env, &gateway, &scan(&["h1", "h2"], &["C1", "C2"]), "2026-01-01").await;

    let other = import(&env, &gateway, &scan(&["h9"], &["C1"]), "2026-01-08").await;

    assert_eq!((other.new, other.resolved), (1, 0));
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities WHERE state = 'open'").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_repeating_a_finding_merge_into_one_with_a_cve_list() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    // The same finding once per CVE, as Nessus writes it: twice in a row, and once more later.
    let csv = format!(
        "{}\nh1,C1,T1,low,443,tcp,CVE-2024-0001,4.0,d,s,first\nh1,C1,T1,high,443,tcp,CVE-2024-0002,7.5,d,s,second\n\
         h1,C2,T2,low,22,tcp,,,d,s,o\nh1,C1,T1,medium,443,tcp,\"CVE-2024-0003, CVE-2024-0001\",5.0,d,s,third\n",
        files::GENERIC_HEADER
    );
    let id = gateway.upload_ok(csv.into_bytes(), "dup.csv", &[]).await;
    let done = env.wait_for_terminal(id, Duration::from_secs(30)).await;
    let s = done.summary.unwrap();
    assert_eq!((s.rows, s.new, s.skipped_duplicates), (4, 2, 2));
    let (cves, severity, cvss, output): (Vec<String>, i16, f32, String) =
        sqlx::query_as("SELECT cves, severity, cvss, output FROM vulnerabilities WHERE check_id = 'C1'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(cves, ["CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0003"]);
    assert_eq!((severity, cvss, output.as_str()), (3, 7.5, "first"), "highest scores, first row's output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folding_while_staging_gives_the_same_findings_as_folding_in_the_merge() {
    // Adjacent repeats are folded while staging; scattered ones by the merge. Same file, two
    // orders: the findings must not depend on which path folded them.
    let rows: Vec<Row> = (0..30).map(|i| Row::new(&format!("h{}", i % 3), &format!("C{}", i % 5), 80)).collect();
    let mut sorted = rows.clone();
    sorted.sort_by(|a, b| (&a.asset, &a.check_id).cmp(&(&b.asset, &b.check_id)));
    let mut dumps = Vec::new();
    for order in [rows, sorted] {
        let env = TestEnv::start().await;
        let gateway = env.gateway().await;
        let _worker = env.worker().await;
        let s = import(&env, &gateway, &order, "2026-01-01").await;
        assert_eq!((s.rows, s.new, s.skipped_duplicates), (30, 15, 15));
        dumps.push(env.findings_dump().await);
    }
    assert_eq!(dumps[0], dumps[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_repeating_after_findings_were_written_early_is_still_folded() {
    // A first import writes its findings slice by slice while loading; a key that comes back
    // after some slices are written must still fold into one finding, as the merge folds it.
    let env = TestEnv::start().await;
    let path = env.dir().join("repeat-late.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    let rows = files::write_nessus_file(&path, 12 * 1024 * 1024);
    // The file's first finding (host 10.0.0.1, plugin 10000, port 1) again, at the end.
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(
        &mut file,
        b"10000,CVE-2099-00001,5.0,Medium,10.0.0.1,tcp,1,\"Plugin 10000 name, with comma\",\"Synopsis of 10000\",\"Late\",\"Apply\",https://example.com/10000,\"late output\"\n",
    )
    .unwrap();
    let gateway = env.gateway().await;
    let mut worker = env.worker_process(&[("HEXFLOW_WORKER_EARLY_SLICE_BYTES", "1048576")]);
    worker.wait_ready(Duration::from_secs(30)).await;
    let (status, body) = gateway.upload_path(&path, &[]).await;
    assert_eq!(status, 202, "{body}");
    let id = body["sessionId"].as_str().unwrap().parse().unwrap();
    let done = env.wait_for_terminal(id, Duration::from_secs(120)).await;

    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    let s = done.summary.unwrap();
    assert_eq!(s.rows, rows + 1);
    assert_eq!(s.new + s.skipped_duplicates, rows + 1);
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await as u64, s.new);
    let (cves, output): (Vec<String>, String) = sqlx::query_as(
        "SELECT cves, output FROM vulnerabilities WHERE asset = '10.0.0.1' AND check_id = '10000' AND port = 1",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert!(cves.len() >= 2 && cves.contains(&"CVE-2099-00001".to_string()), "CVEs united: {cves:?}");
    assert_ne!(output, "late output", "the first row's output is kept");
    let log = worker.log_text();
    assert!(log.contains("writing them while the file loads"), "slices were written early");
    assert!(log.contains("merged after loading instead"), "the early writes were given up");
}

/// A generic-format scan whose rows carry a state (`open` or `fixed`).
fn with_states(rows: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut out = String::from("asset,check_id,title,severity,port,protocol,output,state\n");
    for (asset, check, state) in rows {
        out.push_str(&format!("{asset},{check},Check {check},high,443,tcp,,{state}\n"));
    }
    out.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_first_seen_already_fixed_is_recorded_and_counted_as_resolved() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let upload = |bytes: Vec<u8>, date: &'static str| {
        let gateway = &gateway;
        async move { gateway.upload_ok(bytes, "states.csv", &[("scanDate", date)]).await }
    };
    let mut rows: Vec<(&str, &str, &str)> = ["C1", "C2", "C3", "C4", "C5"].iter().map(|c| ("h1", *c, "open")).collect();
    rows.push(("h1", "C6", "fixed"));

    let id = upload(with_states(&rows), "2026-01-01").await;
    let s = env.wait_for_terminal(id, Duration::from_secs(30)).await.summary.expect("completed");
    assert_eq!((s.rows, s.new, s.resolved, s.unchanged), (6, 5, 1, 0), "every row is counted once: {s:?}");
    let resolved_at: String = sqlx::query_scalar(
        "SELECT to_char(resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM vulnerabilities
         WHERE check_id = 'C6' AND state = 'resolved'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(resolved_at, "2026-01-01", "resolved when the scan saw it fixed");

    // Reported fixed again: unchanged. Then open again: reopened.
    let id = upload(with_states(&rows), "2026-01-08").await;
    let s = env.wait_for_terminal(id, Duration::from_secs(30)).await.summary.expect("completed");
    assert_eq!((s.new, s.resolved, s.unchanged, s.reopened), (0, 0, 6, 0), "{s:?}");
    rows[5].2 = "open";
    let id = upload(with_states(&rows), "2026-01-15").await;
    let s = env.wait_for_terminal(id, Duration::from_secs(30)).await.summary.expect("completed");
    assert_eq!((s.new, s.resolved, s.unchanged, s.reopened), (0, 0, 5, 1), "{s:?}");
}
