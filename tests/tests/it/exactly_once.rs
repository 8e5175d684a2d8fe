//! An import ends exactly once, and says so truthfully: a stale attempt woken after another
//! finished the import changes nothing; a worker dying between the commit and the terminal
//! event, or NATS gone as an import ends, still leaves one terminal event and no upload; the
//! row's `finished_at` and `last_seq` match the summary and the terminal event.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use hexflow_tests::{TestEnv, WorkerHandle, files, stack::ChildGuard};
use shared::{Phase, ProgressEvent, Status, names};
use uuid::Uuid;

/// Ack wait of the workers in these tests: a frozen or dead attempt is redelivered quickly.
const ACK_WAIT: &str = "3";

/// Sends `signal` (`STOP`, `CONT`) to a worker process.
fn signal(worker: &ChildGuard, signal: &str) {
    let status = Command::new("kill").arg(format!("-{signal}")).arg(worker.pid().to_string()).status().unwrap();
    assert!(status.success(), "kill -{signal} {}", worker.pid());
}

/// Polls `check` every 50 ms until it is true; panics with `what` after `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// The import's row: status, attempts, last_seq, cleaned.
async fn row(env: &TestEnv, id: Uuid) -> (String, i32, i64, bool) {
    sqlx::query_as("SELECT status, attempts, last_seq, cleaned_at IS NOT NULL FROM imports WHERE id = $1")
        .bind(id)
        .fetch_one(&env.db)
        .await
        .unwrap()
}

/// Messages left in the uploads bucket's stream (objects, their chunks, delete markers).
async fn bucket_messages(env: &TestEnv) -> u64 {
    let mut stream = env.nats.js.get_stream(format!("OBJ_{}", names::UPLOADS_BUCKET)).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// Freezes the `stale` worker (SIGSTOP) past the ack wait, lets a live worker in this process
/// finish the redelivered attempt, then wakes the stale one and waits until it finds itself
/// fenced. Returns the terminal event, the time from the freeze to it, and the live worker.
async fn freeze_until_redelivered_and_wake(
    env: &TestEnv,
    stale: &ChildGuard,
    id: Uuid,
) -> (ProgressEvent, Duration, WorkerHandle) {
    signal(stale, "STOP");
    let frozen_at = Instant::now();
    let live = env.worker_with(|c| c.ack_wait_secs = 3).await;
    let done = env.wait_for_terminal(id, Duration::from_secs(180)).await;
    let took = frozen_at.elapsed();
    signal(stale, "CONT");
    until(Duration::from_secs(60), "the woken attempt finds itself fenced", || async {
        stale.log_text().contains("fenced")
    })
    .await;
    (done, took, live)
}

fn terminal_events(events: &[ProgressEvent]) -> Vec<&ProgressEvent> {
    events.iter().filter(|e| e.is_terminal()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_attempt_woken_after_the_redelivery_completed_changes_nothing() {
    let env = TestEnv::start().await;
    let path = env.dir().join("stale.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    files::write_nessus_file(&path, 30 * 1024 * 1024);
    let gateway = env.gateway().await;
    let mut stale = env.worker_process(&[("HEXFLOW_WORKER_ACK_WAIT_SECS", ACK_WAIT)]);
    stale.wait_ready(Duration::from_secs(30)).await;
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;
    log.wait_for(Duration::from_secs(60), |e| e.phase == Phase::Loading && e.progress > 25.0).await;

    // Frozen mid-loading, past the ack wait: its sessions stay open in PostgreSQL.
    let (done, took, _live) = freeze_until_redelivered_and_wake(&env, &stale, id).await;
    // Whatever the woken attempt would publish follows its fence check at once.
    let (status, attempts, last_seq, _) = row(&env, id).await;
    let snapshot = env.nats.last_progress(id).await.unwrap().unwrap();
    let (get_status, polled) = gateway.get(&format!("/api/imports/{id}")).await;
    let (_, history) = gateway.get("/api/imports").await;
    let events = log.events();
    eprintln!("frozen attempt to the live attempt's terminal event: {took:?}");

    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    // The frozen worker's idle pull request may take delivery 2 (and sit on it): the live
    // attempt is then delivery 3.
    assert!(done.attempt >= 2, "a redelivered attempt completed it");
    assert_eq!(
        (status.as_str(), attempts as u32),
        ("completed", done.attempt),
        "the row stays as the live attempt left it"
    );
    assert_eq!(last_seq as u64, done.seq);
    assert_eq!((snapshot.status, snapshot.seq), (Status::Completed, done.seq), "the snapshot stays the terminal event");
    assert_eq!(get_status, 200);
    assert_eq!(polled["status"], "completed", "{polled}");
    assert_eq!(polled["seq"], done.seq);
    let listed = history["items"].as_array().cloned().unwrap_or_default();
    let item = listed.iter().find(|i| i["sessionId"] == id.to_string()).unwrap_or_else(|| panic!("{history}"));
    assert_eq!(item["status"], "completed", "{item}");
    let terminal_at = events.iter().position(|e| e.is_terminal()).expect("the terminal event was seen");
    assert_eq!(terminal_at, events.len() - 1, "nothing follows the terminal event: {:#?}", &events[terminal_at..]);
    assert!(events.iter().all(|e| e.attempt <= done.attempt), "no attempt after the live one");
    assert!(
        !events.iter().any(|e| e.attempt == done.attempt && e.message.contains("retrying")),
        "the live attempt was not disturbed"
    );
    assert!(!stale.log_text().contains("Attempt 1 failed"), "the stale attempt did not announce a retry");
    let summary = done.summary.unwrap();
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await as u64, summary.new);
    assert!(!env.staging_exists(id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_frozen_in_the_merge_neither_blocks_nor_undoes_the_redelivered_one() {
    let env = TestEnv::start().await;
    std::fs::create_dir_all(env.dir()).unwrap();
    let (known, path) = (env.dir().join("known.csv"), env.dir().join("merge.csv"));
    files::write_nessus_file(&known, 1024 * 1024);
    files::write_nessus_file(&path, 30 * 1024 * 1024);
    let gateway = env.gateway().await;
    let mut stale = env.worker_process(&[("HEXFLOW_WORKER_ACK_WAIT_SECS", ACK_WAIT)]);
    stale.wait_ready(Duration::from_secs(30)).await;
    // Findings of the scanner exist: the second import runs the ordinary merge after loading,
    // one transaction holding the tenant's merge lock.
    let first = Uuid::now_v7();
    gateway.upload_path(&known, &[("sessionId", &first.to_string())]).await;
    assert_eq!(env.wait_for_terminal(first, Duration::from_secs(60)).await.status, Status::Completed);
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;
    log.wait_for(Duration::from_secs(120), |e| e.phase == Phase::Processing && e.message.contains("Deduplicating"))
        .await;

    let (done, took, _live) = freeze_until_redelivered_and_wake(&env, &stale, id).await;
    let (status, attempts, last_seq, _) = row(&env, id).await;
    let snapshot = env.nats.last_progress(id).await.unwrap().unwrap();
    let events = log.events();
    eprintln!("frozen in the merge to the live attempt's terminal event: {took:?}");

    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    assert!(done.attempt >= 2, "a redelivered attempt completed it");
    assert_eq!((status.as_str(), attempts as u32), ("completed", done.attempt));
    assert_eq!((snapshot.status, snapshot.seq, last_seq as u64), (Status::Completed, done.seq, done.seq));
    let terminal_at = events.iter().position(|e| e.is_terminal()).expect("the terminal event was seen");
    assert_eq!(terminal_at, events.len() - 1, "nothing follows the terminal event: {:#?}", &events[terminal_at..]);
    assert!(!events.iter().any(|e| e.attempt == done.attempt && e.message.contains("retrying")));
    assert!(!stale.log_text().contains("Attempt 1 failed"));
    let merged = env.scalar("SELECT count(*) FROM vulnerabilities").await as u64;
    let first_new = env.scalar(&format!("SELECT (summary->>'new')::bigint FROM imports WHERE id = '{first}'")).await;
    assert_eq!(merged, first_new as u64 + done.summary.unwrap().new, "merged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_the_commit_and_the_terminal_event_leaves_exactly_one() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    // Test-only: the worker waits a minute between the merge's commit and the terminal event.
    let mut doomed = env.worker_process(&[
        ("HEXFLOW_WORKER_ACK_WAIT_SECS", ACK_WAIT),
        ("HEXFLOW_WORKER_TEST_DELAY_AFTER_COMMIT_MS", "60000"),
    ]);
    doomed.wait_ready(Duration::from_secs(30)).await;
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    let rows: Vec<_> = (0..200).map(|i| files::Row::new(&format!("h{}", i % 20), &format!("C{i}"), 443)).collect();
    gateway.upload_ok(files::generic_csv(&rows), "commit.csv", &[("sessionId", &id.to_string())]).await;
    until(Duration::from_secs(60), "the merge commits", || async { row(&env, id).await.0 == "completed" }).await;

    doomed.kill();
    let killed_at = Instant::now();
    let _next = env.worker_with(|c| c.ack_wait_secs = 3).await;
    let terminal = log.wait_for(Duration::from_secs(60), |e| e.is_terminal()).await;
    let took = killed_at.elapsed();
    until(Duration::from_secs(30), "the cleanup is recorded", || async { row(&env, id).await.3 }).await;
    let (_, _, last_seq, _) = row(&env, id).await;
    let left = bucket_messages(&env).await;
    eprintln!("killed after the commit to the terminal event: {took:?}");

    assert_eq!(terminal.status, Status::Completed, "{:#?}", terminal.error);
    assert_eq!(terminal.seq, last_seq as u64, "the terminal event carries the row's seq");
    assert_eq!(terminal.summary.as_ref().unwrap().new, 200);
    assert_eq!(terminal_events(&log.events()).len(), 1, "exactly one terminal event");
    assert_eq!(left, 0, "the upload and its metadata are gone from the bucket");
    assert!(!env.staging_exists(id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_ending_while_nats_is_unreachable_is_finished_once_it_is_back() {
    let mut env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let mut worker = env.worker_process(&[
        ("HEXFLOW_WORKER_ACK_WAIT_SECS", ACK_WAIT),
        ("HEXFLOW_WORKER_SWEEP_SECS", "1"),
        // Test-only: time to take NATS away between the commit and the terminal event.
        ("HEXFLOW_WORKER_TEST_DELAY_AFTER_COMMIT_MS", "1500"),
    ]);
    worker.wait_ready(Duration::from_secs(30)).await;
    let id = Uuid::now_v7();
    let rows: Vec<_> = (0..50).map(|i| files::Row::new("h1", &format!("C{i}"), 22)).collect();
    gateway.upload_ok(files::generic_csv(&rows), "outage.csv", &[("sessionId", &id.to_string())]).await;
    until(Duration::from_secs(60), "the merge commits", || async { row(&env, id).await.0 == "completed" }).await;

    env.nats_server.kill();
    until(Duration::from_secs(60), "the worker fails to finish the import", || async {
        worker.log_text().contains("the sweep will finish it")
    })
    .await;
    env.nats_server.restart().unwrap();
    let back_at = Instant::now();
    let done = env.wait_for_terminal(id, Duration::from_secs(60)).await;
    let took = back_at.elapsed();
    until(Duration::from_secs(60), "the cleanup is recorded", || async { row(&env, id).await.3 }).await;
    let (_, _, last_seq, _) = row(&env, id).await;
    eprintln!("NATS back to the terminal event: {took:?}");

    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.seq, last_seq as u64);
    assert_eq!(bucket_messages(&env).await, 0, "no object, chunk or delete marker is left in the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_at_and_last_seq_match_the_summary_and_the_terminal_event() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let path = env.dir().join("truth.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    files::write_nessus_file(&path, 8 * 1024 * 1024);
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;

    let done = env.wait_for_terminal(id, Duration::from_secs(120)).await;
    let seen = log.wait_for(Duration::from_secs(5), |e| e.is_terminal()).await;
    let (took_ms, last_seq): (i64, i64) = sqlx::query_as(
        "SELECT (extract(epoch FROM finished_at - started_at) * 1000)::bigint, last_seq FROM imports WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&env.db)
    .await
    .unwrap();
    let summary = done.summary.clone().unwrap();

    assert_eq!(done.status, Status::Completed);
    assert!(
        (took_ms - summary.duration_ms as i64).abs() < 1000,
        "finished_at - started_at = {took_ms} ms, summary says {} ms",
        summary.duration_ms
    );
    assert_eq!(last_seq as u64, done.seq, "last_seq is the terminal event's seq");
    assert_eq!(seen.seq, done.seq);
    let highest = log.events().iter().map(|e| e.seq).max().unwrap();
    assert_eq!(highest, done.seq, "no event has a seq above the terminal one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_orphaned_uploads_and_delete_markers_but_not_queued_ones() {
    let env = TestEnv::start().await;
    let store = env.nats.uploads().await.unwrap();
    // An upload whose gateway died before the import row was written, and a delete marker the
    // object store's own delete leaves behind.
    store.put("orphan", &mut &b"asset,check_id\n"[..]).await.unwrap();
    store.put("deleted", &mut &b"asset,check_id\n"[..]).await.unwrap();
    store.delete("deleted").await.unwrap();
    // The chunks of an upload whose gateway stopped before writing its metadata.
    let chunks = shared::uploads::chunk_subject(&shared::uploads::new_upload_nuid());
    env.nats.js.publish(chunks, "asset,check_id\n".into()).await.unwrap().await.unwrap();
    assert!(bucket_messages(&env).await > 0);
    // A queued import's upload is kept however old it is (no worker consumes jobs here: the
    // row stays queued).
    let queued = Uuid::now_v7();
    store.put(queued.to_string().as_str(), &mut &b"asset,check_id\n"[..]).await.unwrap();
    sqlx::query(
        "INSERT INTO imports (id, owner, tenant, filename, format, scanner, scan_date, object_key, size_bytes, sha256)
         VALUES ($1, 'ann', 'default', 'q.csv', 'generic', 'generic', now(), $2, 15, '')",
    )
    .bind(queued)
    .bind(queued.to_string())
    .execute(&env.db)
    .await
    .unwrap();

    let _sweeper = env
        .worker_with(|c| {
            c.sweep_secs = 1;
            // Any upload no queued or running import refers to is an orphan at once.
            c.upload_orphan_grace_secs = 0;
            // Consumes no job: the queued import's job does not exist.
            c.concurrency = 1;
        })
        .await;
    until(Duration::from_secs(30), "the orphans and the marker are purged", || async {
        bucket_messages(&env).await == 2
    })
    .await;

    let left: Vec<String> = env.nats.upload_objects().await.unwrap().into_iter().map(|(_, info)| info.name).collect();
    assert_eq!(left, vec![queued.to_string()], "only the queued import's upload (meta + one chunk) is left");
}
