//! `/healthz`, `/readyz` and `/metrics`, the same on every service.

use std::{future::Future, pin::Pin, sync::Arc};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use serde_json::json;

use crate::metrics::Metrics;

/// One readiness check: a name and an async probe that says what is wrong.
pub type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the ops endpoints need.
#[derive(Clone)]
pub struct Ops {
    /// Service name reported by `/healthz`.
    pub service: &'static str,
    /// Probes that must all pass for `/readyz` to answer 200.
    pub checks: Vec<(&'static str, Check)>,
    /// The registry rendered at `/metrics`.
    pub metrics: Metrics,
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
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    for (name, check) in &ops.checks {
        let result = tokio::time::timeout(std::time::Duration::from_secs(3), check())
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        ready &= result.is_ok();
        checks.insert(
            (*name).into(),
            match result {
                Ok(()) => json!({ "ok": true }),
                Err(e) => json!({ "ok": false, "error": e }),
            },
        );
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": ready, "service": ops.service, "checks": checks })))
}

async fn metrics(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], ops.metrics.render())
}
