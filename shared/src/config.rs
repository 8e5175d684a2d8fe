//! The configuration pieces every service shares, read from the environment.
//!
//! Each service flattens these into its own clap `Config`, so `--help` lists every variable and a
//! bad value stops start-up with a message that names the variable.

use std::fmt;

/// A string that must not show up in logs (`Debug` and `Display` print `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Default NATS address when `NATS_URL` is unset.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default database when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/hexflow";

/// How to reach NATS and how to provision JetStream.
#[derive(clap::Args, Debug, Clone)]
pub struct NatsConfig {
    /// NATS server URL(s), comma-separated [default: nats://127.0.0.1:4222].
    #[arg(id = "nats_url", long = "nats-url", env = "NATS_URL", value_name = "NATS_URL")]
    pub url: Option<String>,
    /// Replicas of every stream and bucket: 1 for one server, 3 in a cluster.
    #[arg(long = "nats-replicas", env = "HEXFLOW_NATS_REPLICAS", value_name = "HEXFLOW_NATS_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
}

impl NatsConfig {
    /// A config pointing at `url` with one replica.
    pub fn at(url: impl Into<String>) -> Self {
        NatsConfig { url: Some(url.into()), replicas: 1 }
    }

    /// The URL to connect to.
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_NATS_URL)
    }
}

/// How to reach PostgreSQL.
#[derive(clap::Args, Debug, Clone)]
pub struct DbConfig {
    /// PostgreSQL URL [default: postgres://postgres@127.0.0.1:5432/hexflow].
    #[arg(id = "database_url", long = "database-url", env = "DATABASE_URL", value_name = "DATABASE_URL")]
    pub url: Option<Secret>,
    /// Connections in this service's pool.
    #[arg(long = "db-max-connections", env = "HEXFLOW_DB_MAX_CONNECTIONS", value_name = "HEXFLOW_DB_MAX_CONNECTIONS",
          default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_connections: u32,
}

impl DbConfig {
    /// A config pointing at `url`.
    pub fn at(url: impl Into<String>) -> Self {
        DbConfig { url: Some(Secret(url.into())), max_connections: 10 }
    }

    /// The URL to connect to.
    pub fn url(&self) -> &str {
        self.url.as_ref().map(Secret::expose).unwrap_or(DEFAULT_DATABASE_URL)
    }
}

/// Output format of the logs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Coloured, one line per event, for terminals.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging and tracing.
#[derive(clap::Args, Debug, Clone)]
pub struct TelemetryConfig {
    /// Log filter in `tracing` EnvFilter syntax (falls back to RUST_LOG).
    #[arg(long = "log", env = "HEXFLOW_LOG", value_name = "HEXFLOW_LOG")]
    pub filter: Option<String>,
    /// Log format.
    #[arg(long = "log-format", env = "HEXFLOW_LOG_FORMAT", value_name = "HEXFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub format: LogFormat,
    /// OTLP/gRPC collector that receives the spans (e.g. http://otel-collector:4317); unset: no export.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Service name on exported spans [default: the service's own].
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME", value_name = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { filter: None, format: LogFormat::Human, otlp_endpoint: None, service_name: None }
    }
}
