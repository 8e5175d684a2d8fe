//! Reading and cancelling imports: `GET /api/imports/{id}`, `GET /api/imports`,
//! `GET /api/imports/{id}/errors`, `POST /api/imports/{id}/cancel`.

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::events::{ErrorInfo, Metadata, ProgressEvent, Status, Summary};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

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

/// The columns of `imports` that the API shows.
#[derive(sqlx::FromRow)]
struct ImportRow {
    id: Uuid,
    owner: String,
    tenant: String,
    filename: String,
    format: String,
    scan_date: String,
    size_bytes: i64,
    status: String,
    phase: String,
    progress: f64,
    processed_rows: i64,
    total_rows: Option<i64>,
    bytes_processed: i64,
    attempts: i32,
    last_seq: i64,
    message: String,
    summary: Option<Value>,
    error: Option<Value>,
    created_ms: i64,
    updated_ms: i64,
    finished_ms: Option<i64>,
}

const IMPORT_COLUMNS: &str = r#"id, owner, tenant, filename, format,
    to_char(scan_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS scan_date,
    size_bytes, status, phase, progress, processed_rows, total_rows, bytes_processed, attempts, last_seq, message,
    summary, error,
    (extract(epoch FROM created_at) * 1000)::bigint AS created_ms,
    (extract(epoch FROM coalesce(finished_at, started_at, created_at)) * 1000)::bigint AS updated_ms,
    (extract(epoch FROM finished_at) * 1000)::bigint AS finished_ms"#;

impl ImportRow {
    /// The event a client would have seen last, rebuilt from the row (when the snapshot expired).
    fn to_event(&self) -> ProgressEvent {
        let status = Status::parse(&self.status).unwrap_or(Status::Queued);
        ProgressEvent {
            session_id: self.id,
            seq: self.last_seq as u64,
            status,
            phase: shared::Phase::parse(&self.phase).unwrap_or(shared::Phase::Queued),
            progress: self.progress,
            message: self.message.clone(),
            processed_rows: self.processed_rows as u64,
            total_rows: self.total_rows.map(|n| n as u64),
            bytes_processed: self.bytes_processed as u64,
            total_bytes: self.size_bytes as u64,
            eta_seconds: None,
            rows_per_second: self
                .summary
                .as_ref()
                .and_then(|s| s.get("rowsPerSecond"))
                .and_then(Value::as_f64)
                .unwrap_or_default(),
            attempt: self.attempts.max(1) as u32,
            timestamp: self.updated_ms,
            metadata: Metadata {
                operation: "csv-import".into(),
                filename: self.filename.clone(),
                format: self.format.clone(),
                scan_date: self.scan_date.clone(),
                current_step: 0,
                total_steps: 4,
            },
            summary: self.summary.clone().and_then(|v| serde_json::from_value::<Summary>(v).ok()),
            error: self.error.clone().and_then(|v| serde_json::from_value::<ErrorInfo>(v).ok()),
            partial_results: None,
        }
    }

    fn history_item(&self) -> Value {
        json!({
            "sessionId": self.id,
            "filename": self.filename,
            "format": self.format,
            "scanDate": self.scan_date,
            "status": self.status,
            "phase": self.phase,
            "progress": self.progress,
            "processedRows": self.processed_rows,
            "totalRows": self.total_rows,
            "sizeBytes": self.size_bytes,
            "attempts": self.attempts,
            "summary": self.summary,
            "error": self.error,
            "createdAt": self.created_ms,
            "finishedAt": self.finished_ms,
            "durationMs": self.finished_ms.map(|f| f - self.created_ms),
        })
    }
}

async fn load_import(state: &AppState, identity: &Identity, id: Uuid) -> Result<ImportRow> {
    let row: Option<ImportRow> =
        sqlx::query_as(AssertSqlSafe(format!("SELECT {IMPORT_COLUMNS} FROM imports WHERE id = $1")))
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

#[derive(Deserialize)]
struct ListQuery {
    /// Page size, 1–200 (default 50).
    limit: Option<i64>,
    /// Cursor from the previous page's `nextCursor`.
    cursor: Option<String>,
}

/// `GET /api/imports`: the caller's imports (a tenant admin: the tenant's), newest first.
async fn list_imports(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest { message: format!("limit {limit} is out of range; expected 1 to 200") });
    }
    let (before_ms, before_id) = match query.cursor.as_deref() {
        None | Some("") => (i64::MAX, Uuid::max()),
        Some(cursor) => cursor
            .split_once('_')
            .and_then(|(ms, id)| Some((ms.parse().ok()?, Uuid::parse_str(id).ok()?)))
            .ok_or_else(|| ApiError::BadRequest {
                message: format!("cursor {cursor:?} is malformed; pass back the nextCursor of the previous page"),
            })?,
    };
    let rows: Vec<ImportRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {IMPORT_COLUMNS} FROM imports
         WHERE tenant = $1 AND ($2 OR owner = $3)
           AND ((extract(epoch FROM created_at) * 1000)::bigint, id) < ($4, $5)
         ORDER BY created_at DESC, id DESC LIMIT $6"
    )))
    .bind(&identity.tenant)
    .bind(identity.admin)
    .bind(&identity.user)
    .bind(before_ms)
    .bind(before_id)
    .bind(limit + 1)
    .fetch_all(&state.db)
    .await
    .step("listing imports")?;
    let has_more = rows.len() as i64 > limit;
    let items: Vec<Value> = rows.iter().take(limit as usize).map(ImportRow::history_item).collect();
    let next_cursor = has_more.then(|| {
        let last = &rows[limit as usize - 1];
        format!("{}_{}", last.created_ms, last.id)
    });
    Ok(Json(json!({ "items": items, "nextCursor": next_cursor })))
}

/// `GET /api/imports/{id}/errors`: the invalid rows that were skipped (capped per import).
async fn list_row_errors(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = parse_id(&id)?;
    let row = load_import(&state, &identity, id).await?;
    let errors: Vec<(i64, String, String, String, String, String)> = sqlx::query_as(
        "SELECT line, column_name, value, code, expected, message FROM import_row_errors
         WHERE import_id = $1 ORDER BY line LIMIT 10000",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await
    .step("reading row errors")?;
    let items: Vec<Value> = errors
        .into_iter()
        .map(|(line, column, value, code, expected, message)| {
            json!({ "line": line, "column": column, "value": value, "code": code, "expected": expected, "message": message })
        })
        .collect();
    let total = row.summary.as_ref().and_then(|s| s.get("validationErrors")).cloned().unwrap_or(json!(items.len()));
    Ok(Json(json!({ "sessionId": id, "total": total, "items": items })))
}

/// `POST /api/imports/{id}/cancel`: records the request; the worker (or, while the import is
/// still queued, any worker's cancel watcher) stops it and publishes the `cancelled` event.
async fn cancel_import(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>)> {
    let id = parse_id(&id)?;
    let row = load_import(&state, &identity, id).await?;
    let status = Status::parse(&row.status).unwrap_or(Status::Queued);
    if status.is_terminal() {
        return Err(ApiError::AlreadyFinished { id, status: row.status });
    }
    sqlx::query("UPDATE imports SET cancel_requested_at = coalesce(cancel_requested_at, now()) WHERE id = $1")
        .bind(id)
        .execute(&state.db)
        .await
        .step("recording cancel request")?;
    state.nats.request_cancel(id, &identity.user).await.step("publishing cancel request")?;
    tracing::info!(%id, user = %identity.user, "cancel requested");
    Ok((StatusCode::ACCEPTED, Json(json!({ "sessionId": id, "status": "cancelling" }))))
}
