//! The merge: one transaction that folds the staging rows into `scanner_checks` and
//! `vulnerabilities`, counts the lifecycle (new, updated, unchanged, resolved, reopened), and
//! marks the import completed. Merges of one tenant and scanner are serialised by an advisory
//! lock, so overlapping imports give the same result as running them one after the other.

use std::time::{Duration, Instant};

use shared::{backoff::Backoff, events::Summary};
use sqlx::AssertSqlSafe;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::{
    error::{JobError, Result},
    estimate::MergeKind,
    import::Import,
    progress::Reporter,
};

/// The statements of the merge, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Dedup,
    Checks,
    Compare,
    Resolve,
    Update,
    Insert,
}

impl Step {
    const ALL: [Step; 6] = [Step::Dedup, Step::Checks, Step::Compare, Step::Resolve, Step::Update, Step::Insert];

    /// The step's expected share of the time of a merge of `kind`, in seconds of the
    /// million-row series of `bench e2e` (`docs/benchmarks.md`): writing the new findings is
    /// most of a first import's merge, comparing most of a repeated one's, comparing and
    /// rewriting every finding seen most of a rescan's.
    fn weight(self, kind: MergeKind) -> f64 {
        let [dedup, checks, compare, resolve, update, insert] = match kind {
            MergeKind::First => [0.3, 0.15, 0.15, 0.15, 0.15, 6.6],
            MergeKind::Repeat => [0.05, 0.05, 3.3, 0.05, 0.05, 0.05],
            MergeKind::Rescan => [0.05, 0.05, 3.2, 0.75, 3.7, 0.9],
        };
        [dedup, checks, compare, resolve, update, insert][self as usize]
    }

    /// What the progress event says during the step.
    fn message(self) -> &'static str {
        match self {
            Step::Dedup => "Deduplicating rows",
            Step::Checks => "Recording scanner checks",
            Step::Compare => "Comparing with known findings",
            Step::Resolve => "Resolving findings absent from this scan",
            Step::Update => "Updating known findings",
            Step::Insert => "Writing new findings",
        }
    }
}

/// How often a long step's progress is published while its statement runs.
const STEP_TICK: Duration = Duration::from_millis(500);
/// The share of its span a step's progress may reach by time alone, before it ends.
const STEP_TIME_CAP: f64 = 0.95;
/// Share of the merge behind before the rest is expected nearer the pace it went so far (a
/// rescan passes it after comparing, a third of its merge; a repeat after comparing, nearly all
/// of it).
const PACE_SHARE: f64 = 0.3;
/// How far the rest of the merge moves from its expected pace towards the pace so far. Halfway:
/// a database slower or faster than expected shows in every step, but one step that ran long
/// (a comparison 1.3× its share) did not make the writes after it slower in the rescans
/// measured, and following it fully put the ETA 9–39 % long at the 80 % mark of 16 rescans.
const PACE_WEIGHT: f64 = 0.5;
/// Time the steps behind must have taken for their pace to say something.
const PACE_MIN_SECS: f64 = 0.5;

/// What a known finding seen again takes from the scan, for both of the update's statements:
/// the earliest first seen, the latest last seen (from the comparison's table `c`), and the
/// import (`$4`) that saw it.
const SEEN_AGAIN: &str =
    "first_seen = least(v.first_seen, c.first_seen), last_seen = greatest(v.last_seen, c.last_seen),
                          last_import_id = $4, updated_at = now()";

/// Block ranges a first import's findings are written in (for progress and cancel checks).
const INSERT_CHUNKS: i64 = 25;
/// Smallest block range written at once (8 MiB of rows).
const MIN_CHUNK_BLOCKS: i64 = 1024;
/// Attempts when PostgreSQL reports a deadlock or serialisation failure.
const MAX_ATTEMPTS: u32 = 5;

/// Retries after a deadlock or serialisation failure wait up to 100, 200, 400, 800 ms.
const CONFLICT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));

/// The advisory lock that serialises merges and early writes of one tenant and scanner, as a
/// SQL call on `$1` (tenant) and `$2` (scanner): `pg_advisory_xact_lock`, which waits, when
/// `wait`, else `pg_try_advisory_xact_lock`, which says whether it got the lock. The key is
/// written here only, so a merge and an early writer of one tenant and scanner always
/// exclude each other.
pub(crate) fn merge_lock(wait: bool) -> String {
    let function = if wait { "pg_advisory_xact_lock" } else { "pg_try_advisory_xact_lock" };
    format!("{function}(hashtextextended($1 || '/' || $2, 0))")
}

/// How a merge runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The staging rows already have a key each: the merge reads them as they are.
    pub unique: bool,
    /// What kind of merge it is (kept on the import row for later ETAs).
    pub kind: MergeKind,
    /// Waited after announcing each step (tests only; zero otherwise).
    pub pause: Duration,
}

/// Runs the merge of `import`'s staging table, retrying on deadlock or serialisation failure.
/// `summary` arrives with the row counts filled in; the lifecycle counts are added (and the
/// duration, by [`complete`]).
pub async fn merge(
    db: &PgPool,
    import: &Import,
    plan: Plan,
    summary: Summary,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<Summary> {
    let mut attempt = 1;
    // One for every attempt: a share a step lost stays lost, and the merge is shortened once.
    let weights = Step::ALL.map(|step| step.weight(plan.kind));
    let mut steps = Steps { reporter, cancel, weights, current: None, began: None, pause: plan.pause };
    loop {
        // Each attempt starts from the counts of loading.
        let mut counted = summary.clone();
        let result = try_merge(db, import, plan, &mut counted, &mut steps).await;
        match result {
            Err(MergeError::Db(e)) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                tracing::warn!(import_id = %import.id, attempt, error = %e, "merge conflicted; retrying");
                tokio::time::sleep(CONFLICT_BACKOFF.delay(attempt)).await;
                attempt += 1;
            }
            Err(MergeError::Db(e)) => return Err(JobError::transient("merging findings", e)),
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

/// Announces the merge's steps, checking for a cancel request before each, and moves their
/// progress on with the time they are expected to take while their statements run.
struct Steps<'a> {
    reporter: &'a mut Reporter,
    cancel: &'a CancellationToken,
    /// How the merge's time divides between the steps (by kind; a step found to have nothing
    /// to write gets none).
    weights: [f64; 6],
    /// The step under way and when it began.
    current: Option<(Step, Instant)>,
    /// When this attempt's first step began.
    began: Option<Instant>,
    /// Waited after each announcement (tests only).
    pause: Duration,
}

impl Steps<'_> {
    async fn enter(&mut self, step: Step) -> std::result::Result<(), MergeError> {
        if self.cancel.is_cancelled() {
            return Err(MergeError::Job(JobError::Cancelled));
        }
        if step == Step::Dedup {
            self.began = Some(Instant::now());
        } else {
            self.follow_pace(step);
        }
        self.current = Some((step, Instant::now()));
        self.reporter.processing(self.span(step).0, step.message()).await?;
        if !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        }
        Ok(())
    }

    /// Runs `statement` of the current step; every [`STEP_TICK`] meanwhile, publishes the
    /// progress the step's expected duration gives for the time it has run (at most
    /// [`STEP_TIME_CAP`] of its span).
    async fn during<T, E>(
        &mut self,
        statement: impl Future<Output = std::result::Result<T, E>>,
    ) -> std::result::Result<T, MergeError>
    where
        MergeError: From<E>,
    {
        let mut statement = std::pin::pin!(statement);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + STEP_TICK, STEP_TICK);
        loop {
            tokio::select! {
                done = &mut statement => return Ok(done?),
                _ = tick.tick() => self.tick().await?,
            }
        }
    }

    /// Where `step` starts and ends, as shares (0–1) of the merge. Progress and the ETA of the
    /// processing phase follow these shares.
    fn span(&self, step: Step) -> (f64, f64) {
        let total: f64 = self.weights.iter().sum();
        let before: f64 = self.weights[..step as usize].iter().sum();
        (before / total, (before + self.weights[step as usize]) / total)
    }

    /// The comparison found nothing for `step` to write: its share goes, and the merge is
    /// expected to take that much less.
    fn nothing_for(&mut self, step: Step) {
        let total: f64 = self.weights.iter().sum();
        let left = total - self.weights[step as usize];
        if left > 0.0 {
            self.reporter.rescale_merge(left / total);
            self.weights[step as usize] = 0.0;
        }
    }

    /// Once the steps before `step` are a fair share of the merge, the rest is expected halfway
    /// to their pace ([`PACE_WEIGHT`]): a merge that ran slower (or faster) than expected so far
    /// goes on partly so. Timed from the attempt's first step, so the wait for the merge's
    /// locks does not count.
    fn follow_pace(&mut self, step: Step) {
        let Some(began) = self.began else { return };
        let (behind, _) = self.span(step);
        let expected = self.reporter.expected_merge_secs() * behind;
        let ran = began.elapsed().as_secs_f64();
        if behind >= PACE_SHARE && expected > 0.0 && ran >= PACE_MIN_SECS {
            self.reporter.rescale_merge(1.0 + PACE_WEIGHT * (ran / expected - 1.0));
        }
    }

    async fn tick(&mut self) -> Result<()> {
        let Some((step, began)) = self.current else { return Ok(()) };
        let (start, end) = self.span(step);
        let expected = self.reporter.expected_merge_secs() * (end - start);
        let ran = if expected > 0.0 { (began.elapsed().as_secs_f64() / expected).min(STEP_TIME_CAP) } else { 0.0 };
        self.reporter.processing(start + (end - start) * ran, step.message()).await
    }
}

async fn try_merge(
    db: &PgPool,
    import: &Import,
    plan: Plan,
    summary: &mut Summary,
    steps: &mut Steps<'_>,
) -> std::result::Result<(), MergeError> {
    let mut tx: Transaction<'_, Postgres> = db.begin().await?;
    settings(&mut tx).await?;
    // Held before the advisory lock: a later attempt of this import ends the sessions holding
    // the staging table, so a frozen attempt cannot keep the tenant's merges waiting.
    sqlx::query(AssertSqlSafe(format!("LOCK TABLE {} IN ACCESS SHARE MODE", import.staging))).execute(&mut *tx).await?;
    // One merge at a time per tenant and scanner: the resolve step reads what others write, and
    // the findings are inserted without ON CONFLICT because no other merge can add the same keys.
    sqlx::query(AssertSqlSafe(format!("SELECT {}", merge_lock(true))))
        .bind(&import.tenant)
        .bind(import.scanner())
        .execute(&mut *tx)
        .await?;

    steps.enter(Step::Dedup).await?;
    let incoming = if plan.unique {
        import.staging.as_str()
    } else {
        let dedup = sqlx::query(AssertSqlSafe(format!(
            "CREATE TEMP TABLE incoming ON COMMIT DROP AS
             SELECT asset, check_id, port, protocol,
                    ARRAY(SELECT DISTINCT c FROM unnest(string_to_array(string_agg(array_to_string(cves, ','), ','), ',')) c
                          WHERE c <> '' ORDER BY c) AS cves,
                    max(severity) AS severity, max(cvss) AS cvss, max(vpr) AS vpr,
                    (array_agg(output ORDER BY line))[1] AS output,
                    min(first_seen) AS first_seen, max(last_seen) AS last_seen,
                    bool_and(fixed) AS fixed, count(*) - 1 AS repeats
             FROM {} GROUP BY asset, check_id, port, protocol",
            import.staging
        )));
        steps.during(dedup.execute(&mut *tx)).await?;
        let repeats: i64 =
            sqlx::query_scalar("SELECT coalesce(sum(repeats), 0)::bigint FROM incoming").fetch_one(&mut *tx).await?;
        // Rows folded while staging, plus those folded here.
        summary.skipped_duplicates += repeats as u64;
        "incoming"
    };
    analyze(&mut tx, incoming).await?;

    steps.enter(Step::Checks).await?;
    record_checks(&mut tx, import).await?;

    steps.enter(Step::Compare).await?;
    let any_known: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM vulnerabilities WHERE tenant = $1 AND scanner = $2)")
            .bind(&import.tenant)
            .bind(import.scanner())
            .fetch_one(&mut *tx)
            .await?;
    // A merge join would sort both sides by their text keys under the database's collation,
    // which costs more than hashing them.
    sqlx::query("SET LOCAL enable_mergejoin = off").execute(&mut *tx).await?;
    let counts = if any_known {
        steps.during(compare(&mut tx, import, incoming)).await?
    } else {
        all_new(&mut tx, incoming).await?
    };
    (summary.new, summary.reopened, summary.updated, summary.unchanged, summary.resolved) =
        (counts.new, counts.reopened, counts.updated, counts.unchanged, counts.resolved + counts.fixed_new);
    for (step, rows) in [
        (Step::Resolve, counts.resolved),
        (Step::Update, counts.reopened + counts.updated + counts.moved),
        (Step::Insert, counts.new + counts.fixed_new),
    ] {
        if rows == 0 {
            steps.nothing_for(step);
        }
    }
    // The writes below reach their rows by the addresses the comparison found (`ctid`, TID
    // scans in nested loops): no other pass over the tenant's findings or the staged rows.
    sqlx::query("SET LOCAL enable_hashjoin = off").execute(&mut *tx).await?;

    steps.enter(Step::Resolve).await?;
    if counts.resolved > 0 {
        let resolve = write(
            "UPDATE vulnerabilities v SET state = 'resolved', resolved_at = $3::timestamptz, updated_at = now(),
                    last_import_id = $4
             WHERE v.ctid = ANY (ARRAY(SELECT vt FROM compared WHERE state = 'open' AND (it IS NULL OR fixed)))
               AND v.tenant = $1 AND v.scanner = $2 AND v.state = 'open'"
                .into(),
            import,
        );
        steps.during(resolve.execute(&mut *tx)).await?;
    }

    steps.enter(Step::Update).await?;
    if counts.reopened + counts.updated > 0 {
        // Findings whose details or state change take them from the staged row.
        let update = write(
            format!(
                "UPDATE vulnerabilities v
                 SET cves = i.cves, severity = i.severity, cvss = i.cvss, vpr = i.vpr, output = i.output,
                     state = 'open', resolved_at = NULL, {SEEN_AGAIN}
                 FROM compared c JOIN {incoming} i ON i.ctid = c.it
                 WHERE v.ctid = c.vt AND v.tenant = $1 AND v.scanner = $2
                   AND NOT c.fixed AND (c.state = 'resolved' OR c.changed)"
            ),
            import,
        );
        steps.during(update.execute(&mut *tx)).await?;
    }
    if counts.moved > 0 {
        // Open findings seen again as they were are only written when this scan moves their
        // last_seen, and only their dates: the staged row is not read again.
        let seen = write(
            format!(
                "UPDATE vulnerabilities v SET {SEEN_AGAIN}
                 FROM compared c
                 WHERE v.ctid = c.vt AND v.tenant = $1 AND v.scanner = $2
                   AND c.it IS NOT NULL AND NOT c.fixed AND c.state = 'open' AND NOT c.changed AND c.moves"
            ),
            import,
        );
        steps.during(seen.execute(&mut *tx)).await?;
    }

    steps.enter(Step::Insert).await?;
    let inserting = counts.new + counts.fixed_new;
    if inserting > 0 && !any_known {
        // Nothing of this scan is known yet (a first import): every row is new, and the rows go
        // in block range by block range, with progress and a cancel check between.
        let insert = insert_new(incoming);
        let blocks: i64 =
            sqlx::query_scalar("SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint")
                .bind(incoming)
                .fetch_one(&mut *tx)
                .await?;
        let per_chunk = (blocks / INSERT_CHUNKS).max(MIN_CHUNK_BLOCKS);
        let mut from = 0;
        while from < blocks {
            let to = from + per_chunk;
            write(format!("{insert} AND ctid >= '({from},0)'::tid AND ctid < '({to},0)'::tid"), import)
                .execute(&mut *tx)
                .await?;
            from = to;
            let done = (from as f64 / blocks.max(1) as f64).min(1.0);
            let (start, end) = steps.span(Step::Insert);
            let share = start + (end - start) * done;
            if steps.cancel.is_cancelled() {
                return Err(MergeError::Job(JobError::Cancelled));
            }
            steps.reporter.processing(share, Step::Insert.message()).await?;
        }
    } else if inserting > 0 {
        let insert = write(
            format!("{} AND i.ctid = ANY (ARRAY(SELECT it FROM compared WHERE vt IS NULL))", insert_new(incoming)),
            import,
        );
        steps.during(insert.execute(&mut *tx)).await?;
    }
    refresh_statistics(&mut tx, inserting).await?;

    if steps.cancel.is_cancelled() {
        return Err(MergeError::Job(JobError::Cancelled));
    }
    steps.reporter.finalizing("Recording the summary", crate::progress::FINALIZE_SECS).await?;
    match complete(&mut tx, summary, steps.reporter, plan.kind).await? {
        Some(done) => *summary = done,
        // A newer attempt holds the import: everything above is rolled back.
        None => return Err(MergeError::Job(JobError::Fenced)),
    }
    tx.commit().await?;
    Ok(())
}

/// What the comparison of a scan with the known findings counted.
#[derive(Debug, Default, Clone, Copy)]
struct Compared {
    /// Findings first seen (not reported fixed).
    new: u64,
    /// Findings first seen already reported fixed (recorded as resolved).
    fixed_new: u64,
    /// Resolved findings seen again.
    reopened: u64,
    /// Open findings with other details.
    updated: u64,
    /// Findings seen again as they were (resolved ones reported fixed again included).
    unchanged: u64,
    /// Of the unchanged open findings, those whose last_seen this scan moves.
    moved: u64,
    /// Open findings of the covered assets absent from the scan or reported fixed.
    resolved: u64,
}

/// What the lifecycle compares of a finding (CVEs, severity, scores, output) as one 64-bit
/// hash, for the row alias `t`: each field hashed as its own type (`hash_array_extended` over
/// the CVE list, the float hash over each score, a constant for a missing one) and the output
/// hashed with their combination as its seed. No field is formatted as text first, which took
/// twice as long (1M findings: 0.4 s against 0.8 s).
fn digest(t: &str) -> String {
    format!(
        "hashtextextended({t}.output, hash_array_extended({t}.cves, 0) # hashint2extended({t}.severity, 1)
                                      # coalesce(hashfloat4extended({t}.cvss, 2), 3)
                                      # coalesce(hashfloat4extended({t}.vpr, 4), 5))"
    )
}

/// Compares the scan with the tenant's findings of the assets it covers, in one pass, into the
/// temporary table `compared`: per finding of either side, where it is (`it`: the staged row,
/// `vt`: the known finding), the known state, whether the scanner reports it fixed, whether its
/// details differ (`changed`, by [`digest`]), whether its last_seen moves (`moves`), and the
/// scan's dates for it (`first_seen`, `last_seen`). Only addresses, flags, dates and hashes go
/// through the join, never the texts, so it stays in memory.
async fn compare(
    tx: &mut Transaction<'_, Postgres>,
    import: &Import,
    incoming: &str,
) -> std::result::Result<Compared, MergeError> {
    let (di, dv) = (digest("i"), digest("v"));
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TEMP TABLE compared ON COMMIT DROP AS
             SELECT i.it, v.vt, v.state, coalesce(i.fixed, false) AS fixed,
                    i.digest IS DISTINCT FROM v.digest AS changed, v.last_seen < i.last_seen AS moves,
                    i.first_seen, i.last_seen
             FROM (SELECT i.ctid AS it, i.asset, i.check_id, i.port, i.protocol, i.fixed,
                          coalesce(i.first_seen, i.last_seen, $3::timestamptz) AS first_seen,
                          coalesce(i.last_seen, $3::timestamptz) AS last_seen, {di} AS digest
                   FROM {incoming} i) i
             FULL JOIN (SELECT v.ctid AS vt, v.asset, v.check_id, v.port, v.protocol, v.state, v.last_seen,
                               {dv} AS digest
                        FROM vulnerabilities v
                        WHERE v.tenant = $1 AND v.scanner = $2 AND v.asset IN (SELECT DISTINCT asset FROM {incoming})) v
               ON v.asset = i.asset AND v.check_id = i.check_id AND v.port = i.port AND v.protocol = i.protocol
             WHERE i.it IS NOT NULL OR v.state = 'open'"
    )))
    .bind(&import.tenant)
    .bind(import.scanner())
    .bind(&import.scan_date)
    .execute(&mut **tx)
    .await?;
    let c: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE vt IS NULL AND NOT fixed),
                count(*) FILTER (WHERE vt IS NULL AND fixed),
                count(*) FILTER (WHERE it IS NOT NULL AND state = 'resolved' AND NOT fixed),
                count(*) FILTER (WHERE it IS NOT NULL AND state = 'open' AND NOT fixed AND changed),
                count(*) FILTER (WHERE it IS NOT NULL AND ((state = 'open' AND NOT fixed AND NOT changed)
                                                           OR (state = 'resolved' AND fixed))),
                count(*) FILTER (WHERE it IS NOT NULL AND state = 'open' AND NOT fixed AND NOT changed AND moves),
                count(*) FILTER (WHERE state = 'open' AND (it IS NULL OR fixed))
         FROM compared",
    )
    .fetch_one(&mut **tx)
    .await?;
    let n = |v: i64| v as u64;
    Ok(Compared {
        new: n(c.0),
        fixed_new: n(c.1),
        reopened: n(c.2),
        updated: n(c.3),
        unchanged: n(c.4),
        moved: n(c.5),
        resolved: n(c.6),
    })
}

/// The counts of a scan when the tenant has no findings of the scanner: every row is new.
async fn all_new(tx: &mut Transaction<'_, Postgres>, incoming: &str) -> std::result::Result<Compared, MergeError> {
    let (new, fixed_new): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT count(*) FILTER (WHERE NOT fixed), count(*) FILTER (WHERE fixed) FROM {incoming}"
    )))
    .fetch_one(&mut **tx)
    .await?;
    Ok(Compared { new: new as u64, fixed_new: fixed_new as u64, ..Compared::default() })
}

/// Upserts the scanner checks of the staged rows (their text is on the first row of each check),
/// read through the staging table's index of those rows: the planner, without statistics of
/// the staging table, would expect nearly every row to carry a text and scan them all.
pub(crate) async fn record_checks(tx: &mut Transaction<'_, Postgres>, import: &Import) -> sqlx::Result<()> {
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut **tx).await?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO scanner_checks AS c (scanner, check_id, title, description, solution)
         SELECT DISTINCT ON (check_id) $1, check_id, title, coalesce(description, ''), coalesce(solution, '')
         FROM {} WHERE title IS NOT NULL ORDER BY check_id, line
         ON CONFLICT (scanner, check_id) DO UPDATE
            SET title = EXCLUDED.title, description = EXCLUDED.description, solution = EXCLUDED.solution, updated_at = now()
            WHERE (c.title, c.description, c.solution) IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.description, EXCLUDED.solution)",
        import.staging
    )))
    .bind(import.scanner())
    .execute(&mut **tx)
    .await?;
    sqlx::query("SET LOCAL enable_seqscan = on").execute(&mut **tx).await?;
    Ok(())
}

/// The settings of a merge transaction: room to hash a scan's keys in memory, and no JIT
/// compilation, which PostgreSQL would start for the comparison's estimated cost and which
/// took longer (0.5 s of a million-finding comparison) than it saved.
pub(crate) async fn settings(tx: &mut Transaction<'_, Postgres>) -> sqlx::Result<()> {
    sqlx::raw_sql("SET LOCAL work_mem = '256MB'; SET LOCAL jit = off").execute(&mut **tx).await?;
    Ok(())
}

/// Many new findings make the table's statistics stale for the next merge (a first import's
/// findings, into a table whose statistics say it is empty): they are refreshed in the merge's
/// transaction when they add a fifth or more to the findings PostgreSQL last counted. Fewer
/// (a weekly rescan's 5 % of new findings) are left to autovacuum: the plans do not change
/// with them, and the `ANALYZE` would wait up to a second for autovacuum to give the table up.
pub(crate) async fn refresh_statistics(tx: &mut Transaction<'_, Postgres>, new: u64) -> sqlx::Result<()> {
    if new <= 10_000 {
        return Ok(());
    }
    let counted: f32 =
        sqlx::query_scalar("SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'vulnerabilities'::regclass")
            .fetch_one(&mut **tx)
            .await?;
    if new as f64 >= 0.2 * f64::from(counted) {
        analyze(tx, "vulnerabilities").await?;
    }
    Ok(())
}

/// Statistics samples of the merge: 3,000 rows instead of PostgreSQL's default 30,000. The
/// merge's plans need row counts and how keys spread, not fine histograms, and reading the
/// larger sample of a million-row table took 0.5–0.8 s per `ANALYZE`, against 30–40 ms.
const STATISTICS_TARGET: u32 = 10;

/// Refreshes the planner's statistics of `table` in the merge's transaction, from a sample of
/// [`STATISTICS_TARGET`]'s size (autovacuum later samples more, at its own pace).
async fn analyze(tx: &mut Transaction<'_, Postgres>, table: &str) -> sqlx::Result<()> {
    sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL default_statistics_target = {STATISTICS_TARGET}; ANALYZE {table}")))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The insert of findings first seen in this scan from `incoming`, to be completed with more
/// conditions (`i` is the staged row). A finding the scanner already reports fixed is recorded
/// as resolved (when the scan saw it), so it is counted and reopens if it comes back. Takes the
/// parameters of [`write`].
pub(crate) fn insert_new(incoming: &str) -> String {
    format!(
        "INSERT INTO vulnerabilities (tenant, scanner, asset, check_id, port, protocol, cves, severity, cvss, vpr,
                                      output, state, resolved_at, first_seen, last_seen, last_import_id)
         SELECT $1, $2, asset, check_id, port, protocol, cves, severity, cvss, vpr, output,
                CASE WHEN fixed THEN 'resolved' ELSE 'open' END,
                CASE WHEN fixed THEN coalesce(last_seen, $3::timestamptz) END,
                coalesce(first_seen, last_seen, $3::timestamptz), coalesce(last_seen, $3::timestamptz), $4
         FROM {incoming} i
         WHERE true"
    )
}

/// Marks the import completed with its summary, in the merge's transaction: a crash after the
/// commit cannot merge twice. Conditional on the attempt's fence (`None`: fenced, nothing
/// written). `finished_at` is the moment of the update (`clock_timestamp()`, not the start of
/// the transaction), and the summary's `durationMs` is `finished_at - started_at`, so the row
/// and the summary agree; `last_seq` becomes the seq of the terminal event, which is then
/// published from the row (`ended::finish`).
///
/// The merge's time (from the last row read to here) and its kind are kept on the row: the ETA
/// of the tenant's next merge of that kind starts from them.
pub(crate) async fn complete(
    tx: &mut Transaction<'_, Postgres>,
    summary: &Summary,
    reporter: &Reporter,
    kind: MergeKind,
) -> sqlx::Result<Option<Summary>> {
    let fence = reporter.fence();
    let message = crate::progress::completion_message(summary);
    let done: Option<sqlx::types::Json<Summary>> = sqlx::query_scalar(
        "UPDATE imports SET status = 'completed', phase = 'complete', progress = 100, message = $3,
                summary = $2::jsonb || jsonb_build_object(
                    'durationMs', d.ms,
                    'rowsPerSecond', CASE WHEN d.ms = 0 THEN $5::float8 ELSE round($5 * 1000.0 / d.ms) END),
                last_seq = greatest(last_seq, $4), processed_rows = $5, total_rows = $5,
                validation_errors = $6, finished_at = d.at, merge_ms = $8, merge_kind = $9
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
    .bind(reporter.merge_elapsed().as_millis() as i64)
    .bind(kind.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(done.map(|s| s.0))
}

/// A write of the merge, with the parameters they all take: `$1` tenant, `$2` scanner, `$3` scan
/// date, `$4` import id.
pub(crate) fn write(sql: String, import: &Import) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(AssertSqlSafe(sql)).bind(&import.tenant).bind(import.scanner()).bind(&import.scan_date).bind(import.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_the_merge_lock_and_trying_it_name_the_same_key() {
        let key = |call: String| call.split_once('(').map(|(_, key)| key.to_owned()).unwrap();
        assert_eq!(key(merge_lock(true)), key(merge_lock(false)));
        assert!(merge_lock(false).starts_with("pg_try_advisory_xact_lock("));
    }
}
