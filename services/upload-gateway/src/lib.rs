//! The upload gateway: takes scan exports over HTTP, checks their first bytes, streams them into
//! the NATS Object Store, records an `imports` row, publishes the first progress snapshot and
//! queues the job on JetStream. It also answers the polling fallback, the history, the row
//! errors and HTTP cancel requests.
//!
//! Publishes: `hexflow.jobs.import` (with `Nats-Msg-Id` = import id), `hexflow.progress.<id>`
//! (the `queued` snapshot), `hexflow.cancel.<id>`. Reads: progress snapshots.
//! Tables: `imports` (insert, read), `import_row_errors` (read).
//!
//! # Layout
//! - [`config`]: `Config` from the environment.
//! - [`error`]: `ApiError`, the JSON error shape.
//! - [`state`]: `AppState`, `Identity`.
//! - [`body`]: the limited, hashing, coalescing upload reader.
//! - `http`: the routes (`upload`, `imports`).

pub mod body;
pub mod config;
pub mod error;
mod http;
pub mod state;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::DefaultBodyLimit};
use shared::{Nats, metrics::Metrics, ops};
use tokio::net::TcpListener;
use tower_http::{timeout::TimeoutLayer, trace::TraceLayer};

pub use config::Config;
use state::{AppState, GatewayMetrics};

/// Connects to NATS and PostgreSQL (retrying until they answer) and provisions the streams.
pub async fn connect(config: &Config) -> anyhow::Result<(Nats, sqlx::PgPool)> {
    let nats = Nats::connect(&config.nats, "hexflow-upload-gateway").await?;
    nats.provision(config.nats.replicas).await?;
    let db = shared::db::pool(&config.db)?;
    shared::db::wait_until_reachable(&db, Duration::from_secs(60)).await?;
    Ok((nats, db))
}

/// The API routes with their state, ready to serve or to merge into `hexflow dev`'s router.
pub fn api_router(config: Arc<Config>, nats: Nats, db: sqlx::PgPool, metrics: &Metrics) -> Router {
    let timeout = Duration::from_secs(config.request_timeout_secs);
    let web = web_router(&config.web_dir);
    let auth = shared::auth::Authenticator::new(&config.auth);
    if auth.is_open() {
        tracing::warn!(
            "AUTHENTICATION IS OFF (HEXFLOW_AUTH_SECRET unset): every caller is the anonymous user of tenant \"default\""
        );
    }
    let state = AppState { db, nats, metrics: GatewayMetrics::register(metrics), config, auth };
    http::api_router()
        .with_state(state)
        .merge(web)
        // The size limit is enforced while streaming; axum's default 2 MB cap must not apply.
        .layer(DefaultBodyLimit::disable())
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(TraceLayer::new_for_http())
}

/// The browser page: static files, and the `socket.io-client` build from `node_modules/`.
fn web_router(web_dir: &std::path::Path) -> Router {
    let vendor = web_dir.join("../node_modules/socket.io-client/dist");
    Router::new()
        .nest_service("/vendor/socket.io-client", tower_http::services::ServeDir::new(vendor))
        .fallback_service(tower_http::services::ServeDir::new(web_dir))
}

/// The readiness checks of the gateway (NATS and PostgreSQL).
pub fn ops(nats: &Nats, db: &sqlx::PgPool, metrics: &Metrics) -> ops::Ops {
    ops::Ops {
        service: "upload-gateway",
        checks: vec![("nats", ops::nats_check(nats.clone())), ("postgres", ops::db_check(db.clone()))],
        metrics: metrics.clone(),
    }
}

/// API and ops routes, as the standalone gateway serves them.
pub fn router(config: Arc<Config>, nats: Nats, db: sqlx::PgPool, metrics: Metrics) -> Router {
    let ops = ops(&nats, &db, &metrics);
    api_router(config, nats, db, &metrics).merge(ops::router(ops))
}

/// A bound gateway, not yet serving (split so callers learn the port before it runs).
pub struct Gateway {
    listener: TcpListener,
    router: Router,
}

impl Gateway {
    /// Connects, provisions, and binds `config.listen` (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Gateway> {
        let (nats, db) = connect(&config).await?;
        let listener = TcpListener::bind(config.listen).await?;
        let router = router(Arc::new(config), nats, db, Metrics::default());
        Ok(Gateway { listener, router })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "upload gateway listening");
        axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await?;
        Ok(())
    }
}
