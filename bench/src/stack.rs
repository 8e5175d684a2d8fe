//! The stack under test, as child processes: an embedded nats-server and PostgreSQL, then the
//! release `hexflow` binary's `upload-gateway` and `import-worker`. Every child is stopped when
//! its handle is dropped, on success, on error and on Ctrl-C alike.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hexflow::embedded::{EmbeddedNats, EmbeddedPostgres, free_port};

/// The gateway's upload limit in the benchmark: 64 GiB.
const BENCH_MAX_UPLOAD_BYTES: u64 = 64 << 30;
/// How long a service may take to answer `/readyz`.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long a service may take to stop after SIGTERM before it is killed (the worker gives the
/// job in hand 30 s by default).
const STOP_LIMIT: Duration = Duration::from_secs(40);

/// One `hexflow <service>` child process; SIGTERM (then SIGKILL) on drop.
pub struct Service {
    name: String,
    child: Child,
    /// The port of its public endpoints (the worker has none: its ops port).
    pub port: u16,
    /// The port of its ops endpoints (`/readyz`, `/metrics`).
    pub ops_port: u16,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Service {
    /// The process id, for `/proc/<pid>/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `GET /readyz` answers 200, or fails if the process exits or time runs out.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/readyz", self.ops_port);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}) before it was ready; see {}", self.name, self.log.display());
            }
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(2)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > READY_LIMIT {
                bail!("{} not ready at {url} within {READY_LIMIT:?}; see {}", self.name, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails if the process has exited (it should run until stopped).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{} exited ({status}); see {}", self.name, self.log.display()),
            None => Ok(()),
        }
    }

    /// SIGTERM, then SIGKILL if it has not stopped within [`STOP_LIMIT`].
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // std offers only SIGKILL; `kill -TERM` lets the service shut down gracefully.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {STOP_LIMIT:?}; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// NATS, PostgreSQL and (between runs) the two services. Fields drop in order: the services go
/// before the infrastructure they use.
pub struct Stack {
    /// The upload gateway of the current run.
    pub gateway: Option<Service>,
    /// The import worker of the current run.
    pub worker: Option<Service>,
    /// The embedded nats-server.
    pub nats: EmbeddedNats,
    /// The embedded PostgreSQL cluster.
    pub pg: EmbeddedPostgres,
    /// The release `hexflow` binary.
    pub hexflow: PathBuf,
    /// Where child logs go.
    pub logs: PathBuf,
    /// Environment added to the gateway's and the worker's (after the defaults).
    pub service_env: Vec<(String, String)>,
    /// Uploads are sent at most this many bytes a second (unbounded when `None`).
    pub upload_bytes_per_sec: Option<u64>,
}

/// Settings of one pair of services.
pub struct Services<'a> {
    /// Database both services use.
    pub database: &'a str,
    /// `HEXFLOW_PROGRESS_EVENTS` of the worker.
    pub progress_events: bool,
    /// Label of the run, used in log file names.
    pub label: &'a str,
}

impl Stack {
    /// Starts NATS and PostgreSQL with their data under `data`.
    pub async fn start(hexflow: PathBuf, data: &Path, logs: PathBuf) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let nats = EmbeddedNats::start(&data.join("nats"), None).context("starting nats-server")?;
        let pg_dir = data.join("postgres");
        let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&pg_dir, None))
            .await?
            .context("starting PostgreSQL")?;
        Ok(Stack {
            gateway: None,
            worker: None,
            nats,
            pg,
            hexflow,
            logs,
            service_env: Vec::new(),
            upload_bytes_per_sec: None,
        })
    }

    /// Creates `database` (if missing) with the given settings and applies the migrations with
    /// `hexflow migrate`.
    pub async fn create_database(&self, database: &str, settings: &[(String, String)]) -> anyhow::Result<()> {
        hexflow::dev::ensure_database(&self.pg.url("postgres"), database).await?;
        if !settings.is_empty() {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&self.pg.url("postgres")).await?;
            for (name, value) in settings {
                // Names are checked to be identifiers; the value is quoted as a literal.
                let sql = format!("ALTER DATABASE \"{database}\" SET {name} = '{}'", value.replace('\'', "''"));
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("setting {name}"))?;
            }
        }
        let log = self.logs.join(format!("migrate-{database}.log"));
        let (mut cmd, _) = self.command("migrate", &log)?;
        cmd.env("DATABASE_URL", self.pg.url(database));
        let status = tokio::task::spawn_blocking(move || cmd.status()).await??;
        if !status.success() {
            bail!("hexflow migrate failed ({status}); see {}", log.display());
        }
        Ok(())
    }

    /// Stops the running services (if any), starts a fresh gateway and worker, waits until both
    /// are ready.
    pub async fn restart_services(&mut self, http: &reqwest::Client, s: Services<'_>) -> anyhow::Result<()> {
        self.stop_services().await;
        let db_url = self.pg.url(s.database);
        let gateway_port = free_port(None);
        let log = self.logs.join(format!("gateway-{}.log", s.label));
        let (mut cmd, ops_port) = self.command("upload-gateway", &log)?;
        // Files past the default 2 GiB upload limit (a 5,000,000-row export is 5.3 GB).
        cmd.env("DATABASE_URL", &db_url)
            .env("HEXFLOW_LISTEN", format!("127.0.0.1:{gateway_port}"))
            .env("HEXFLOW_MAX_UPLOAD_BYTES", BENCH_MAX_UPLOAD_BYTES.to_string())
            .envs(self.service_env.iter().map(|(k, v)| (k, v)));
        let child = cmd.spawn().context("starting hexflow upload-gateway")?;
        self.gateway = Some(Service { name: "upload-gateway".into(), child, port: gateway_port, ops_port, log });

        let log = self.logs.join(format!("worker-{}.log", s.label));
        let (mut cmd, ops_port) = self.command("import-worker", &log)?;
        cmd.env("DATABASE_URL", &db_url)
            .env("HEXFLOW_WORKER_CONCURRENCY", "1")
            .env("HEXFLOW_PROGRESS_EVENTS", s.progress_events.to_string())
            .envs(self.service_env.iter().map(|(k, v)| (k, v)));
        let child = cmd.spawn().context("starting hexflow import-worker")?;
        self.worker = Some(Service { name: "import-worker".into(), child, port: ops_port, ops_port, log });

        for service in [&mut self.gateway, &mut self.worker].into_iter().flatten() {
            service.wait_ready(http).await?;
        }
        Ok(())
    }

    /// Stops both services (gracefully), off the async threads.
    pub async fn stop_services(&mut self) {
        let services = [self.gateway.take(), self.worker.take()];
        let _ = tokio::task::spawn_blocking(move || drop(services)).await;
    }

    /// Starts `hexflow realtime-gateway` on a free port against `database`, with `env` added to
    /// its environment (after the defaults, so it may override them). Not waited for.
    pub fn start_realtime_gateway(
        &self,
        database: &str,
        label: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<Service> {
        let port = free_port(None);
        let log = self.logs.join(format!("realtime-gateway-{label}.log"));
        let (mut cmd, ops_port) = self.command("realtime-gateway", &log)?;
        cmd.env("DATABASE_URL", self.pg.url(database)).env("HEXFLOW_REALTIME_LISTEN", format!("127.0.0.1:{port}"));
        for (name, value) in env {
            cmd.env(name, value);
        }
        let child = cmd.spawn().context("starting hexflow realtime-gateway")?;
        Ok(Service { name: "realtime-gateway".into(), child, port, ops_port, log })
    }

    /// `hexflow <subcommand>` with NATS set, its ops endpoints on a free port (returned), output
    /// appended to `log`, and no stray settings inherited from the caller's environment.
    fn command(&self, subcommand: &str, log: &Path) -> anyhow::Result<(Command, u16)> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = Command::new(&self.hexflow);
        cmd.arg(subcommand).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("HEXFLOW_") || k == "DATABASE_URL" || k == "NATS_URL") {
                cmd.env_remove(key);
            }
        }
        let ops_port = free_port(None);
        cmd.env("NATS_URL", &self.nats.url).env("HEXFLOW_OPS_LISTEN", format!("127.0.0.1:{ops_port}"));
        Ok((cmd, ops_port))
    }
}
