//! Next week's scan of a generated file: which findings are gone, changed or new, and the
//! lifecycle counts hexflow must report for the four imports `bench e2e` runs in order (first,
//! identical, next week, back again).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::text::Rng;

/// Shares of the first file's findings that change in next week's scan, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mix {
    /// Findings absent next week (resolved, if their host is still scanned).
    pub gone: f64,
    /// Findings with new plugin output next week (updated).
    pub changed: f64,
    /// Findings added next week, on the same hosts (new).
    pub new: f64,
}

impl Mix {
    /// Parses `GONE,CHANGED,NEW` (percentages, e.g. `5,10,5`).
    pub fn parse(raw: &str) -> Result<Mix, String> {
        let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
        let numbers: Result<Vec<f64>, _> = parts.iter().map(|p| p.parse::<f64>()).collect();
        match numbers.as_deref() {
            Ok([gone, changed, new])
                if [gone, changed, new].iter().all(|v| (0.0..=100.0).contains(*v)) && gone + changed <= 100.0 =>
            {
                Ok(Mix { gone: *gone, changed: *changed, new: *new })
            }
            _ => Err(format!(
                "{raw:?} is not GONE,CHANGED,NEW: three percentages from 0 to 100 with GONE + CHANGED ≤ 100 (e.g. 5,10,5)"
            )),
        }
    }
}

/// What happens to one finding of the first file next week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Written again as it was.
    Kept,
    /// Written again with other plugin output.
    Changed,
    /// Not written.
    Gone,
}

impl Mix {
    /// The fate of finding `index` under `seed`: drawn per finding, so it does not depend on the
    /// order in which findings are written.
    pub fn fate(&self, seed: u64, index: u64) -> Fate {
        let draw = Rng::new(seed ^ 0x005E_ED0F_FA7E ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)).unit() * 100.0;
        if draw < self.gone {
            Fate::Gone
        } else if draw < self.gone + self.changed {
            Fate::Changed
        } else {
            Fate::Kept
        }
    }
}

/// The lifecycle counts of one import, as the terminal event's summary must give them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Data rows.
    pub rows: u64,
    /// Rows folded into the finding before them (one row per CVE).
    pub skipped_duplicates: u64,
    /// New findings.
    pub new: u64,
    /// Open findings with other details.
    pub updated: u64,
    /// Open findings seen again as they were.
    pub unchanged: u64,
    /// Open findings of scanned hosts absent from the scan.
    pub resolved: u64,
    /// Resolved findings seen again.
    pub reopened: u64,
}

impl Counts {
    /// The counts of a summary, to compare with the expected ones.
    pub fn of(summary: &shared::events::Summary) -> Counts {
        Counts {
            rows: summary.rows,
            skipped_duplicates: summary.skipped_duplicates,
            new: summary.new,
            updated: summary.updated,
            unchanged: summary.unchanged,
            resolved: summary.resolved,
            reopened: summary.reopened,
        }
    }
}

/// The files of a generated series and the counts each import of `bench e2e` expects.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expected {
    /// The mix next week's scan was written with.
    pub mix: Mix,
    /// The first file, imported into an empty tenant.
    pub first: Counts,
    /// The first file again, on the same scan date.
    pub identical: Counts,
    /// Next week's scan.
    pub next_week: Counts,
    /// The first file once more, a week later.
    pub back_again: Counts,
}

/// Where next week's scan and the expected counts of `file` are written: beside it, as
/// `<stem>.next-week.csv` and `<stem>.expected.json`.
pub fn sidecars(file: &Path) -> (PathBuf, PathBuf) {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scan".into());
    let dir = file.parent().unwrap_or(Path::new(""));
    (dir.join(format!("{stem}.next-week.csv")), dir.join(format!("{stem}.expected.json")))
}

impl Expected {
    /// Reads the expected counts written beside `file`.
    pub fn read(file: &Path) -> anyhow::Result<Expected> {
        let (_, path) = sidecars(file);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("reading {} (write it with `bench generate --next-week GONE,CHANGED,NEW`)", path.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes the expected counts beside `file`.
    pub fn write(&self, file: &Path) -> anyhow::Result<()> {
        let (_, path) = sidecars(file);
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_is_three_percentages() {
        assert_eq!(Mix::parse("5,10,5").unwrap(), Mix { gone: 5.0, changed: 10.0, new: 5.0 });
        assert_eq!(Mix::parse(" 0.5, 0 ,100").unwrap(), Mix { gone: 0.5, changed: 0.0, new: 100.0 });
        for bad in ["5,10", "a,b,c", "60,50,0", "-1,0,0", "5,10,5,1"] {
            let err = Mix::parse(bad).unwrap_err();
            assert!(err.contains("GONE,CHANGED,NEW"), "{bad}: {err}");
        }
    }

    #[test]
    fn fates_follow_the_mix() {
        let mix = Mix { gone: 5.0, changed: 10.0, new: 5.0 };
        let fates: Vec<Fate> = (0..100_000).map(|i| mix.fate(42, i)).collect();
        let share = |f: Fate| fates.iter().filter(|x| **x == f).count() as f64 / 1000.0;
        assert!((share(Fate::Gone) - 5.0).abs() < 0.5, "{}", share(Fate::Gone));
        assert!((share(Fate::Changed) - 10.0).abs() < 0.5, "{}", share(Fate::Changed));
        assert_eq!(mix.fate(42, 7), mix.fate(42, 7));
    }

    #[test]
    fn sidecars_sit_beside_the_file() {
        let (next, expected) = sidecars(Path::new("/tmp/x/nessus_1m.csv"));
        assert_eq!(next, Path::new("/tmp/x/nessus_1m.next-week.csv"));
        assert_eq!(expected, Path::new("/tmp/x/nessus_1m.expected.json"));
    }
}
