//! Realtime gateways for the tests (in-process, or `hexflow realtime-gateway` processes that a
//! test may kill), imports made up for throttling tests, and authenticated uploads.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use shared::{
    Phase, ProgressEvent, Status,
    auth::{Claims, issue},
    events::{Metadata, now_ms},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{TestEnv, stack::ChildGuard};

/// The HS256 secret the auth tests configure.
pub const TEST_SECRET: &str = "hexflow-test-secret-of-reasonable-length";

/// A token for `user` of `tenant` signed with [`TEST_SECRET`].
pub fn token(user: &str, tenant: &str, admin: bool) -> String {
    let claims = Claims {
        sub: user.into(),
        tenant: Some(tenant.into()),
        role: admin.then(|| "admin".into()),
        exp: Some(now_ms() / 1000 + 3600),
        ..Claims::default()
    };
    issue(TEST_SECRET, &claims)
}

/// What the tests add to [`TestEnv`] for the realtime gateway.
// The futures are awaited in place by the tests, never sent across threads, so the `Send`
// bound that `async fn` in a public trait cannot promise is not needed.
#[allow(async_fn_in_trait)]
pub trait RealtimeEnv {
    /// A realtime gateway in this process, on a free port.
    async fn realtime(&self) -> RealtimeHandle {
        self.realtime_with(|_| {}).await
    }

    /// A realtime gateway with adjusted settings.
    async fn realtime_with(&self, adjust: impl FnOnce(&mut realtime_gateway::Config)) -> RealtimeHandle;

    /// `hexflow realtime-gateway` as a child process with extra environment; ready when it returns.
    async fn realtime_process(&self, env: &[(&str, &str)]) -> ChildGuard {
        self.hexflow_process("realtime-gateway", "HEXFLOW_REALTIME_LISTEN", env).await
    }

    /// `hexflow <subcommand>` on a free port (given to it in `listen_var`), on this test's NATS
    /// and database; ready (its `/readyz` answers 200) when it returns.
    async fn hexflow_process(&self, subcommand: &str, listen_var: &str, env: &[(&str, &str)]) -> ChildGuard;

    /// An `imports` row of `owner` in `tenant`, as an upload would have made it (no file, no job).
    async fn insert_import(&self, id: Uuid, owner: &str, tenant: &str);

    /// Publishes a progress event as a worker would (confirmed by JetStream).
    async fn publish(&self, event: &ProgressEvent);
}

impl RealtimeEnv for TestEnv {
    async fn realtime_with(&self, adjust: impl FnOnce(&mut realtime_gateway::Config)) -> RealtimeHandle {
        let mut config = realtime_gateway::Config::local(self.nats_config.clone(), self.db_config.clone());
        adjust(&mut config);
        let gateway = realtime_gateway::Gateway::build(config).await.expect("building the realtime gateway");
        let (addr, ops_addr) = (gateway.local_addr(), gateway.ops_addr());
        let stop = CancellationToken::new();
        let signal = stop.clone();
        tokio::spawn(gateway.run_until_stopped(async move { signal.cancelled().await }));
        let handle = RealtimeHandle { url: format!("http://{addr}"), ops_url: format!("http://{ops_addr}"), stop };
        wait_ready(&handle.ops_url, Duration::from_secs(30), || None).await;
        handle
    }

    async fn hexflow_process(&self, subcommand: &str, listen_var: &str, env: &[(&str, &str)]) -> ChildGuard {
        let mut process = self.service_process(subcommand, Some(listen_var), env);
        process.wait_ready(Duration::from_secs(60)).await;
        process
    }

    async fn insert_import(&self, id: Uuid, owner: &str, tenant: &str) {
        sqlx::query(
            "INSERT INTO imports (id, owner, tenant, filename, format, scanner, scan_date, object_key, size_bytes, sha256)
             VALUES ($1, $2, $3, 'made-up.csv', 'generic', 'generic', now(), $1::text, 0, '')",
        )
        .bind(id)
        .bind(owner)
        .bind(tenant)
        .execute(&self.db)
        .await
        .expect("inserting an import row");
    }

    async fn publish(&self, event: &ProgressEvent) {
        self.nats.publish_progress(event, None, true).await.expect("publishing a progress event");
    }
}

/// A progress event of a made-up import, stamped now.
pub fn made_up_event(id: Uuid, seq: u64, status: Status, progress: f64) -> ProgressEvent {
    let phase = match status {
        Status::Queued => Phase::Queued,
        Status::Processing => Phase::Loading,
        Status::Completed => Phase::Complete,
        Status::Error => Phase::Error,
        Status::Cancelled => Phase::Cancelled,
    };
    ProgressEvent {
        progress,
        message: format!("step {seq}"),
        processed_rows: seq * 10,
        bytes_processed: seq * 100,
        total_bytes: 100_000,
        attempt: 1,
        summary: (status == Status::Completed).then(Default::default),
        ..ProgressEvent::new(id, seq, status, phase, Metadata::new("made-up.csv", "generic", "2026-01-01T00:00:00Z", 2))
    }
}

/// Uploads a file with `Authorization: Bearer <token>`; status and JSON body.
pub async fn upload_as(base: &str, token: &str, bytes: Vec<u8>, filename: &str, id: Uuid) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .text("sessionId", id.to_string())
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()));
    let response = post_import_as(base, token, form).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Posts an upload `form` to `POST /api/imports` with `Authorization: Bearer <token>`.
pub async fn post_import_as(base: &str, token: &str, form: reqwest::multipart::Form) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/imports"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("upload request")
}

/// GET with an optional bearer token; status and JSON body.
pub async fn get_as(url: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An in-process realtime gateway; stopped (its sockets disconnected) when dropped.
pub struct RealtimeHandle {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// `http://` and the address of its ops endpoints.
    pub ops_url: String,
    stop: CancellationToken,
}

impl Drop for RealtimeHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Waits until `url/readyz` answers 200; `died` says why the service can no longer come up.
async fn wait_ready(url: &str, limit: Duration, mut died: impl FnMut() -> Option<String>) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        if let Some(why) = died() {
            panic!("service at {url} {why}");
        }
        match reqwest::get(format!("{url}/readyz")).await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => last = response.text().await.unwrap_or_default(),
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("service at {url} not ready within {limit:?}: {last}");
}
