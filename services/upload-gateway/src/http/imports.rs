//! Reading and cancelling imports: `GET /api/imports/{id}`, `GET /api/imports`,
//! `GET /api/imports/{id}/errors`, `POST /api/imports/{id}/cancel`.

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::Serialize;
use shared::{
    ProgressRow,
    events::{ErrorInfo, ProgressEvent, Summary},
    import_row::COLUMNS,
};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::page::{Cursor, Page, PageQuery, Sizes, sorted};
use crate::{
    error::{ApiError, Result, StepExt},
    state::{AppState, Identity},
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/imports", get(list_imports))
        .route("/api/imports/{id}", get(get_import))
        .route("/api/imports/{id}/errors", get(list_row_errors))
        .route("/api/imports/{id}/cancel", post(cancel_import))
}

/// The columns of `imports` that the API shows: the event's, and who owns it and when.
#[derive(sqlx::FromRow)]
struct ImportRow {
    /// What the event is made from ([`COLUMNS`]).
    #[sqlx(flatten)]
    record: ProgressRow,
    owner: String,
    tenant: String,
    created_ms: i64,
    finished_ms: Option<i64>,
}

/// The columns of [`ImportRow`] besides [`COLUMNS`].
const OWNER_COLUMNS: &str = r#"owner, tenant, (extract(epoch FROM created_at) * 1000)::bigint AS created_ms,
    (extract(epoch FROM finished_at) * 1000)::bigint AS finished_ms"#;

impl ImportRow {
    /// The event a client would have seen last, rebuilt from the row (when the snapshot expired).
    fn to_event(&self) -> ProgressEvent {
        self.record.event()
    }

    fn into_history_item(self) -> HistoryItem {
        let record = self.record;
        HistoryItem {
            attempts: record.attempts,
            created_at: self.created_ms,
            duration_ms: self.finished_ms.map(|f| f - self.created_ms),
            error: record.error.map(|e| e.0),
            filename: record.filename,
            finished_at: self.finished_ms,
            format: record.format,
            phase: record.phase,
            processed_rows: record.processed_rows,
            progress: record.progress,
            scan_date: record.scan_date,
            session_id: record.id,
            size_bytes: record.size_bytes,
            status: record.status,
            summary: record.summary.map(|s| s.0),
            total_rows: record.total_rows,
        }
    }
}

/// One import in the history (fields in the byte order of their JSON names).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryItem {
    attempts: i32,
    /// ms since the epoch.
    created_at: i64,
    duration_ms: Option<i64>,
    #[serde(serialize_with = "sorted")]
    error: Option<ErrorInfo>,
    filename: String,
    /// ms since the epoch.
    finished_at: Option<i64>,
    format: String,
    phase: String,
    processed_rows: i64,
    progress: f64,
    scan_date: String,
    session_id: Uuid,
    size_bytes: i64,
    status: String,
    #[serde(serialize_with = "sorted")]
    summary: Option<Summary>,
    total_rows: Option<i64>,
}

async fn load_import(state: &AppState, identity: &Identity, id: Uuid) -> Result<ImportRow> {
    let row: Option<ImportRow> =
        sqlx::query_as(AssertSqlSafe(format!("SELECT {COLUMNS}, {OWNER_COLUMNS} FROM imports WHERE id = $1")))
            .bind(id)
            .fetch_optional(&state.db)
            .await
            .step("reading import")?;
    match row {
        Some(row) if identity.may_access(&row.owner, &row.tenant) => Ok(row),
        // Someone else's import is reported as missing, so ids cannot be probed.
        _ => Err(ApiError::NotFound(id)),
    }
}

fn parse_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::BadRequest {
        message: format!("import id {raw:?} is not a UUID; expected e.g. 0190c5e2-…"),
    })
}

/// `GET /api/imports/{id}`: the latest event (the polling fallback of the live view).
async fn get_import(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<ProgressEvent>> {
    let id = parse_id(&id)?;
    let row = load_import(&state, &identity, id).await?;
    let snapshot = state.nats.last_progress(id).await.unwrap_or_else(|err| {
        tracing::warn!(%id, error = %err, "progress snapshot unavailable; answering from the database");
        None
    });
    let from_db = row.to_event();
    // The database row is written at phase changes only; the snapshot is fresher unless it expired.
    Ok(Json(match snapshot {
        Some(event) if event.seq >= from_db.seq => event,
        _ => from_db,
    }))
}

/// Page sizes of the history.
const HISTORY_SIZES: Sizes = Sizes { default: 50, max: 200 };

/// `GET /api/imports`: the caller's imports (a tenant admin: the tenant's), newest first.
async fn list_imports(
    State(state): State<AppState>,
    identity: Identity,
    Query(paging): Query<PageQuery>,
) -> Result<Json<Page<HistoryItem>>> {
    let window = paging.window(HISTORY_SIZES, Cursor(i64::MAX, Uuid::max()))?;
    let rows: Vec<ImportRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {COLUMNS}, {OWNER_COLUMNS} FROM imports
         WHERE tenant = $1 AND ($2 OR owner = $3)
           AND ((extract(epoch FROM created_at) * 1000)::bigint, id) < ($4, $5)
         ORDER BY created_at DESC, id DESC LIMIT $6"
    )))
    .bind(&identity.tenant)
    .bind(identity.admin)
    .bind(&identity.user)
    .bind(window.before.0)
    .bind(window.before.1)
    .bind(window.fetch())
    .fetch_all(&state.db)
    .await
    .step("listing imports")?;
    Ok(Json(window.page(rows, |row| Cursor(row.created_ms, row.record.id), ImportRow::into_history_item)))
}

/// `GET /api/imports/{id}/errors`: the invalid rows that were skipped (capped per import).
async fn list_row_errors(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<RowErrors>> {
    let id = parse_id(&id)?;
    let row = load_import(&state, &identity, id).await?;
    let items: Vec<RowError> = sqlx::query_as(
        "SELECT line, column_name, value, code, expected, message FROM import_row_errors
         WHERE import_id = $1 ORDER BY line LIMIT 10000",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await
    .step("reading row errors")?;
    // The table is capped; the summary counts every invalid row.
    let total = row.record.summary.map_or(items.len() as u64, |s| s.0.validation_errors);
    Ok(Json(RowErrors { items, session_id: id, total }))
}

/// The skipped rows of one import (fields in the byte order of their JSON names).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RowErrors {
    /// The first rows, by line.
    items: Vec<RowError>,
    session_id: Uuid,
    /// Invalid rows in the file, listed or not.
    total: u64,
}

/// One skipped row, as `import_row_errors` holds it and the API shows it.
#[derive(sqlx::FromRow, Serialize)]
struct RowError {
    code: String,
    #[sqlx(rename = "column_name")]
    column: String,
    expected: String,
    line: i64,
    message: String,
    value: String,
}

/// `POST /api/imports/{id}/cancel`: records the request; the worker (or, while the import is
/// still queued, any worker's cancel watcher) stops it and publishes the `cancelled` event.
async fn cancel_import(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Cancelling>)> {
    let id = parse_id(&id)?;
    let row = load_import(&state, &identity, id).await?;
    if row.record.status().is_terminal() {
        return Err(ApiError::AlreadyFinished { id, status: row.record.status });
    }
    sqlx::query("UPDATE imports SET cancel_requested_at = coalesce(cancel_requested_at, now()) WHERE id = $1")
        .bind(id)
        .execute(&state.db)
        .await
        .step("recording cancel request")?;
    state.nats.request_cancel(id, &identity.user).await.step("publishing cancel request")?;
    tracing::info!(%id, user = %identity.user, "cancel requested");
    Ok((StatusCode::ACCEPTED, Json(Cancelling { session_id: id, status: "cancelling" })))
}

/// The answer to a cancel request (fields in the byte order of their JSON names).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cancelling {
    session_id: Uuid,
    status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a body had when it was built as a `serde_json::Value` (sorted objects).
    fn as_value(body: &impl Serialize) -> String {
        serde_json::to_value(body).unwrap().to_string()
    }

    #[test]
    fn history_items_row_errors_and_cancels_are_sent_as_the_sorted_json_they_always_were() {
        let summary = Summary { new: 3, validation_errors: 1, rows_per_second: 1.5, ..Summary::default() };
        for (summary, finished_at) in [(Some(summary), Some(20)), (None, None)] {
            let item = HistoryItem {
                attempts: 1,
                created_at: 10,
                duration_ms: finished_at.map(|f| f - 10),
                error: None,
                filename: "a.csv".into(),
                finished_at,
                format: "generic".into(),
                phase: "complete".into(),
                processed_rows: 4,
                progress: 100.0,
                scan_date: "2026-01-01T00:00:00Z".into(),
                session_id: Uuid::nil(),
                size_bytes: 99,
                status: "completed".into(),
                summary,
                total_rows: None,
            };
            let typed = serde_json::to_string(&item).unwrap();
            assert_eq!(typed, as_value(&item));
            assert!(typed.contains(r#""error":null"#) && typed.contains(r#""totalRows":null"#), "nulls stay: {typed}");
        }
        let errors = RowErrors {
            items: vec![RowError {
                code: "INVALID_PORT".into(),
                column: "port".into(),
                expected: "0-65535".into(),
                line: 5,
                message: "bad".into(),
                value: "70000".into(),
            }],
            session_id: Uuid::nil(),
            total: 1,
        };
        assert_eq!(serde_json::to_string(&errors).unwrap(), as_value(&errors));
        let cancelling = Cancelling { session_id: Uuid::nil(), status: "cancelling" };
        assert_eq!(serde_json::to_string(&cancelling).unwrap(), as_value(&cancelling));
    }
}
