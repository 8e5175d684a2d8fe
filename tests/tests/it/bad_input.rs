//! Bad input: a clear 4xx (or an `error` import) naming what was wrong and what was expected,
//! and nothing in the final tables.

use std::time::Duration;

use hexflow_tests::{TestEnv, files};
use serde_json::Value;
use shared::Status;

async fn assert_nothing_stored(env: &TestEnv) {
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await, 0);
    assert_eq!(env.scalar("SELECT count(*) FROM scanner_checks").await, 0);
}

async fn assert_refused(env: &TestEnv, bytes: Vec<u8>, status: u16, code: &str) -> Value {
    let gateway = env.gateway_with(|c| c.max_upload_bytes = 64 * 1024 * 1024).await;
    let (got, body) = gateway.upload(bytes, "bad.csv", &[]).await;
    assert_eq!(got.as_u16(), status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.len() > 20), "a message that explains: {body}");
    assert_eq!(env.scalar("SELECT count(*) FROM imports").await, 0, "no import recorded");
    let objects = env.nats.uploads().await.unwrap().list().await.unwrap();
    use futures::StreamExt;
    assert_eq!(objects.count().await, 0, "no object left in the store");
    assert_nothing_stored(env).await;
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_bytes_is_refused_as_empty() {
    let env = TestEnv::start().await;
    assert_refused(&env, Vec::new(), 422, "EMPTY_FILE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitespace_only_is_refused_as_empty() {
    let env = TestEnv::start().await;
    assert_refused(&env, b"\n\n   \r\n".to_vec(), 422, "EMPTY_FILE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_file_is_refused() {
    let env = TestEnv::start().await;
    let png: Vec<u8> = [&[0x89u8, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13][..], &[0u8; 512][..]].concat();
    assert_refused(&env, png, 422, "BINARY_FILE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prose_that_is_not_csv_is_refused_with_the_expected_columns() {
    let env = TestEnv::start().await;
    let text = b"Dear team,\nplease find attached the report of this week.\nRegards\n".to_vec();
    let body = assert_refused(&env, text, 422, "NO_HEADER").await;
    assert!(body["error"]["expected"].as_str().unwrap().contains("Plugin ID"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_columns_are_refused_naming_found_and_expected() {
    let env = TestEnv::start().await;
    let body = assert_refused(&env, b"name,price,qty\nwidget,3,4\n".to_vec(), 422, "UNKNOWN_COLUMNS").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("price"), "names the columns found: {message}");
    assert!(body["error"]["expected"].as_str().unwrap().contains("asset"), "lists what would be accepted: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_refused() {
    let env = TestEnv::start().await;
    let mut bytes = files::generic_csv(&[files::Row::new("café-host", "C1", 80)]);
    bytes.extend_from_slice(b"h2,C2,\"bad \xff\xfe bytes\",low,80,tcp,,,,,\n");
    assert_refused(&env, bytes, 422, "INVALID_ENCODING").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_limit_is_refused_with_413() {
    let env = TestEnv::start().await;
    let gateway = env.gateway_with(|c| c.max_upload_bytes = 100_000).await;
    let rows: Vec<_> = (0..3000).map(|i| files::Row::new(&format!("h{i}"), "C1", 80)).collect();
    let bytes = files::generic_csv(&rows);
    assert!(bytes.len() > 100_000);
    let (status, body) = gateway.upload(bytes, "big.csv", &[]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "FILE_TOO_LARGE");
    assert_eq!(body["error"]["limitBytes"], 100_000);
    assert_eq!(env.scalar("SELECT count(*) FROM imports").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_format_choice_is_refused() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let (status, body) = gateway.upload(files::fixture("generic.csv"), "g.csv", &[("format", "nessus")]).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "FORMAT_MISMATCH");
    let (status, body) = gateway.upload(files::fixture("generic.csv"), "g.csv", &[("format", "excel")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("nessus"), "lists the known formats: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_only_file_completes_with_zero_rows() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let id = gateway.upload_ok(files::GENERIC_HEADER.as_bytes().to_vec(), "header.csv", &[]).await;
    let done = env.wait_for_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(done.status, Status::Completed);
    let s = done.summary.unwrap();
    assert_eq!((s.rows, s.new, s.resolved), (0, 0, 0));
    assert_nothing_stored(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_line_ends_the_import_in_error() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let mut bytes = files::generic_csv(&[files::Row::new("h1", "C1", 80)]);
    bytes.extend_from_slice(b"h2,C2,\"");
    bytes.extend(std::iter::repeat_n(b'A', 10 * 1024 * 1024));
    bytes.extend_from_slice(b"\",low,80,tcp,,,,,\n");
    let id = gateway.upload_ok(bytes, "long-line.csv", &[]).await;
    let done = env.wait_for_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(done.status, Status::Error);
    let error = done.error.unwrap();
    assert_eq!(error.code, "LINE_TOO_LONG", "{error:#?}");
    assert_eq!(error.details.line, Some(3));
    assert!(!error.recovery_suggestions.is_empty());
    assert_nothing_stored(&env).await;
    assert!(!env.staging_exists(id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mostly_invalid_rows_end_the_import_in_error_with_the_first_problem() {
    let env = TestEnv::start().await;
    let gateway = env.gateway().await;
    let _worker = env.worker().await;
    let csv = files::mostly_invalid_ports_csv();
    let id = gateway.upload_ok(csv, "ports.csv", &[]).await;
    let done = env.wait_for_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(done.status, Status::Error);
    let error = done.error.unwrap();
    assert_eq!(error.code, "TOO_MANY_INVALID_ROWS");
    assert_eq!(error.details.line, Some(2));
    assert_eq!(error.details.column.as_deref(), Some("port"));
    assert_eq!(error.details.value.as_deref(), Some("99999"));
    assert_nothing_stored(&env).await;
    let recorded = env.scalar(&format!("SELECT count(*) FROM import_row_errors WHERE import_id = '{id}'")).await;
    assert_eq!(recorded, 8, "the invalid rows are listed for the user");
}
