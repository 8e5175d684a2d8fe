//! The HTTP API: one module per resource, merged here.

mod findings;
mod imports;
mod upload;

use axum::Router;

use crate::state::AppState;

/// Every `/api` route.
pub fn api_router() -> Router<AppState> {
    Router::new().merge(imports::router()).merge(upload::router()).merge(findings::router())
}
