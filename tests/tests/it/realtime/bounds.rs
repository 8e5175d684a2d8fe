//! Hostile socket clients (authentication on): the payload limit holds on websockets as on
//! polling, bad values are not echoed back, and a socket does not outlive its token. The gateway
//! stays responsive throughout (`/healthz` on its ops port answers within a second).

use std::time::Duration;

use hexflow_tests::{
    TestEnv,
    realtime::{RealtimeEnv, RealtimeHandle, TEST_SECRET, token},
    sio::{ClientOptions, SioClient},
};
use serde_json::json;
use shared::{
    auth::{Claims, issue},
    config::Secret,
    events::now_ms,
};

const WAIT: Duration = Duration::from_secs(10);

async fn secured_realtime(env: &TestEnv) -> RealtimeHandle {
    env.realtime_with(|c| c.auth.secret = Some(Secret(TEST_SECRET.into()))).await
}

async fn assert_responsive(realtime: &RealtimeHandle) {
    let probe = reqwest::get(format!("{}/healthz", realtime.ops_url));
    let answered = tokio::time::timeout(Duration::from_secs(1), probe).await;
    assert!(matches!(&answered, Ok(Ok(r)) if r.status() == 200), "/healthz did not answer within a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_over_the_payload_limit_closes_the_socket_and_nothing_is_echoed() {
    let env = TestEnv::start().await;
    let realtime = secured_realtime(&env).await;
    let options = ClientOptions {
        transports: vec!["websocket"],
        token: Some(token("ann", "acme", false)),
        ..ClientOptions::at(&realtime.url)
    };
    let mut client = SioClient::connected(&options).await;

    // Under the limit (16 KiB) but not a UUID: refused, quoting a short prefix only.
    let bad = json!({ "sessionId": "x".repeat(8 * 1024) }).to_string();
    let ack = client.emit_raw("join-progress", &bad).await;
    assert_eq!(ack["error"]["code"], "INVALID_REQUEST", "{ack}");
    assert!(ack.to_string().len() < 400, "the ack repeats a prefix only: {} bytes", ack.to_string().len());

    // Over the limit, on a websocket: the connection is closed, nothing is processed or echoed.
    let huge = json!({ "sessionId": "y".repeat(200 * 1024) }).to_string();
    client.send(&format!("emit join-progress {huge}")).await;
    let closed = client.wait_for("disconnect", |_| true, WAIT).await;
    assert_ne!(closed.data["reason"], "io client disconnect", "{}", closed.data);
    assert_responsive(&realtime).await;
    let echoed = client.events().iter().any(|e| e.data.to_string().len() > 4096);
    assert!(!echoed, "no event carries the oversized payload back");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_whose_token_expires_is_told_so_and_disconnected() {
    let env = TestEnv::start().await;
    let realtime = secured_realtime(&env).await;
    // Expired 25 s ago: still inside the 30 s leeway for clock skew, so valid for 5 s more.
    let claims =
        Claims { sub: "ann".into(), tenant: Some("acme".into()), exp: Some(now_ms() / 1000 - 25), ..Claims::default() };
    let short_lived = issue(TEST_SECRET, &claims);
    let options = ClientOptions { token: Some(short_lived), ..ClientOptions::at(&realtime.url) };
    let client = SioClient::connected(&options).await;

    let expired = client.wait_for("session-expired", |_| true, Duration::from_secs(15)).await;
    let closed = client.wait_for("disconnect", |_| true, WAIT).await;
    let refused = client.wait_for("connect_error", |_| true, WAIT).await;

    assert_eq!(expired.data["code"], "TOKEN_EXPIRED", "{}", expired.data);
    assert!(expired.data["message"].as_str().unwrap().contains("expired"), "{}", expired.data);
    assert_eq!(closed.data["reason"], "io server disconnect");
    assert!(refused.data["message"].as_str().unwrap().contains("unauthorized"), "{}", refused.data);
    assert_eq!(client.connects(), 1, "the expired token does not get back in");
    assert_responsive(&realtime).await;
    client.stop().await;
}
