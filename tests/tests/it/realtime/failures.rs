//! Real imports watched through failures: a client's connection cut, a gateway replica killed,
//! the broker restarted, a replica stopped. Each time the watcher ends up with the terminal event,
//! exactly once.

use std::{path::PathBuf, time::Duration};

use hexflow_tests::{
    GatewayHandle, TestEnv, WorkerHandle, files,
    realtime::RealtimeEnv,
    sio::{ClientEvent, ClientOptions, SioClient},
};
use uuid::Uuid;

const LONG: Duration = Duration::from_secs(180);

/// A Nessus export of about `mib` MiB in the test's directory.
fn scan_file(env: &TestEnv, name: &str, mib: u64) -> PathBuf {
    std::fs::create_dir_all(env.dir()).unwrap();
    let path = env.dir().join(name);
    files::write_nessus_file(&path, mib * 1024 * 1024);
    path
}

/// Uploads a 60 MB scan, has one client at `url` join it, and only then starts a worker, so the
/// client watches it load: returns the import, the client (seen loading) and the worker.
async fn watched_import(
    env: &TestEnv,
    gateway: &GatewayHandle,
    url: &str,
    name: &str,
) -> (Uuid, SioClient, WorkerHandle) {
    let path = scan_file(env, name, 60);
    let id = Uuid::now_v7();
    let (status, body) = gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;
    assert_eq!(status, 202, "{body}");
    let mut client = SioClient::connected(&ClientOptions::at(url)).await;
    assert_eq!(client.join(id).await["ok"], true);
    let worker = env.worker().await;
    client.wait_for("progress-update", |d| d["phase"] == "loading", LONG).await;
    (id, client, worker)
}

/// Every terminal event the client got for `id`, after waiting for a heartbeat that follows the
/// first one (anything duplicated would have come by then).
async fn terminal_events(client: &SioClient, id: Uuid) -> Vec<ClientEvent> {
    let first = client
        .wait_until("a terminal event", LONG, |events| {
            events.iter().position(|e| e.is_terminal() && e.data["sessionId"] == id.to_string())
        })
        .await;
    client.wait_for_after(first, "heartbeat", |_| true, Duration::from_secs(20)).await;
    client.events().into_iter().filter(|e| e.is_terminal() && e.data["sessionId"] == id.to_string()).collect()
}

/// Asserts the terminal event came once, last, and matches the import's final snapshot.
async fn assert_finished_once(env: &TestEnv, client: &SioClient, id: Uuid, who: &str) {
    let done = env.wait_for_terminal(id, LONG).await;
    let terminal = terminal_events(client, id).await;
    assert_eq!(terminal.len(), 1, "{who}: exactly one terminal event: {terminal:?}");
    assert_eq!(terminal[0].seq(), done.seq, "{who}: the final event");
    assert_eq!(terminal[0].data["status"], done.status.as_str());
    let after: Vec<_> =
        client.events().into_iter().skip_while(|e| !e.is_terminal()).filter(|e| e.event == "progress-update").collect();
    assert!(after.is_empty(), "{who}: no update after the terminal event: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_mid_import_reconnects_gets_the_snapshot_and_sees_the_terminal_event() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let realtime = env.realtime_with(|c| c.options.heartbeat_secs = 1).await;
    let (id, mut client, _worker) = watched_import(&env, &gateway, &realtime.url, "cut.csv").await;

    let cut_at = client.events().len();
    client.send("drop").await;

    client.wait_for_after(cut_at, "disconnect", |_| true, LONG).await;
    client.wait_for_after(cut_at, "connect", |_| true, LONG).await;
    let resumed = client.wait_for_after(cut_at, "progress-status", |_| true, LONG).await;
    assert_eq!(resumed.data["sessionId"], id.to_string(), "the snapshot again after the reconnect");
    assert_finished_once(&env, &client, id, "the cut client").await;
    assert_eq!(client.connects(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_serve_every_client_and_the_clients_of_a_killed_one_finish_on_the_other() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let mut first = env.realtime_process(&[("HEXFLOW_HEARTBEAT_SECS", "1")]).await;
    let second = env.realtime_process(&[("HEXFLOW_HEARTBEAT_SECS", "1")]).await;
    let path = scan_file(&env, "replicas.csv", 60);
    let id = Uuid::now_v7();
    let (status, body) = gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;
    assert_eq!(status, 202, "{body}");
    let on_first = ClientOptions { urls: vec![first.url(), second.url()], ..Default::default() };
    let on_second = ClientOptions { urls: vec![second.url(), first.url()], ..Default::default() };
    let mut watchers = [SioClient::connected(&on_first).await, SioClient::connected(&on_second).await];
    for watcher in &mut watchers {
        assert_eq!(watcher.join(id).await["ok"], true);
    }
    // The import starts once every client watches, so they all see the loading.
    let _worker = env.worker().await;
    for watcher in &watchers {
        watcher.wait_for("progress-update", |d| d["phase"] == "loading", LONG).await;
    }

    first.kill();

    let survivor = second.url();
    let moved_at = watchers[0]
        .wait_until("a connect to the survivor", LONG, |events| {
            events.iter().position(|e| e.event == "connect" && e.data["url"] == survivor)
        })
        .await;
    let resumed = watchers[0].wait_for_after(moved_at, "progress-status", |_| true, LONG).await;
    assert_eq!(resumed.data["sessionId"], id.to_string(), "the snapshot again, from the survivor");
    assert_finished_once(&env, &watchers[0], id, "the moved client").await;
    assert_finished_once(&env, &watchers[1], id, "the survivor's client").await;
    assert_eq!(watchers[1].connects(), 1, "the survivor's client never reconnected");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_while_clients_watch_loses_no_terminal_event() {
    let mut env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let realtime = env.realtime_with(|c| c.options.heartbeat_secs = 1).await;
    let (id, client, _worker) = watched_import(&env, &gateway, &realtime.url, "restart.csv").await;

    env.nats_server.restart().expect("restarting nats-server");

    assert_finished_once(&env, &client, id, "the watching client").await;
    let ready = reqwest::get(format!("{}/readyz", realtime.ops_url)).await.unwrap();
    assert_eq!(ready.status(), 200, "the gateway recovered: {}", ready.text().await.unwrap_or_default());
    assert_eq!(client.connects(), 1, "the socket itself stayed up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_with_sigterm_disconnects_its_sockets_so_they_reconnect_elsewhere() {
    let env = TestEnv::start().await;
    let mut leaving = env.realtime_process(&[]).await;
    let staying = env.realtime_process(&[]).await;
    let id = Uuid::now_v7();
    env.insert_import(id, "anonymous", "default").await;
    let options = ClientOptions { urls: vec![leaving.url(), staying.url()], ..Default::default() };
    let mut client = SioClient::connected(&options).await;
    assert_eq!(client.join(id).await["ok"], true);

    leaving.terminate(Duration::from_secs(15)).await;

    let gone = client.wait_for("disconnect", |_| true, LONG).await;
    assert_eq!(gone.data["reason"], "transport close", "a plain close, which clients retry on their own");
    let survivor = staying.url();
    let moved_at = client
        .wait_until("a connect to the other replica", LONG, |events| {
            events.iter().position(|e| e.event == "connect" && e.data["url"] == survivor)
        })
        .await;
    let rejoined = client.wait_for_after(moved_at, "ack:join-progress", |_| true, LONG).await;
    assert_eq!(rejoined.data["ok"], true, "{}", rejoined.data);
    assert!(leaving.log_text().contains("disconnecting every socket"));
}
