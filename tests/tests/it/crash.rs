//! A worker killed mid-import: the job is redelivered and the result equals a clean run's.

use std::time::Duration;

use hexflow::embedded::EmbeddedPostgres;
use hexflow_tests::{TestEnv, files};
use shared::{Phase, Status};
use uuid::Uuid;

const SCAN_DATE: &str = "2026-02-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_import_is_replaced_and_the_result_equals_a_clean_run() {
    let crashed = TestEnv::start().await;
    let path = crashed.dir().join("crash.csv");
    std::fs::create_dir_all(crashed.dir()).unwrap();
    files::write_nessus_file(&path, 30 * 1024 * 1024);
    let gateway = crashed.gateway().await;
    let mut first = crashed.worker_process(&[("HEXFLOW_WORKER_ACK_WAIT_SECS", "2")]);
    first.wait_ready(Duration::from_secs(30)).await;
    let id = Uuid::now_v7();
    let log = crashed.watch(id).await;
    gateway.upload_path(&path, &[("sessionId", &id.to_string()), ("scanDate", SCAN_DATE)]).await;
    log.wait_for(Duration::from_secs(60), |e| e.phase == Phase::Loading && e.progress > 20.0).await;

    first.kill();
    let _second = crashed.worker_with(|c| c.ack_wait_secs = 2).await;
    let done = crashed.wait_for_terminal(id, Duration::from_secs(120)).await;

    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    assert_eq!(done.attempt, 2, "the job was delivered again");
    assert!(!crashed.staging_exists(id).await);
    let events = log.events();
    for pair in events.windows(2) {
        assert!(pair[1].seq > pair[0].seq, "seq keeps increasing across attempts");
    }

    let clean_done = crashed.assert_findings_equal_a_clean_run(&path, &[("scanDate", SCAN_DATE)]).await;
    assert_eq!(done.summary.unwrap().new, clean_done.summary.unwrap().new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_import_loses_nothing() {
    let mut env = TestEnv::start().await;
    let path = env.dir().join("broker.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    files::write_nessus_file(&path, 30 * 1024 * 1024);
    // Readiness fails as soon as the broker is gone (no grace), so the test sees it.
    let gateway = env.gateway_with(|c| c.ops.ready_grace_secs = 0).await;
    let _worker = env.worker_with(|c| c.ack_wait_secs = 2).await;
    let id = Uuid::now_v7();
    let (status, _) = gateway.upload_path(&path, &[("sessionId", &id.to_string()), ("scanDate", SCAN_DATE)]).await;
    assert_eq!(status, 202);
    env.wait_for(id, Duration::from_secs(60), |e| e.phase == Phase::Loading && e.progress > 15.0).await;

    env.nats_server.kill();
    let mut ready = gateway.ops_get("/readyz").await;
    for _ in 0..100 {
        if ready.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready = gateway.ops_get("/readyz").await;
    }
    assert_eq!(ready.0, 503, "readiness reports the broker gone: {}", ready.1);
    assert_eq!(ready.1["checks"]["nats"]["ok"], false);
    env.nats_server.restart().unwrap();

    let done = env.wait_for_terminal(id, Duration::from_secs(120)).await;
    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    assert!(!env.staging_exists(id).await);
    let (status, _) = gateway.ops_get("/readyz").await;
    assert_eq!(status, 200, "ready again");
    assert_eq!(env.scalar("SELECT count(*) FROM imports WHERE status = 'completed'").await, 1);
}

/// Removes a directory when the test ends, however it ends.
struct RemovedAtEnd(std::path::PathBuf);

impl Drop for RemovedAtEnd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_import_loses_nothing() {
    // A PostgreSQL of the test's own: the shared one is never stopped.
    let pg_dir = RemovedAtEnd(std::env::temp_dir().join(format!("hexflow-test-pg-{}", Uuid::new_v4().simple())));
    let pg = EmbeddedPostgres::start(&pg_dir.0, None).expect("starting PostgreSQL");
    let env = TestEnv::start_on(pg.url("postgres")).await;
    let path = env.dir().join("database.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    let rows = files::write_nessus_file(&path, 40 * 1024 * 1024);
    let gateway = env.gateway().await;
    // Readiness fails as soon as the database is gone (no grace), so the test sees it.
    let mut worker = env.worker_process(&[("HEXFLOW_READY_GRACE_SECS", "0")]);
    worker.wait_ready(Duration::from_secs(30)).await;
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    let (status, _) = gateway.upload_path(&path, &[("sessionId", &id.to_string()), ("scanDate", SCAN_DATE)]).await;
    assert_eq!(status, 202);
    env.wait_for(id, Duration::from_secs(60), |e| e.phase == Phase::Loading && e.progress > 10.0).await;

    pg.stop();
    let readyz = format!("{}/readyz", worker.ops_url());
    let mut ready = reqwest::get(&readyz).await.unwrap();
    for _ in 0..200 {
        if ready.status() == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready = reqwest::get(&readyz).await.unwrap();
    }
    assert_eq!(ready.status(), 503, "the worker's readiness reports the database gone");
    let checks: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(checks["checks"]["postgres"]["ok"], false, "{checks}");
    let _pg = EmbeddedPostgres::start(&pg_dir.0, Some(pg.port)).expect("restarting PostgreSQL");

    let done = env.wait_for_terminal(id, Duration::from_secs(120)).await;
    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    assert!(done.attempt >= 2, "the interrupted attempt was followed by another ({})", done.attempt);
    assert!(log.events().iter().any(|e| e.message.contains("retrying")), "the failed attempt was announced");
    let summary = done.summary.unwrap();
    assert_eq!(summary.new + summary.skipped_duplicates, rows);
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await as u64, summary.new);
    assert!(!env.staging_exists(id).await);
    worker.wait_ready(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_keeps_failing_ends_in_error_after_the_last_delivery() {
    let env = TestEnv::start().await;
    // Every attempt fails outside the file: the staging tables cannot be created.
    sqlx::query("ALTER TABLE import_staging_template RENAME TO import_staging_template_gone")
        .execute(&env.db)
        .await
        .unwrap();
    let gateway = env.gateway().await;
    let _worker = env.worker_with(|c| c.max_deliver = 2).await;
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    gateway
        .upload_ok(
            files::generic_csv(&[files::Row::new("h1", "C1", 80)]),
            "doomed.csv",
            &[("sessionId", &id.to_string())],
        )
        .await;

    let done = env.wait_for_terminal(id, Duration::from_secs(60)).await;

    assert_eq!(done.status, Status::Error);
    assert_eq!(done.attempt, 2);
    let error = done.error.unwrap();
    assert_eq!(error.code, "IMPORT_FAILED");
    assert!(error.message.contains("2 times") && error.message.contains("staging"), "{}", error.message);
    assert!(!error.recovery_suggestions.is_empty());
    assert!(
        log.events().iter().any(|e| e.attempt == 1 && e.message.contains("retrying")),
        "the first failure was announced as a retry"
    );
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_on_the_last_delivery_leaves_an_error_not_a_stuck_import() {
    let env = TestEnv::start().await;
    let path = env.dir().join("last.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    files::write_nessus_file(&path, 30 * 1024 * 1024);
    let gateway = env.gateway().await;
    let env_vars = [("HEXFLOW_WORKER_ACK_WAIT_SECS", "2"), ("HEXFLOW_WORKER_MAX_DELIVER", "1")];
    let mut doomed = env.worker_process(&env_vars);
    doomed.wait_ready(Duration::from_secs(30)).await;
    let id = Uuid::now_v7();
    gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;
    env.wait_for(id, Duration::from_secs(60), |e| e.phase == Phase::Loading && e.progress > 10.0).await;

    doomed.kill();
    // Another worker hears that the job ran out of deliveries.
    let _watcher = env
        .worker_with(|c| {
            c.ack_wait_secs = 2;
            c.max_deliver = 1;
        })
        .await;
    let done = env.wait_for_terminal(id, Duration::from_secs(60)).await;

    assert_eq!(done.status, Status::Error);
    let error = done.error.unwrap();
    assert_eq!(error.code, "IMPORT_FAILED");
    assert!(error.message.contains("stopped responding"), "{}", error.message);
    assert!(!env.staging_exists(id).await, "the dead attempt's staging table is dropped");
    let status: String =
        sqlx::query_scalar("SELECT status FROM imports WHERE id = $1").bind(id).fetch_one(&env.db).await.unwrap();
    assert_eq!(status, "error");
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await, 0);
}
