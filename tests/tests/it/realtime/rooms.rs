//! Rooms with made-up imports: the snapshot on join, the throttle, terminal events, stale
//! events, error codes, rate limits and the heartbeat. Events are published straight to NATS, as
//! a worker would, so their timing is the test's.

use std::time::Duration;

use hexflow_tests::{
    TestEnv,
    realtime::{RealtimeEnv, made_up_event},
    sio::{ClientOptions, SioClient},
};
use shared::Status;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

/// A made-up import of the anonymous user with its queued snapshot published.
async fn queued_import(env: &TestEnv) -> Uuid {
    let id = Uuid::now_v7();
    env.insert_import(id, "anonymous", "default").await;
    env.publish(&made_up_event(id, 1, Status::Queued, 0.0)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_gets_the_snapshot_and_updates_respect_the_interval_with_the_last_value_delivered() {
    let env = TestEnv::start().await;
    let gateway = env.realtime_with(|c| c.options.progress_min_interval_ms = 200).await;
    let id = queued_import(&env).await;
    // Websocket only: long-polling may hand over several packets in one response, which would
    // blur the spacing the gateway keeps.
    let options = ClientOptions { transports: vec!["websocket"], ..ClientOptions::at(&gateway.url) };
    let mut client = SioClient::connected(&options).await;

    let ack = client.join(id).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["snapshot"]["seq"], 1);
    assert_eq!(ack["snapshot"]["status"], "queued");
    client.wait_for("progress-status", |d| d["seq"] == 1, WAIT).await;

    let mut pace = tokio::time::interval(Duration::from_millis(10));
    for seq in 2..=60 {
        pace.tick().await;
        env.publish(&made_up_event(id, seq, Status::Processing, seq as f64)).await;
    }
    client.wait_for("progress-update", |d| d["seq"] == 60, WAIT).await;

    let updates = client.named("progress-update");
    assert!(updates.len() < 30, "updates were coalesced: {} for 59 published", updates.len());
    for pair in updates.windows(2) {
        assert!(pair[1].seq() > pair[0].seq(), "in order: {} then {}", pair[0].seq(), pair[1].seq());
        let gap = pair[1].t - pair[0].t;
        let (from, to) = (pair[0].seq(), pair[1].seq());
        // Receive times carry the client's own jitter (a loaded machine, a cold JIT), hence the tolerance.
        assert!(
            gap >= 200 - 50,
            "at most one update per 200 ms (small tolerance): {gap} ms between seq {from} and {to}"
        );
    }
    let span = updates.last().unwrap().t - updates.first().unwrap().t;
    assert!(span >= 190 * (updates.len() as i64 - 1), "{} updates within {span} ms", updates.len());
    assert_eq!(updates.last().unwrap().seq(), 60, "the last value before the pause is delivered");
    assert_eq!(updates.last().unwrap().data["progress"], 60.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_event_arrives_once_after_every_update_and_stale_events_are_dropped() {
    let env = TestEnv::start().await;
    let gateway = env.realtime().await;
    let id = queued_import(&env).await;
    let barrier = queued_import(&env).await;
    let mut client = SioClient::connected(&ClientOptions::at(&gateway.url)).await;
    client.join(id).await;
    client.join(barrier).await;

    env.publish(&made_up_event(id, 5, Status::Processing, 10.0)).await;
    client.wait_for("progress-update", |d| d["seq"] == 5, WAIT).await;
    env.publish(&made_up_event(id, 3, Status::Processing, 5.0)).await;
    env.publish(&made_up_event(id, 7, Status::Processing, 20.0)).await;
    env.publish(&made_up_event(id, 8, Status::Completed, 100.0)).await;
    // After the end: an older update, a newer one, and the terminal event again.
    env.publish(&made_up_event(id, 4, Status::Processing, 6.0)).await;
    env.publish(&made_up_event(id, 9, Status::Processing, 30.0)).await;
    env.publish(&made_up_event(id, 8, Status::Completed, 100.0)).await;
    // One emitter serves every room in stream order: once the barrier's event is here, anything
    // the gateway would have sent for the first import has arrived too.
    env.publish(&made_up_event(barrier, 2, Status::Processing, 1.0)).await;
    client.wait_for("progress-update", |d| d["sessionId"] == barrier.to_string(), WAIT).await;

    let mine: Vec<_> = client
        .events()
        .into_iter()
        .filter(|e| e.event.starts_with("progress-") && e.event != "progress-status")
        .filter(|e| e.data["sessionId"] == id.to_string())
        .collect();
    let seqs: Vec<(String, u64)> = mine.iter().map(|e| (e.event.clone(), e.seq())).collect();
    assert_eq!(mine.iter().filter(|e| e.is_terminal()).count(), 1, "exactly one terminal event: {seqs:?}");
    assert!(mine.last().unwrap().is_terminal(), "the terminal event comes after every update: {seqs:?}");
    assert_eq!(mine.last().unwrap().event, "progress-complete");
    assert!(seqs.iter().all(|(_, seq)| ![3, 4, 9].contains(seq)), "stale and late events dropped: {seqs:?}");
    for pair in mine.windows(2) {
        assert!(pair[1].seq() > pair[0].seq(), "seq strictly increasing: {seqs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_error_codes_rates_are_limited_and_the_heartbeat_counts_sessions() {
    let env = TestEnv::start().await;
    let gateway = env
        .realtime_with(|c| {
            c.options.heartbeat_secs = 1;
            c.options.rate_burst = 6;
            c.options.rate_limit_per_sec = 1;
            c.options.max_rooms_per_socket = 2;
        })
        .await;
    let (a, b, c) = (queued_import(&env).await, queued_import(&env).await, queued_import(&env).await);
    let mut client = SioClient::connected(&ClientOptions::at(&gateway.url)).await;

    let unknown = client.join(Uuid::now_v7()).await;
    let not_json = client.emit_raw("join-progress", "not-json").await;
    let not_uuid = client.emit_raw("join-progress", r#"{"sessionId":"nope"}"#).await;
    let first = client.join(a).await;
    let second = client.join(b).await;
    let third = client.join(c).await;
    let mut flooder = SioClient::connected(&ClientOptions::at(&gateway.url)).await;
    for _ in 0..12 {
        flooder.send(&format!("leave {a}")).await;
    }
    let flood_acks = flooder.wait_for_count("ack:leave-progress", 12, WAIT).await;

    assert_eq!(unknown["error"]["code"], "SESSION_NOT_FOUND", "{unknown}");
    assert_eq!(not_json["error"]["code"], "INVALID_REQUEST", "{not_json}");
    assert_eq!(not_uuid["error"]["code"], "INVALID_REQUEST", "{not_uuid}");
    assert!(not_uuid["error"]["message"].as_str().unwrap().contains("sessionId"));
    assert_eq!((first["ok"].clone(), second["ok"].clone()), (true.into(), true.into()));
    assert_eq!(third["error"]["code"], "TOO_MANY_ROOMS", "{third}");
    let limited = flood_acks.iter().filter(|a| a.data["error"]["code"] == "RATE_LIMITED").count();
    assert!(limited >= 3, "a burst of 12 beyond the budget of 6 is limited ({limited} refused)");
    let beat = client.wait_for("heartbeat", |d| d["activeSessions"] == 2, WAIT).await;
    assert!(beat.data["serverTime"].as_i64().unwrap() > 0);
    let metrics = reqwest::get(format!("{}/metrics", gateway.ops_url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hexflow_realtime_sockets 2\n"), "{metrics}");
    assert!(metrics.contains(&format!("hexflow_realtime_rate_limited_total {limited}\n")), "{metrics}");
}
