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
    let gateway = GatewayHandle::new(gateway_process.addr, None);

    let started = std::time::Instant::now();
    let (status, body) = gateway.upload_path(&path, &[]).await;
    println!("uploaded in {:?}", started.elapsed());
    assert_eq!(status, 202, "{body}");
    let id = body["sessionId"].as_str().unwrap().parse().unwrap();
    let done = env.wait_for_terminal(id, Duration::from_secs(300)).await;

    println!("imported in {:?}", started.elapsed());
    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    assert_eq!(done.summary.as_ref().unwrap().rows, rows);
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
