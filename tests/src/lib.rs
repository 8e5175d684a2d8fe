//! The integration test harness: each test gets its own `nats-server` (on a free port, removed
//! when the test ends) and its own PostgreSQL database (created on the server of
//! `HEXFLOW_TEST_DATABASE_URL`, else `DATABASE_URL`, else the local default, and dropped at the
//! end), then spawns the services in-process or as `hexflow` processes.
//!
//! Logs stay quiet unless `TEST_LOG` is set.

pub mod files;
pub mod realtime;
pub mod sio;
pub mod stack;

pub use stack::{GatewayHandle, TestEnv, WorkerHandle};

/// Installs a subscriber when `TEST_LOG` is set (any value; `TEST_LOG=debug` for more).
pub fn init_logs() {
    if let Ok(level) = std::env::var("TEST_LOG") {
        let filter = if level.is_empty() || level == "1" { "info".to_owned() } else { level };
        shared::telemetry::init(
            &shared::config::TelemetryConfig { filter: Some(filter), ..Default::default() },
            "info",
        );
    }
}
