//! A worker killed mid-load: the next attempt continues after the last committed slice, and
//! watchers are told while no worker holds the import.

use std::time::Duration;

use hexflow_tests::{TestEnv, files};
use shared::{Phase, ProgressEvent, Status};
use uuid::Uuid;

const SCAN_DATE: &str = "2026-02-01";
/// Staging CSV per committed slice: small, so the resume point follows the reading closely.
const SLICE_BYTES: usize = 1024 * 1024;

fn first_of_attempt(events: &[ProgressEvent], attempt: u32) -> Option<(usize, &ProgressEvent)> {
    events.iter().enumerate().find(|(_, e)| e.attempt == attempt)
}

/// The terminal event goes out before the staging table is dropped: waits for the cleanup.
async fn wait_for_cleanup(env: &TestEnv) {
    for _ in 0..200 {
        if env.scalar("SELECT count(*) FROM imports WHERE cleaned_at IS NULL").await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ended import was not cleaned up within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_load_is_resumed_after_its_last_committed_slice() {
    let crashed = TestEnv::start().await;
    std::fs::create_dir_all(crashed.dir()).unwrap();
    let path = crashed.dir().join("resume.csv");
    // Large enough that loading lasts about a second, so the kill lands in it.
    files::write_nessus_file(&path, 96 * 1024 * 1024);
    let gateway = crashed.gateway().await;
    let slice = SLICE_BYTES.to_string();
    let mut first = crashed
        .worker_process(&[("HEXFLOW_WORKER_ACK_WAIT_SECS", "2"), ("HEXFLOW_WORKER_EARLY_SLICE_BYTES", slice.as_str())]);
    first.wait_ready(Duration::from_secs(30)).await;
    let id = Uuid::now_v7();
    let log = crashed.watch(id).await;
    gateway.upload_path(&path, &[("sessionId", &id.to_string()), ("scanDate", SCAN_DATE)]).await;
    let seen = log
        .wait_for(Duration::from_secs(60), |e| {
            // The committed slices trail the reading by the batches in flight (a few MiB). The
            // event at the end of the file is not a point inside the load.
            e.phase == Phase::Loading
                && e.bytes_processed * 100 >= e.total_bytes * 70
                && e.bytes_processed < e.total_bytes
        })
        .await;

    first.kill();
    assert!(seen.bytes_processed < seen.total_bytes, "killed while loading");
    let recorded = crashed.scalar("SELECT coalesce(max(byte_offset), 0) FROM import_resume").await as u64;
    assert!(recorded > 0, "the load's slices were committed with their resume point");
    let _second = crashed
        .worker_with(|c| {
            c.ack_wait_secs = 2;
            c.early_slice_bytes = SLICE_BYTES;
        })
        .await;
    let done = crashed.wait_for_terminal(id, Duration::from_secs(120)).await;

    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    assert_eq!(done.attempt, 2, "the job was delivered again");
    let events = log.events();
    let (at, resumed) = first_of_attempt(&events, 2).expect("events of the second attempt");
    assert_eq!(resumed.phase, Phase::Loading, "the second attempt starts loading where the first stopped");
    assert!(resumed.message.contains("resuming"), "it says so: {}", resumed.message);
    assert!(
        resumed.bytes_processed * 2 > resumed.total_bytes,
        "less than half of the file is read again: resumed at byte {} of {} (recorded {recorded})",
        resumed.bytes_processed,
        resumed.total_bytes
    );
    assert!(resumed.bytes_processed >= recorded, "from the last committed slice");
    println!(
        "killed at byte {} of {}; resumed at byte {} ({})",
        seen.bytes_processed, seen.total_bytes, resumed.bytes_processed, resumed.message
    );
    for pair in events.windows(2) {
        assert!(pair[1].seq > pair[0].seq, "seq keeps increasing across attempts");
        assert!(
            pair[1].progress >= pair[0].progress,
            "progress never goes backwards: {} ({}) then {} ({})",
            pair[0].progress,
            pair[0].message,
            pair[1].progress,
            pair[1].message
        );
    }
    assert!(events[at..].iter().all(|e| e.attempt == 2), "nothing of the dead attempt after the resume");
    wait_for_cleanup(&crashed).await;
    assert!(!crashed.staging_exists(id).await);
    assert_eq!(crashed.scalar("SELECT count(*) FROM import_resume").await, 0, "the resume point went with the table");

    let clean_done = crashed.assert_findings_equal_a_clean_run(&path, &[("scanDate", SCAN_DATE)]).await;
    let (resumed, clean) = (done.summary.unwrap(), clean_done.summary.unwrap());
    assert_eq!(
        (resumed.rows, resumed.new, resumed.skipped_duplicates, resumed.validation_errors),
        (clean.rows, clean.new, clean.skipped_duplicates, clean.validation_errors),
        "the summary counts the whole file once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_are_told_the_worker_stopped_responding_before_the_job_is_delivered_again() {
    let env = TestEnv::start().await;
    std::fs::create_dir_all(env.dir()).unwrap();
    let path = env.dir().join("stalled.csv");
    files::write_nessus_file(&path, 40 * 1024 * 1024);
    let gateway = env.gateway().await;
    // Heartbeats every 2 s, stale after 5 s: the note comes well before the 16 s ack wait ends.
    let mut first = env.worker_process(&[("HEXFLOW_WORKER_ACK_WAIT_SECS", "16")]);
    first.wait_ready(Duration::from_secs(30)).await;
    let id = Uuid::now_v7();
    let log = env.watch(id).await;
    gateway.upload_path(&path, &[("sessionId", &id.to_string()), ("scanDate", SCAN_DATE)]).await;
    log.wait_for(Duration::from_secs(60), |e| e.phase == Phase::Loading && e.progress > 15.0).await;

    first.kill();
    let last_shown = log.events().last().cloned().expect("events of the first attempt");
    // Another worker is running (it checks heartbeats); it gets the job when it is redelivered.
    let _second = env.worker_with(|c| c.ack_wait_secs = 16).await;
    let note = log.wait_for(Duration::from_secs(15), |e| e.message.contains("stopped responding")).await;
    let done = env.wait_for_terminal(id, Duration::from_secs(120)).await;

    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    assert_eq!(note.status, Status::Processing, "the note is not terminal");
    assert_eq!(note.attempt, 1, "it is about the attempt that stopped");
    assert!(note.message.contains("retried in about"), "{}", note.message);
    assert!(note.seq > last_shown.seq);
    assert!(note.progress >= last_shown.progress, "the bar does not move back");
    let events = log.events();
    let noted_at = events.iter().position(|e| e.seq == note.seq).unwrap();
    let (redelivered_at, redelivered) = first_of_attempt(&events, 2).expect("events of the second attempt");
    assert!(noted_at < redelivered_at, "the note comes before the redelivery");
    assert!(redelivered.seq > note.seq, "the next attempt's events come after the note");
    assert_eq!(events.iter().filter(|e| e.message.contains("stopped responding")).count(), 1, "told once");
    assert_eq!(env.scalar("SELECT last_seq FROM imports").await as u64, done.seq);
}
