//! Who may watch and cancel what (JWT on the handshake and on HTTP), cancel over the socket, the
//! polling-only transport, and `hexflow dev` serving Socket.IO next to the upload API.

use std::time::Duration;

use hexflow_tests::{
    TestEnv, files,
    realtime::{RealtimeEnv, TEST_SECRET, get_as, token, upload_as},
    sio::{ClientOptions, SioClient},
};
use shared::{
    auth::{Claims, issue},
    config::Secret,
    events::now_ms,
};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);
const LONG: Duration = Duration::from_secs(180);

fn with_token(url: &str, token: &str) -> ClientOptions {
    ClientOptions { token: Some(token.into()), ..ClientOptions::at(url) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_token_sockets_are_refused_and_only_the_owner_or_a_tenant_admin_may_watch_or_cancel() {
    let env = TestEnv::start().await;
    let secret = Some(Secret(TEST_SECRET.into()));
    let gateway = env.gateway_with(|c| c.auth.secret = secret.clone()).await;
    let realtime = env.realtime_with(|c| c.auth.secret = secret.clone()).await;
    let (ann, bob) = (token("ann", "acme", false), token("bob", "acme", false));
    let (boss, stranger) = (token("boss", "acme", true), token("eve", "other", true));
    // No worker: the import stays queued, so a cancel is still possible at the end.
    let id = Uuid::now_v7();
    let csv = files::generic_csv(&[files::Row::new("h1", "C1", 80)]);
    let (status, body) = upload_as(&gateway.base, &ann, csv, "ann.csv", id).await;
    assert_eq!(status, 202, "{body}");

    let anonymous = SioClient::start(&ClientOptions::at(&realtime.url));
    let forged_token = issue(
        "not-the-secret-but-just-as-long-as-it",
        &Claims { sub: "ann".into(), exp: Some(now_ms() / 1000 + 3600), ..Claims::default() },
    );
    let forged = SioClient::start(&with_token(&realtime.url, &forged_token));
    let mut bob_socket = SioClient::connected(&with_token(&realtime.url, &bob)).await;
    let mut stranger_socket = SioClient::connected(&with_token(&realtime.url, &stranger)).await;
    let mut boss_socket = SioClient::connected(&with_token(&realtime.url, &boss)).await;
    let mut ann_socket = SioClient::connected(&with_token(&realtime.url, &ann)).await;

    let refused = anonymous.wait_for("connect_error", |_| true, WAIT).await;
    assert!(refused.data["message"].as_str().unwrap().contains("unauthorized"), "{}", refused.data);
    assert!(
        forged.wait_for("connect_error", |_| true, WAIT).await.data["message"].as_str().unwrap().contains("signature")
    );
    assert_eq!(anonymous.connects() + forged.connects(), 0);
    // Someone else's import answers exactly as an unknown one: no existence oracle.
    let unknown = bob_socket.join(Uuid::now_v7()).await;
    let mut foreign = bob_socket.join(id).await;
    assert_eq!(foreign["error"]["code"], "SESSION_NOT_FOUND", "{foreign}");
    foreign["error"]["message"] = unknown["error"]["message"].clone();
    assert_eq!(foreign["error"].as_object().map(|o| o.len()), unknown["error"].as_object().map(|o| o.len()));
    assert_eq!(bob_socket.cancel(id).await["error"]["code"], "SESSION_NOT_FOUND");
    assert_eq!(stranger_socket.join(id).await["error"]["code"], "SESSION_NOT_FOUND", "an admin of another tenant");
    let admin_join = boss_socket.join(id).await;
    assert_eq!(admin_join["ok"], true, "{admin_join}");
    assert_eq!(admin_join["snapshot"]["status"], "queued");
    let own_join = ann_socket.join(id).await;
    assert_eq!(own_join["snapshot"]["sessionId"], id.to_string(), "{own_join}");
    let cancel = ann_socket.cancel(id).await;
    assert_eq!(cancel, serde_json::json!({ "ok": true, "sessionId": id, "status": "cancelling" }));
    let recorded: bool = sqlx::query_scalar("SELECT cancel_requested_at IS NOT NULL FROM imports WHERE id = $1")
        .bind(id)
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert!(recorded, "the cancel request is recorded as the HTTP cancel records it");
    assert!(env.nats.cancel_requested(id).await.unwrap(), "and published for the worker");

    // The same rules over HTTP.
    let url = format!("{}/api/imports/{id}", gateway.base);
    assert_eq!(get_as(&url, None).await.0, 401);
    assert_eq!(get_as(&url, Some(&forged_token)).await.0, 401);
    assert_eq!(get_as(&url, Some(&bob)).await.0, 404, "someone else's import looks missing over HTTP");
    assert_eq!(get_as(&url, Some(&boss)).await.0, 200);
    assert_eq!(get_as(&url, Some(&ann)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_a_socket_stops_a_running_import_and_leaves_the_final_tables_untouched() {
    let env = TestEnv::start().await;
    let (gateway, _worker, realtime) = (env.gateway().await, env.worker().await, env.realtime().await);
    std::fs::create_dir_all(env.dir()).unwrap();
    let path = env.dir().join("cancel.csv");
    files::write_nessus_file(&path, 60 * 1024 * 1024);
    let id = Uuid::now_v7();
    let (status, body) = gateway.upload_path(&path, &[("sessionId", &id.to_string())]).await;
    assert_eq!(status, 202, "{body}");
    let mut client = SioClient::connected(&ClientOptions::at(&realtime.url)).await;
    client.join(id).await;
    client
        .wait_for("progress-update", |d| d["phase"] == "loading" && d["processedRows"].as_u64() > Some(0), LONG)
        .await;

    let ack = client.cancel(id).await;

    assert_eq!(ack["ok"], true, "{ack}");
    let cancelled = client.wait_for("progress-cancelled", |_| true, WAIT).await;
    assert_eq!(cancelled.data["status"], "cancelled");
    assert!(cancelled.data["partialResults"]["processedRows"].as_u64() > Some(0));
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await, 0, "final tables untouched");
    assert!(!env.staging_exists(id).await, "staging dropped");
    assert_eq!(client.cancel(id).await["error"]["code"], "ALREADY_FINISHED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_only_client_follows_an_import_to_the_end_and_hears_data_updated() {
    let env = TestEnv::start().await;
    let (gateway, _worker, realtime) = (env.gateway().await, env.worker().await, env.realtime().await);
    let options = ClientOptions { transports: vec!["polling"], ..ClientOptions::at(&realtime.url) };
    let mut client = SioClient::connected(&options).await;
    let rows: Vec<files::Row> = (0..500).map(|i| files::Row::new(&format!("h{i}"), "C1", 80)).collect();
    let id = gateway.upload_ok(files::generic_csv(&rows), "polling.csv", &[]).await;

    assert_eq!(client.join(id).await["ok"], true);
    let done = client.wait_for("progress-complete", |_| true, LONG).await;
    let updated = client.wait_for("data-updated", |d| d["new"] == 500, WAIT).await;

    assert_eq!(client.named("connect")[0].data["transport"], "polling");
    assert!(client.named("upgrade").is_empty(), "never upgraded");
    assert_eq!(done.data["summary"]["new"], 500);
    assert_eq!(updated.data["new"], 500);
    assert_eq!(updated.data["tenant"], "default");
    assert!(updated.data.get("sessionId").is_none(), "no import id goes to the whole tenant: {}", updated.data);
}
