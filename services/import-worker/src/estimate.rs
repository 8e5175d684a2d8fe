//! How long an import's merge will take, for its ETA: what the tenant's last merge of the same
//! kind and format took, else what this worker measured, else a default per kind of merge.

use std::sync::{Arc, Mutex};
use std::time::Duration;

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

    /// Rows of the file merged per second before anything was measured, as a 2-core machine
    /// merges a million-row Nessus export (`docs/benchmarks.md`): the merge that follows a
    /// first import's early writes, an identical re-import, a weekly rescan.
    fn default_rate(self) -> f64 {
        match self {
            MergeKind::First => 90_000.0,
            MergeKind::Repeat => 260_000.0,
            MergeKind::Rescan => 115_000.0,
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).expect("every kind is listed")
    }
}

/// The kind of merge an import of `tenant`'s `format` export dated `scan_date` will run, and
/// the rate (rows per second) of the tenant's last merge of that kind and format, when known.
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
    let rate = sqlx::query_scalar(
        "SELECT total_rows * 1000.0::float8 / greatest(merge_ms, 1) FROM imports
         WHERE tenant = $1 AND format = $2 AND merge_kind = $3 AND status = 'completed'
           AND merge_ms IS NOT NULL AND total_rows >= 10000
         ORDER BY finished_at DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(format)
    .bind(kind.as_str())
    .fetch_optional(db)
    .await?;
    Ok((kind, rate))
}

/// Merge rates measured by this worker, per kind: each merge of at least 10,000 rows moves the
/// estimate halfway to its own rate.
#[derive(Debug, Clone, Default)]
pub struct MergeRates(Arc<Mutex<[Option<f64>; 3]>>);

impl MergeRates {
    /// Rows per second expected for a merge of `kind`.
    pub fn rate(&self, kind: MergeKind) -> f64 {
        self.0.lock().expect("merge rates lock is never poisoned")[kind.index()].unwrap_or(kind.default_rate())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_starts_from_the_default_and_moves_halfway_to_each_measure() {
        let rates = MergeRates::default();
        assert_eq!(rates.rate(MergeKind::Rescan), MergeKind::Rescan.default_rate());
        rates.observe(MergeKind::Rescan, 100_000, Duration::from_secs(1));
        assert_eq!(rates.rate(MergeKind::Rescan), 100_000.0);
        rates.observe(MergeKind::Rescan, 100_000, Duration::from_millis(500));
        assert_eq!(rates.rate(MergeKind::Rescan), 150_000.0);
        rates.observe(MergeKind::Rescan, 500, Duration::from_millis(1));
        assert_eq!(rates.rate(MergeKind::Rescan), 150_000.0, "small merges say little");
        assert_eq!(rates.rate(MergeKind::First), MergeKind::First.default_rate(), "kinds are apart");
    }
}
