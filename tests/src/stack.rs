//! `TestEnv`: a NATS server and a database of the test's own, and the services on top.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use hexflow::embedded::{EmbeddedNats, free_port};
use reqwest::StatusCode;
use serde_json::Value;
use shared::{
    Nats, ProgressEvent,
    config::{DbConfig, NatsConfig},
    names,
};
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Server that test databases are created on.
fn admin_url() -> String {
    std::env::var("HEXFLOW_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Replaces the database name at the end of a URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// The `hexflow` binary next to the test binary (`cargo build -p hexflow` puts it there).
pub fn hexflow_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe.parent().and_then(Path::parent).expect("test binaries live in target/<profile>/deps");
    let bin = dir.join("hexflow");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p hexflow` before the tests (scripts/test does)",
        bin.display()
    );
    bin
}

/// One test's infrastructure.
pub struct TestEnv {
    /// The test's own nats-server (tests may kill and restart it).
    pub nats_server: EmbeddedNats,
    /// Where services find NATS.
    pub nats_config: NatsConfig,
    /// Where services find the database.
    pub db_config: DbConfig,
    /// A pool on the test database, for assertions.
    pub db: PgPool,
    /// A NATS connection of the test's own, for watching events.
    pub nats: Nats,
    admin_url: String,
    db_name: String,
    dir: PathBuf,
}

impl TestEnv {
    /// Starts nats-server, creates and migrates a fresh database.
    pub async fn start() -> TestEnv {
        Self::start_on(admin_url()).await
    }

    /// Like [`TestEnv::start`], with the database created on the server at `admin_url` (a
    /// PostgreSQL the test runs itself, to stop and restart it).
    pub async fn start_on(admin_url: String) -> TestEnv {
        crate::init_logs();
        let dir = std::env::temp_dir().join(format!("hexflow-test-{}", Uuid::new_v4().simple()));
        let nats_server = EmbeddedNats::start(&dir.join("nats"), None).expect("starting nats-server");
        let nats_config = NatsConfig::at(nats_server.url.clone());
        let db_name = format!("hexflow_test_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {admin_url} (set HEXFLOW_TEST_DATABASE_URL): {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&mut admin)
            .await
            .expect("creating the test database");
        let db_config = DbConfig::at(with_database(&admin_url, &db_name));
        let db = shared::db::pool(&db_config).expect("pool");
        shared::db::migrate(&db).await.expect("migrating the test database");
        let nats = Nats::connect(&nats_config, "hexflow-test").await.expect("connecting to the test nats-server");
        nats.provision(&nats_config).await.expect("provisioning streams");
        TestEnv { nats_server, nats_config, db_config, db, nats, admin_url, db_name, dir }
    }

    /// An upload gateway in this process, on a free port.
    pub async fn gateway(&self) -> GatewayHandle {
        self.gateway_with(|_| {}).await
    }

    /// An upload gateway with adjusted settings.
    pub async fn gateway_with(&self, adjust: impl FnOnce(&mut upload_gateway::Config)) -> GatewayHandle {
        let mut config = upload_gateway::Config::local(self.nats_config.clone(), self.db_config.clone());
        adjust(&mut config);
        let gateway = upload_gateway::Gateway::build(config).await.expect("building the gateway");
        let (addr, ops_addr) = (gateway.local_addr(), gateway.ops_addr());
        let stop = CancellationToken::new();
        let signal = stop.clone();
        tokio::spawn(gateway.run_until_stopped(async move { signal.cancelled().await }));
        GatewayHandle::new(addr, ops_addr, Some(stop))
    }

    /// An import worker in this process.
    pub async fn worker(&self) -> WorkerHandle {
        self.worker_with(|_| {}).await
    }

    /// An import worker with adjusted settings.
    pub async fn worker_with(&self, adjust: impl FnOnce(&mut import_worker::Config)) -> WorkerHandle {
        let mut config = import_worker::Config::local(self.nats_config.clone(), self.db_config.clone());
        adjust(&mut config);
        let worker = import_worker::Worker::connect(config, shared::metrics::Metrics::default())
            .await
            .expect("connecting the worker");
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task = tokio::spawn(async move { worker.run(async move { signal.cancelled().await }).await });
        WorkerHandle { stop, task: Some(task) }
    }

    /// `hexflow import-worker` as a child process (killed when the guard drops).
    pub fn worker_process(&self, env: &[(&str, &str)]) -> ChildGuard {
        self.service_process("import-worker", None, env)
    }

    /// `hexflow upload-gateway` as a child process.
    pub fn gateway_process(&self, env: &[(&str, &str)]) -> ChildGuard {
        self.service_process("upload-gateway", Some("HEXFLOW_LISTEN"), env)
    }

    /// `hexflow <service>` as a child process: its public port (set through `listen_var`, for
    /// services that have one) and its ops port are free ones.
    pub fn service_process(&self, service: &str, listen_var: Option<&str>, env: &[(&str, &str)]) -> ChildGuard {
        let ops_port = free_port(None);
        let port = listen_var.map_or(ops_port, |_| free_port(None));
        let mut cmd = self.service_command(service);
        if let Some(var) = listen_var {
            cmd.env(var, format!("127.0.0.1:{port}"));
        }
        cmd.env("HEXFLOW_OPS_LISTEN", format!("127.0.0.1:{ops_port}"));
        cmd.envs(env.iter().copied());
        ChildGuard::spawn(
            cmd,
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from(([127, 0, 0, 1], ops_port)),
            &self.dir.join(format!("{service}-{port}.log")),
        )
    }

    fn service_command(&self, service: &str) -> Command {
        let mut cmd = Command::new(hexflow_binary());
        // Started outside the repository, as operators do: nothing may depend on the working directory.
        cmd.current_dir(&self.dir);
        cmd.arg(service)
            .env("NATS_URL", self.nats_config.url())
            .env("DATABASE_URL", self.db_config.url())
            .env("HEXFLOW_LOG", std::env::var("TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env_remove("RUST_LOG");
        cmd
    }

    /// Starts collecting the events of an import (subscribe before the upload to see them all).
    pub async fn watch(&self, id: Uuid) -> EventLog {
        let mut sub = self.nats.client.subscribe(names::progress_subject(id)).await.expect("subscribing to progress");
        self.nats.client.flush().await.expect("flushing the subscription");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                let event: ProgressEvent =
                    serde_json::from_slice(&message.payload).expect("progress events are valid JSON");
                sink.lock().unwrap().push(event);
            }
        });
        EventLog { events, task }
    }

    /// Waits for the import's terminal snapshot.
    pub async fn wait_for_terminal(&self, id: Uuid, limit: Duration) -> ProgressEvent {
        self.wait_for(id, limit, |e| e.is_terminal()).await
    }

    /// Waits until the import's snapshot satisfies `done`.
    pub async fn wait_for(&self, id: Uuid, limit: Duration, done: impl Fn(&ProgressEvent) -> bool) -> ProgressEvent {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < limit {
            if let Ok(Some(event)) = self.nats.last_progress(id).await {
                if done(&event) {
                    return event;
                }
                last = Some(event);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("import {id}: condition not reached within {limit:?}; last snapshot: {last:#?}");
    }

    /// Chunks stored in the uploads bucket, whatever object (or none) names them.
    pub async fn upload_chunks(&self) -> usize {
        use futures::TryStreamExt;
        let stream = self.nats.js.get_stream(format!("OBJ_{}", names::UPLOADS_BUCKET)).await.expect("uploads stream");
        let subjects =
            stream.info_with_subjects(format!("$O.{}.C.>", names::UPLOADS_BUCKET)).await.expect("stream info");
        subjects.try_fold(0, |n, (_, count)| async move { Ok(n + count) }).await.expect("subject counts")
    }

    /// A single number from SQL.
    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Imports `path` (with the form `fields`) on a stack of its own, with nothing going wrong,
    /// and asserts that this test's findings equal that clean run's; returns its terminal event.
    pub async fn assert_findings_equal_a_clean_run(&self, path: &Path, fields: &[(&str, &str)]) -> ProgressEvent {
        let clean = TestEnv::start().await;
        let gateway = clean.gateway().await;
        let _worker = clean.worker().await;
        let id = Uuid::now_v7();
        let id_text = id.to_string();
        let mut form = vec![("sessionId", id_text.as_str())];
        form.extend_from_slice(fields);
        gateway.upload_path(path, &form).await;
        let done = clean.wait_for_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(done.status, shared::Status::Completed, "the clean run completes");
        let (ours, theirs) = (self.findings_dump().await, clean.findings_dump().await);
        assert!(!ours.is_empty());
        assert_eq!(ours.len(), theirs.len(), "same number of findings");
        assert!(ours == theirs, "the final tables equal a clean run's");
        done
    }

    /// Every finding as sorted text rows, to compare final states. Not kept prepared, so a
    /// migration between two dumps (which may change the result's collation) cannot stale it.
    pub async fn findings_dump(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT concat_ws('|', tenant, scanner, asset, check_id, port, protocol, array_to_string(cves, ','), severity,
                              cvss, vpr, md5(output), state, first_seen, last_seen, resolved_at)
             FROM vulnerabilities ORDER BY 1",
        )
        .persistent(false)
        .fetch_all(&self.db)
        .await
        .expect("dumping findings")
    }

    /// True when the import's staging table exists. An import that has ended is cleaned up just
    /// after its terminal event (the event goes first, so watchers learn the end at once): this
    /// waits, at most 15 s, until that cleanup is recorded (`cleaned_at`) before it looks.
    pub async fn staging_exists(&self, id: Uuid) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let pending: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM imports WHERE id = $1 AND cleaned_at IS NULL
                                  AND status IN ('completed', 'error', 'cancelled'))",
            )
            .bind(id)
            .fetch_one(&self.db)
            .await
            .expect("reading the import's cleanup");
            if !pending {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
            .bind(names::staging_table(id))
            .fetch_one(&self.db)
            .await
            .expect("checking staging")
    }

    /// A scratch directory removed with the environment.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.db_name.clone());
        // Drop runs outside async: a small runtime of its own removes the database.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
        if std::env::var("TEST_KEEP").is_err() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The events of one import as the test saw them on NATS.
pub struct EventLog {
    events: Arc<Mutex<Vec<ProgressEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventLog {
    /// Everything received so far.
    pub fn events(&self) -> Vec<ProgressEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until an event satisfies `pred`, and returns it.
    pub async fn wait_for(&self, limit: Duration, pred: impl Fn(&ProgressEvent) -> bool) -> ProgressEvent {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no matching event within {limit:?}; saw {:#?}", self.events().last());
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A service in this process; stopped when dropped.
pub struct GatewayHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://addr`.
    pub base: String,
    /// `http://` and the address of its ops endpoints.
    pub ops_base: String,
    http: reqwest::Client,
    stop: Option<CancellationToken>,
}

impl GatewayHandle {
    /// A client for a gateway at `addr` with ops at `ops_addr` (in-process when `stop` is given).
    pub fn new(addr: SocketAddr, ops_addr: SocketAddr, stop: Option<CancellationToken>) -> Self {
        GatewayHandle {
            addr,
            base: format!("http://{addr}"),
            ops_base: format!("http://{ops_addr}"),
            http: reqwest::Client::new(),
            stop,
        }
    }

    /// GET an ops endpoint (`/healthz`, `/readyz`); status and JSON body.
    pub async fn ops_get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(format!("{}{path}", self.ops_base)).send().await.expect("GET");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Uploads `bytes` as `filename` with extra form fields; returns status and JSON body.
    pub async fn upload(&self, bytes: Vec<u8>, filename: &str, fields: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        form = form.part("file", reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()));
        self.send_form(form).await
    }

    /// Uploads a file from disk, streamed.
    pub async fn upload_path(&self, path: &Path, fields: &[(&str, &str)]) -> (StatusCode, Value) {
        let file = tokio::fs::File::open(path).await.unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        let len = file.metadata().await.unwrap().len();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        form = form.part("file", reqwest::multipart::Part::stream_with_length(body, len).file_name(name));
        self.send_form(form).await
    }

    async fn send_form(&self, form: reqwest::multipart::Form) -> (StatusCode, Value) {
        let response =
            self.http.post(format!("{}/api/imports", self.base)).multipart(form).send().await.expect("upload request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Uploads and expects 202; returns the session id.
    pub async fn upload_ok(&self, bytes: Vec<u8>, filename: &str, fields: &[(&str, &str)]) -> Uuid {
        let (status, body) = self.upload(bytes, filename, fields).await;
        assert_eq!(status, StatusCode::ACCEPTED, "upload of {filename} refused: {body}");
        body["sessionId"].as_str().and_then(|s| Uuid::parse_str(s).ok()).expect("sessionId in the answer")
    }

    /// GET a path; status and JSON body.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.expect("GET");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POST a path without a body; status and JSON body.
    pub async fn post(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.post(format!("{}{path}", self.base)).send().await.expect("POST");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.cancel();
        }
    }
}

/// A worker in this process; stopped when dropped.
pub struct WorkerHandle {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl WorkerHandle {
    /// Stops the worker and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A service child process; killed when dropped.
pub struct ChildGuard {
    child: Child,
    /// Its public address (the ops address for the worker, which has no other).
    pub addr: SocketAddr,
    /// Its ops endpoints' address.
    pub ops_addr: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
}

impl ChildGuard {
    fn spawn(mut cmd: Command, addr: SocketAddr, ops_addr: SocketAddr, log: &Path) -> ChildGuard {
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let out = std::fs::File::create(log).unwrap();
        let child =
            cmd.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out).spawn().expect("spawning hexflow");
        ChildGuard { child, addr, ops_addr, log: log.to_owned() }
    }

    /// Waits until `/readyz` answers 200 on the ops port.
    pub async fn wait_ready(&mut self, limit: Duration) {
        let started = Instant::now();
        let url = format!("{}/readyz", self.ops_url());
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "service exited with {status}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("service not ready within {limit:?}; log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://` and the ops address.
    pub fn ops_url(&self) -> String {
        format!("http://{}", self.ops_addr)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as an orchestrator stopping it would; returns once it has exited (panics after `limit`).
    pub async fn terminate(&mut self, limit: Duration) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("still running {limit:?} after SIGTERM; log:\n{}", self.log_text());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident memory (VmHWM) in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        proc_status_kb(self.pid(), "VmHWM:") * 1024
    }

    /// Current resident memory (VmRSS) in bytes.
    pub fn rss_bytes(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS:") * 1024
    }
}

fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
