//! How long an import's merge will take, for its ETA: what the tenant's last merge of the same
//! kind and format took, else its last merge of a kind that stands in for it (a repeat for a
//! rescan, a rescan for a repeat), else what this worker measured, else a default per kind of merge,
//! given as a multiple of the import's own load rate (a ratio carries from one machine to
//! another; a rate in rows per second does not).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// The kind of merge an import runs: their costs differ several-fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeKind {
    /// The tenant has no findings of the scanner: every finding is inserted (while the file
    /// loads, when it can).
    First,
    /// Findings are known and the scan is not newer than the tenant's last one: only what
    /// changed is written (an identical re-import writes nothing).
    Repeat,
    /// Findings are known and the scan is newer (the weekly rescan): every finding seen is
    /// rewritten, since its last_seen moves.
    Rescan,
}

impl MergeKind {
    const ALL: [MergeKind; 3] = [MergeKind::First, MergeKind::Repeat, MergeKind::Rescan];

    /// The name kept on the import row (`imports.merge_kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            MergeKind::First => "first",
            MergeKind::Repeat => "repeat",
            MergeKind::Rescan => "rescan",
        }
    }

    /// Findings (staged rows) merged per second, as a multiple of the file's rows read per
    /// second while loading, before anything was measured: a first import merged after loading
    /// (its keys repeat out of order), an identical re-import, a weekly rescan. Measured with
    /// million-row Nessus exports of two shapes (0.7 and 1 finding per row) on 2-core machines
    /// (`docs/benchmarks.md`): a rescan's ratio was 0.41–0.58 (median 0.47) over 26 imports on
    /// one machine and 0.43–0.55 on another; a repeat's 1.17–1.31 over four imports since its
    /// statistics are sampled and its checks read by index (0.90–1.25 before).
    fn default_ratio(self) -> f64 {
        match self {
            MergeKind::First => 0.35,
            MergeKind::Repeat => 1.25,
            MergeKind::Rescan => 0.5,
        }
    }

    /// The kind whose last merge stands in for this kind's when the tenant has none of this
    /// kind yet, and how many times faster this kind merges the same file: a rescan and a repeat
    /// both compare every finding, and a rescan then rewrites every finding seen
    /// ([`RESCAN_PER_REPEAT`]). A first import's merge is what is left of its writes after the
    /// load, which says nothing of the others'.
    fn stand_in(self) -> Option<(MergeKind, f64)> {
        match self {
            MergeKind::First => None,
            MergeKind::Repeat => Some((MergeKind::Rescan, RESCAN_PER_REPEAT)),
            MergeKind::Rescan => Some((MergeKind::Repeat, 1.0 / RESCAN_PER_REPEAT)),
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).expect("every kind is listed")
    }
}

/// How many times longer a weekly rescan's merge took than the identical re-import's before it,
/// of the same findings: 2.1–3.2 (median 2.55) over eighteen rescans of million-row files of two
/// shapes on two 2-core machines (`docs/benchmarks.md`).
const RESCAN_PER_REPEAT: f64 = 2.5;

/// The kind of merge an import of `tenant`'s `format` export dated `scan_date` will run, and
/// the rate (rows per second) of the tenant's last merge of that kind and format, else of the
/// kind that stands in for it (scaled to this kind), when known.
pub async fn expect(
    db: &PgPool,
    tenant: &str,
    scanner: &str,
    format: &str,
    scan_date: &str,
) -> sqlx::Result<(MergeKind, Option<f64>)> {
    let (known, newer): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM vulnerabilities WHERE tenant = $1 AND scanner = $2),
                coalesce($3::timestamptz > (SELECT max(scan_date) FROM imports
                                            WHERE tenant = $1 AND scanner = $2 AND status = 'completed'), true)",
    )
    .bind(tenant)
    .bind(scanner)
    .bind(scan_date)
    .fetch_one(db)
    .await?;
    let kind = match (known, newer) {
        (false, _) => MergeKind::First,
        (true, false) => MergeKind::Repeat,
        (true, true) => MergeKind::Rescan,
    };
    // The last merge of this kind, else of the kind it translates from.
    let last: Option<(String, f64)> = sqlx::query_as(
        "SELECT merge_kind, total_rows * 1000.0::float8 / greatest(merge_ms, 1) FROM imports
         WHERE tenant = $1 AND format = $2 AND merge_kind = ANY ($3) AND status = 'completed'
           AND merge_ms IS NOT NULL AND total_rows >= 10000
         ORDER BY merge_kind = $4 DESC, finished_at DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(format)
    .bind(
        std::iter::once(kind).chain(kind.stand_in().map(|(other, _)| other)).map(MergeKind::as_str).collect::<Vec<_>>(),
    )
    .bind(kind.as_str())
    .fetch_optional(db)
    .await?;
    let rate = last.map(|(of, rate)| match kind.stand_in() {
        Some((other, faster)) if of == other.as_str() => rate * faster,
        _ => rate,
    });
    Ok((kind, rate))
}

/// How fast a merge is expected to go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MergePace {
    /// Rows of the file per second, measured (the tenant's last merge of the kind and format,
    /// or this worker's merges of the kind).
    Measured(f64),
    /// Nothing measured yet: findings (staged rows) per second, as this multiple of the rows
    /// of the file the import loaded per second. The merge's work follows the findings, and how
    /// many findings a row gives depends on the file's shape.
    RelativeToLoad(f64),
}

impl MergePace {
    /// Seconds to merge `rows` rows of the file that gave `findings` staged findings, under a
    /// load rate of `load_rows_per_second` (rows read per second of loading;
    /// `FALLBACK_LOAD_ROWS_PER_SECOND` before the load has a rate).
    pub fn secs(self, rows: f64, findings: f64, load_rows_per_second: f64) -> f64 {
        match self {
            MergePace::Measured(rate) => rows / rate,
            MergePace::RelativeToLoad(ratio) => {
                let load =
                    if load_rows_per_second > 0.0 { load_rows_per_second } else { FALLBACK_LOAD_ROWS_PER_SECOND };
                findings / (ratio * load)
            }
        }
    }

    /// The same pace, `factor` times faster.
    pub fn faster(self, factor: f64) -> MergePace {
        match self {
            MergePace::Measured(rate) => MergePace::Measured(rate * factor),
            MergePace::RelativeToLoad(ratio) => MergePace::RelativeToLoad(ratio * factor),
        }
    }
}

/// The pace of a count that grows a slice at a time (the findings a first import has written):
/// timed between the first and the latest growth seen, never from when watching began, since
/// the slice that ends first was mostly written before.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlicedPace {
    /// When watching began, and the count then.
    watched: Option<(Instant, u64)>,
    /// The first growth seen: when, and to how much.
    first: Option<(Instant, u64)>,
    /// The latest growth seen.
    last: Option<(Instant, u64)>,
}

impl SlicedPace {
    /// Records the count `count` seen at `now`.
    pub fn observe(&mut self, now: Instant, count: u64) {
        let Some((_, before)) = self.last.or(self.watched) else {
            self.watched = Some((now, count));
            return;
        };
        if count > before {
            self.first.get_or_insert((now, count));
            self.last = Some((now, count));
        }
    }

    /// Seconds from `now` until the count reaches `target`: at the pace measured between the
    /// growths seen once they are `MIN_SECS` apart, else at `default_per_sec`; counted from the
    /// latest growth (or from when watching began), so the time since then is spent.
    pub fn secs_to(&self, now: Instant, target: u64, default_per_sec: f64) -> f64 {
        let Some((since, at)) = self.last.or(self.watched) else { return 0.0 };
        let per_sec = self.per_sec().unwrap_or(default_per_sec);
        if per_sec <= 0.0 {
            return 0.0;
        }
        (target.saturating_sub(at) as f64 / per_sec - now.duration_since(since).as_secs_f64()).max(0.0)
    }

    /// The count's growth per second between the first and the latest growth seen, once they
    /// are `MIN_SECS` apart.
    pub fn per_sec(&self) -> Option<f64> {
        let ((t0, c0), (t1, c1)) = (self.first?, self.last?);
        let (grown, secs) = (c1.saturating_sub(c0), t1.duration_since(t0).as_secs_f64());
        (grown > 0 && secs >= Self::MIN_SECS).then(|| grown as f64 / secs)
    }

    /// Time between two growths for their pace to say something.
    const MIN_SECS: f64 = 0.3;
}

/// Rows read per second of loading assumed before a load has a rate of its own (a 2-core
/// machine loads a million-row Nessus export at about 180k–240k rows per second).
pub const FALLBACK_LOAD_ROWS_PER_SECOND: f64 = 200_000.0;

/// Merge rates measured by this worker, per kind: each merge of at least 10,000 rows moves the
/// estimate halfway to its own rate.
#[derive(Debug, Clone, Default)]
pub struct MergeRates(Arc<Mutex<[Option<f64>; 3]>>);

impl MergeRates {
    /// The pace expected for a merge of `kind`: this worker's measure, else the default ratio.
    pub fn pace(&self, kind: MergeKind) -> MergePace {
        match self.0.lock().expect("merge rates lock is never poisoned")[kind.index()] {
            Some(rate) => MergePace::Measured(rate),
            None => MergePace::RelativeToLoad(kind.default_ratio()),
        }
    }

    /// Folds one merge of `rows` rows that took `took` into the estimate.
    pub fn observe(&self, kind: MergeKind, rows: u64, took: Duration) {
        if rows < 10_000 || took.is_zero() {
            return;
        }
        let measured = rows as f64 / took.as_secs_f64();
        let mut rates = self.0.lock().expect("merge rates lock is never poisoned");
        let slot = &mut rates[kind.index()];
        *slot = Some(slot.map_or(measured, |r| 0.5 * r + 0.5 * measured));
    }
}

/// How much faster a load runs once its file has finished arriving, when nothing is measured
/// yet: with the gateway, nats-server and the worker on one 2-core machine (the benchmark), the
/// load ran 1.6–1.9 times faster after the upload than during it.
pub const ARRIVING_SPEEDUP: f64 = 1.6;

/// Findings written per second once the load waits for the early writer (or is over), as a
/// multiple of the pace of the writer's statements before (since the file was whole), when
/// nothing is measured yet: with the worker and PostgreSQL on one 2-core machine (the
/// benchmark) the writer had shared it with the parser and the upload, and it was 1.38–2.34
/// (median 1.9) over ten million-row first imports of two shapes (`docs/benchmarks.md`).
pub const WRITER_ALONE_SPEEDUP: f64 = 1.9;

/// How much faster the early writer's last slices go, once the load is over, than its
/// statements since the load first waited for it, when nothing is measured yet: the load still
/// parses and copies a slice each time the writer ends one, and the last slices (at most
/// [`crate::early::LEAD_SLICES`] and the file's end) have the machine to themselves. 0.83–1.54
/// (median 1.41) over five million-row first imports on a 2-core machine, and about 1.5 on
/// another (`docs/benchmarks.md`).
pub const WRITER_TAIL_SPEEDUP: f64 = 1.4;

/// How much faster something this worker does ran after what shared the machine with it ended,
/// as last measured (its pace after over its pace before), else a default. A worker on a
/// machine of its own measures about 1: the upload, or the parser, no longer takes CPU from the
/// load, or from PostgreSQL.
#[derive(Debug, Clone)]
pub struct Speedup {
    default: f64,
    last: Arc<Mutex<Option<f64>>>,
}

impl Speedup {
    /// A speed-up of `default` until one is measured.
    pub fn new(default: f64) -> Speedup {
        Speedup { default, last: Arc::default() }
    }

    /// The speed-up expected next time: the last measure, else the default.
    pub fn expected(&self) -> f64 {
        self.last.lock().expect("speed-up lock is never poisoned").unwrap_or(self.default)
    }

    /// Records a pace before and after (any unit, the same for both).
    pub fn observe(&self, before: f64, after: f64) {
        if before > 0.0 && after > 0.0 {
            *self.last.lock().expect("speed-up lock is never poisoned") = Some((after / before).clamp(1.0, 4.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_speedup_is_expected_as_last_measured() {
        let speedup = Speedup::new(ARRIVING_SPEEDUP);
        assert_eq!(speedup.expected(), ARRIVING_SPEEDUP, "nothing measured yet");
        speedup.observe(100.0, 150.0);
        assert_eq!(speedup.expected(), 1.5);
        speedup.observe(100.0, 90.0);
        assert_eq!(speedup.expected(), 1.0, "a load never counts on slowing down");
        speedup.observe(0.0, 90.0);
        assert_eq!(speedup.expected(), 1.0, "a pace of nothing is no measure");
        assert_eq!(Speedup::new(WRITER_ALONE_SPEEDUP).expected(), WRITER_ALONE_SPEEDUP, "each its own");
    }

    #[test]
    fn a_worker_starts_from_the_default_and_moves_halfway_to_each_measure() {
        let rates = MergeRates::default();
        assert_eq!(rates.pace(MergeKind::Rescan), MergePace::RelativeToLoad(MergeKind::Rescan.default_ratio()));
        rates.observe(MergeKind::Rescan, 100_000, Duration::from_secs(1));
        assert_eq!(rates.pace(MergeKind::Rescan), MergePace::Measured(100_000.0));
        rates.observe(MergeKind::Rescan, 100_000, Duration::from_millis(500));
        assert_eq!(rates.pace(MergeKind::Rescan), MergePace::Measured(150_000.0));
        rates.observe(MergeKind::Rescan, 500, Duration::from_millis(1));
        assert_eq!(rates.pace(MergeKind::Rescan), MergePace::Measured(150_000.0), "small merges say little");
        assert_eq!(
            rates.pace(MergeKind::First),
            MergePace::RelativeToLoad(MergeKind::First.default_ratio()),
            "kinds are apart"
        );
    }

    #[test]
    fn a_sliced_count_is_timed_between_its_growths_not_from_when_watching_began() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut pace = SlicedPace::default();
        pace.observe(at(0), 400);
        assert_eq!(pace.secs_to(at(0), 1000, 100.0), 6.0, "the default pace before any growth");
        assert_eq!(pace.secs_to(at(1000), 1000, 100.0), 5.0, "time since watching began is spent");
        // The first slice ends soon after watching began: most of it was written before.
        pace.observe(at(200), 500);
        assert_eq!(pace.secs_to(at(200), 1000, 100.0), 5.0, "one growth alone gives no pace");
        assert_eq!(pace.per_sec(), None);
        pace.observe(at(600), 500);
        assert_eq!(pace.secs_to(at(600), 1000, 100.0), 4.6);
        pace.observe(at(1200), 600);
        assert!((pace.secs_to(at(1200), 1000, 100.0) - 4.0).abs() < 1e-9, "100 in 1 s: 400 to go");
        assert!((pace.secs_to(at(2200), 1000, 100.0) - 3.0).abs() < 1e-9);
        assert_eq!(pace.secs_to(at(9000), 1000, 100.0), 0.0, "never below zero");
        pace.observe(at(1700), 800);
        assert!((pace.secs_to(at(1700), 1000, 100.0) - 1.0).abs() < 1e-9, "300 in 1.5 s: 200 to go");
        assert_eq!(pace.per_sec(), Some(200.0));
    }

    #[test]
    fn an_unmeasured_merge_goes_through_its_findings_at_its_ratio_of_the_load_rate() {
        let pace = MergePace::RelativeToLoad(0.5);
        assert_eq!(pace.secs(1_000_000.0, 600_000.0, 240_000.0), 5.0, "600k findings at 120k/s");
        assert_eq!(pace.secs(1_000_000.0, 1_000_000.0, 0.0), 1_000_000.0 / (0.5 * FALLBACK_LOAD_ROWS_PER_SECOND));
        assert_eq!(pace.faster(2.0).secs(1_000_000.0, 600_000.0, 240_000.0), 2.5);
        let measured = MergePace::Measured(100_000.0);
        assert_eq!(measured.secs(1_000_000.0, 600_000.0, 240_000.0), 10.0, "a measured rate is of the file's rows");
        assert_eq!(measured.faster(2.0), MergePace::Measured(200_000.0));
    }
}
