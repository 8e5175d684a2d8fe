//! The state every handler shares, and who is calling.

use std::sync::Arc;

use axum::{
    Json,
    extract::FromRequestParts,
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use shared::{
    Nats,
    auth::{AuthError, Authenticator},
    metrics::{Counter, Histogram, Metrics},
};
use sqlx::PgPool;

use crate::config::Config;

/// Shared by every request; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Imports table, history, row errors.
    pub db: PgPool,
    /// Object store, job stream, progress snapshots, cancel requests.
    pub nats: Nats,
    /// Limits and defaults.
    pub config: Arc<Config>,
    /// Verifies callers' tokens (or lets everyone in, in open mode).
    pub auth: Authenticator,
    /// Counters shown at `/metrics`.
    pub metrics: GatewayMetrics,
    /// Permits for uploads whose imports run while their files arrive
    /// (`HEXFLOW_EARLY_STARTS`).
    pub early_starts: Arc<tokio::sync::Semaphore>,
}

/// What the gateway counts.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// Uploads accepted and queued.
    pub uploads_accepted: Counter,
    /// Uploads refused (4xx).
    pub uploads_refused: Counter,
    /// Bytes of the accepted files.
    pub upload_bytes: Counter,
    /// Bytes the accepted files take in the uploads bucket (compressed).
    pub upload_stored_bytes: Counter,
    /// Time from request to queued job.
    pub upload_seconds: Histogram,
    /// Uploads whose imports started while their files arrived.
    pub uploads_started_early: Counter,
}

impl GatewayMetrics {
    /// Registers the gateway's metrics.
    pub fn register(metrics: &Metrics) -> Self {
        GatewayMetrics {
            uploads_accepted: metrics.counter("hexflow_uploads_accepted_total", "Uploads stored and queued"),
            uploads_refused: metrics.counter("hexflow_uploads_refused_total", "Uploads refused with a 4xx"),
            upload_bytes: metrics.counter("hexflow_upload_bytes_total", "Bytes of uploaded files stored"),
            upload_stored_bytes: metrics.counter(
                "hexflow_upload_stored_bytes_total",
                "Bytes the accepted files take in the uploads bucket (zstd-compressed)",
            ),
            upload_seconds: metrics.histogram(
                "hexflow_upload_seconds",
                "Time from request to queued job",
                shared::metrics::SECONDS_BUCKETS,
            ),
            uploads_started_early: metrics.counter(
                "hexflow_uploads_started_early_total",
                "Uploads whose imports started while their files arrived",
            ),
        }
    }
}

/// The caller, from the `Authorization: Bearer <jwt>` header when a secret is configured (anonymous
/// in open mode). The access rule is `shared::auth`'s, the same the realtime gateway applies.
pub use shared::auth::Identity;

impl FromRequestParts<AppState> for Identity {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default());
        state.auth.authenticate_header(header).map_err(AuthRejection)
    }
}

/// 401 `UNAUTHORIZED`: the token is missing or invalid (the message says which).
#[derive(Debug)]
pub struct AuthRejection(pub AuthError);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let body = crate::error::ErrorBody::new("UNAUTHORIZED", self.0.to_string());
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(body)).into_response()
    }
}
