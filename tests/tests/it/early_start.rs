//! Imports that start while their files arrive: the worker reads the upload as it is stored, the
//! answer and the row get the file's real size and digest, and an upload that fails after its
//! import started ends that import with the reason, leaving the final tables untouched.

use std::time::Duration;

use bytes::Bytes;
use hexflow_tests::{GatewayHandle, TestEnv, WorkerHandle, files};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::{Phase, Status};
use tokio::sync::mpsc;
use uuid::Uuid;

const MB: u64 = 1024 * 1024;
/// The scan date of every import here, so that two imports of one file give equal findings.
const SCAN_DATE: &str = "2026-01-05";
/// Pieces the test's client sends the file in.
const PIECE: usize = 256 * 1024;

/// A request whose file part the test feeds piece by piece, so it can hold the upload halfway.
struct HeldUpload {
    pieces: mpsc::Sender<std::io::Result<Bytes>>,
    answer: tokio::task::JoinHandle<reqwest::Result<(StatusCode, Value)>>,
}

impl HeldUpload {
    /// Starts `POST /api/imports` with `sessionId` and the scan date [`SCAN_DATE`] (and
    /// `after`, fields sent after the file), declaring a file of `len` bytes that the test then
    /// sends with [`HeldUpload::send`].
    fn start(gateway: &GatewayHandle, id: Uuid, len: u64, after: &[(&str, &str)]) -> HeldUpload {
        let (pieces, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
        let body = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|piece| (piece, rx)) });
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), len)
            .file_name("scan.csv".to_owned());
        let mut form = reqwest::multipart::Form::new()
            .text("sessionId", id.to_string())
            .text("scanDate", SCAN_DATE)
            .part("file", part);
        for (name, value) in after {
            form = form.text(name.to_string(), value.to_string());
        }
        let request = reqwest::Client::new().post(format!("{}/api/imports", gateway.base)).multipart(form);
        let answer = tokio::spawn(async move {
            let response = request.send().await?;
            let status = response.status();
            Ok((status, response.json().await.unwrap_or(Value::Null)))
        });
        HeldUpload { pieces, answer }
    }

    async fn send(&self, bytes: &[u8]) {
        for piece in bytes.chunks(PIECE) {
            self.pieces.send(Ok(Bytes::copy_from_slice(piece))).await.expect("the request still reads its body");
        }
    }
}

/// One test's stack: a gateway that starts imports of a megabyte or more while their files
/// arrive, a worker, and a Nessus export of about `size` bytes (its path, bytes and data rows).
struct Stack {
    env: TestEnv,
    gateway: GatewayHandle,
    _worker: WorkerHandle,
    path: std::path::PathBuf,
    bytes: Vec<u8>,
    rows: u64,
}

impl Stack {
    async fn start(size: u64) -> Stack {
        let env = TestEnv::start().await;
        let gateway = env.gateway_with(|config| config.early_start_bytes = MB).await;
        let _worker = env.worker().await;
        std::fs::create_dir_all(env.dir()).unwrap();
        let path = env.dir().join("scan.csv");
        let rows = files::write_nessus_file(&path, size);
        let bytes = std::fs::read(&path).unwrap();
        Stack { env, gateway, _worker, path, bytes, rows }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_starts_while_its_file_arrives_and_ends_as_a_stored_one_would() {
    let Stack { env, gateway, _worker, path, bytes, rows } = Stack::start(12 * MB).await;
    let id = Uuid::now_v7();
    let log = env.watch(id).await;

    let upload = HeldUpload::start(&gateway, id, bytes.len() as u64, &[]);
    let half = bytes.len() / 2;
    upload.send(&bytes[..half]).await;
    // Half the file is sent and the rest held back: the worker must be loading it already.
    let loading = log.wait_for(Duration::from_secs(60), |e| e.phase == Phase::Loading && e.bytes_processed > 0).await;
    assert!(loading.bytes_processed <= half as u64, "only what arrived is read: {loading:#?}");
    upload.send(&bytes[half..]).await;
    drop(upload.pieces);
    let (status, body) = upload.answer.await.unwrap().expect("the upload request");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let sha256: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(body["sizeBytes"], bytes.len() as u64, "{body}");
    assert_eq!(body["sha256"], sha256.as_str(), "{body}");

    let done = env.wait_for_terminal(id, Duration::from_secs(120)).await;
    assert_eq!(done.status, Status::Completed, "{:#?}", done.error);
    assert_eq!(done.summary.as_ref().unwrap().rows, rows);
    assert_eq!(done.bytes_processed, bytes.len() as u64, "the whole file was read, once");
    let recorded: (i64, String) = sqlx::query_as("SELECT size_bytes, sha256 FROM imports WHERE id = $1")
        .bind(id)
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(recorded, (bytes.len() as i64, sha256), "the row holds the file's real size and digest");
    let seqs: Vec<u64> = log.events().iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one attempt's events in order: {seqs:?}");
    // The same file stored first and imported after gives the same findings.
    env.assert_findings_equal_a_clean_run(&path, &[("scanDate", SCAN_DATE)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_after_its_import_started_ends_the_import_and_writes_nothing() {
    let Stack { env, gateway, _worker, bytes, .. } = Stack::start(8 * MB).await;
    let id = Uuid::now_v7();
    let log = env.watch(id).await;

    let upload = HeldUpload::start(&gateway, id, bytes.len() as u64, &[]);
    upload.send(&bytes[..bytes.len() / 2]).await;
    log.wait_for(Duration::from_secs(60), |e| e.phase == Phase::Loading && e.bytes_processed > 0).await;
    // The client's connection breaks halfway.
    upload.pieces.send(Err(std::io::Error::other("the client went away"))).await.unwrap();
    let _ = upload.answer.await.unwrap();

    let done = env.wait_for_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(done.status, Status::Error, "{done:#?}");
    let error = done.error.as_ref().unwrap();
    assert_eq!(error.code, "UPLOAD_INTERRUPTED", "{error:#?}");
    assert!(error.message.contains("interrupted"), "the reason is the gateway's: {}", error.message);
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await, 0, "nothing reached the final tables");
    assert!(!env.staging_exists(id).await, "the staging table is dropped");
    assert_eq!(log.events().iter().filter(|e| e.is_terminal()).count(), 1, "one terminal event");
    // Neither the object nor its chunks stay behind.
    let gone = async {
        loop {
            let objects = env.nats.upload_objects().await.unwrap();
            if objects.iter().all(|(_, info)| info.deleted) && env.upload_chunks().await == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), gone).await.expect("the upload is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_after_the_file_of_a_started_import_is_refused_and_ends_the_import() {
    let Stack { env, gateway, _worker, bytes, .. } = Stack::start(3 * MB).await;
    let id = Uuid::now_v7();

    let upload = HeldUpload::start(&gateway, id, bytes.len() as u64, &[("format", "nessus")]);
    upload.send(&bytes).await;
    drop(upload.pieces);
    let (status, body) = upload.answer.await.unwrap().expect("the upload request");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"format\"") && message.contains("before the file"), "{message}");

    let done = env.wait_for_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(done.status, Status::Error, "{done:#?}");
    let error = done.error.as_ref().unwrap();
    assert_eq!(error.code, "UPLOAD_INTERRUPTED");
    assert!(error.message.contains("format"), "the import says why: {}", error.message);
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await, 0, "nothing reached the final tables");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_cancelled_while_its_file_arrives_leaves_no_upload_behind() {
    let Stack { env, gateway, _worker, bytes, .. } = Stack::start(8 * MB).await;
    let id = Uuid::now_v7();
    let log = env.watch(id).await;

    let upload = HeldUpload::start(&gateway, id, bytes.len() as u64, &[]);
    let half = bytes.len() / 2;
    upload.send(&bytes[..half]).await;
    log.wait_for(Duration::from_secs(60), |e| e.phase == Phase::Loading && e.bytes_processed > 0).await;
    let (status, body) = gateway.post(&format!("/api/imports/{id}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The client holds the rest of the file: the import ends without waiting for it (well
    // within the gateway's 60 s idle timeout, which would end the upload anyway).
    let done = env.wait_for_terminal(id, Duration::from_secs(20)).await;
    assert_eq!(done.status, Status::Cancelled, "{done:#?}");

    // The client sends the rest of its file after the import ended: the answer still names
    // the import, and the file goes at once, not at the sweep.
    upload.send(&bytes[half..]).await;
    drop(upload.pieces);
    let (status, body) = upload.answer.await.unwrap().expect("the upload request");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["sessionId"], id.to_string(), "{body}");
    assert_eq!(body["status"], "cancelled", "the answer says how the import ended: {body}");
    assert_eq!(body["sizeBytes"], bytes.len() as u64, "{body}");
    let objects = env.nats.upload_objects().await.unwrap();
    assert!(objects.iter().all(|(_, info)| info.deleted), "no object is left: {objects:?}");
    assert_eq!(env.upload_chunks().await, 0, "no chunk is left");
    assert_eq!(env.scalar("SELECT count(*) FROM vulnerabilities").await, 0, "nothing reached the final tables");
    assert_eq!(log.events().iter().filter(|e| e.is_terminal()).count(), 1, "one terminal event");
}
