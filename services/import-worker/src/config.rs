//! Import worker configuration, from the environment.

use std::{net::SocketAddr, time::Duration};

use shared::{
    config::{DbConfig, NatsConfig, TelemetryConfig},
    ops::OpsConfig,
};

/// Where the ops endpoints listen when `HEXFLOW_OPS_LISTEN` is unset.
pub const DEFAULT_OPS_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9990);

/// Everything an import worker needs.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Ops endpoints (`/healthz`, `/readyz`, `/metrics`): the worker's only listener.
    #[command(flatten)]
    pub ops: OpsConfig,
    /// Imports this worker runs at once.
    #[arg(long = "concurrency", env = "HEXFLOW_WORKER_CONCURRENCY", value_name = "HEXFLOW_WORKER_CONCURRENCY",
          default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Seconds without a sign of life before JetStream redelivers a job (kept alive while working).
    #[arg(long = "ack-wait-secs", env = "HEXFLOW_WORKER_ACK_WAIT_SECS", value_name = "HEXFLOW_WORKER_ACK_WAIT_SECS",
          default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ack_wait_secs: u64,
    /// Deliveries of one job before it is given up as `error`.
    #[arg(long = "max-deliver", env = "HEXFLOW_WORKER_MAX_DELIVER", value_name = "HEXFLOW_WORKER_MAX_DELIVER",
          default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..=100))]
    pub max_deliver: i64,
    /// Share of invalid rows (0–1) above which an import fails instead of skipping them.
    #[arg(long = "max-invalid-ratio", env = "HEXFLOW_MAX_INVALID_RATIO", value_name = "HEXFLOW_MAX_INVALID_RATIO",
          default_value_t = 0.5, value_parser = parse_ratio)]
    pub max_invalid_ratio: f64,
    /// Invalid rows recorded per import (all are counted).
    #[arg(
        long = "max-row-errors",
        env = "HEXFLOW_MAX_ROW_ERRORS",
        value_name = "HEXFLOW_MAX_ROW_ERRORS",
        default_value_t = 1000
    )]
    pub max_row_errors: usize,
    /// Longest physical line accepted, in bytes.
    #[arg(long = "max-line-bytes", env = "HEXFLOW_MAX_LINE_BYTES", value_name = "HEXFLOW_MAX_LINE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_line_bytes: usize,
    /// Keep uploaded files in the object store after their import ends.
    #[arg(long = "keep-uploads", env = "HEXFLOW_KEEP_UPLOADS", value_name = "HEXFLOW_KEEP_UPLOADS", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub keep_uploads: bool,
    /// Publish intermediate progress events (phase changes and the end are always published).
    #[arg(long = "progress-events", env = "HEXFLOW_PROGRESS_EVENTS", value_name = "HEXFLOW_PROGRESS_EVENTS", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub progress_events: bool,
    /// Least time between two intermediate progress events of one import, in ms.
    #[arg(
        long = "progress-interval-ms",
        env = "HEXFLOW_WORKER_PROGRESS_INTERVAL_MS",
        value_name = "HEXFLOW_WORKER_PROGRESS_INTERVAL_MS",
        default_value_t = 50
    )]
    pub progress_interval_ms: u64,
    /// Seconds to let jobs in hand finish on shutdown before they are handed back to the queue.
    #[arg(
        long = "shutdown-grace-secs",
        env = "HEXFLOW_WORKER_SHUTDOWN_GRACE_SECS",
        value_name = "HEXFLOW_WORKER_SHUTDOWN_GRACE_SECS",
        default_value_t = 30
    )]
    pub shutdown_grace_secs: u64,
    /// Staging rows (bytes of CSV) committed at a time, each slice with where the load stands,
    /// so that a later attempt resumes after the last one; when a first import's findings are
    /// written while it loads, each slice is then written by the merge's connection.
    #[arg(
        long = "early-slice-bytes",
        env = "HEXFLOW_WORKER_EARLY_SLICE_BYTES",
        value_name = "HEXFLOW_WORKER_EARLY_SLICE_BYTES",
        default_value_t = 16 * 1024 * 1024
    )]
    pub early_slice_bytes: usize,
    /// Seconds between two passes of the sweep, which finishes ended imports whose terminal
    /// event or cleanup did not complete and removes orphaned uploads (one worker at a time).
    #[arg(long = "sweep-secs", env = "HEXFLOW_WORKER_SWEEP_SECS", value_name = "HEXFLOW_WORKER_SWEEP_SECS",
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub sweep_secs: u64,
    /// Age in seconds past which an uploaded file that no queued or running import refers to is
    /// removed. An upload in flight has no import row yet: keep this above the longest upload
    /// (the gateway's HEXFLOW_REQUEST_TIMEOUT_SECS, 3600 by default).
    #[arg(
        long = "upload-orphan-grace-secs",
        env = "HEXFLOW_UPLOAD_ORPHAN_GRACE_SECS",
        value_name = "HEXFLOW_UPLOAD_ORPHAN_GRACE_SECS",
        default_value_t = 7200
    )]
    pub upload_orphan_grace_secs: u64,
    /// For tests only: milliseconds to wait between the merge's commit and the terminal event,
    /// widening the window in which a crash leaves an ended import without its event.
    #[arg(
        long = "test-delay-after-commit-ms",
        env = "HEXFLOW_WORKER_TEST_DELAY_AFTER_COMMIT_MS",
        value_name = "HEXFLOW_WORKER_TEST_DELAY_AFTER_COMMIT_MS",
        default_value_t = 0,
        hide = true
    )]
    pub test_delay_after_commit_ms: u64,
    /// For tests only: milliseconds the merge waits after announcing each of its steps, so a
    /// test can cancel an import or kill its worker in the middle of a merge.
    #[arg(
        long = "test-merge-step-delay-ms",
        env = "HEXFLOW_TEST_MERGE_STEP_DELAY_MS",
        value_name = "HEXFLOW_TEST_MERGE_STEP_DELAY_MS",
        default_value_t = 0,
        hide = true
    )]
    pub test_merge_step_delay_ms: u64,
    /// NATS connection.
    #[command(flatten)]
    pub nats: NatsConfig,
    /// PostgreSQL connection.
    #[command(flatten)]
    pub db: DbConfig,
    /// Logging.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{raw:?} is not a share between 0 and 1")),
    }
}

impl Config {
    /// A config for tests and `hexflow dev`: the given NATS and database, defaults elsewhere.
    pub fn local(nats: NatsConfig, db: DbConfig) -> Self {
        Config {
            ops: OpsConfig::local(),
            concurrency: 2,
            ack_wait_secs: 30,
            max_deliver: 5,
            max_invalid_ratio: 0.5,
            max_row_errors: 1000,
            max_line_bytes: 4 * 1024 * 1024,
            keep_uploads: false,
            progress_events: true,
            progress_interval_ms: 50,
            shutdown_grace_secs: 30,
            early_slice_bytes: 16 * 1024 * 1024,
            sweep_secs: 60,
            upload_orphan_grace_secs: 7200,
            test_delay_after_commit_ms: 0,
            test_merge_step_delay_ms: 0,
            nats,
            db,
            telemetry: TelemetryConfig::default(),
        }
    }

    /// How often an attempt records its heartbeat, and how old the heartbeat of a processing
    /// import gets before watchers are told its worker stopped responding (well within the ack
    /// wait, after which the job is delivered again).
    pub fn liveness(&self) -> (Duration, Duration) {
        let every = (self.ack_wait() / 4).clamp(Duration::from_millis(250), Duration::from_secs(2));
        (every, every * 5 / 2)
    }

    /// `ack_wait` as a duration.
    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_secs)
    }
}
