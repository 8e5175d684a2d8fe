//! What every hexflow service shares: the event and job types, every NATS name, the config
//! pieces read from the environment, logging and trace context, NATS and PostgreSQL helpers, the
//! embedded migrator, metrics and the ops endpoints.
//!
//! # Layout
//! - [`auth`]: JWT (HS256) verification, `Identity`, the access rule.
//! - [`events`]: `ProgressEvent`, `ImportJob` and their parts (the JSON contract), with their
//!   constructors and the `OPERATION` / `TOTAL_STEPS` constants.
//! - [`import_row`]: the `imports` row as a progress event (`ProgressRow`).
//! - [`names`]: subjects, streams, buckets, rooms.
//! - [`config`]: `NatsConfig`, `DbConfig`, `TelemetryConfig`, `Secret`.
//! - [`telemetry`]: log set-up, W3C `traceparent`.
//! - [`bus`]: connect, provision, progress snapshots, cancel requests.
//! - [`uploads`]: the uploads bucket: pipelined writes, removal, orphaned chunks.
//! - [`compression`]: how an upload's bytes are stored (zstd frames) and read back.
//! - [`db`]: pool, start-up wait, `MIGRATOR`.
//! - [`metrics`], [`ops`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`backoff`]: jittered exponential waits between retries.
//! - [`open_files`]: the open-file limit raised at start-up, and the connection cap from it.

pub mod auth;
pub mod backoff;
pub mod bus;
pub mod compression;
pub mod config;
pub mod db;
pub mod events;
pub mod import_row;
pub mod metrics;
pub mod names;
pub mod open_files;
pub mod ops;
pub mod telemetry;
pub mod uploads;

pub use bus::{BusError, Nats};
pub use events::{ImportJob, Metadata, Phase, ProgressEvent, Status};
pub use import_row::ProgressRow;
