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
//! An import is followed in this order:
//! - `consumer`: the pull loop with bounded concurrency.
//! - `job`: one delivery, from parse to acknowledgement.
//! - `attempt`: the checks before the claim, the claim, then the pipeline; returns an outcome.
//! - `import`: the import in hand (`Import`), built at the claim, borrowed by every step.
//! - `pipeline`: the steps of a claimed import (take over or create staging, load, merge).
//! - `outcome`: the one place that acts on an attempt's outcome (metrics, the end recorded,
//!   terminal event and cleanup, ack / nak with backoff / term, the retry and give-up rule).
//!
//! What the steps use:
//! - [`config`]: `Config` from the environment.
//! - [`error`]: `JobError` and what each variant means for the job message.
//! - `fence`: which attempt may still write (the delivery number as fencing token).
//! - `progress`: events, coalescing, ETA.
//! - `staging`: the staging table (create, drop) and the findings encoded for its COPY.
//! - `load`: object → format reader → COPY, in committed slices.
//! - `object`: the uploaded file, read chunk by chunk.
//! - `lines`: byte offsets of line starts, for resume points.
//! - `resume`: where a load stands after each slice, and how a later attempt continues it.
//! - `early`: a first import's findings written while the file loads.
//! - `merge`: the lifecycle merge transaction, and the advisory lock (`merge_lock`) it shares
//!   with `early`.
//! - `ended`: the terminal event derived from the row, and the cleanup of an ended import.
//! - `backoff`: waits between retries, with jitter.
//!
//! Beside the jobs:
//! - `cancel`: ending imports no worker holds.
//! - `sweep`: the periodic pass that finishes ended imports and removes orphaned uploads.
//! - `stall`: telling watchers when the worker holding an import stopped responding.

mod attempt;
mod cancel;
pub mod config;
mod consumer;
mod early;
mod ended;
pub mod error;
mod estimate;
mod fence;
mod import;
mod job;
mod lines;
mod load;
mod merge;
mod object;
mod outcome;
mod pipeline;
mod progress;
mod resume;
mod staging;
mod stall;
mod sweep;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use shared::{
    Nats,
    metrics::{Counter, Gauge, Metrics},
    ops,
};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

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
    /// Merge speeds this worker measured, per kind of merge, for ETAs.
    merge_rates: estimate::MergeRates,
    /// How much faster this worker's last load ran once its file had arrived, for ETAs.
    arriving_speedup: estimate::Speedup,
    /// How much faster the last first import's findings were written once its load was over.
    writer_alone_speedup: estimate::Speedup,
    /// How much faster the last first import's last slices were written, once its load was
    /// over, than while the load waited for the writer.
    writer_tail_speedup: estimate::Speedup,
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
        nats.provision(&config.nats).await?;
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
            merge_rates: estimate::MergeRates::default(),
            arriving_speedup: estimate::Speedup::new(estimate::ARRIVING_SPEEDUP),
            writer_alone_speedup: estimate::Speedup::new(estimate::WRITER_ALONE_SPEEDUP),
            writer_tail_speedup: estimate::Speedup::new(estimate::WRITER_TAIL_SPEEDUP),
            ops,
        })
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
}

/// A connected worker with its ops endpoints bound, not yet consuming (split so callers learn
/// the ops port before it runs), as the gateways' `build` / `run_until_stopped`.
pub struct Service {
    worker: Worker,
    ops_listener: TcpListener,
}

impl Service {
    /// Connects, provisions, and binds the ops address (`HEXFLOW_OPS_LISTEN`; port 0 picks a
    /// free port).
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        shared::open_files::raise();
        let worker = Worker::connect(config, Metrics::default()).await?;
        let ops_listener = worker.config.ops.bind(config::DEFAULT_OPS_LISTEN).await?;
        Ok(Service { worker, ops_listener })
    }

    /// The address of the ops endpoints.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves the ops endpoints and runs jobs until `shutdown` resolves (see [`Worker::run`]).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Service { worker, ops_listener } = self;
        tracing::info!(ops = %ops_listener.local_addr()?, "import worker ops endpoints listening");
        worker.ops.spawn(ops_listener);
        worker.run(shutdown).await
    }
}
