//! Resuming a load. The staging table is filled in slices (`HEXFLOW_WORKER_EARLY_SLICE_BYTES`
//! of staging CSV each), and each slice's `COPY` commits in one transaction with a row of
//! `import_resume` that says where the load stands: the first line not staged, the byte offset in
//! the file where it starts, the counters and the first invalid rows so far. A later attempt of
//! the import (its predecessor died, or failed on the broker or the database) finds that row and
//! the staging table with exactly the rows it counts, and continues reading the file from that
//! offset; anything else (no row, no table, a row count that differs, e.g. a PostgreSQL crash
//! emptied the UNLOGGED table) starts the import over.
//!
//! A resume point is recorded only where nothing spans it: before a record that starts at the
//! beginning of a physical line, when the staging writer holds no finding waiting for a repeat,
//! and when the file has no lone CR line ends (a record could then start in mid-line). State
//! that is not carried over is recomputed the safe way: keys are no longer tracked for
//! uniqueness (the merge deduplicates), the checks whose text is staged are read back from the
//! table, and the findings are not written while loading (the early
//! writer's transaction died with its attempt; the ordinary merge runs after loading).

use formats::RowError;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};

use crate::{
    error::{Result, StepExt},
    fence::{Fence, Hold},
};

/// Where a load stands after a committed slice.
#[derive(Debug, Clone, Default)]
pub struct ResumePoint {
    /// First physical line not staged yet.
    pub next_line: u64,
    /// Byte offset in the file where `next_line` starts (`None`: no line boundary is known, the
    /// load cannot resume from here).
    pub offset: Option<u64>,
    /// Line of the last staged row.
    pub last_line: u64,
    /// Data rows read before `next_line`.
    pub rows: u64,
    /// Invalid rows among them.
    pub invalid: u64,
    /// Findings read before `next_line`.
    pub findings: u64,
    /// Rows in the staging table.
    pub staged: u64,
    /// Findings folded into the one before them.
    pub folded: u64,
    /// The first invalid rows.
    pub row_errors: Vec<RowError>,
    /// The whole file is staged.
    pub at_end: bool,
    /// Checks whose text is staged already (read back from the staging table on resume, not
    /// recorded: their text is written only with a check's first row).
    pub checks_seen: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct Stored {
    next_line: i64,
    byte_offset: i64,
    last_line: i64,
    rows: i64,
    invalid: i64,
    findings: i64,
    staged: i64,
    folded: i64,
    row_errors: sqlx::types::Json<Value>,
    at_end: bool,
}

impl Stored {
    fn point(self) -> ResumePoint {
        let errors = self.row_errors.0.as_array().map(|a| a.iter().filter_map(error_from_json).collect());
        ResumePoint {
            next_line: self.next_line as u64,
            offset: Some(self.byte_offset as u64),
            last_line: self.last_line as u64,
            rows: self.rows as u64,
            invalid: self.invalid as u64,
            findings: self.findings as u64,
            staged: self.staged as u64,
            folded: self.folded as u64,
            row_errors: errors.unwrap_or_default(),
            at_end: self.at_end,
            checks_seen: Vec::new(),
        }
    }
}

fn error_to_json(e: &RowError) -> Value {
    json!({"line": e.line, "column": e.column, "value": e.value, "code": e.code, "expected": e.expected, "message": e.message})
}

fn error_from_json(v: &Value) -> Option<RowError> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let code = v.get("code").and_then(Value::as_str)?;
    Some(RowError {
        line: v.get("line").and_then(Value::as_u64)?,
        column: text("column")?,
        value: text("value")?,
        code: formats::ROW_ERROR_CODES.iter().copied().find(|c| *c == code).unwrap_or("INVALID_VALUE"),
        expected: text("expected")?,
        message: text("message")?,
    })
}

/// Takes over what earlier attempts left, while this attempt holds the import (the row stays
/// locked meanwhile, so no newer attempt claims it in between): the sessions still holding the
/// staging table are ended (a dead attempt's COPY or early writer, rolled back). Returns where
/// to resume when the recorded point and the staging table agree; otherwise removes both
/// (`None`: start over, the staging table is to be created).
pub async fn take_over(db: &PgPool, fence: &Fence, staging: &str) -> Result<Option<ResumePoint>> {
    let step = "taking over the staging table";
    let mut tx = db.begin().await.step(step)?;
    fence.hold(&mut tx, Hold::Exclusive).await?;
    crate::staging::end_sessions(&mut tx, staging).await?;
    let stored: Option<Stored> = sqlx::query_as(
        "SELECT next_line, byte_offset, last_line, rows, invalid, findings, staged, folded, row_errors, at_end
         FROM import_resume WHERE import_id = $1",
    )
    .bind(fence.import_id)
    .fetch_optional(&mut *tx)
    .await
    .step(step)?;
    if let Some(stored) = stored {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(staging)
            .fetch_one(&mut *tx)
            .await
            .step(step)?;
        if exists {
            let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {staging}")))
                .fetch_one(&mut *tx)
                .await
                .step(step)?;
            if count == stored.staged {
                let mut point = stored.point();
                point.checks_seen = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT DISTINCT check_id FROM {staging} WHERE title IS NOT NULL"
                )))
                .fetch_all(&mut *tx)
                .await
                .step(step)?;
                tx.commit().await.step(step)?;
                return Ok(Some(point));
            }
            tracing::warn!(
                staged = stored.staged,
                found = count,
                "the staging table does not match its resume point; starting over"
            );
        }
    }
    forget(&mut tx, fence).await?;
    crate::staging::drop_in(&mut tx, staging, step).await?;
    tx.commit().await.step(step)?;
    Ok(None)
}

/// Hands the staging table back after a failed attempt, while this attempt holds the import: the
/// sessions still holding it are ended (an abandoned early writer's statement), and the table is
/// kept for the next attempt when a resume point goes with it, else dropped.
pub async fn release(db: &PgPool, fence: &Fence, staging: &str) -> Result<()> {
    let step = "handing back the staging table";
    let mut tx = db.begin().await.step(step)?;
    fence.hold(&mut tx, Hold::Exclusive).await?;
    crate::staging::end_sessions(&mut tx, staging).await?;
    let resumable: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM import_resume WHERE import_id = $1)")
        .bind(fence.import_id)
        .fetch_one(&mut *tx)
        .await
        .step(step)?;
    if !resumable {
        crate::staging::drop_in(&mut tx, staging, step).await?;
    }
    tx.commit().await.step(step)?;
    Ok(())
}

/// Records `point` in the transaction that commits its slice, if this attempt still holds the
/// import (`Err(JobError::Fenced)` otherwise: the caller rolls the slice back). A point without
/// a line boundary removes the earlier one, which no longer matches the table.
pub async fn record(tx: &mut Transaction<'_, Postgres>, fence: &Fence, point: &ResumePoint) -> Result<()> {
    fence.hold(tx, Hold::Shared).await?;
    let Some(offset) = point.offset else {
        return forget(tx, fence).await;
    };
    let errors = Value::Array(point.row_errors.iter().map(error_to_json).collect());
    sqlx::query(
        "INSERT INTO import_resume (import_id, attempt, next_line, byte_offset, last_line, rows, invalid, findings,
                                    staged, folded, row_errors, at_end, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
         ON CONFLICT (import_id) DO UPDATE
            SET attempt = EXCLUDED.attempt, next_line = EXCLUDED.next_line, byte_offset = EXCLUDED.byte_offset,
                last_line = EXCLUDED.last_line, rows = EXCLUDED.rows, invalid = EXCLUDED.invalid,
                findings = EXCLUDED.findings, staged = EXCLUDED.staged, folded = EXCLUDED.folded,
                row_errors = EXCLUDED.row_errors, at_end = EXCLUDED.at_end, updated_at = EXCLUDED.updated_at",
    )
    .bind(fence.import_id)
    .bind(fence.attempt as i32)
    .bind(point.next_line.min(i64::MAX as u64) as i64)
    .bind(offset as i64)
    .bind(point.last_line.min(i64::MAX as u64) as i64)
    .bind(point.rows as i64)
    .bind(point.invalid as i64)
    .bind(point.findings as i64)
    .bind(point.staged as i64)
    .bind(point.folded as i64)
    .bind(errors)
    .bind(point.at_end)
    .execute(&mut **tx)
    .await
    .step("recording where the load stands")?;
    Ok(())
}

/// Removes the resume point of an import whose staging table is gone.
pub async fn forget_import(db: &PgPool, id: uuid::Uuid) -> Result<()> {
    sqlx::query("DELETE FROM import_resume WHERE import_id = $1")
        .bind(id)
        .execute(db)
        .await
        .step("removing the resume point")?;
    Ok(())
}

async fn forget(tx: &mut Transaction<'_, Postgres>, fence: &Fence) -> Result<()> {
    sqlx::query("DELETE FROM import_resume WHERE import_id = $1")
        .bind(fence.import_id)
        .execute(&mut **tx)
        .await
        .step("removing the resume point")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_errors_survive_the_trip_through_json() {
        let e = RowError {
            line: 42,
            column: "Port".into(),
            value: "x".into(),
            code: "INVALID_PORT",
            expected: "an integer port 0-65535".into(),
            message: "line 42: Port".into(),
        };
        let back = error_from_json(&error_to_json(&e)).unwrap();
        assert_eq!((back.line, back.code, back.column, back.message), (42, "INVALID_PORT", e.column, e.message));
    }
}
