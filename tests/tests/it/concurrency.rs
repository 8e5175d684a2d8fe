//! Overlapping imports at once give the same result as one after the other.

use std::time::Duration;

use hexflow_tests::{
    TestEnv,
    files::{self, Row},
};
use shared::Status;

fn grid(hosts: std::ops::Range<u32>, checks: std::ops::Range<u32>, output: &str) -> Vec<u8> {
    let rows: Vec<Row> = hosts
        .flat_map(|h| {
            checks.clone().map(move |c| Row {
                output: format!("{output} {h}/{c}"),
                ..Row::new(&format!("h{h}"), &format!("C{c}"), 443)
            })
        })
        .collect();
    files::generic_csv(&rows)
}

async fn run(env: &TestEnv, files: &[Vec<u8>], at_once: bool) -> Vec<String> {
    let gateway = env.gateway().await;
    let _worker = env.worker_with(|c| c.concurrency = 2).await;
    let mut ids = Vec::new();
    for (i, bytes) in files.iter().enumerate() {
        let id = gateway.upload_ok(bytes.clone(), &format!("scan{i}.csv"), &[("scanDate", "2026-03-01")]).await;
        if !at_once {
            assert_eq!(env.wait_for_terminal(id, Duration::from_secs(60)).await.status, Status::Completed);
        }
        ids.push(id);
    }
    for id in ids {
        let done = env.wait_for_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    }
    env.findings_dump().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_overlapping_imports_at_once_equal_running_them_in_turn() {
    let a = grid(0..60, 0..40, "scan A");
    let b = grid(30..90, 20..60, "scan B");

    let together = run(&TestEnv::start().await, &[a.clone(), b.clone()], true).await;
    let a_then_b = run(&TestEnv::start().await, &[a.clone(), b.clone()], false).await;
    let b_then_a = run(&TestEnv::start().await, &[b, a], false).await;

    assert!(!together.is_empty());
    assert!(together == a_then_b || together == b_then_a, "the concurrent result equals one sequential order");
}
