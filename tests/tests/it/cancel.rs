//! Cancelling: while queued (never runs), while loading (stops within a batch), and while a
//! first import's load waits for its findings to be written.

use std::time::Duration;

use hexflow_tests::{TestEnv, files};
use shared::{Phase, Status};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_cancelled_while_queued_never_runs() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    let rows = vec![files::Row::new("h1", "C1", 80)];
    gateway.upload_ok(files::generic_csv(&rows), "queued.csv", &[("sessionId", &id.to_string())]).await;

    // No worker runs yet: the request is recorded, and the import stays queued.
    let (status, body) = gateway.post(&format!("/api/imports/{id}/cancel")).await;
    assert_eq!(status, 202, "{body}");
    // A worker that starts later finds the request and does not run the job.
    let _worker = env.worker().await;
    let done = env.wait_for_terminal(id, Duration::from_secs(30)).await;

    assert_eq!(done.status, Status::Cancelled);
    log.wait_for(Duration::from_secs(5), |e| e.status == Status::Cancelled).await;
    assert!(log.events().iter().all(|e| e.phase == Phase::Queued || e.phase == Phase::Cancelled), "it never ran");
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await, 0);
    let status: String =
        sqlx::query_scalar("SELECT status FROM imports WHERE id = $1").bind(id).fetch_one(&env.db).await.unwrap();
    assert_eq!(status, "cancelled");
    assert!(!env.staging_exists(id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_queued_behind_a_busy_worker_ends_it_at_once() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker_with(|c| c.concurrency = 1).await;
    let big = env.dir().join("busy.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    files::write_nessus_file(&big, 30 * 1024 * 1024);
    let (status, _) = gateway.upload_path(&big, &[]).await;
    assert_eq!(status, 202);
    let id = gateway.upload_ok(files::generic_csv(&[files::Row::new("h1", "C1", 80)]), "waiting.csv", &[]).await;

    gateway.post(&format!("/api/imports/{id}/cancel")).await;

    let done = env.wait_for_terminal(id, Duration::from_secs(10)).await;
    assert_eq!(done.status, Status::Cancelled);
    assert_eq!(done.phase, Phase::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_cancelled_while_loading_leaves_nothing_behind() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let path = env.dir().join("cancel.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    files::write_nessus_file(&path, 40 * 1024 * 1024);
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;
    log.wait_for(Duration::from_secs(60), |e| e.phase == Phase::Loading && e.processed_rows > 0).await;

    let (status, _) = gateway.post(&format!("/api/imports/{id}/cancel")).await;
    assert_eq!(status, 202);
    let asked = std::time::Instant::now();
    let done = log.wait_for(Duration::from_secs(10), |e| e.is_terminal()).await;

    assert_eq!(done.status, Status::Cancelled);
    println!("cancel to terminal event: {:?}", asked.elapsed());
    assert!(asked.elapsed() < Duration::from_secs(1), "heard within a batch ({:?})", asked.elapsed());
    let partial = done.partial_results.expect("partial results on cancel");
    assert!(partial.processed_rows > 0);
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await, 0, "final tables untouched");
    assert_eq!(env.scalar("SELECT count(*) FROM scanner_checks").await, 0);
    assert!(!env.staging_exists(id).await, "staging dropped");
    let (status, body) = gateway.post(&format!("/api/imports/{id}/cancel")).await;
    assert_eq!(status, 409, "a second cancel says it has ended: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_waits_for_its_findings_to_be_written_and_a_cancel_still_ends_it() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    // A slice per batch of staging CSV (1 MiB), so the load is a few slices ahead of the writer
    // early in the file.
    let _worker = env.worker_with(|c| c.early_slice_bytes = 1).await;
    // Every key once, in order (the findings are written while the file loads), about 30 MB.
    let rows: Vec<files::Row> = (0..300_000).map(|i| files::Row::new(&format!("h{i:06}"), "C1", 443)).collect();
    let path = env.dir().join("held.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    std::fs::write(&path, files::generic_csv(&rows)).unwrap();
    // Another session holds the findings table: the first import's writer cannot insert.
    let mut holder = env.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE vulnerabilities IN SHARE MODE").execute(&mut *holder).await.unwrap();
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;

    let waiting = log.wait_for(Duration::from_secs(60), |e| e.message.contains("writing their findings")).await;
    assert_eq!(waiting.phase, Phase::Loading, "{}", waiting.message);
    assert!(
        waiting.bytes_processed * 2 < waiting.total_bytes,
        "the load stopped a few slices into the file: at byte {} of {}",
        waiting.bytes_processed,
        waiting.total_bytes
    );
    let writer_waits = env
        .scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO vulnerabilities%'",
        )
        .await;
    assert_eq!(writer_waits, 1, "the writer waits for the table");

    let (status, _) = gateway.post(&format!("/api/imports/{id}/cancel")).await;
    assert_eq!(status, 202);
    let done = log.wait_for(Duration::from_secs(10), |e| e.is_terminal()).await;
    assert_eq!(done.status, Status::Cancelled);
    holder.rollback().await.unwrap();
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await, 0, "final tables untouched");
    for _ in 0..200 {
        if !env.staging_exists(id).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the staging table of the cancelled import is still there after 10 s");
}
