//! `/healthz`, `/readyz` and `/metrics`, the same on every service, served on a listener of
//! their own (`HEXFLOW_OPS_LISTEN`), never on the public port; and [`serve`], the bounded HTTP
//! server every listener (public and ops) runs on.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use serde_json::json;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};

use crate::metrics::Metrics;

/// One readiness check: an async probe that says what is wrong.
pub type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Seconds a dependency may be gone before readiness fails, when `HEXFLOW_READY_GRACE_SECS` is unset.
pub const DEFAULT_READY_GRACE_SECS: u64 = 20;
/// Seconds a client has to send a request's headers, when `HEXFLOW_HEADER_READ_TIMEOUT_SECS` is unset.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;

/// Where the ops endpoints listen, and how long a dependency may be gone before readiness fails.
#[derive(clap::Args, Debug, Clone)]
pub struct OpsConfig {
    /// Address of /healthz, /readyz and /metrics, apart from the public port
    /// [default: 127.0.0.1:9989 upload gateway and dev, 127.0.0.1:9990 worker, 127.0.0.1:9991 realtime gateway].
    #[arg(id = "ops_listen", long = "ops-listen", env = "HEXFLOW_OPS_LISTEN", value_name = "HEXFLOW_OPS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Seconds NATS or PostgreSQL may be unreachable before /readyz answers 503: a brief blip of
    /// a dependency every instance shares must not take every instance out of the load balancer.
    #[arg(
        long = "ready-grace-secs",
        env = "HEXFLOW_READY_GRACE_SECS",
        value_name = "HEXFLOW_READY_GRACE_SECS",
        default_value_t = DEFAULT_READY_GRACE_SECS
    )]
    pub ready_grace_secs: u64,
}

impl OpsConfig {
    /// Ops on a free loopback port with the default grace (tests, `hexflow dev`).
    pub fn local() -> Self {
        OpsConfig { listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))), ready_grace_secs: DEFAULT_READY_GRACE_SECS }
    }

    /// Binds the configured address, or `default` when none is set.
    pub async fn bind(&self, default: SocketAddr) -> anyhow::Result<TcpListener> {
        let addr = self.listen.unwrap_or(default);
        TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding HEXFLOW_OPS_LISTEN={addr}: {e}; expected a free host:port"))
    }

    /// How long a failing dependency still counts as ready.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.ready_grace_secs)
    }
}

/// Bounds of a public listener: how many connections it holds at once, and how long a client
/// may take to send a request's headers.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnLimits {
    /// Connections served at once on the public port (websockets included); further ones wait in
    /// the kernel's backlog until one closes [default: seven eighths of the open-file limit, which
    /// start-up raises to the hard limit; at least 256 files kept for the rest; at most 65536].
    #[arg(id = "http_max_connections", long = "max-connections", env = "HEXFLOW_MAX_CONNECTIONS", value_name = "HEXFLOW_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,
    /// Seconds a client may take to send a request's headers, and an idle keep-alive connection
    /// may wait for the next request, before the connection is closed.
    #[arg(id = "http_header_read_timeout_secs", long = "header-read-timeout-secs", env = "HEXFLOW_HEADER_READ_TIMEOUT_SECS",
          value_name = "HEXFLOW_HEADER_READ_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_secs: u64,
}

/// Largest request head (request line and headers) a listener buffers; larger ones get 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Connections the ops listener holds at once: probes and scrapers, never the public.
const OPS_MAX_CONNECTIONS: u32 = 64;

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits { max_connections: None, header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS }
    }
}

impl ConnLimits {
    /// The connection cap: the configured one, or what the open-file limit leaves room for.
    pub fn max_connections(&self) -> u32 {
        self.max_connections
            .unwrap_or_else(|| crate::open_files::connection_cap(crate::open_files::soft_limit().unwrap_or(4096)))
    }

    fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish.
///
/// Unlike `axum::serve`, every input is bounded: at most `limits.max_connections()` connections
/// at once (a semaphore around accept: past it, clients wait in the backlog instead of using up
/// the process's file descriptors), request heads of at most [`MAX_HEADER_BYTES`], read within
/// the header timeout (which also closes idle keep-alive connections). A connection upgraded to a
/// websocket keeps its permit until it closes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections() as usize));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout()).max_buf_size(MAX_HEADER_BYTES);
    // Each connection holds a receiver of `closed`; shutdown waits until every one has dropped it.
    let (stop_tx, stop_rx) = watch::channel(());
    let (closed_tx, closed_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // back off instead of spinning.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small frames (progress events, acks) must not wait for the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Permitted { stream, _permit: permit });
        let connection = http.serve_connection(io, TowerToHyperService::new(router.clone())).with_upgrades();
        let (mut stop, closed) = (stop_rx.clone(), closed_rx.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = served {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(closed);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(closed_rx);
    closed_tx.closed().await;
    Ok(())
}

/// A connection that holds one of the listener's permits for as long as it is open.
struct Permitted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Permitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Permitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What the ops endpoints need. Cheap to clone; clones share the readiness state.
#[derive(Clone)]
pub struct Ops {
    service: &'static str,
    checks: Vec<(&'static str, Check)>,
    metrics: Metrics,
    grace: Duration,
    /// When each failing check started failing.
    failing_since: Arc<Mutex<HashMap<&'static str, Instant>>>,
    /// Set on shutdown: readiness fails at once so load balancers stop sending work.
    stopping: Arc<AtomicBool>,
}

impl Ops {
    /// Ops of `service` rendering `metrics`, with no checks yet.
    pub fn new(service: &'static str, metrics: &Metrics, grace: Duration) -> Self {
        Ops {
            service,
            checks: Vec::new(),
            metrics: metrics.clone(),
            grace,
            failing_since: Arc::default(),
            stopping: Arc::default(),
        }
    }

    /// Adds a readiness check.
    pub fn with_check(mut self, name: &'static str, check: Check) -> Self {
        self.checks.push((name, check));
        self
    }

    /// Readiness answers 503 from now on (the service is shutting down).
    pub fn mark_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Serves the ops endpoints on `listener` in the background, for the life of the process.
    pub fn spawn(&self, listener: TcpListener) {
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(service = self.service, addr = %addr, "ops endpoints listening (/healthz /readyz /metrics)");
        let app = router(self.clone());
        // A cap of its own: probes still get in while the public port is flooded.
        let limits = ConnLimits { max_connections: Some(OPS_MAX_CONNECTIONS), header_read_timeout_secs: 5 };
        tokio::spawn(async move {
            if let Err(err) = serve(listener, app, &limits, std::future::pending()).await {
                tracing::error!(error = %err, "ops listener stopped");
            }
        });
    }

    /// Runs every check; a failure younger than the grace period still counts as ready.
    async fn readiness(&self) -> (bool, serde_json::Map<String, serde_json::Value>) {
        let mut report = serde_json::Map::new();
        let mut ready = !self.stopping.load(Ordering::Relaxed);
        for (name, check) in &self.checks {
            let result =
                tokio::time::timeout(Duration::from_secs(3), check()).await.unwrap_or_else(|_| Err("timed out".into()));
            let entry = match result {
                Ok(()) => {
                    self.failing_since.lock().expect("never poisoned").remove(name);
                    json!({ "ok": true })
                }
                Err(error) => {
                    let since =
                        *self.failing_since.lock().expect("never poisoned").entry(name).or_insert_with(Instant::now);
                    let failing_for = since.elapsed();
                    ready &= failing_for < self.grace;
                    json!({ "ok": false, "error": error, "failingForSecs": failing_for.as_secs() })
                }
            };
            report.insert((*name).into(), entry);
        }
        (ready, report)
    }
}

/// A readiness check that the NATS connection is up.
pub fn nats_check(nats: crate::bus::Nats) -> Check {
    Arc::new(move || {
        let connected = nats.is_connected();
        Box::pin(async move { if connected { Ok(()) } else { Err("not connected to NATS (reconnecting)".into()) } })
    })
}

/// A readiness check that PostgreSQL answers.
pub fn db_check(pool: sqlx::PgPool) -> Check {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()).map_err(|e| format!("PostgreSQL unreachable: {e}"))
        })
    })
}

/// The router serving the three ops endpoints.
pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(ops))
}

async fn healthz(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    Json(json!({ "status": "ok", "service": ops.service }))
}

async fn readyz(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    let (ready, checks) = ops.readiness().await;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let stopping = ops.stopping.load(Ordering::Relaxed);
    (status, Json(json!({ "ready": ready, "stopping": stopping, "service": ops.service, "checks": checks })))
}

async fn metrics(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], ops.metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing() -> Check {
        Arc::new(|| Box::pin(async { Err("down".to_owned()) }))
    }

    #[tokio::test]
    async fn a_failure_younger_than_the_grace_period_still_counts_as_ready() {
        let ops = Ops::new("test", &Metrics::default(), Duration::from_secs(60)).with_check("dep", failing());
        let (ready, report) = ops.readiness().await;
        assert!(ready, "{report:?}");
        assert_eq!(report["dep"]["ok"], false);
    }

    #[tokio::test]
    async fn a_failure_past_the_grace_period_is_not_ready() {
        let ops = Ops::new("test", &Metrics::default(), Duration::ZERO).with_check("dep", failing());
        assert!(!ops.readiness().await.0);
    }

    #[test]
    fn the_connection_cap_leaves_room_under_the_open_file_limit() {
        let auto = ConnLimits::default().max_connections();
        if let Some(fds) = crate::open_files::soft_limit() {
            assert!(u64::from(auto) < fds.max(256 + 64), "{auto} connections under {fds} files");
        }
        assert_eq!(ConnLimits { max_connections: Some(7), ..ConnLimits::default() }.max_connections(), 7);
    }

    #[tokio::test]
    async fn stopping_is_never_ready() {
        let ops = Ops::new("test", &Metrics::default(), Duration::from_secs(60));
        assert!(ops.readiness().await.0);
        ops.mark_stopping();
        assert!(!ops.readiness().await.0);
    }
}
