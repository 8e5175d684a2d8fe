//! Weekly rescans: a generated scan, the same file again, next week's scan (findings gone,
//! changed and new) and the first file back again give exactly the lifecycle counts the
//! generator expects; a cancel or a killed worker in the middle of a rescan's merge leaves the
//! final tables as they were, and the retry gives the same counts; the rescan, byte-order and
//! page-index migrations keep the findings a database already holds.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use bench::{
    generate::{self, GenerateArgs},
    weeks::{self, Counts, Expected, Mix},
};
use hexflow_tests::{GatewayHandle, TestEnv};
use shared::{Phase, ProgressEvent, Status};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(120);
/// Scan dates a week apart, as weekly scans are.
const WEEKS: [&str; 3] = ["2026-01-15", "2026-01-22", "2026-01-29"];

/// A generated series in the test's directory: the first file, next week's and the counts.
struct Series {
    first: PathBuf,
    next_week: PathBuf,
    expected: Expected,
}

/// Writes a scan of `rows` rows over `hosts` hosts and next week's (5 % gone, 10 % changed,
/// 5 % new).
fn series(env: &TestEnv, rows: u64, hosts: u64) -> Series {
    std::fs::create_dir_all(env.dir()).unwrap();
    let first = env.dir().join("week1.csv");
    let args = GenerateArgs {
        rows,
        out: first.clone(),
        seed: 7,
        hosts,
        cve_percent: 70,
        output_max: 600,
        next_week: Some(Mix { gone: 5.0, changed: 10.0, new: 5.0 }),
    };
    generate::run(&args).unwrap();
    let expected = Expected::read(&first).unwrap();
    Series { next_week: weeks::sidecars(&first).0, first, expected }
}

/// Uploads `path` with `scan_date` and waits for its terminal event.
async fn import(env: &TestEnv, gateway: &GatewayHandle, path: &Path, scan_date: &str) -> ProgressEvent {
    let id = Uuid::now_v7();
    let (status, body) = gateway.upload_path(path, &[("sessionId", &id.to_string()), ("scanDate", scan_date)]).await;
    assert_eq!(status, 202, "{body}");
    env.wait_for_terminal(id, LIMIT).await
}

fn counts(done: &ProgressEvent) -> Counts {
    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    Counts::of(done.summary.as_ref().expect("a completed import has a summary"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_series_gives_exactly_the_expected_lifecycle_counts() {
    let env = TestEnv::start().await;
    let s = series(&env, 6_000, 60);
    let gateway = env.gateway().await;
    let _worker = env.worker().await;

    assert_eq!(counts(&import(&env, &gateway, &s.first, WEEKS[0]).await), s.expected.first);
    assert_eq!(counts(&import(&env, &gateway, &s.first, WEEKS[0]).await), s.expected.identical);
    let unchanged_before = env.scalar("SELECT count(*) FROM vulnerabilities WHERE last_seen = '2026-01-15'").await;
    assert_eq!(counts(&import(&env, &gateway, &s.next_week, WEEKS[1]).await), s.expected.next_week);
    assert_eq!(counts(&import(&env, &gateway, &s.first, WEEKS[2]).await), s.expected.back_again);

    let e = s.expected;
    let open = env.scalar("SELECT count(*) FROM vulnerabilities WHERE state = 'open'").await as u64;
    let resolved = env.scalar("SELECT count(*) FROM vulnerabilities WHERE state = 'resolved'").await as u64;
    assert_eq!(open, e.first.new, "every finding of the first file is open again");
    assert_eq!(resolved, e.back_again.resolved, "next week's new findings are resolved");
    assert_eq!(unchanged_before as u64, e.first.new, "the identical re-import moved no last_seen");
    let seen_last = env.scalar("SELECT count(*) FROM vulnerabilities WHERE last_seen = '2026-01-29'").await as u64;
    assert_eq!(seen_last, e.first.new, "the findings seen in the last scan carry its date");
}

/// Imports `path` with `scan_date`, and returns the ETA of its merge's first event (its counts
/// checked against `expected`).
async fn merge_eta(env: &TestEnv, gateway: &GatewayHandle, path: &Path, scan_date: &str, expected: Counts) -> f64 {
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    let (status, body) = gateway.upload_path(path, &[("sessionId", &id.to_string()), ("scanDate", scan_date)]).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(counts(&env.wait_for_terminal(id, LIMIT).await), expected);
    let first = log.wait_for(LIMIT, |e| e.phase == Phase::Processing && e.message == "Deduplicating rows").await;
    first.eta_seconds.expect("a merge's events carry an ETA")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescans_eta_starts_from_the_tenants_last_rescan_else_from_its_last_repeat() {
    let env = TestEnv::start().await;
    let s = series(&env, 3_000, 30);
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    assert_eq!(counts(&import(&env, &gateway, &s.first, WEEKS[0]).await), s.expected.first);
    assert_eq!(counts(&import(&env, &gateway, &s.first, WEEKS[0]).await), s.expected.identical);
    // Merges far slower than any this test runs, so their ETAs stand out: the repeat merged 10
    // rows a second, and a rescan is expected at 2.5 times less.
    run_each(&env, &["UPDATE imports SET total_rows = 10000, merge_ms = 1000000 WHERE merge_kind = 'repeat'"]).await;
    let rows = s.expected.next_week.rows as f64;
    let eta = merge_eta(&env, &gateway, &s.next_week, WEEKS[1], s.expected.next_week).await;
    let from_repeat = rows / (10.0 / 2.5);
    assert!((eta - from_repeat).abs() < 0.05 * from_repeat, "ETA {eta} s, expected about {from_repeat} s");

    // Once the tenant has a rescan of its own, that one counts: 100 rows a second.
    run_each(&env, &["UPDATE imports SET total_rows = 10000, merge_ms = 100000 WHERE merge_kind = 'rescan'"]).await;
    let rows = s.expected.back_again.rows as f64;
    let eta = merge_eta(&env, &gateway, &s.first, WEEKS[2], s.expected.back_again).await;
    let from_rescan = rows / 100.0;
    assert!((eta - from_rescan).abs() < 0.05 * from_rescan, "ETA {eta} s, expected about {from_rescan} s");
}

/// Imports the first file, then starts next week's in a worker that pauses before each merge
/// step, and returns the findings as they were before it with the session id.
async fn rescan_paused_in_the_merge(env: &TestEnv, gateway: &GatewayHandle, s: &Series) -> (Vec<String>, Uuid) {
    assert_eq!(counts(&import(env, gateway, &s.first, WEEKS[0]).await), s.expected.first);
    let before = env.findings_dump().await;
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    let fields = [("sessionId", id.to_string()), ("scanDate", WEEKS[1].to_owned())];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = gateway.upload_path(&s.next_week, &fields).await;
    assert_eq!(status, 202, "{body}");
    log.wait_for(LIMIT, |e| e.phase == Phase::Processing && e.message.starts_with("Resolving")).await;
    (before, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_cancelled_in_its_merge_leaves_the_findings_and_the_retry_counts_the_same() {
    let env = TestEnv::start().await;
    let s = series(&env, 3_000, 30);
    let gateway = env.gateway().await;
    let worker = env.worker_with(|c| c.test_merge_step_delay_ms = 500).await;
    let (before, id) = rescan_paused_in_the_merge(&env, &gateway, &s).await;

    let (status, body) = gateway.post(&format!("/api/imports/{id}/cancel")).await;
    assert_eq!(status, 202, "{body}");
    let done = env.wait_for_terminal(id, LIMIT).await;
    assert_eq!(done.status, Status::Cancelled, "{:#?}", done.error);
    assert_eq!(env.findings_dump().await, before, "the final tables are as they were");
    assert!(!env.staging_exists(id).await);
    worker.stop().await;

    let _worker = env.worker().await;
    assert_eq!(counts(&import(&env, &gateway, &s.next_week, WEEKS[1]).await), s.expected.next_week);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_in_a_rescans_merge_leaves_the_findings_and_the_redelivery_counts_the_same() {
    let env = TestEnv::start().await;
    let s = series(&env, 3_000, 30);
    let gateway = env.gateway().await;
    let mut doomed =
        env.worker_process(&[("HEXFLOW_WORKER_ACK_WAIT_SECS", "2"), ("HEXFLOW_TEST_MERGE_STEP_DELAY_MS", "1000")]);
    doomed.wait_ready(Duration::from_secs(30)).await;
    let (before, id) = rescan_paused_in_the_merge(&env, &gateway, &s).await;

    doomed.kill();
    assert_eq!(env.findings_dump().await, before, "the killed attempt's merge was rolled back");
    let _worker = env.worker_with(|c| c.ack_wait_secs = 2).await;
    let done = env.wait_for_terminal(id, LIMIT).await;
    assert_eq!(done.attempt, 2, "the job was delivered again");
    assert_eq!(counts(&done), s.expected.next_week);
    assert!(!env.staging_exists(id).await);
}

/// Imports a generated first scan with a worker that is then stopped, so a migration can be
/// replayed on a database holding findings; returns the series and the gateway.
async fn first_scan_imported(env: &TestEnv) -> (Series, GatewayHandle) {
    let s = series(env, 3_000, 30);
    let gateway = env.gateway().await;
    let worker = env.worker().await;
    assert_eq!(counts(&import(env, &gateway, &s.first, WEEKS[0]).await), s.expected.first);
    worker.stop().await;
    (s, gateway)
}

/// Runs each statement on the test's database, in order: a schema as an earlier version left it.
async fn run_each(env: &TestEnv, statements: &[impl AsRef<str>]) {
    for sql in statements.iter().map(AsRef::as_ref) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&env.db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Imports next week's scan and the first one back again, each with the expected counts.
async fn next_week_and_back_again_count_as_expected(env: &TestEnv, gateway: &GatewayHandle, s: &Series) {
    assert_eq!(counts(&import(env, gateway, &s.next_week, WEEKS[1]).await), s.expected.next_week);
    assert_eq!(counts(&import(env, gateway, &s.first, WEEKS[2]).await), s.expected.back_again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rescan_migration_keeps_the_findings_a_database_holds() {
    let env = TestEnv::start().await;
    let (s, gateway) = first_scan_imported(&env).await;
    // The database as the previous schema left it: findings packed full, imports without the
    // merge's time, the migration not applied.
    run_each(
        &env,
        &[
            "ALTER TABLE vulnerabilities RESET (fillfactor)",
            "VACUUM FULL vulnerabilities",
            "ALTER TABLE imports DROP COLUMN merge_ms, DROP COLUMN merge_kind",
            "DELETE FROM _sqlx_migrations WHERE version = 20261201000001",
        ],
    )
    .await;
    let before = env.findings_dump().await;

    shared::db::MIGRATOR.run(&env.db).await.expect("the migration applies to a database holding findings");
    assert_eq!(env.findings_dump().await, before, "the migration changes no finding");
    let options = env
        .scalar(
            "SELECT count(*) FROM pg_class WHERE relname = 'vulnerabilities' AND 'fillfactor=50' = ANY (reloptions)",
        )
        .await;
    assert_eq!(options, 1, "findings keep room for their next version");
    let _worker = env.worker().await;
    next_week_and_back_again_count_as_expected(&env, &gateway, &s).await;
    let unknown_time = env.scalar("SELECT count(*) FROM imports WHERE merge_ms IS NULL").await;
    assert_eq!(unknown_time, 1, "the import from before the migration has no merge time; later ones have");
}

/// The key columns of findings, scanner checks and staging tables, with their collation.
const KEY_COLLATIONS: &str = "SELECT count(*) FILTER (WHERE a.attcollation = 'pg_catalog.\"C\"'::regcollation),
                                     count(*)
                              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                              WHERE NOT a.attisdropped AND (
                                  (c.relname = 'vulnerabilities'
                                   AND a.attname IN ('tenant', 'scanner', 'asset', 'check_id', 'protocol', 'cves', 'state'))
                                  OR (c.relname = 'scanner_checks' AND a.attname IN ('scanner', 'check_id'))
                                  OR (c.relname LIKE 'import\\_staging\\_%'
                                      AND a.attname IN ('asset', 'check_id', 'protocol', 'cves')))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_order_migration_keeps_the_findings_and_the_staging_tables_of_imports_under_way() {
    let env = TestEnv::start().await;
    let (s, gateway) = first_scan_imported(&env).await;
    // The database as the previous schema left it: keys in the database's collation, and the
    // staging table of an import under way made from that template.
    let default = |table: &str, columns: &[&str]| {
        let alters: Vec<String> = columns
            .iter()
            .map(|c| {
                let array = if *c == "cves" { "[]" } else { "" };
                format!("ALTER COLUMN {c} TYPE text{array} COLLATE pg_catalog.\"default\"")
            })
            .collect();
        format!("ALTER TABLE {table} {}", alters.join(", "))
    };
    let under_way = shared::names::staging_table(Uuid::now_v7());
    run_each(
        &env,
        &[
            default("vulnerabilities", &["tenant", "scanner", "asset", "check_id", "protocol", "cves", "state"]),
            default("scanner_checks", &["scanner", "check_id"]),
            default("import_staging_template", &["asset", "check_id", "protocol", "cves"]),
            format!("CREATE UNLOGGED TABLE {under_way} (LIKE import_staging_template INCLUDING DEFAULTS)"),
            format!("INSERT INTO {under_way} SELECT * FROM import_staging_template"),
            "DELETE FROM _sqlx_migrations WHERE version = 20261202000001".to_owned(),
        ],
    )
    .await;
    let (in_c, keys): (i64, i64) = sqlx::query_as(KEY_COLLATIONS).fetch_one(&env.db).await.unwrap();
    assert_eq!((in_c, keys), (0, 17), "the previous schema's keys are in the database's collation");
    let before = env.findings_dump().await;

    shared::db::MIGRATOR.run(&env.db).await.expect("the migration applies to a database holding findings");
    assert_eq!(env.findings_dump().await, before, "the migration changes no finding");
    let (in_c, keys): (i64, i64) = sqlx::query_as(KEY_COLLATIONS).fetch_one(&env.db).await.unwrap();
    assert_eq!((in_c, keys), (17, 17), "every key column compares byte by byte, the import's under way too");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {under_way}"))).execute(&env.db).await.unwrap();

    let _worker = env.worker().await;
    next_week_and_back_again_count_as_expected(&env, &gateway, &s).await;
}

/// The findings view's page index, by name, with whether it is valid.
const PAGE_INDEXES: &str = "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                            WHERE i.indrelid = 'vulnerabilities'::regclass AND NOT i.indisprimary ORDER BY 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_index_migration_keeps_the_findings_and_pages_them_as_before() {
    let env = TestEnv::start().await;
    let (s, gateway) = first_scan_imported(&env).await;
    // The database as the previous schema left it: the page index on the tenant's and the
    // state's text.
    run_each(
        &env,
        &[
            "DROP INDEX vulnerabilities_page",
            "CREATE INDEX vulnerabilities_by_severity ON vulnerabilities (tenant, state, severity, id)",
            "DELETE FROM _sqlx_migrations WHERE version = 20261203000001",
        ],
    )
    .await;
    let before = env.findings_dump().await;
    let (status, listed_before) = gateway.get("/api/findings?state=all&limit=500").await;
    assert_eq!(status, 200, "{listed_before}");

    shared::db::MIGRATOR.run(&env.db).await.expect("the migration applies to a database holding findings");
    assert_eq!(env.findings_dump().await, before, "the migration changes no finding");
    let indexes: Vec<(String, bool)> = sqlx::query_as(PAGE_INDEXES).fetch_all(&env.db).await.unwrap();
    assert_eq!(indexes, [("vulnerabilities_page".to_owned(), true)]);
    let (status, listed_after) = gateway.get("/api/findings?state=all&limit=500").await;
    assert_eq!(status, 200, "{listed_after}");
    assert_eq!(listed_after, listed_before, "the same page, read through the new index");

    let _worker = env.worker().await;
    next_week_and_back_again_count_as_expected(&env, &gateway, &s).await;
}
