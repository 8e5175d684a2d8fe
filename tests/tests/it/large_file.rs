//! A file of more than 60 MB through the services as separate processes: memory stays flat.

use std::time::Duration;

use hexflow_tests::{GatewayHandle, TestEnv, files};
use shared::Status;

const MB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixty_megabyte_file_imports_with_flat_memory() {
    let env = TestEnv::start().await;
    let path = env.dir().join("large.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    let started = std::time::Instant::now();
    let rows = files::write_nessus_file(&path, 62 * MB);
    println!("generated in {:?}", started.elapsed());
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size >= 60 * MB);
    let mut gateway_process = env.gateway_process(&[]);
    let mut worker = env.worker_process(&[]);
    gateway_process.wait_ready(Duration::from_secs(30)).await;
    worker.wait_ready(Duration::from_secs(30)).await;
    let idle = (gateway_process.rss_bytes(), worker.rss_bytes());
    let gateway = GatewayHandle::new(gateway_process.addr, gateway_process.ops_addr, None);

    let id = uuid::Uuid::now_v7();
    let log = env.watch(id).await;
    let started = std::time::Instant::now();
    let (status, body) = gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;
    println!("uploaded in {:?}", started.elapsed());
    assert_eq!(status, 202, "{body}");
    let done = env.wait_for_terminal(id, Duration::from_secs(300)).await;

    println!("imported in {:?}", started.elapsed());
    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    let summary = done.summary.as_ref().unwrap();
    assert_eq!(summary.rows, rows);
    // Every finding arrives, though a first import this size is written slice by slice.
    assert_eq!(summary.new + summary.skipped_duplicates, rows);
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await as u64, summary.new);
    log.wait_for(Duration::from_secs(10), |e| e.is_terminal()).await;
    assert!(
        worker.log_text().contains("writing them while the file loads"),
        "a first import writes its findings while loading"
    );
    let (gw_peak, worker_peak) = (gateway_process.peak_rss_bytes(), worker.peak_rss_bytes());
    println!(
        "file {} MB, {rows} rows; gateway RSS idle {} MB peak {} MB; worker RSS idle {} MB peak {} MB",
        size / MB,
        idle.0 / MB,
        gw_peak / MB,
        idle.1 / MB,
        worker_peak / MB
    );
    // Holding the file would take more than its size; streaming keeps both far below it.
    assert!(gw_peak < 60 * MB, "gateway peak RSS {} MB", gw_peak / MB);
    assert!(worker_peak < 80 * MB, "worker peak RSS {} MB", worker_peak / MB);
}
