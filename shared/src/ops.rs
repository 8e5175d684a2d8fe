//! `/healthz`, `/readyz` and `/metrics`, the same on every service, served on a listener of
//! their own (`HEXFLOW_OPS_LISTEN`), never on the public port.

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
use serde_json::json;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// One readiness check: an async probe that says what is wrong.
pub type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

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
        default_value_t = 20
    )]
    pub ready_grace_secs: u64,
}

impl OpsConfig {
    /// Ops on a free loopback port with the default grace (tests, `hexflow dev`).
    pub fn local() -> Self {
        OpsConfig { listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))), ready_grace_secs: 20 }
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
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
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

    #[tokio::test]
    async fn stopping_is_never_ready() {
        let ops = Ops::new("test", &Metrics::default(), Duration::from_secs(60));
        assert!(ops.readiness().await.0);
        ops.mark_stopping();
        assert!(!ops.readiness().await.0);
    }
}
