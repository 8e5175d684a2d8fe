//! PostgreSQL: a pool that reconnects on its own, a start-up wait with backoff, and the migrator.

use std::time::Duration;

use sqlx::{
    ConnectOptions, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::DbConfig;

/// The schema, embedded from `migrations/`; the only source of schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A statement that runs longer is logged as a warning (`sqlx::query`, with its text). An
/// import's merge runs statements of several seconds by design (a million findings compared
/// or written in one), so the driver's default (sqlx: one second) would warn on every import.
pub const SLOW_STATEMENT: Duration = Duration::from_secs(60);

/// Builds a pool without connecting: connections are opened (and re-opened after an outage) on
/// demand, so a database that is briefly gone does not take the service down.
pub fn pool(config: &DbConfig) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.url().parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options.log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT)))
}

/// Waits until the database answers, retrying with backoff (logged) for at most `limit`.
pub async fn wait_until_reachable(pool: &PgPool, limit: Duration) -> Result<(), sqlx::Error> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match sqlx::query("SELECT 1").execute(pool).await {
            Ok(_) => return Ok(()),
            Err(err) if started.elapsed() < limit => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Runs pending migrations. Safe to call from several processes at once (sqlx takes a lock).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
