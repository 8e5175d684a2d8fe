//! The merge lifecycle across imports: new, unchanged, updated, resolved, reopened.

use std::time::Duration;

use hexflow_tests::{
    TestEnv,
    files::{self, Row},
};
use shared::{Status, events::Summary};

async fn import(env: &TestEnv, gateway: &hexflow_tests::GatewayHandle, rows: &[Row], scan_date: &str) -> Summary {
    let id = gateway.upload_ok(files::generic_csv(rows), "scan.csv", &[("scanDate", scan_date)]).await;
    let done = env.wait_for_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    done.summary.unwrap()
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
    // The same finding written once per CVE, as Nessus does.
    let rows = vec![Row::new("h1", "C1", 443), Row::new("h1", "C1", 443), Row::new("h1", "C2", 22)];
    let mut csv = String::from_utf8(files::generic_csv(&rows)).unwrap();
    csv = csv.replacen("CVE-2024-0443", "CVE-2024-1111", 1);
    let id = gateway.upload_ok(csv.into_bytes(), "dup.csv", &[]).await;
    let done = env.wait_for_terminal(id, Duration::from_secs(30)).await;
    let s = done.summary.unwrap();
    assert_eq!((s.rows, s.new, s.skipped_duplicates), (3, 2, 1));
    let cves: Vec<String> =
        sqlx::query_scalar("SELECT unnest(cves) FROM vulnerabilities WHERE check_id = 'C1' ORDER BY 1")
            .fetch_all(&env.db)
            .await
            .unwrap();
    assert_eq!(cves, ["CVE-2024-0443", "CVE-2024-1111"]);
}
