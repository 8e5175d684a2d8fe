//! The import worker: a stateless JetStream consumer that streams each uploaded scan export
//! through the format reader into PostgreSQL (COPY into an UNLOGGED staging table, then one
//! merge transaction into the final tables) and publishes progress as it goes.
//!
//! Consumes: `hexflow.jobs.import` (durable `import-workers`, explicit ack, in-progress acks),
//! `hexflow.cancel.*`, the max-deliveries advisory of the job consumer. Publishes:
//! `hexflow.progress.<id>`. Tables: `imports`, `import_row_errors`, `import_staging_<id>`,
//! `import_resume`, `scanner_checks`, `vulnerabilities`.
//!
//! # Layout
//! - [`config`]: `Config` from the environment.
//! - [`error`]: `JobError` and what each variant means for the job message.
//! - `consumer`: the pull loop with bounded concurrency.
//! - `job`: one attempt, from claim to acknowledgement.
//! - `fence`: which attempt may still write (the delivery number as fencing token).
//! - `ended`: the terminal event derived from the row, and the cleanup of an ended import.
//! - `sweep`: the periodic pass that finishes ended imports and removes orphaned uploads.
//! - `load`: object → format reader → COPY, in committed slices.
//! - `resume`: where a load stands after each slice, and how a later attempt continues it.
//! - `lines`: byte offsets of line starts, for resume points.
//! - `stall`: telling watchers when the worker holding an import stopped responding.
//! - `merge`: the lifecycle merge transaction.
//! - `object`: the uploaded file, read chunk by chunk.
//! - `progress`: events, coalescing, ETA.
//! - `staging`: findings encoded for COPY, adjacent repeats folded.
//! - `cancel`: ending imports no worker holds.

mod cancel;
pub mod config;
mod consumer;
mod early;
mod ended;
pub mod error;
mod fence;
mod job;
mod lines;
mod load;
mod merge;
mod object;
mod progress;
mod resume;
mod staging;
mod stall;
mod sweep;

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use shared::{
    Nats,
    metrics::{Counter, Gauge, Metrics},
    ops,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Rows of a file merged per second, assumed before this worker has measured its own (a 2-core
/// machine merges a first import of a million-row Nessus export at about 90k rows/s); ETAs
/// start from it.
const INITIAL_MERGE_RATE: f64 = 90_000.0;

/// A connected worker; cheap to clone (every job task holds one).
#[derive(Clone)]
pub struct Worker {
    /// Imports, staging and final tables.
    db: PgPool,
    /// Jobs, object store, progress and cancel subjects.
    nats: Nats,
    /// Limits and behaviour.
    config: Arc<Config>,
    /// What `/metrics` shows.
    metrics: WorkerMetrics,
    /// Measured merge speed (file rows/s), for ETAs; starts from a typical figure.
    merge_rate: Arc<Mutex<f64>>,
    /// `/healthz`, `/readyz` and `/metrics`.
    ops: ops::Ops,
}

#[derive(Clone)]
struct WorkerMetrics {
    jobs_active: Gauge,
    jobs_completed: Counter,
    jobs_failed: Counter,
    jobs_cancelled: Counter,
    rows: Counter,
}

impl Worker {
    /// Connects to NATS and PostgreSQL (retrying until they answer) and provisions the streams.
    pub async fn connect(config: Config, registry: Metrics) -> anyhow::Result<Worker> {
        let nats = Nats::connect(&config.nats, "hexflow-import-worker").await?;
        nats.provision(config.nats.replicas).await?;
        let db = shared::db::pool(&config.db)?;
        shared::db::wait_until_reachable(&db, Duration::from_secs(60)).await?;
        let metrics = WorkerMetrics {
            jobs_active: registry.gauge("hexflow_worker_jobs_active", "Imports running in this worker"),
            jobs_completed: registry.counter("hexflow_worker_jobs_completed_total", "Imports completed"),
            jobs_failed: registry.counter("hexflow_worker_jobs_failed_total", "Imports ended in error"),
            jobs_cancelled: registry.counter("hexflow_worker_jobs_cancelled_total", "Imports cancelled"),
            rows: registry.counter("hexflow_worker_rows_total", "Data rows imported"),
        };
        let ops = ops::Ops::new("import-worker", &registry, config.ops.grace())
            .with_check("nats", ops::nats_check(nats.clone()))
            .with_check("postgres", ops::db_check(db.clone()));
        Ok(Worker {
            db,
            nats,
            config: Arc::new(config),
            metrics,
            merge_rate: Arc::new(Mutex::new(INITIAL_MERGE_RATE)),
            ops,
        })
    }

    /// Binds the ops endpoints (`HEXFLOW_OPS_LISTEN`) and serves them in the background.
    pub async fn serve_ops(&self) -> anyhow::Result<std::net::SocketAddr> {
        let listener = self.config.ops.bind(config::DEFAULT_OPS_LISTEN).await?;
        let addr = listener.local_addr()?;
        self.ops.spawn(listener);
        Ok(addr)
    }

    /// Runs jobs until `shutdown` resolves; jobs in hand get the grace period to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let consumer = consumer::consumer(&self).await?;
        let stop = CancellationToken::new();
        let watchers = [
            tokio::spawn(cancel::watch_cancel_requests(self.clone())),
            tokio::spawn(cancel::watch_exhausted_jobs(self.clone())),
            tokio::spawn(sweep::run(self.clone())),
            tokio::spawn(stall::run(self.clone())),
        ];
        let trigger = stop.clone();
        let ops = self.ops.clone();
        tokio::spawn(async move {
            shutdown.await;
            ops.mark_stopping();
            trigger.cancel();
        });
        tracing::info!(concurrency = self.config.concurrency, "import worker consuming jobs");
        consumer::consume(self, consumer, stop).await;
        for w in watchers {
            w.abort();
        }
        Ok(())
    }

    fn merge_rate(&self) -> f64 {
        *self.merge_rate.lock().expect("merge rate lock is never poisoned")
    }

    /// Folds one merge's speed into the estimate used for ETAs.
    fn observe_merge(&self, rows: u64, took: Duration) {
        if rows < 10_000 || took.is_zero() {
            return;
        }
        let rate = rows as f64 / took.as_secs_f64();
        let mut current = self.merge_rate.lock().expect("merge rate lock is never poisoned");
        *current = 0.5 * *current + 0.5 * rate;
    }
}
