//! Exports first met outside the corpus, end to end through the gateway and the worker:
//! UTF-16 "Unicode text", RapidFire ports with service names, row errors that name their
//! line once, and a format chosen after the file that the worker would refuse.

use std::time::Duration;

use futures::StreamExt;
use hexflow_tests::{TestEnv, files};
use serde_json::Value;
use shared::Status;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf16_exports_in_both_byte_orders_are_imported_alike() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;

    let le = gateway.upload_ok(files::fixture("utf16le_generic.csv"), "unicode-le.txt", &[]).await;
    let first = env.wait_for_terminal(le, LIMIT).await;
    let be = gateway.upload_ok(files::fixture("utf16be_generic.csv"), "unicode-be.txt", &[]).await;
    let second = env.wait_for_terminal(be, LIMIT).await;

    assert_eq!(first.status, Status::Completed, "{:?}", first.error);
    let s = first.summary.unwrap();
    assert_eq!((s.rows, s.new, s.validation_errors), (3, 3, 0));
    // The same text in the other byte order: the same findings, unchanged.
    assert_eq!(second.status, Status::Completed, "{:?}", second.error);
    let s = second.summary.unwrap();
    assert_eq!((s.rows, s.new, s.unchanged), (3, 0, 3));
    let assets: Vec<String> =
        sqlx::query_scalar("SELECT asset FROM vulnerabilities ORDER BY asset").fetch_all(&env.db).await.unwrap();
    assert_eq!(assets, ["café.example.test", "db.example.test", "日本.example.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapidfire_ports_with_service_names_keep_every_port() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;

    let id = gateway.upload_ok(files::fixture("rapidfire_service_names.csv"), "rapidfire.csv", &[]).await;
    let done = env.wait_for_terminal(id, LIMIT).await;

    assert_eq!(done.status, Status::Completed, "{:?}", done.error);
    let s = done.summary.unwrap();
    assert_eq!((s.new, s.validation_errors), (9, 1));
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities WHERE port = 443").await, 2);
    let (_, errors) = gateway.get(&format!("/api/imports/{id}/errors")).await;
    let item = &errors["items"][0];
    assert_eq!((item["line"].as_u64(), item["value"].as_str()), (Some(7), Some("(telnet)")), "{errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_error_names_its_line_once() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let csv = files::mostly_invalid_ports_csv();

    let id = gateway.upload_ok(csv, "ports.csv", &[]).await;
    let done = env.wait_for_terminal(id, LIMIT).await;

    let error = done.error.expect("an error");
    assert_eq!(error.code, "TOO_MANY_INVALID_ROWS");
    assert!(error.message.contains("First problem: line 2: column \"port\": got \"99999\""), "{}", error.message);
    assert_eq!(error.message.matches("line").count(), 1, "the line is named once: {}", error.message);
    let (_, errors) = gateway.get(&format!("/api/imports/{id}/errors")).await;
    let item: &Value = &errors["items"][0];
    assert_eq!(item["line"], 2, "{errors}");
    assert!(!item["message"].as_str().unwrap().contains("line"), "the line has a column of its own: {item}");
}

/// Uploads with the file first and `format` after it, as `hexflow import` sends them.
async fn upload_then_choose(base: &str, bytes: &[u8], format: &str) -> (u16, Value) {
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("scan.csv"))
        .text("format", format.to_owned());
    let response = reqwest::Client::new().post(format!("{base}/api/imports")).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_chosen_after_the_file_needs_its_distinguishing_columns_too() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    // A Nessus header: it has Tenable.io's required columns, but none of its own.
    let nessus = b"Plugin ID,Name,Host,Port\n19506,Scan Information,h1,0\n";

    let (status, body) = upload_then_choose(&gateway.base, nessus, "tenable_io").await;

    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "FORMAT_MISMATCH", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("one of Vulnerability State / Asset UUID / First Found / Last Found"), "{message}");
    assert!(message.contains("it looks like nessus"), "{message}");
    assert!(body["error"]["expected"].as_str().unwrap().contains("tenable_io (Plugin ID, Name"), "{body}");
    assert_eq!(env.scalar("SELECT count(*) FROM imports").await, 0, "no import recorded");
    let objects = env.nats.uploads().await.unwrap().list().await.unwrap();
    assert_eq!(objects.count().await, 0, "no object left in the store");

    // With one of those columns, the same choice is accepted.
    let tenable_io = b"Plugin ID,Name,Host,Port,Asset UUID\n19506,Scan Information,h1,0,a-1\n";
    let (status, body) = upload_then_choose(&gateway.base, tenable_io, "tenable_io").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["format"], "tenable_io", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_errors_of_a_cr_only_file_point_at_their_own_line() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;

    let id = gateway.upload_ok(files::fixture("cr_only_generic.csv"), "old-mac.csv", &[]).await;
    let done = env.wait_for_terminal(id, LIMIT).await;

    assert_eq!(done.status, Status::Completed, "{:?}", done.error);
    let s = done.summary.unwrap();
    assert_eq!((s.new, s.validation_errors), (3, 1));
    let (_, errors) = gateway.get(&format!("/api/imports/{id}/errors")).await;
    let item = &errors["items"][0];
    assert_eq!((item["line"].as_u64(), item["value"].as_str()), (Some(6), Some("70000")), "{errors}");
}
