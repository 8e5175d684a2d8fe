//! The HTTP API: one module per resource, merged here.
//!
//! Every body is a typed struct serialised with serde, camelCase as the contract says. The fields
//! of each are declared in the byte order of their JSON names: these bodies were first built as
//! `serde_json::Value`s, whose objects are sorted, and declaring them so keeps the bytes on the
//! wire what clients have always received (nested objects of shared types go through
//! [`page::sorted`] for the same reason).

mod findings;
mod imports;
mod page;
mod upload;

use axum::Router;

use crate::state::AppState;

/// Every `/api` route.
pub fn api_router() -> Router<AppState> {
    Router::new().merge(imports::router()).merge(upload::router()).merge(findings::router())
}
