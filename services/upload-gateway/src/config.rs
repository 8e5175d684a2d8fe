//! Upload gateway configuration, from the environment.

use std::net::SocketAddr;

use shared::{
    auth::AuthConfig,
    config::{DbConfig, NatsConfig, TelemetryConfig},
    ops::{ConnLimits, OpsConfig},
};

/// Where the ops endpoints listen when `HEXFLOW_OPS_LISTEN` is unset.
pub const DEFAULT_OPS_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9989);

/// Default upload size limit: 2 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Default longest request, in seconds: an hour, for the largest uploads on slow links.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 3600;
/// Default longest silence while an upload is being received, in seconds.
pub const DEFAULT_UPLOAD_IDLE_TIMEOUT_SECS: u64 = 60;

/// Default smallest declared upload that starts its import while the file arrives: 16 MiB.
pub const DEFAULT_EARLY_START_BYTES: u64 = 16 * 1024 * 1024;
/// Default number of uploads per gateway whose imports run while their files arrive.
pub const DEFAULT_EARLY_STARTS: usize = 2;

/// Everything the upload gateway needs.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    #[arg(long = "listen", env = "HEXFLOW_LISTEN", value_name = "HEXFLOW_LISTEN", default_value = "127.0.0.1:8989")]
    pub listen: SocketAddr,
    /// Largest accepted upload in bytes; larger files are refused with 413.
    #[arg(long = "max-upload-bytes", env = "HEXFLOW_MAX_UPLOAD_BYTES", value_name = "HEXFLOW_MAX_UPLOAD_BYTES",
          default_value_t = DEFAULT_MAX_UPLOAD_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_upload_bytes: u64,
    /// Longest time one HTTP request may take, in seconds (uploads of large files included).
    #[arg(
        long = "request-timeout-secs",
        env = "HEXFLOW_REQUEST_TIMEOUT_SECS",
        value_name = "HEXFLOW_REQUEST_TIMEOUT_SECS",
        default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS
    )]
    pub request_timeout_secs: u64,
    /// Longest silence while an upload is being received, in seconds: a client that stops sending
    /// mid-request is cut off instead of holding its connection until the request timeout.
    #[arg(
        long = "upload-idle-timeout-secs",
        env = "HEXFLOW_UPLOAD_IDLE_TIMEOUT_SECS",
        value_name = "HEXFLOW_UPLOAD_IDLE_TIMEOUT_SECS",
        default_value_t = DEFAULT_UPLOAD_IDLE_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub upload_idle_timeout_secs: u64,
    /// Smallest upload, by its declared `Content-Length`, whose import starts while the file
    /// arrives (when the client sent `sessionId` before the file); smaller ones are queued once
    /// stored.
    #[arg(
        long = "early-start-bytes",
        env = "HEXFLOW_EARLY_START_BYTES",
        value_name = "HEXFLOW_EARLY_START_BYTES",
        default_value_t = DEFAULT_EARLY_START_BYTES
    )]
    pub early_start_bytes: u64,
    /// Uploads of this gateway whose imports run while their files arrive, at most (each holds
    /// a worker's slot as long as its client takes to send the file); 0 turns early starts off.
    #[arg(
        long = "early-starts",
        env = "HEXFLOW_EARLY_STARTS",
        value_name = "HEXFLOW_EARLY_STARTS",
        default_value_t = DEFAULT_EARLY_STARTS
    )]
    pub early_starts: usize,
    /// Serve the browser page from this directory instead of the copy embedded in the binary
    /// (for development: edits show without a rebuild).
    #[arg(long = "web-dir", env = "HEXFLOW_WEB_DIR", value_name = "HEXFLOW_WEB_DIR")]
    pub web_dir: Option<std::path::PathBuf>,
    /// Connection cap and header-read timeout of the public port.
    #[command(flatten)]
    pub connections: ConnLimits,
    /// Ops endpoints (`/healthz`, `/readyz`, `/metrics`).
    #[command(flatten)]
    pub ops: OpsConfig,
    /// Authentication (open mode when no secret is set).
    #[command(flatten)]
    pub auth: AuthConfig,
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

impl Config {
    /// A config for tests and `hexflow dev`: the given NATS and database, port 0 (API and ops),
    /// the defaults elsewhere.
    pub fn local(nats: NatsConfig, db: DbConfig) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            upload_idle_timeout_secs: DEFAULT_UPLOAD_IDLE_TIMEOUT_SECS,
            early_start_bytes: DEFAULT_EARLY_START_BYTES,
            early_starts: DEFAULT_EARLY_STARTS,
            web_dir: None,
            connections: ConnLimits::default(),
            ops: OpsConfig::local(),
            auth: AuthConfig::default(),
            nats,
            db,
            telemetry: TelemetryConfig::default(),
        }
    }
}
