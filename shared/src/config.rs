//! The configuration pieces every service shares, read from the environment.
//!
//! Each service flattens these into its own clap `Config`, so `--help` lists every variable and a
//! bad value stops start-up with a message that names the variable.

use std::{fmt, path::PathBuf};

/// A string that must not show up in logs (`Debug` and `Display` print `***`).
#[derive(Clone, Default, PartialEq, Eq)]
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
/// Replicas of every stream and bucket when `HEXFLOW_NATS_REPLICAS` is unset: one server.
pub const DEFAULT_NATS_REPLICAS: u8 = 1;
/// Pool size when `HEXFLOW_DB_MAX_CONNECTIONS` is unset.
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 10;

/// How to reach NATS (one server or a cluster, with TLS and credentials) and how to provision
/// JetStream. The variable names are those of the `nats` command-line tool.
#[derive(clap::Args, Debug, Clone)]
pub struct NatsConfig {
    /// NATS server URL(s), comma-separated: the seed nodes of a cluster [default: nats://127.0.0.1:4222].
    /// `tls://` requires TLS.
    #[arg(id = "nats_url", long = "nats-url", env = "NATS_URL", value_name = "NATS_URL", value_parser = parse_nats_urls)]
    pub url: Option<String>,
    /// Replicas of every stream and bucket: 1 for one server, 3 in a cluster.
    #[arg(long = "nats-replicas", env = "HEXFLOW_NATS_REPLICAS", value_name = "HEXFLOW_NATS_REPLICAS", default_value_t = DEFAULT_NATS_REPLICAS,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Largest size of the uploads bucket, in bytes: an upload that would pass it is refused
    /// (503) and deleted, so queued files cannot fill the JetStream store the other streams
    /// need. Unset: only the server's own JetStream limit.
    #[arg(long = "uploads-max-bytes", env = "HEXFLOW_UPLOADS_MAX_BYTES", value_name = "HEXFLOW_UPLOADS_MAX_BYTES",
          value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    pub uploads_max_bytes: Option<u64>,
    /// Credentials file (JWT and NKey seed) for NATS.
    #[arg(id = "nats_creds", long = "nats-creds", env = "NATS_CREDS", value_name = "NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// User name for NATS (with NATS_PASSWORD).
    #[arg(
        id = "nats_user",
        long = "nats-user",
        env = "NATS_USER",
        value_name = "NATS_USER",
        requires = "nats_password"
    )]
    pub user: Option<String>,
    /// Password for NATS (with NATS_USER).
    #[arg(
        id = "nats_password",
        long = "nats-password",
        env = "NATS_PASSWORD",
        value_name = "NATS_PASSWORD",
        requires = "nats_user"
    )]
    pub password: Option<Secret>,
    /// Token for NATS.
    #[arg(id = "nats_token", long = "nats-token", env = "NATS_TOKEN", value_name = "NATS_TOKEN")]
    pub token: Option<Secret>,
    /// CA certificate (PEM) that signed the NATS servers' certificates, when not a public one.
    #[arg(id = "nats_ca", long = "nats-ca", env = "NATS_CA", value_name = "NATS_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients (with NATS_KEY).
    #[arg(id = "nats_cert", long = "nats-cert", env = "NATS_CERT", value_name = "NATS_CERT", requires = "nats_key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate (with NATS_CERT).
    #[arg(id = "nats_key", long = "nats-key", env = "NATS_KEY", value_name = "NATS_KEY", requires = "nats_cert")]
    pub key: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: None,
            replicas: DEFAULT_NATS_REPLICAS,
            uploads_max_bytes: None,
            creds: None,
            user: None,
            password: None,
            token: None,
            ca: None,
            cert: None,
            key: None,
        }
    }
}

impl NatsConfig {
    /// A config pointing at `url` with one replica and no credentials.
    pub fn at(url: impl Into<String>) -> Self {
        NatsConfig { url: Some(url.into()), ..Default::default() }
    }

    /// The URL list as configured.
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_NATS_URL)
    }

    /// The servers to connect to, one per comma-separated URL.
    pub fn servers(&self) -> Result<Vec<async_nats::ServerAddr>, String> {
        server_addrs(self.url())
    }
}

/// Checks a `NATS_URL` value (one URL or several, comma-separated) and keeps it as given.
fn parse_nats_urls(raw: &str) -> Result<String, String> {
    server_addrs(raw).map(|_| raw.to_owned())
}

/// Splits a comma-separated URL list (spaces allowed) into server addresses.
fn server_addrs(raw: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let parts: Vec<&str> = raw.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err("no server URL given; expected nats://host:port, several separated by commas".into());
    }
    parts
        .into_iter()
        .map(|part| {
            part.parse::<async_nats::ServerAddr>().map_err(|e| {
                format!("{part:?} is not a NATS server URL ({e}); expected nats://host:port or tls://host:port, several separated by commas")
            })
        })
        .collect()
}

/// How to reach PostgreSQL.
#[derive(clap::Args, Debug, Clone)]
pub struct DbConfig {
    /// PostgreSQL URL [default: postgres://postgres@127.0.0.1:5432/hexflow].
    #[arg(id = "database_url", long = "database-url", env = "DATABASE_URL", value_name = "DATABASE_URL")]
    pub url: Option<Secret>,
    /// Connections in this service's pool.
    #[arg(long = "db-max-connections", env = "HEXFLOW_DB_MAX_CONNECTIONS", value_name = "HEXFLOW_DB_MAX_CONNECTIONS",
          default_value_t = DEFAULT_DB_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_connections: u32,
}

impl DbConfig {
    /// A config pointing at `url`.
    pub fn at(url: impl Into<String>) -> Self {
        DbConfig { url: Some(Secret(url.into())), max_connections: DEFAULT_DB_MAX_CONNECTIONS }
    }

    /// The URL to connect to.
    pub fn url(&self) -> &str {
        self.url.as_ref().map(Secret::expose).unwrap_or(DEFAULT_DATABASE_URL)
    }
}

/// Output format of the logs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Coloured, one line per event, for terminals.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// How spans travel to the OTLP collector.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317 by convention).
    #[default]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

/// Accepts an `http://` or `https://` collector URL.
fn parse_otlp_endpoint(raw: &str) -> Result<String, String> {
    if raw.starts_with("http://") || raw.starts_with("https://") {
        Ok(raw.to_owned())
    } else {
        Err(format!("{raw:?} is not a collector URL; expected http://host:port or https://host:port"))
    }
}

/// Logging and tracing; the defaults are those of each field's type.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// Log filter in `tracing` EnvFilter syntax (falls back to RUST_LOG).
    #[arg(long = "log", env = "HEXFLOW_LOG", value_name = "HEXFLOW_LOG")]
    pub filter: Option<String>,
    /// Log format.
    #[arg(
        long = "log-format",
        env = "HEXFLOW_LOG_FORMAT",
        value_name = "HEXFLOW_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub format: LogFormat,
    /// OTLP collector that receives the spans (http:// or https://, e.g. http://otel-collector:4317
    /// for gRPC, :4318 for HTTP); unset: no export.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_ENDPOINT",
          value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport: `grpc` or `http/protobuf`.
    #[arg(
        long = "otlp-protocol",
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_name = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_enum,
        default_value_t
    )]
    pub otlp_protocol: OtlpProtocol,
    /// Service name on exported spans [default: the service's own].
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME", value_name = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_url_takes_a_comma_separated_list_with_or_without_spaces() {
        let config = NatsConfig::at("nats://a:4222,nats://b:4222 , tls://c:4223");
        let servers = config.servers().unwrap();
        assert_eq!(servers.len(), 3);
        assert!(servers[2].tls_required(), "tls:// asks for TLS");
    }

    #[test]
    fn a_bad_entry_in_nats_url_is_named_with_what_is_expected() {
        let err = parse_nats_urls("nats://a:4222,nats://b:port").unwrap_err();
        assert!(err.contains("nats://b:port") && err.contains("expected nats://host:port"), "{err}");
        assert!(parse_nats_urls(" , ").unwrap_err().contains("no server URL"));
    }

    #[test]
    fn the_command_line_defaults_are_the_default_values() {
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            nats: NatsConfig,
            #[command(flatten)]
            db: DbConfig,
            #[command(flatten)]
            telemetry: TelemetryConfig,
        }
        for var in
            ["HEXFLOW_NATS_REPLICAS", "HEXFLOW_DB_MAX_CONNECTIONS", "HEXFLOW_LOG_FORMAT", "OTEL_EXPORTER_OTLP_PROTOCOL"]
        {
            assert!(std::env::var_os(var).is_none(), "{var} is set; unset it to compare the defaults");
        }
        let parsed = <Probe as clap::Parser>::try_parse_from(["probe"]).unwrap();
        assert_eq!(parsed.nats.replicas, NatsConfig::default().replicas);
        assert_eq!(parsed.db.max_connections, DbConfig::at("postgres://x").max_connections);
        assert_eq!(parsed.telemetry.format, TelemetryConfig::default().format);
        assert_eq!(parsed.telemetry.otlp_protocol, TelemetryConfig::default().otlp_protocol);
    }

    #[test]
    fn an_otlp_endpoint_must_be_an_http_or_https_url() {
        assert!(parse_otlp_endpoint("https://collector:4317").is_ok());
        assert!(parse_otlp_endpoint("collector:4317").unwrap_err().contains("expected http://"));
    }
}
