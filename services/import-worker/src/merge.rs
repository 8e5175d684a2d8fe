//! The merge: one transaction that folds the staging rows into `scanner_checks` and
//! `vulnerabilities`, counts the lifecycle (new, updated, unchanged, resolved, reopened), and
//! marks the import completed. Merges of one tenant and scanner are serialised by an advisory
//! lock, so overlapping imports give the same result as running them one after the other.

use std::time::Duration;

use shared::events::Summary;
use sqlx::AssertSqlSafe;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    error::{JobError, Result, StepExt},
    progress::Reporter,
};

/// The statements of the merge, in order.
#[derive(Debug, Clone, Copy)]
enum Step {
    Dedup,
    Checks,
    Compare,
    Resolve,
    Update,
    Insert,
}

impl Step {
    /// Where the step starts, as a share of the merge's time (measured on first imports of a
    /// million rows: writing the new findings takes most of it). Progress and the ETA of the
    /// processing phase follow these shares.
    fn start(self) -> f64 {
        match self {
            Step::Dedup => 0.0,
            Step::Checks => 0.04,
            Step::Compare => 0.06,
            Step::Resolve => 0.08,
            Step::Update => 0.10,
            Step::Insert => 0.12,
        }
    }
}
/// Block ranges a first import's findings are written in (for progress and cancel checks).
const INSERT_CHUNKS: i64 = 25;
/// Smallest block range written at once (8 MiB of rows).
const MIN_CHUNK_BLOCKS: i64 = 1024;
/// Attempts when PostgreSQL reports a deadlock or serialisation failure.
const MAX_ATTEMPTS: u32 = 5;

/// What the merge needs to know about the import.
pub struct MergeSpec<'a> {
    /// The import.
    pub import_id: Uuid,
    /// Tenant owning the findings.
    pub tenant: &'a str,
    /// Scanner family of the format (`tenable`, `qualys`, ...).
    pub scanner: &'a str,
    /// Scan date, RFC 3339: `last_seen` of findings without their own date.
    pub scan_date: &'a str,
    /// The staging table.
    pub staging: &'a str,
    /// The staging rows already have a key each: the merge reads them as they are.
    pub unique: bool,
}

/// Runs the merge, retrying on deadlock or serialisation failure. `summary` arrives with the
/// row counts filled in; the lifecycle counts are added (and the duration, by [`complete`]).
pub async fn merge(
    db: &PgPool,
    spec: &MergeSpec<'_>,
    summary: Summary,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<Summary> {
    let mut attempt = 1;
    loop {
        // Each attempt starts from the counts of loading.
        let mut counted = summary.clone();
        let result = try_merge(db, spec, &mut counted, reporter, cancel).await;
        match result {
            Err(MergeError::Db(e)) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                tracing::warn!(import_id = %spec.import_id, attempt, error = %e, "merge conflicted; retrying");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                attempt += 1;
            }
            Err(MergeError::Db(e)) => {
                return Err(JobError::Transient { step: "merging findings", cause: e.to_string() });
            }
            Err(MergeError::Job(e)) => return Err(e),
            Ok(()) => return Ok(counted),
        }
    }
}

enum MergeError {
    Db(sqlx::Error),
    Job(JobError),
}

impl From<sqlx::Error> for MergeError {
    fn from(e: sqlx::Error) -> Self {
        MergeError::Db(e)
    }
}

impl From<JobError> for MergeError {
    fn from(e: JobError) -> Self {
        MergeError::Job(e)
    }
}

fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("40P01" | "40001")))
}

async fn step(
    reporter: &mut Reporter,
    cancel: &CancellationToken,
    step: Step,
    message: &str,
) -> std::result::Result<(), MergeError> {
    if cancel.is_cancelled() {
        return Err(MergeError::Job(JobError::Cancelled));
    }
    reporter.processing(step.start(), message).await?;
    Ok(())
}

async fn try_merge(
    db: &PgPool,
    spec: &MergeSpec<'_>,
    summary: &mut Summary,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
) -> std::result::Result<(), MergeError> {
    let mut tx: Transaction<'_, Postgres> = db.begin().await?;
    sqlx::query("SET LOCAL work_mem = '128MB'").execute(&mut *tx).await?;
    // Held before the advisory lock: a later attempt of this import ends the sessions holding
    // the staging table, so a frozen attempt cannot keep the tenant's merges waiting.
    sqlx::query(AssertSqlSafe(format!("LOCK TABLE {} IN ACCESS SHARE MODE", spec.staging))).execute(&mut *tx).await?;
    // One merge at a time per tenant and scanner: the resolve step reads what others write, and
    // the findings are inserted without ON CONFLICT because no other merge can add the same keys.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))")
        .bind(spec.tenant)
        .bind(spec.scanner)
        .execute(&mut *tx)
        .await?;

    step(reporter, cancel, Step::Dedup, "Deduplicating rows").await?;
    let incoming = if spec.unique {
        spec.staging
    } else {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TEMP TABLE incoming ON COMMIT DROP AS
             SELECT asset, check_id, port, protocol,
                    ARRAY(SELECT DISTINCT c FROM unnest(string_to_array(string_agg(array_to_string(cves, ','), ','), ',')) c
                          WHERE c <> '' ORDER BY c) AS cves,
                    max(severity) AS severity, max(cvss) AS cvss, max(vpr) AS vpr,
                    (array_agg(output ORDER BY line))[1] AS output,
                    min(first_seen) AS first_seen, max(last_seen) AS last_seen,
                    bool_and(fixed) AS fixed, count(*) - 1 AS repeats
             FROM {} GROUP BY asset, check_id, port, protocol",
            spec.staging
        )))
        .execute(&mut *tx)
        .await?;
        "incoming"
    };
    sqlx::query(AssertSqlSafe(format!("ANALYZE {incoming}"))).execute(&mut *tx).await?;
    let repeats = if spec.unique { "0" } else { "i.repeats" };

    step(reporter, cancel, Step::Checks, "Recording scanner checks").await?;
    record_checks(&mut tx, spec).await?;

    step(reporter, cancel, Step::Compare, "Comparing with known findings").await?;
    let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT count(*) FILTER (WHERE v.id IS NULL AND NOT i.fixed),
                count(*) FILTER (WHERE v.state = 'resolved' AND NOT i.fixed),
                count(*) FILTER (WHERE v.state = 'open' AND NOT i.fixed AND
                    (v.cves, v.severity, v.cvss, v.vpr, v.output) IS DISTINCT FROM (i.cves, i.severity, i.cvss, i.vpr, i.output)),
                count(*) FILTER (WHERE v.state = 'open' AND NOT i.fixed AND
                    (v.cves, v.severity, v.cvss, v.vpr, v.output) IS NOT DISTINCT FROM (i.cves, i.severity, i.cvss, i.vpr, i.output)),
                coalesce(sum({repeats}), 0)::bigint
         FROM {incoming} i
         LEFT JOIN vulnerabilities v
           ON v.tenant = $1 AND v.scanner = $2 AND v.asset = i.asset AND v.check_id = i.check_id
          AND v.port = i.port AND v.protocol = i.protocol"
    )))
    .bind(spec.tenant)
    .bind(spec.scanner)
    .fetch_one(&mut *tx)
    .await?;
    (summary.new, summary.reopened, summary.updated, summary.unchanged) =
        (counts.0 as u64, counts.1 as u64, counts.2 as u64, counts.3 as u64);
    // Rows folded while staging, plus those folded here.
    summary.skipped_duplicates += counts.4 as u64;

    step(reporter, cancel, Step::Resolve, "Resolving findings absent from this scan").await?;
    // Before the findings are written, so only findings known before this scan are probed.
    // Only assets this scan covered; a scan of other hosts resolves nothing here.
    let any_open: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM vulnerabilities WHERE tenant = $1 AND scanner = $2 AND state = 'open')",
    )
    .bind(spec.tenant)
    .bind(spec.scanner)
    .fetch_one(&mut *tx)
    .await?;
    summary.resolved = 0;
    if any_open {
        // Probed once per open finding of the covered assets: index it, so the plan stays linear
        // even when the statistics of `vulnerabilities` are stale.
        sqlx::query(AssertSqlSafe(format!("CREATE INDEX ON {incoming} (asset, check_id, port, protocol)")))
            .execute(&mut *tx)
            .await?;
        let resolved = write(
            format!(
            "UPDATE vulnerabilities v SET state = 'resolved', resolved_at = $3::timestamptz, updated_at = now(),
                    last_import_id = $4
             WHERE v.tenant = $1 AND v.scanner = $2 AND v.state = 'open'
               AND v.asset IN (SELECT DISTINCT asset FROM {incoming})
               AND NOT EXISTS (SELECT 1 FROM {incoming} i WHERE NOT i.fixed AND i.asset = v.asset AND i.check_id = v.check_id
                               AND i.port = v.port AND i.protocol = v.protocol)"
            ),
            spec,
        )
        .execute(&mut *tx)
        .await?;
        summary.resolved = resolved.rows_affected();
    }

    step(reporter, cancel, Step::Update, "Updating known findings").await?;
    if summary.reopened + summary.updated + summary.unchanged > 0 {
        // Unchanged findings are only touched when this scan moves their last_seen.
        write(
            format!(
                "UPDATE vulnerabilities v
                SET cves = i.cves, severity = i.severity, cvss = i.cvss, vpr = i.vpr, output = i.output,
                    state = 'open', resolved_at = NULL,
                    first_seen = least(v.first_seen, coalesce(i.first_seen, i.last_seen, $3::timestamptz)),
                    last_seen = greatest(v.last_seen, coalesce(i.last_seen, $3::timestamptz)),
                    last_import_id = $4, updated_at = now()
             FROM {incoming} i
             WHERE v.tenant = $1 AND v.scanner = $2 AND v.asset = i.asset AND v.check_id = i.check_id
               AND v.port = i.port AND v.protocol = i.protocol AND NOT i.fixed
               AND (v.state, v.cves, v.severity, v.cvss, v.vpr, v.output, v.last_seen)
                   IS DISTINCT FROM ('open', i.cves, i.severity, i.cvss, i.vpr, i.output,
                                     greatest(v.last_seen, coalesce(i.last_seen, $3::timestamptz)))"
            ),
            spec,
        )
        .execute(&mut *tx)
        .await?;
    }

    step(reporter, cancel, Step::Insert, "Writing new findings").await?;
    if summary.new > 0 {
        let insert = insert_new(incoming);
        if summary.reopened + summary.updated + summary.unchanged == 0 {
            // Nothing of this scan is known yet (a first import): every row is new, and the
            // rows go in block range by block range, with progress and a cancel check between.
            let blocks: i64 =
                sqlx::query_scalar("SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint")
                    .bind(incoming)
                    .fetch_one(&mut *tx)
                    .await?;
            let per_chunk = (blocks / INSERT_CHUNKS).max(MIN_CHUNK_BLOCKS);
            let mut from = 0;
            while from < blocks {
                let to = from + per_chunk;
                write(format!("{insert} AND ctid >= '({from},0)'::tid AND ctid < '({to},0)'::tid"), spec)
                    .execute(&mut *tx)
                    .await?;
                from = to;
                let done = (from as f64 / blocks.max(1) as f64).min(1.0);
                let share = Step::Insert.start() + (1.0 - Step::Insert.start()) * done;
                if cancel.is_cancelled() {
                    return Err(MergeError::Job(JobError::Cancelled));
                }
                reporter.processing(share, "Writing new findings").await?;
            }
        } else {
            write(
                format!(
                    "{insert} AND NOT EXISTS (SELECT 1 FROM vulnerabilities v
                         WHERE v.tenant = $1 AND v.scanner = $2 AND v.asset = i.asset AND v.check_id = i.check_id
                           AND v.port = i.port AND v.protocol = i.protocol)"
                ),
                spec,
            )
            .execute(&mut *tx)
            .await?;
        }
        refresh_statistics(&mut tx, summary.new).await?;
    }

    if cancel.is_cancelled() {
        return Err(MergeError::Job(JobError::Cancelled));
    }
    match complete(&mut tx, summary, reporter).await? {
        Some(done) => *summary = done,
        // A newer attempt holds the import: everything above is rolled back.
        None => return Err(MergeError::Job(JobError::Fenced)),
    }
    tx.commit().await?;
    Ok(())
}

/// Upserts the scanner checks of the staged rows (their text is on the first row of each check).
pub(crate) async fn record_checks(tx: &mut Transaction<'_, Postgres>, spec: &MergeSpec<'_>) -> sqlx::Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO scanner_checks AS c (scanner, check_id, title, description, solution)
         SELECT DISTINCT ON (check_id) $1, check_id, title, coalesce(description, ''), coalesce(solution, '')
         FROM {} WHERE title IS NOT NULL ORDER BY check_id, line
         ON CONFLICT (scanner, check_id) DO UPDATE
            SET title = EXCLUDED.title, description = EXCLUDED.description, solution = EXCLUDED.solution, updated_at = now()
            WHERE (c.title, c.description, c.solution) IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.description, EXCLUDED.solution)",
        spec.staging
    )))
    .bind(spec.scanner)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Many new findings make the table's statistics stale for the next merge: they are refreshed
/// in the merge's transaction.
pub(crate) async fn refresh_statistics(tx: &mut Transaction<'_, Postgres>, new: u64) -> sqlx::Result<()> {
    if new > 10_000 {
        sqlx::query("ANALYZE vulnerabilities").execute(&mut **tx).await?;
    }
    Ok(())
}

/// The insert of new findings from `incoming`, to be completed with more conditions (`i` is
/// the staged row). Takes the parameters of [`write`].
pub(crate) fn insert_new(incoming: &str) -> String {
    format!(
        "INSERT INTO vulnerabilities (tenant, scanner, asset, check_id, port, protocol, cves, severity, cvss, vpr,
                                      output, state, first_seen, last_seen, last_import_id)
         SELECT $1, $2, asset, check_id, port, protocol, cves, severity, cvss, vpr, output, 'open',
                coalesce(first_seen, last_seen, $3::timestamptz), coalesce(last_seen, $3::timestamptz), $4
         FROM {incoming} i
         WHERE NOT fixed"
    )
}

/// Marks the import completed with its summary, in the merge's transaction: a crash after the
/// commit cannot merge twice. Conditional on the attempt's fence (`None`: fenced, nothing
/// written). `finished_at` is the moment of the update (`clock_timestamp()`, not the start of
/// the transaction), and the summary's `durationMs` is `finished_at - started_at`, so the row
/// and the summary agree; `last_seq` becomes the seq of the terminal event, which is then
/// published from the row (`ended::finish`).
pub(crate) async fn complete(
    tx: &mut Transaction<'_, Postgres>,
    summary: &Summary,
    reporter: &Reporter,
) -> sqlx::Result<Option<Summary>> {
    let fence = reporter.fence();
    let message = crate::progress::completion_message(summary);
    let done: Option<sqlx::types::Json<Summary>> = sqlx::query_scalar(
        "UPDATE imports SET status = 'completed', phase = 'complete', progress = 100, message = $3,
                summary = $2::jsonb || jsonb_build_object(
                    'durationMs', d.ms,
                    'rowsPerSecond', CASE WHEN d.ms = 0 THEN $5::float8 ELSE round($5 * 1000.0 / d.ms) END),
                last_seq = greatest(last_seq, $4), processed_rows = $5, total_rows = $5,
                validation_errors = $6, finished_at = d.at
         FROM (SELECT clock_timestamp() AS at) c,
              LATERAL (SELECT c.at,
                              greatest(0, (extract(epoch FROM c.at - i.started_at) * 1000)::bigint) AS ms
                       FROM imports i WHERE i.id = $1) d
         WHERE imports.id = $1 AND imports.status = 'processing' AND imports.attempts = $7
         RETURNING imports.summary",
    )
    .bind(fence.import_id)
    .bind(serde_json::to_value(summary).expect("a summary serialises"))
    .bind(message)
    .bind(reporter.next_seq() as i64)
    .bind(summary.rows as i64)
    .bind(summary.validation_errors as i64)
    .bind(fence.attempt as i32)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(done.map(|s| s.0))
}

/// A write of the merge, with the parameters they all take: `$1` tenant, `$2` scanner, `$3` scan
/// date, `$4` import id.
pub(crate) fn write<'q>(
    sql: String,
    spec: &MergeSpec<'q>,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(AssertSqlSafe(sql)).bind(spec.tenant).bind(spec.scanner).bind(spec.scan_date).bind(spec.import_id)
}

/// Drops the staging table of an ended import (or one whose last delivery died). A statement
/// that a dead or abandoned attempt started (a long merge) runs on in PostgreSQL until it tries
/// to answer, holding its locks: any session still holding the table is ended first.
pub async fn drop_staging(db: &PgPool, staging: &str) -> Result<()> {
    let ended = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE relation = to_regclass($1) AND pid <> pg_backend_pid()",
    )
    .bind(staging)
    .execute(db)
    .await;
    if let Err(err) = ended {
        tracing::warn!(staging, error = %err, "could not end a session holding the staging table; dropping it waits for that session");
    }
    sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {staging}")))
        .execute(db)
        .await
        .step("dropping the staging table")?;
    Ok(())
}

/// Creates an empty staging table for the import (after [`drop_staging`] removed any earlier one).
pub async fn create_staging(db: &PgPool, staging: &str) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "CREATE UNLOGGED TABLE {staging} (LIKE import_staging_template INCLUDING DEFAULTS)"
    )))
    .execute(db)
    .await
    .step("creating the staging table")?;
    Ok(())
}
