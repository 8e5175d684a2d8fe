//! The floor to compare with: the bare `COPY` of the same CSV, unparsed, into an UNLOGGED table
//! of 13 text columns (one per Nessus column) on the same PostgreSQL.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use sqlx::postgres::{PgPoolCopyExt, PgPoolOptions};

/// What one bare COPY measured.
pub struct CopyRun {
    /// Rows PostgreSQL reported copied.
    pub rows: u64,
    /// Time from `COPY` start to its completion.
    pub elapsed: Duration,
}

/// Recreates `bench_raw` in `database_url`'s database and copies the file into it.
pub async fn bare_copy(database_url: &str, file: &Path) -> anyhow::Result<CopyRun> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .with_context(|| format!("connecting to {database_url}"))?;
    sqlx::query("DROP TABLE IF EXISTS bench_raw").execute(&pool).await.context("dropping bench_raw")?;
    sqlx::query(
        "CREATE UNLOGGED TABLE bench_raw (c1 text, c2 text, c3 text, c4 text, c5 text, c6 text, c7 text,
                                          c8 text, c9 text, c10 text, c11 text, c12 text, c13 text)",
    )
    .execute(&pool)
    .await
    .context("creating bench_raw")?;
    let source = tokio::fs::File::open(file).await.with_context(|| format!("opening {}", file.display()))?;
    let source = tokio::io::BufReader::with_capacity(1 << 20, source);
    let started = Instant::now();
    let mut copy =
        pool.copy_in_raw("COPY bench_raw FROM STDIN WITH (FORMAT csv, HEADER true)").await.context("starting COPY")?;
    copy.read_from(source).await.context("streaming the file to COPY")?;
    let rows = copy.finish().await.context("finishing COPY")?;
    let elapsed = started.elapsed();
    pool.close().await;
    Ok(CopyRun { rows, elapsed })
}
