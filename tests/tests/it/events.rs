//! The events of one import as seen on NATS.

use std::time::Duration;

use hexflow_tests::{TestEnv, files};
use shared::{Phase, Status};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_ordered_monotonic_and_end_exactly_once() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let path = env.dir().join("events.csv");
    std::fs::create_dir_all(env.dir()).unwrap();
    files::write_nessus_file(&path, 40 * 1024 * 1024);
    let id = Uuid::now_v7();
    let log = env.watch(id).await;

    let (status, body) = gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;
    assert_eq!(status, 202, "{body}");
    env.wait_for_terminal(id, Duration::from_secs(120)).await;
    let terminal = log.wait_for(Duration::from_secs(5), |e| e.is_terminal()).await;
    // Anything after the terminal event would arrive right behind it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = log.events();

    assert_eq!(terminal.status, Status::Completed, "{:#?}", terminal.error);
    assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1, "exactly one terminal event");
    assert!(events.last().unwrap().is_terminal(), "the terminal event is the last one");
    assert_eq!(events.first().unwrap().status, Status::Queued);
    for pair in events.windows(2) {
        assert!(pair[1].seq > pair[0].seq, "seq strictly increasing: {} then {}", pair[0].seq, pair[1].seq);
        assert!(pair[1].phase >= pair[0].phase, "phases in order: {:?} then {:?}", pair[0].phase, pair[1].phase);
        if pair[0].attempt == pair[1].attempt {
            assert!(
                pair[1].progress >= pair[0].progress,
                "progress never decreases: {} then {}",
                pair[0].progress,
                pair[1].progress
            );
        }
    }
    let phases: Vec<Phase> = events.iter().map(|e| e.phase).fold(Vec::new(), |mut v, p| {
        if v.last() != Some(&p) {
            v.push(p);
        }
        v
    });
    assert_eq!(
        phases,
        [Phase::Queued, Phase::Parsing, Phase::Loading, Phase::Processing, Phase::Finalizing, Phase::Complete]
    );
    let loading = events.iter().filter(|e| e.phase == Phase::Loading).count();
    assert!(loading >= 3, "loading reports progress as it goes ({loading} events)");
    let eta = events.iter().filter(|e| e.phase == Phase::Loading).filter_map(|e| e.eta_seconds).count();
    assert!(eta >= 1, "an ETA is given while loading");
    assert!(events.iter().all(|e| e.metadata.filename == "events.csv" && e.metadata.format == "nessus"));
    assert_eq!(terminal.progress, 100.0);
    assert_eq!(terminal.total_rows, Some(terminal.summary.as_ref().unwrap().rows));
}
