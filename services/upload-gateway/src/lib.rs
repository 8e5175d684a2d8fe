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
//! - [`input`]: bounds on the filename and the small form fields.
//! - [`envelope`]: the bound on each multipart part's headers.
//! - `http`: the routes (`upload`, `imports`, `findings`), each answering a typed body, and
//!   `page`, the keyset paging every listing shares.
//! - `web`: the browser page, embedded in the binary.

pub mod body;
pub mod config;
pub mod envelope;
pub mod error;
mod http;
pub mod input;
pub mod state;
mod web;

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
    nats.provision(&config.nats).await?;
    let db = shared::db::pool(&config.db)?;
    shared::db::wait_until_reachable(&db, Duration::from_secs(60)).await?;
    Ok((nats, db))
}

/// The API routes with their state, ready to serve or to merge into `hexflow dev`'s router.
pub fn api_router(config: Arc<Config>, nats: Nats, db: sqlx::PgPool, metrics: &Metrics) -> Router {
    let timeout = Duration::from_secs(config.request_timeout_secs);
    let config_limit = config.max_upload_bytes;
    let web = web::router(config.web_dir.as_deref());
    let auth = shared::auth::Authenticator::new(&config.auth);
    let early_starts = Arc::new(tokio::sync::Semaphore::new(config.early_starts));
    let state = AppState { db, nats, metrics: GatewayMetrics::register(metrics), config, auth, early_starts };
    http::api_router()
        .with_state(state)
        .merge(web)
        // The file's limit is enforced while streaming; this one bounds the whole request (the
        // multipart envelope and part headers, which the parser buffers, included).
        .layer(DefaultBodyLimit::max(request_body_limit(config_limit)))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::map_response(web::security_headers))
        .layer(TraceLayer::new_for_http())
}

/// The largest request body: the file's limit plus room for the multipart envelope and the
/// small fields (each bounded by [`input`]).
fn request_body_limit(max_upload_bytes: u64) -> usize {
    usize::try_from(max_upload_bytes.saturating_add(256 * 1024)).unwrap_or(usize::MAX)
}

/// The gateway's ops endpoints: readiness needs NATS and PostgreSQL.
pub fn ops(service: &'static str, config: &Config, nats: &Nats, db: &sqlx::PgPool, metrics: &Metrics) -> ops::Ops {
    ops::Ops::new(service, metrics, config.ops.grace())
        .with_check("nats", ops::nats_check(nats.clone()))
        .with_check("postgres", ops::db_check(db.clone()))
}

/// A bound gateway, not yet serving (split so callers learn the ports before it runs).
pub struct Gateway {
    listener: TcpListener,
    ops_listener: TcpListener,
    router: Router,
    ops: ops::Ops,
    connections: ops::ConnLimits,
}

impl Gateway {
    /// Connects, provisions, and binds `config.listen` and the ops address (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Gateway> {
        shared::open_files::raise();
        // Here, not in `api_router`: `hexflow dev` mounts the router next to the realtime
        // gateway, which says the same for the whole process.
        if shared::auth::Authenticator::new(&config.auth).is_open() {
            tracing::warn!(
                "AUTHENTICATION IS OFF (HEXFLOW_AUTH_SECRET unset): every caller is the anonymous user of tenant \"default\""
            );
        }
        let (nats, db) = connect(&config).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding HEXFLOW_LISTEN={}: {e}; expected a free host:port", config.listen))?;
        let ops_listener = config.ops.bind(config::DEFAULT_OPS_LISTEN).await?;
        let metrics = Metrics::default();
        let ops = ops("upload-gateway", &config, &nats, &db, &metrics);
        let connections = config.connections.clone();
        let router = api_router(Arc::new(config), nats, db, &metrics);
        Ok(Gateway { listener, ops_listener, router, ops, connections })
    }

    /// The address of the API.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The address of the ops endpoints.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "upload gateway listening");
        let Gateway { listener, ops_listener, router, ops, connections } = self;
        ops.spawn(ops_listener);
        let stopping = async move {
            shutdown.await;
            ops.mark_stopping();
        };
        ops::serve(listener, router, &connections, stopping).await?;
        Ok(())
    }
}
