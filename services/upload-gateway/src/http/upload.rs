//! `POST /api/imports`: stream the file into the object store, check it, record it, queue it.

use std::time::{Duration, Instant};

use async_nats::jetstream::{context::PublishAckFuture, message::PublishMessage};
use axum::{
    Json, Router,
    extract::{
        Extension, Multipart, State,
        multipart::{Field, MultipartRejection},
    },
    http::{HeaderMap, StatusCode, header},
    routing::post,
};
use formats::{Format, Sniffed};
use futures::TryStreamExt;
use serde::Serialize;
use shared::{
    ImportJob, Phase, ProgressEvent, Status,
    events::Metadata,
    names,
    telemetry::{TRACEPARENT, TraceContext},
    uploads::StoredUpload,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    body::{COALESCE_BYTES, Cut, FieldReader},
    envelope::{MAX_PART_HEADER_BYTES, Overflow},
    error::{ApiError, Result, StepExt},
    input::{self, quote},
    state::{AppState, Identity},
};

/// Bytes read before storing anything, to check the file looks like a scan export.
pub const SNIFF_BYTES: usize = 1024 * 1024;

pub(super) fn router() -> Router<AppState> {
    // The parser buffers each part's headers whole: they are bounded on the way in.
    let bounded = axum::middleware::map_request(crate::envelope::bound_part_headers);
    Router::new().route("/api/imports", post(create_import).layer(bounded))
}

/// The form fields besides the file.
#[derive(Default)]
struct Form {
    format: Option<Format>,
    scan_date: Option<String>,
    session_id: Option<Uuid>,
}

/// The file once stored. Dropping it removes the upload, unless the import was queued.
struct Stored {
    object: ObjectGuard,
    filename: String,
    put: StoredUpload,
    sniffed: Sniffed,
    /// The import, when it was queued while the file arrived.
    started: Option<Queued>,
}

/// Removes the upload when dropped, whatever ended the request (a refusal, a failed step, a
/// panic), unless [`ObjectGuard::keep`] was called once the job that reads it is queued and the
/// file is whole. When the import was started while the file arrived, the upload is marked as
/// given up instead, with the reason, so that the worker following it ends the import.
struct ObjectGuard {
    state: AppState,
    key: String,
    nuid: String,
    keep: bool,
    /// Why the upload failed, once the import reading it has started.
    started_reason: Option<String>,
    /// Holds one of the gateway's early starts while the file arrives.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ObjectGuard {
    fn keep(&mut self) {
        self.keep = true;
    }

    /// Records why the upload failed, for the worker of an import already started.
    fn failed_because(&mut self, err: &ApiError) {
        if let Some(reason) = self.started_reason.as_mut() {
            *reason = err.to_string();
        }
    }
}

impl Drop for ObjectGuard {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let (state, key, nuid) = (self.state.clone(), std::mem::take(&mut self.key), std::mem::take(&mut self.nuid));
        let reason = self.started_reason.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { remove_upload(&state, &key, &nuid, reason.as_deref()).await });
        }
    }
}

#[tracing::instrument(skip_all, fields(session_id, trace_id))]
async fn create_import(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    overflow: Option<Extension<Overflow>>,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Queued>)> {
    let started = Instant::now();
    // Join the caller's trace when it sent one; the job and the events carry this span's context.
    let incoming = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
    if let Some(parent) = incoming {
        shared::telemetry::adopt(&tracing::Span::current(), parent);
    }
    let trace = incoming.unwrap_or_else(TraceContext::new_root).for_next_hop();
    tracing::Span::current().record("trace_id", trace.trace_id_hex());
    let result = async {
        let multipart = multipart.map_err(|rejection| ApiError::BadRequest {
            message: format!(
                "the request is not multipart/form-data ({}); expected fields file, format, scanDate, sessionId",
                input::brief(&rejection.body_text())
            ),
        })?;
        refuse_oversized_request(&headers, state.config.max_upload_bytes)?;
        // The upload runs in a task of its own so that nothing drops it halfway: when this
        // handler is dropped (request timeout, client gone), the token ends the file's stream,
        // the object store closes the object and the guard deletes it; once the file is stored,
        // recording and queueing run to the end (or undo themselves), so a row is never left
        // queued without its job.
        let dropped = CancellationToken::new();
        let _cancel_when_dropped = dropped.clone().drop_guard();
        let task = tokio::spawn(
            upload(
                state.clone(),
                identity,
                multipart,
                overflow.map(|Extension(o)| o).unwrap_or_default(),
                declared_length(&headers),
                trace,
                dropped,
            )
            .instrument(tracing::Span::current()),
        );
        task.await.unwrap_or_else(|e| Err(ApiError::Unavailable { step: "handling the upload", cause: e.to_string() }))
    }
    .await;
    match result {
        Ok((response, sizes)) => {
            state.metrics.uploads_accepted.inc();
            state.metrics.upload_bytes.add(sizes.size);
            state.metrics.upload_stored_bytes.add(sizes.stored_size);
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

/// Stores, records and queues one upload; the upload is removed on every path but success.
async fn upload(
    state: AppState,
    identity: Identity,
    mut multipart: Multipart,
    overflow: Overflow,
    declared: Option<u64>,
    trace: TraceContext,
    dropped: CancellationToken,
) -> Result<(Queued, StoredUpload)> {
    let early = Early { identity: &identity, declared, trace };
    let (form, mut stored) = read_form(&state, &mut multipart, early, dropped).await.map_err(|err| {
        if overflow.happened() {
            ApiError::BadRequest {
                message: format!(
                    "a part's headers (its name and filename) are longer than {MAX_PART_HEADER_BYTES} bytes; \
                     use a shorter filename"
                ),
            }
        } else {
            err
        }
    })?;
    let response = match stored.started.take() {
        Some(queued) => complete_started(&state, &mut stored, queued).await,
        None => match commit(&state, &stored).await {
            Ok(()) => queue_import(&state, &identity, &form, &stored.facts(), None, trace).await,
            Err(err) => Err(err),
        },
    };
    match response {
        Ok(response) => {
            stored.object.keep();
            Ok((response, stored.put))
        }
        Err(err) => {
            stored.object.failed_because(&err);
            Err(err)
        }
    }
}

/// What an import may start with while its file arrives: who sent it, the length the request
/// declared, and the trace it joins.
#[derive(Clone, Copy)]
struct Early<'a> {
    identity: &'a Identity,
    declared: Option<u64>,
    trace: TraceContext,
}

/// The request's `Content-Length`, when it declared one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// Writes the object's metadata: the upload is whole for every reader from here on.
async fn commit(state: &AppState, stored: &Stored) -> Result<()> {
    state
        .nats
        .commit_upload(
            &stored.object.key,
            Some(stored.filename.clone()),
            &stored.object.nuid,
            COALESCE_BYTES,
            &stored.put,
        )
        .await
        .map_err(|e| ApiError::Unavailable { step: "storing the file", cause: e.to_string() })
}

/// Ends the upload of an import started while its file arrived: records the file's size and
/// digest, then writes the object's metadata, which tells the worker the file is whole. An
/// import that already ended (cancelled while its file arrived, or failed) has no reader left:
/// its upload is removed at once instead of waiting for the sweep, and the response still names
/// the import, whose status says how it ended.
async fn complete_started(state: &AppState, stored: &mut Stored, queued: Queued) -> Result<Queued> {
    let status: Option<String> =
        sqlx::query_scalar("UPDATE imports SET size_bytes = $2, sha256 = $3 WHERE id = $1 RETURNING status")
            .bind(queued.session_id)
            .bind(stored.put.size as i64)
            .bind(&stored.put.sha256)
            .fetch_optional(&state.db)
            .await
            .step("recording the file's size and digest")?;
    let response = Queued { sha256: stored.put.sha256.clone(), size_bytes: stored.put.size, ..queued };
    let ended = match status.as_deref() {
        Some("cancelled") => Some("cancelled"),
        Some("error") => Some("error"),
        Some("completed") => Some("completed"),
        _ => None,
    };
    if let Some(status) = ended {
        tracing::info!(id = %response.session_id, status, "upload complete after its import ended; removing the file");
        let response = Queued { status, ..response };
        stored.object.keep();
        remove_upload(state, &stored.object.key, &stored.object.nuid, None).await;
        return Ok(response);
    }
    commit(state, stored).await?;
    tracing::info!(id = %response.session_id, bytes = stored.put.size, "upload complete; its import started while it arrived");
    Ok(response)
}

/// A `Content-Length` already over the limit is refused before a byte is stored.
fn refuse_oversized_request(headers: &HeaderMap, limit: u64) -> Result<()> {
    // The multipart envelope adds a little; allow for it.
    match declared_length(headers) {
        Some(n) if n > limit.saturating_add(64 * 1024) => Err(ApiError::TooLarge { limit }),
        _ => Ok(()),
    }
}

async fn read_form(
    state: &AppState,
    multipart: &mut Multipart,
    early: Early<'_>,
    dropped: CancellationToken,
) -> Result<(Form, Stored)> {
    let mut form = Form::default();
    let mut stored: Option<Stored> = None;
    let read = read_fields(state, multipart, early, dropped, &mut form, &mut stored).await;
    if let Err(err) = &read
        && let Some(stored) = stored.as_mut()
    {
        stored.object.failed_because(err);
    }
    read?;
    let Some(stored) = stored else {
        return Err(ApiError::BadRequest {
            message: "no file field; expected the scan export in a field named file".into(),
        });
    };
    check_forced_format(&form, &stored.sniffed)?;
    Ok((form, stored))
}

/// Reads the parts into `form` and `stored`, refusing a part after the file when the import
/// started while the file arrived.
async fn read_fields(
    state: &AppState,
    multipart: &mut Multipart,
    early: Early<'_>,
    dropped: CancellationToken,
    form: &mut Form,
    stored: &mut Option<Stored>,
) -> Result<()> {
    const EXPECTED: &str = "expected fields file, format, scanDate, sessionId, each at most once";
    let mut seen: Vec<String> = Vec::new();
    let idle = Duration::from_secs(state.config.upload_idle_timeout_secs);
    while let Some(field) = tokio::time::timeout(idle, multipart.next_field())
        .await
        .map_err(|_| input::stalled(idle))?
        .map_err(|e| ApiError::BadRequest {
            message: format!(
                "the request is not valid multipart/form-data ({}); {EXPECTED}",
                input::brief(&e.to_string())
            ),
        })?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if stored.as_ref().is_some_and(|s| s.started.is_some()) {
            return Err(ApiError::BadRequest {
                message: format!(
                    "field {} came after the file, but the import had already started while the file \
                     arrived (it does when sessionId precedes the file); send every field before the file",
                    quote(&name)
                ),
            });
        }
        // Each field once: the number of fields (and of database lookups) stays bounded.
        if seen.contains(&name) {
            return Err(ApiError::BadRequest { message: format!("more than one {} field; {EXPECTED}", quote(&name)) });
        }
        match name.as_str() {
            "file" => *stored = Some(store_file(state, field, form, early, dropped.clone()).await?),
            "format" => form.format = parse_format(&input::small_text(field, idle).await?)?,
            "scanDate" => form.scan_date = Some(input::small_text(field, idle).await?).filter(|s| !s.trim().is_empty()),
            "sessionId" => {
                form.session_id = Some(parse_session_id(state, &input::small_text(field, idle).await?).await?)
            }
            other => {
                return Err(ApiError::BadRequest { message: format!("unexpected field {}; {EXPECTED}", quote(other)) });
            }
        }
        seen.push(name);
    }
    Ok(())
}

fn parse_format(raw: &str) -> Result<Option<Format>> {
    let raw = raw.trim();
    if raw.is_empty() || raw.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    Format::parse(raw).map(Some).ok_or_else(|| ApiError::BadRequest {
        message: format!(
            "unknown format {}; expected auto or one of: {}",
            quote(raw),
            Format::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
        ),
    })
}

async fn parse_session_id(state: &AppState, raw: &str) -> Result<Uuid> {
    const EXPECTED: &str = "expected a new client-chosen random UUID, or no sessionId";
    let id = Uuid::parse_str(raw.trim())
        .map_err(|_| ApiError::BadRequest { message: format!("sessionId {} is not a UUID; {EXPECTED}", quote(raw)) })?;
    if id.is_nil() || id.is_max() {
        return Err(ApiError::BadRequest { message: format!("sessionId {id} is reserved; {EXPECTED}") });
    }
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

/// Checks the first bytes, then streams the whole field into the object store, starting the
/// import first when it may start while the file arrives ([`early_start`]).
async fn store_file(
    state: &AppState,
    field: Field<'_>,
    form: &Form,
    early: Early<'_>,
    dropped: CancellationToken,
) -> Result<Stored> {
    let filename = input::normalise_filename(field.file_name())?;
    let limit = state.config.max_upload_bytes;
    let idle = Duration::from_secs(state.config.upload_idle_timeout_secs);
    let mut reader = FieldReader::new(field.map_err(|e| e.to_string()), limit).cancel_on(dropped).idle_timeout(idle);
    reader.fill(SNIFF_BYTES).await;
    match reader.cut() {
        Some(Cut::LimitExceeded) => return Err(ApiError::TooLarge { limit }),
        Some(Cut::Failed(reason)) => return Err(interrupted(reason)),
        None => {}
    }
    let sniffed = formats::sniff(reader.buffered(), reader.at_eof(), form.format).map_err(|err| {
        // The sniffer quotes the columns it found, and one header cell may be a megabyte long.
        ApiError::Unprocessable {
            code: err.code(),
            message: input::cut(&format!("{filename}: {err}"), 1000),
            expected: err.expected(),
        }
    })?;
    // Armed before the first chunk is written: from here on every way out removes the upload.
    let mut object = ObjectGuard {
        state: state.clone(),
        key: Uuid::now_v7().to_string(),
        nuid: shared::uploads::new_upload_nuid(),
        keep: false,
        started_reason: None,
        _permit: None,
    };
    let mut started = None;
    if let Some(permit) = early_start(state, form, early.declared, reader.at_eof()) {
        check_forced_format(form, &sniffed)?;
        let facts = Facts {
            key: &object.key,
            filename: &filename,
            format: form.format.unwrap_or(sniffed.format),
            size: early.declared.unwrap_or_default(),
            sha256: "",
        };
        started =
            Some(queue_import(state, early.identity, form, &facts, Some(object.nuid.clone()), early.trace).await?);
        object.started_reason = Some("the upload request ended before the file was stored".into());
        object._permit = Some(permit);
        state.metrics.uploads_started_early.inc();
    }
    // The description is bounded by `input::MAX_FILENAME_CHARS`: NATS would refuse oversized
    // metadata only after every chunk was written. Large chunks (below the server's 1 MiB
    // max_payload) mean fewer round trips both ways.
    let put = state.nats.put_upload_chunks(&object.nuid, COALESCE_BYTES, &mut reader).await;
    let result = match (put, reader.cut()) {
        (Ok(put), None) => return Ok(Stored { object, filename, put, sniffed, started }),
        (_, Some(Cut::LimitExceeded)) => ApiError::TooLarge { limit },
        (_, Some(Cut::Failed(reason))) => interrupted(reason),
        (Err(e), None) => ApiError::Unavailable { step: "storing the file", cause: e.to_string() },
    };
    object.failed_because(&result);
    Err(result)
}

/// A permit to start the import while the file arrives, when the client chose the session id
/// (so it follows the import) and sent it before the file, the request declares a length of at
/// least `HEXFLOW_EARLY_START_BYTES`, the file is not already whole, and one of the gateway's
/// `HEXFLOW_EARLY_STARTS` is free.
fn early_start(
    state: &AppState,
    form: &Form,
    declared: Option<u64>,
    whole: bool,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let large = declared.is_some_and(|n| n >= state.config.early_start_bytes);
    if form.session_id.is_none() || !large || whole {
        return None;
    }
    state.early_starts.clone().try_acquire_owned().ok()
}

fn interrupted(reason: &str) -> ApiError {
    ApiError::BadRequest {
        message: format!("the upload was interrupted ({}); send the file again", input::brief(reason)),
    }
}

/// A format chosen in a field sent after the file is checked against the header read then.
fn check_forced_format(form: &Form, sniffed: &Sniffed) -> Result<()> {
    let Some(forced) = form.format else { return Ok(()) };
    formats::check_forced_format(forced, sniffed).map_err(|err| ApiError::Unprocessable {
        code: err.code(),
        // The message quotes the header's names, and one of them may be a megabyte long.
        message: input::cut(&err.to_string(), 1000),
        expected: err.expected(),
    })
}

/// Removes an upload that was not handed on; for an import already started, marks it given up
/// with `started_reason`, which ends the import.
async fn remove_upload(state: &AppState, key: &str, nuid: &str, started_reason: Option<&str>) {
    let result = match started_reason {
        Some(reason) => state.nats.interrupt_upload(key, nuid, reason).await,
        None => state.nats.discard_upload(key, nuid).await,
    };
    if let Err(err) = result {
        tracing::warn!(object = key, error = %err, "could not remove a refused upload");
    }
}

/// What the import row and the job say of the file.
struct Facts<'a> {
    key: &'a str,
    filename: &'a str,
    format: Format,
    /// The file's size (the declared length when the import starts while the file arrives).
    size: u64,
    /// Empty until the file is whole.
    sha256: &'a str,
}

impl Stored {
    fn facts(&self) -> Facts<'_> {
        Facts {
            key: &self.object.key,
            filename: &self.filename,
            format: self.sniffed.format,
            size: self.put.size,
            sha256: &self.put.sha256,
        }
    }
}

/// Records the import, publishes its first snapshot and queues the job.
async fn queue_import(
    state: &AppState,
    identity: &Identity,
    form: &Form,
    file: &Facts<'_>,
    arriving: Option<String>,
    trace: TraceContext,
) -> Result<Queued> {
    let id = form.session_id.unwrap_or_else(Uuid::now_v7);
    tracing::Span::current().record("session_id", tracing::field::display(id));
    let format = form.format.unwrap_or(file.format);
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
    .bind(file.filename)
    .bind(format.name())
    .bind(format.scanner())
    .bind(&scan_date)
    .bind(file.key)
    .bind(file.size as i64)
    .bind(file.sha256)
    .execute(&state.db)
    .await
    .step("recording the import")?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::SessionExists(id));
    }

    let event = queued_event(id, file, format, &scan_date);
    let job = ImportJob {
        import_id: id,
        object_key: file.key.to_owned(),
        filename: file.filename.to_owned(),
        format: format.name().into(),
        scan_date: scan_date.clone(),
        owner: identity.user.clone(),
        tenant: identity.tenant.clone(),
        traceparent: Some(trace.to_header()),
        arriving,
    };
    let published = async {
        state.nats.publish_progress(&event, Some(trace), true).await.map_err(|e| e.to_string())?;
        publish_job(state, &job, trace).await.map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())
    }
    .await;
    if let Err(cause) = published {
        // Nothing is half-queued: the row goes, the object goes (its guard), the client retries.
        forget_import(state, id).await;
        return Err(ApiError::Unavailable { step: "queueing the import", cause });
    }
    tracing::info!(%id, format = format.name(), bytes = file.size, filename = %file.filename, early = job.arriving.is_some(), "import queued");
    Ok(Queued {
        format: format.name(),
        session_id: id,
        sha256: file.sha256.to_owned(),
        size_bytes: file.size,
        status: "queued",
        status_url: format!("/api/imports/{id}"),
    })
}

/// The answer to an accepted upload, `202` (fields in the byte order of their JSON names).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Queued {
    /// The format the file was read as.
    format: &'static str,
    /// The import id: the client's `sessionId`, or one chosen here.
    session_id: Uuid,
    /// Of the stored file, hex.
    sha256: String,
    size_bytes: u64,
    status: &'static str,
    /// Where to poll the import's latest event.
    status_url: String,
}

/// Deletes the row of an import whose job could not be queued, retrying briefly: a row left
/// `queued` without a job would wait for a worker forever.
async fn forget_import(state: &AppState, id: Uuid) {
    for attempt in 1..=3u32 {
        match sqlx::query("DELETE FROM imports WHERE id = $1").bind(id).execute(&state.db).await {
            Ok(_) => return,
            Err(err) if attempt == 3 => {
                tracing::error!(%id, error = %err, "could not delete the row of an import that was never queued");
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt))).await,
        }
    }
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

/// Accepts `YYYY-MM-DD` or any timestamp PostgreSQL reads, from 1990 to a day from now (a scan
/// from the future, or `infinity`, is a typo); defaults to now; answers RFC 3339 UTC.
async fn normalise_scan_date(state: &AppState, raw: Option<&str>) -> Result<String> {
    const EXPECTED: &str = "expected YYYY-MM-DD or an RFC 3339 timestamp between 1990-01-01 and tomorrow";
    let raw = raw.map(str::trim).unwrap_or("now");
    let normalised: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
        r#"SELECT CASE WHEN t >= '1990-01-01T00:00:00Z' AND t <= now() + interval '1 day'
                       THEN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') END
           FROM (SELECT $1::timestamptz AS t) AS given"#,
    )
    .bind(raw)
    .fetch_one(&state.db)
    .await;
    match normalised {
        Ok(Some(date)) => Ok(date),
        Ok(None) => {
            Err(ApiError::BadRequest { message: format!("scanDate {} is out of range; {EXPECTED}", quote(raw)) })
        }
        Err(sqlx::Error::Database(e)) if e.code().is_some_and(|c| c.starts_with("22")) => {
            Err(ApiError::BadRequest { message: format!("scanDate {} is not a date; {EXPECTED}", quote(raw)) })
        }
        Err(e) => Err(ApiError::Unavailable { step: "reading scanDate", cause: e.to_string() }),
    }
}

fn queued_event(id: Uuid, file: &Facts<'_>, format: Format, scan_date: &str) -> ProgressEvent {
    let metadata = Metadata::new(file.filename, format.name(), scan_date, Phase::Queued.step());
    ProgressEvent {
        message: "Queued; waiting for a worker".into(),
        total_bytes: file.size,
        ..ProgressEvent::new(id, 1, Status::Queued, Phase::Queued, metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accepted_answer_is_sent_as_the_sorted_json_it_always_was() {
        let queued = Queued {
            format: "generic",
            session_id: Uuid::nil(),
            sha256: "ab".into(),
            size_bytes: 7,
            status: "queued",
            status_url: format!("/api/imports/{}", Uuid::nil()),
        };
        let typed = serde_json::to_string(&queued).unwrap();
        assert_eq!(typed, serde_json::to_value(&queued).unwrap().to_string());
        assert!(typed.starts_with(r#"{"format":"generic","sessionId":"#), "{typed}");
    }
}
