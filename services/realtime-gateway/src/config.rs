//! Realtime gateway configuration, from the environment.

use std::{net::SocketAddr, time::Duration};

use shared::{
    auth::AuthConfig,
    config::{DbConfig, NatsConfig, TelemetryConfig},
    ops::{ConnLimits, OpsConfig},
};

/// Where the ops endpoints listen when `HEXFLOW_OPS_LISTEN` is unset.
pub const DEFAULT_OPS_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9991);

/// Everything `hexflow realtime-gateway` needs.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Address to listen on (Socket.IO at `/socket.io/`).
    #[arg(
        long = "realtime-listen",
        env = "HEXFLOW_REALTIME_LISTEN",
        value_name = "HEXFLOW_REALTIME_LISTEN",
        default_value = "127.0.0.1:8991"
    )]
    pub listen: SocketAddr,
    /// Throttling, CORS, heartbeat and abuse limits.
    #[command(flatten)]
    pub options: Options,
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
    /// PostgreSQL connection (the `imports` table says who owns an import).
    #[command(flatten)]
    pub db: DbConfig,
    /// Logging.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

/// The settings of the Socket.IO layer itself; `hexflow dev` flattens these next to the upload
/// gateway's, since both share one address there.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Least time between two `progress-update` events of one room, in ms (terminal events are never held back).
    #[arg(long = "progress-min-interval-ms", env = "HEXFLOW_PROGRESS_MIN_INTERVAL_MS",
          value_name = "HEXFLOW_PROGRESS_MIN_INTERVAL_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub progress_min_interval_ms: u64,
    /// Browser origins allowed to connect from other sites, comma-separated (e.g. https://app.example.com).
    /// Empty: same-origin only. `*` is refused, because the answers allow credentials.
    #[arg(long = "cors-origins", env = "HEXFLOW_CORS_ORIGINS", value_name = "HEXFLOW_CORS_ORIGINS",
          value_parser = parse_origins, default_value = "")]
    pub cors_origins: Origins,
    /// Seconds between two `heartbeat` events to every socket.
    #[arg(long = "heartbeat-secs", env = "HEXFLOW_HEARTBEAT_SECS", value_name = "HEXFLOW_HEARTBEAT_SECS",
          default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub heartbeat_secs: u64,
    /// Client events (join, leave, cancel) one socket may send per second, on average.
    #[arg(long = "socket-rate-limit", env = "HEXFLOW_SOCKET_RATE_LIMIT", value_name = "HEXFLOW_SOCKET_RATE_LIMIT",
          default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate_limit_per_sec: u32,
    /// Client events one socket may send in a burst before `RATE_LIMITED`.
    #[arg(long = "socket-rate-burst", env = "HEXFLOW_SOCKET_RATE_BURST", value_name = "HEXFLOW_SOCKET_RATE_BURST",
          default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate_burst: u32,
    /// Progress rooms one socket may be in at once (`TOO_MANY_ROOMS` beyond).
    #[arg(long = "max-rooms-per-socket", env = "HEXFLOW_MAX_ROOMS_PER_SOCKET",
          value_name = "HEXFLOW_MAX_ROOMS_PER_SOCKET", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_rooms_per_socket: u32,
    /// Largest Engine.IO payload a client may send, in bytes.
    #[arg(long = "socket-max-payload", env = "HEXFLOW_SOCKET_MAX_PAYLOAD", value_name = "HEXFLOW_SOCKET_MAX_PAYLOAD",
          default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(64..=10_000_000))]
    pub max_payload_bytes: u64,
}

/// Browser origins allowed to connect cross-site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(pub Vec<String>);

/// A comma-separated list of origins; empty entries are skipped.
fn parse_origins(raw: &str) -> Result<Origins, String> {
    raw.split(',').filter(|o| !o.trim().is_empty()).map(parse_origin).collect::<Result<_, _>>().map(Origins)
}

/// Accepts `scheme://host[:port]`; refuses `*` (credentials are allowed, so a wildcard would let any site in).
fn parse_origin(raw: &str) -> Result<String, String> {
    let origin = raw.trim().trim_end_matches('/');
    if origin == "*" {
        return Err("`*` is not allowed; list the origins (e.g. https://app.example.com)".into());
    }
    let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
        && origin.split_once("://").is_some_and(|(_, host)| !host.is_empty() && !host.contains('/'));
    if valid {
        Ok(origin.to_owned())
    } else {
        Err(format!("{raw:?} is not an origin; expected e.g. https://app.example.com"))
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            progress_min_interval_ms: 100,
            cors_origins: Origins::default(),
            heartbeat_secs: 30,
            rate_limit_per_sec: 10,
            rate_burst: 30,
            max_rooms_per_socket: 50,
            max_payload_bytes: 16 * 1024,
        }
    }
}

impl Options {
    /// The throttle interval.
    pub fn min_interval(&self) -> Duration {
        Duration::from_millis(self.progress_min_interval_ms)
    }

    /// The heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }
}

impl Config {
    /// A config for tests: the given NATS and database, port 0, open mode, defaults elsewhere.
    pub fn local(nats: NatsConfig, db: DbConfig) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            options: Options::default(),
            connections: ConnLimits::default(),
            ops: OpsConfig::local(),
            auth: AuthConfig::default(),
            nats,
            db,
            telemetry: TelemetryConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_explicit() {
        assert_eq!(parse_origin("https://app.example.com/").unwrap(), "https://app.example.com");
        assert_eq!(parse_origin("http://localhost:8989").unwrap(), "http://localhost:8989");
        assert!(parse_origin("*").is_err());
        assert!(parse_origin("app.example.com").is_err());
        assert!(parse_origin("https://app.example.com/path").is_err());
        assert_eq!(parse_origins("").unwrap(), Origins(vec![]));
        assert_eq!(parse_origins("http://a:1, https://b").unwrap().0, ["http://a:1", "https://b"]);
    }
}
