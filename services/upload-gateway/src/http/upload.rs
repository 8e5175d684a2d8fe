//! `POST /api/imports`: stream the file into the object store, check it, record it, queue it.

use std::time::Instant;

use async_nats::jetstream::{context::PublishAckFuture, message::PublishMessage};
use axum::{
    Json, Router,
    extract::{Multipart, State, multipart::Field},
    http::{HeaderMap, StatusCode, header},
    routing::post,
};
use formats::{Format, Sniffed};
use futures::TryStreamExt;
use serde_json::{Value, json};
use shared::{
    ImportJob, Phase, ProgressEvent, Status,
    events::{Metadata, now_ms},
    names,
    telemetry::{TRACEPARENT, TraceContext},
};
use uuid::Uuid;

use crate::{
    body::{Cut, FieldReader},
    error::{ApiError, Result, StepExt},
    state::{AppState, Identity},
};

/// Bytes read before storing anything, to check the file looks like a scan export.
pub const SNIFF_BYTES: usize = 1024 * 1024;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/imports", post(create_import))
}

/// The form fields besides the file.
#[derive(Default)]
struct Form {
    format: Option<Format>,
    scan_date: Option<String>,
    session_id: Option<Uuid>,
}

/// The file once stored.
struct Stored {
    object_key: String,
    filename: String,
    size: u64,
    sha256: String,
    sniffed: Sniffed,
}

#[tracing::instrument(skip_all, fields(session_id, trace_id))]
async fn create_import(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<Value>)> {
    let started = Instant::now();
    // Join the caller's trace when it sent one; the job and the events carry this span's context.
    let incoming = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
    if let Some(parent) = incoming {
        shared::telemetry::adopt(&tracing::Span::current(), parent);
    }
    let trace = incoming.unwrap_or_else(TraceContext::new_root).for_next_hop();
    tracing::Span::current().record("trace_id", trace.trace_id_hex());
    let result = async {
        refuse_oversized_request(&headers, state.config.max_upload_bytes)?;
        let (form, stored) = read_form(&state, &mut multipart).await?;
        match queue_import(&state, &identity, form, &stored, trace).await {
            Ok(response) => Ok((response, stored.size)),
            Err(err) => {
                delete_object(&state, &stored.object_key).await;
                Err(err)
            }
        }
    }
    .await;
    match result {
        Ok((response, size)) => {
            state.metrics.uploads_accepted.inc();
            state.metrics.upload_bytes.add(size);
            state.metrics.upload_seconds.observe(started.elapsed().as_secs_f64());
            Ok((StatusCode::ACCEPTED, Json(response)))
        }
        Err(err) => {
            if !matches!(err, ApiError::Unavailable { .. }) {
                state.metrics.uploads_refused.inc();
                tracing::info!(error = %err, "upload refused");
            }
            Err(err)
        }
    }
}

/// A `Content-Length` already over the limit is refused before a byte is stored.
fn refuse_oversized_request(headers: &HeaderMap, limit: u64) -> Result<()> {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // The multipart envelope adds a little; allow for it.
    match length {
        Some(n) if n > limit.saturating_add(64 * 1024) => Err(ApiError::TooLarge { limit }),
        _ => Ok(()),
    }
}

async fn read_form(state: &AppState, multipart: &mut Multipart) -> Result<(Form, Stored)> {
    let mut form = Form::default();
    let mut stored: Option<Stored> = None;
    let outcome = async {
        while let Some(field) = multipart.next_field().await.map_err(|e| ApiError::BadRequest {
            message: format!(
                "the request is not valid multipart/form-data ({e}); expected fields file, format, scanDate, sessionId"
            ),
        })? {
            match field.name().unwrap_or_default() {
                "file" if stored.is_some() => {
                    return Err(ApiError::BadRequest {
                        message: "more than one file field; send one file per request".into(),
                    });
                }
                "file" => stored = Some(store_file(state, field, &form).await?),
                "format" => form.format = parse_format(&text(field).await?)?,
                "scanDate" => form.scan_date = Some(text(field).await?).filter(|s| !s.trim().is_empty()),
                "sessionId" => form.session_id = Some(parse_session_id(state, &text(field).await?).await?),
                other => {
                    return Err(ApiError::BadRequest {
                        message: format!("unexpected field {other:?}; expected file, format, scanDate, sessionId"),
                    });
                }
            }
        }
        Ok(())
    }
    .await;
    match (outcome, stored) {
        (Ok(()), Some(stored)) => {
            if let Err(err) = check_forced_format(&form, &stored.sniffed) {
                delete_object(state, &stored.object_key).await;
                return Err(err);
            }
            Ok((form, stored))
        }
        (Ok(()), None) => Err(ApiError::BadRequest {
            message: "no file field; expected the scan export in a field named file".into(),
        }),
        (Err(err), stored) => {
            if let Some(stored) = stored {
                delete_object(state, &stored.object_key).await;
            }
            Err(err)
        }
    }
}

async fn text(field: Field<'_>) -> Result<String> {
    let name = field.name().unwrap_or_default().to_owned();
    field.text().await.map_err(|e| ApiError::BadRequest { message: format!("field {name} could not be read: {e}") })
}

fn parse_format(raw: &str) -> Result<Option<Format>> {
    let raw = raw.trim();
    if raw.is_empty() || raw.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    Format::parse(raw).map(Some).ok_or_else(|| ApiError::BadRequest {
        message: format!(
            "unknown format {raw:?}; expected auto or one of: {}",
            Format::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
        ),
    })
}

async fn parse_session_id(state: &AppState, raw: &str) -> Result<Uuid> {
    let id = Uuid::parse_str(raw.trim()).map_err(|_| ApiError::BadRequest {
        message: format!("sessionId {raw:?} is not a UUID; expected a new client-chosen UUID or no sessionId"),
    })?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM imports WHERE id = $1)")
        .bind(id)
        .fetch_one(&state.db)
        .await
        .step("checking sessionId")?;
    if exists {
        return Err(ApiError::SessionExists(id));
    }
    Ok(id)
}

/// Checks the first bytes, then streams the whole field into the object store.
async fn store_file(state: &AppState, field: Field<'_>, form: &Form) -> Result<Stored> {
    let filename =
        field.file_name().map(str::to_owned).filter(|n| !n.is_empty()).unwrap_or_else(|| "upload.csv".into());
    let limit = state.config.max_upload_bytes;
    let mut reader = FieldReader::new(field.map_err(|e| e.to_string()), limit);
    reader.fill(SNIFF_BYTES).await;
    match reader.cut() {
        Some(Cut::LimitExceeded) => return Err(ApiError::TooLarge { limit }),
        Some(Cut::Failed(reason)) => {
            return Err(ApiError::BadRequest {
                message: format!("the upload was interrupted ({reason}); send the file again"),
            });
        }
        None => {}
    }
    let sniffed = formats::sniff(reader.buffered(), reader.at_eof(), form.format).map_err(|err| {
        ApiError::Unprocessable { code: err.code(), message: format!("{filename}: {err}"), expected: err.expected() }
    })?;
    let object_key = Uuid::now_v7().to_string();
    let store = state.nats.uploads().await.step("opening uploads bucket")?;
    let meta = async_nats::jetstream::object_store::ObjectMetadata {
        name: object_key.clone(),
        description: Some(filename.clone()),
        // Large chunks (below the server's 1 MiB max_payload) mean fewer round trips both ways.
        chunk_size: Some(crate::body::COALESCE_BYTES),
        ..Default::default()
    };
    let put = store.put(meta, &mut reader).await;
    let stored = Stored { object_key, filename, size: reader.total(), sha256: reader.sha256_hex(), sniffed };
    match (put, reader.cut().cloned()) {
        (Ok(_), None) => Ok(stored),
        (put, cut) => {
            delete_object(state, &stored.object_key).await;
            Err(match (put, cut) {
                (_, Some(Cut::LimitExceeded)) => ApiError::TooLarge { limit },
                (_, Some(Cut::Failed(reason))) => ApiError::BadRequest {
                    message: format!("the upload was interrupted ({reason}); send the file again"),
                },
                (Err(e), None) => ApiError::Unavailable { step: "storing the file", cause: e.to_string() },
                (Ok(_), None) => unreachable!("handled above"),
            })
        }
    }
}

/// A format chosen in a field sent after the file is checked against the header read then.
fn check_forced_format(form: &Form, sniffed: &Sniffed) -> Result<()> {
    let Some(forced) = form.format else { return Ok(()) };
    if forced == sniffed.format {
        return Ok(());
    }
    let header: Vec<String> = sniffed.header.iter().map(|h| h.trim().to_lowercase()).collect();
    let missing: Vec<&str> =
        forced.required_columns().iter().copied().filter(|c| !header.contains(&c.to_lowercase())).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::Unprocessable {
        code: "FORMAT_MISMATCH",
        message: format!("the file's header does not match format {forced}: missing columns {}", missing.join(", ")),
        expected: format!("a {forced} header with columns {}", forced.required_columns().join(", ")),
    })
}

async fn delete_object(state: &AppState, key: &str) {
    let result = match state.nats.uploads().await {
        Ok(store) => store.delete(key).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(err) = result {
        tracing::warn!(object = key, error = %err, "could not delete a refused upload");
    }
}

/// Records the import, publishes its first snapshot and queues the job.
async fn queue_import(
    state: &AppState,
    identity: &Identity,
    form: Form,
    stored: &Stored,
    trace: TraceContext,
) -> Result<Value> {
    let id = form.session_id.unwrap_or_else(Uuid::now_v7);
    tracing::Span::current().record("session_id", tracing::field::display(id));
    let format = form.format.unwrap_or(stored.sniffed.format);
    let scan_date = normalise_scan_date(state, form.scan_date.as_deref()).await?;
    let inserted = sqlx::query(
        "INSERT INTO imports (id, owner, tenant, filename, format, scanner, scan_date, object_key, size_bytes, sha256,
                              status, phase, last_seq, message)
         VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $8, $9, $10, 'queued', 'queued', 1, 'Queued')
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(&identity.user)
    .bind(&identity.tenant)
    .bind(&stored.filename)
    .bind(format.name())
    .bind(format.scanner())
    .bind(&scan_date)
    .bind(&stored.object_key)
    .bind(stored.size as i64)
    .bind(&stored.sha256)
    .execute(&state.db)
    .await
    .step("recording the import")?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::SessionExists(id));
    }

    let event = queued_event(id, stored, format, &scan_date);
    let job = ImportJob {
        import_id: id,
        object_key: stored.object_key.clone(),
        filename: stored.filename.clone(),
        format: format.name().into(),
        scan_date: scan_date.clone(),
        owner: identity.user.clone(),
        tenant: identity.tenant.clone(),
        traceparent: Some(trace.to_header()),
    };
    let published = async {
        state.nats.publish_progress(&event, Some(trace), true).await.map_err(|e| e.to_string())?;
        publish_job(state, &job, trace).await.map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())
    }
    .await;
    if let Err(cause) = published {
        // Nothing is half-queued: the row goes, the object goes, the client retries.
        let _ = sqlx::query("DELETE FROM imports WHERE id = $1").bind(id).execute(&state.db).await;
        return Err(ApiError::Unavailable { step: "queueing the import", cause });
    }
    tracing::info!(%id, format = format.name(), bytes = stored.size, filename = %stored.filename, "import queued");
    Ok(json!({
        "sessionId": id,
        "status": "queued",
        "statusUrl": format!("/api/imports/{id}"),
        "format": format.name(),
        "sizeBytes": stored.size,
        "sha256": stored.sha256,
    }))
}

async fn publish_job(
    state: &AppState,
    job: &ImportJob,
    trace: TraceContext,
) -> Result<PublishAckFuture, async_nats::jetstream::context::PublishError> {
    let payload = serde_json::to_vec(job).expect("an import job always serialises");
    let message = PublishMessage::build()
        .payload(payload.into())
        .headers(trace.to_nats_headers())
        .message_id(job.import_id.to_string());
    state.nats.js.send_publish(names::JOBS_SUBJECT, message).await
}

/// Accepts `YYYY-MM-DD` or any timestamp PostgreSQL reads; defaults to now; answers RFC 3339 UTC.
async fn normalise_scan_date(state: &AppState, raw: Option<&str>) -> Result<String> {
    let raw = raw.map(str::trim).unwrap_or("now");
    let normalised: Result<String, sqlx::Error> =
        sqlx::query_scalar(r#"SELECT to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"#)
            .bind(raw)
            .fetch_one(&state.db)
            .await;
    match normalised {
        Ok(date) => Ok(date),
        Err(sqlx::Error::Database(e)) if e.code().is_some_and(|c| c.starts_with("22")) => Err(ApiError::BadRequest {
            message: format!("scanDate {raw:?} is not a date; expected YYYY-MM-DD or an RFC 3339 timestamp"),
        }),
        Err(e) => Err(ApiError::Unavailable { step: "reading scanDate", cause: e.to_string() }),
    }
}

fn queued_event(id: Uuid, stored: &Stored, format: Format, scan_date: &str) -> ProgressEvent {
    ProgressEvent {
        session_id: id,
        seq: 1,
        status: Status::Queued,
        phase: Phase::Queued,
        progress: 0.0,
        message: "Queued; waiting for a worker".into(),
        processed_rows: 0,
        total_rows: None,
        bytes_processed: 0,
        total_bytes: stored.size,
        eta_seconds: None,
        rows_per_second: 0.0,
        attempt: 0,
        timestamp: now_ms(),
        metadata: Metadata {
            operation: "csv-import".into(),
            filename: stored.filename.clone(),
            format: format.name().into(),
            scan_date: scan_date.into(),
            current_step: 0,
            total_steps: 4,
        },
        summary: None,
        error: None,
        partial_results: None,
    }
}
