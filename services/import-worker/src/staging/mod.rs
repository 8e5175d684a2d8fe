//! The staging table of an import (`import_staging_<id>`, UNLOGGED, shaped like
//! `import_staging_template`): created when a load starts over, dropped when the import ends or
//! a load starts over, and the sessions still holding it ended first. What goes into it is in
//! [`writer`].

mod writer;

use sqlx::{AssertSqlSafe, PgConnection, PgPool};

pub use writer::{BATCH_BYTES, COLUMNS, Staged, StagingWriter};

use crate::error::{Result, StepExt};

/// Creates an empty staging table named `table` (after [`drop`] removed any earlier one), with
/// an index of the rows that carry a check's text (one per check, see [`StagingWriter`]): the
/// merge reads the checks through it instead of scanning every row (a million-row table: 10 ms
/// instead of 0.3–0.5 s).
pub async fn create(db: &PgPool, table: &str) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE UNLOGGED TABLE {table} (LIKE import_staging_template INCLUDING DEFAULTS);
         CREATE INDEX ON {table} (check_id, line) WHERE title IS NOT NULL"
    )))
    .execute(db)
    .await
    .step("creating the staging table")?;
    Ok(())
}

/// Drops the staging table of an ended import (or one whose last delivery died). A statement
/// that a dead or abandoned attempt started (a long merge) runs on in PostgreSQL until it tries
/// to answer, holding its locks: any session still holding the table is ended first.
pub async fn drop(db: &PgPool, table: &str) -> Result<()> {
    let mut conn = db.acquire().await.step("dropping the staging table")?;
    if let Err(err) = end_sessions(&mut conn, table).await {
        tracing::warn!(
            staging = table,
            error = %err.chain(),
            "could not end a session holding the staging table; dropping it waits for that session"
        );
    }
    drop_in(&mut conn, table, "dropping the staging table").await
}

/// Drops the staging table `table`, if it exists, on `conn` (in its transaction, if any);
/// `step` names the work it is part of.
pub async fn drop_in(conn: &mut PgConnection, table: &str, step: &'static str) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}"))).execute(conn).await.step(step)?;
    Ok(())
}

/// Ends every other session holding a lock on the staging table `table` (a dead attempt's
/// `COPY`, an abandoned early writer, a frozen merge): their transactions roll back.
pub async fn end_sessions(conn: &mut PgConnection, table: &str) -> Result<()> {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE relation = to_regclass($1) AND pid <> pg_backend_pid()",
    )
    .bind(table)
    .execute(conn)
    .await
    .step("ending the sessions holding the staging table")?;
    Ok(())
}
