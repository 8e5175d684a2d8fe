//! The state every handler shares, and who is calling.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use shared::{
    Nats,
    metrics::{Counter, Histogram, Metrics},
};
use sqlx::PgPool;

use crate::{config::Config, error::ApiError};

/// Shared by every request; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Imports table, history, row errors.
    pub db: PgPool,
    /// Object store, job stream, progress snapshots, cancel requests.
    pub nats: Nats,
    /// Limits and defaults.
    pub config: Arc<Config>,
    /// Counters shown at `/metrics`.
    pub metrics: GatewayMetrics,
}

/// What the gateway counts.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// Uploads accepted and queued.
    pub uploads_accepted: Counter,
    /// Uploads refused (4xx).
    pub uploads_refused: Counter,
    /// Bytes stored.
    pub upload_bytes: Counter,
    /// Time from request to queued job.
    pub upload_seconds: Histogram,
}

impl GatewayMetrics {
    /// Registers the gateway's metrics.
    pub fn register(metrics: &Metrics) -> Self {
        GatewayMetrics {
            uploads_accepted: metrics.counter("hexflow_uploads_accepted_total", "Uploads stored and queued"),
            uploads_refused: metrics.counter("hexflow_uploads_refused_total", "Uploads refused with a 4xx"),
            upload_bytes: metrics.counter("hexflow_upload_bytes_total", "Bytes of uploaded files stored"),
            upload_seconds: metrics.histogram(
                "hexflow_upload_seconds",
                "Time from request to queued job",
                shared::metrics::SECONDS_BUCKETS,
            ),
        }
    }
}

/// The caller: who owns what they upload, and which tenant's imports they may see.
#[derive(Debug, Clone)]
pub struct Identity {
    /// User id (`sub`).
    pub user: String,
    /// Tenant the user belongs to.
    pub tenant: String,
    /// Tenant admins see and cancel every import of their tenant.
    pub admin: bool,
}

impl Identity {
    /// The caller in open mode (no authentication configured).
    pub fn anonymous() -> Self {
        Identity { user: "anonymous".into(), tenant: "default".into(), admin: false }
    }

    /// True when the caller may see and cancel an import of `owner` in `tenant`.
    pub fn may_access(&self, owner: &str, tenant: &str) -> bool {
        tenant == self.tenant && (owner == self.user || self.admin)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Identity::anonymous())
    }
}
