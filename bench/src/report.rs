//! The figures of `bench e2e`, checked against the targets, as text or as one JSON object.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::{copy::CopyRun, e2e::Kind, import::Measured, weeks::Counts};

/// Largest cost of intermediate progress events, in percent.
const TARGET_OVERHEAD_PERCENT: f64 = 1.0;
/// Largest resident set of each service: 150 MB (10^6 bytes), in KiB.
const TARGET_RSS_KIB: u64 = 150_000_000 / 1024;
/// Largest ETA error from 20 % on, in percent.
const TARGET_ETA_PERCENT: f64 = 15.0;

/// One import of a series and the counts it had to give.
pub struct Run {
    /// Which import of the series.
    pub kind: Kind,
    /// The lifecycle counts the generator expects (`None` with `--first-only`).
    pub expected: Option<Counts>,
    /// What was measured.
    pub measured: Measured,
}

impl Run {
    /// The counts the terminal event's summary gave.
    fn counts(&self) -> Counts {
        self.measured.terminal().summary.as_ref().map(Counts::of).unwrap_or_default()
    }

    /// `Some(false)` when the counts differ from the expected ones.
    fn counts_right(&self) -> Option<bool> {
        self.expected.map(|e| e == self.counts())
    }
}

/// Everything measured in one `bench e2e`.
pub struct Report {
    /// The imported file.
    pub file: PathBuf,
    /// Its size.
    pub file_bytes: u64,
    /// Where the children's logs are.
    pub logs: PathBuf,
    /// Software versions and machine facts.
    pub versions: Vec<(String, String)>,
    /// Every import, in the order run.
    pub runs: Vec<Run>,
    /// Bare COPYs: of next week's file (`true`) or of the first file.
    pub copies: Vec<(bool, CopyRun)>,
}

/// One row of the ETA table.
struct EtaPoint {
    decile: u32,
    progress: f64,
    phase: &'static str,
    eta: Option<f64>,
    real: f64,
}

impl EtaPoint {
    fn error_percent(&self) -> Option<f64> {
        self.eta.map(|eta| (eta - self.real) / self.real * 100.0)
    }

    fn within_target(&self) -> bool {
        self.error_percent().is_some_and(|e| e.abs() <= TARGET_ETA_PERCENT)
    }
}

/// For each decile, the first event at or past it: its ETA against the real time left. A decile
/// that only the terminal event reaches (a merge too short to report steps past it) has nothing
/// left to predict and no point.
fn eta_points(m: &Measured) -> Vec<EtaPoint> {
    let end = m.wall;
    (1..=9)
        .filter_map(|decile| {
            let a = m.events.iter().find(|a| a.event.progress >= f64::from(decile * 10))?;
            if a.event.is_terminal() {
                return None;
            }
            Some(EtaPoint {
                decile: decile * 10,
                progress: a.event.progress,
                phase: a.event.phase.as_str(),
                eta: a.event.eta_seconds,
                real: (end - a.at).as_secs_f64(),
            })
        })
        .collect()
}

/// True when every point from 20 % on (at least one) is within the target.
fn eta_holds(points: &[EtaPoint]) -> bool {
    let from_20: Vec<&EtaPoint> = points.iter().filter(|p| p.decile >= 20).collect();
    !from_20.is_empty() && from_20.iter().all(|p| p.within_target())
}

/// Median of a non-empty list (0 for an empty one).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn spread(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Report {
    /// An empty report about `file`.
    pub fn new(file: PathBuf, file_bytes: u64, logs: PathBuf) -> Report {
        Report { file, file_bytes, logs, versions: Vec::new(), runs: vec![], copies: vec![] }
    }

    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(move |r| r.kind == kind)
    }

    fn walls(&self, kind: Kind) -> Vec<f64> {
        self.of_kind(kind).map(|r| r.measured.wall.as_secs_f64()).collect()
    }

    fn copy_secs(&self, next_week: bool) -> Vec<f64> {
        self.copies.iter().filter(|c| c.0 == next_week).map(|c| c.1.elapsed.as_secs_f64()).collect()
    }

    /// Median wall time of `kind` over the median bare COPY of the same file.
    fn ratio(&self, kind: Kind) -> f64 {
        median(self.walls(kind)) / median(self.copy_secs(kind.next_week_file()))
    }

    fn kinds(&self) -> Vec<Kind> {
        Kind::ALL.into_iter().filter(|k| self.of_kind(*k).next().is_some()).collect()
    }

    /// One line per import whose lifecycle counts are not the expected ones.
    pub fn wrong_counts(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter(|r| r.counts_right() == Some(false))
            .map(|r| {
                format!("{}: expected {:?}, got {:?}", r.measured.label, r.expected.unwrap_or_default(), r.counts())
            })
            .collect()
    }

    fn max_rss_kib(&self, pick: fn(&Measured) -> u64) -> u64 {
        self.runs.iter().map(|r| pick(&r.measured)).max().unwrap_or_default()
    }

    /// The headline figures and whether each target is met.
    fn verdicts(&self) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        for kind in self.kinds() {
            let (wall, copy) = (median(self.walls(kind)), median(self.copy_secs(kind.next_week_file())));
            let ratio = self.ratio(kind);
            out.push((
                format!("{} ≤ {}× bare COPY", kind.label(), kind.target_ratio()),
                format!("{ratio:.2}× ({wall:.1}s vs {copy:.1}s)"),
                ratio <= kind.target_ratio(),
            ));
        }
        let (on, off) = (median(self.walls(Kind::First)), median(self.walls(Kind::FirstProgressOff)));
        let overhead = (on - off) / off * 100.0;
        out.push((
            format!("progress overhead < {TARGET_OVERHEAD_PERCENT}% (first import, on vs off)"),
            format!("{overhead:+.2}% ({on:.1}s vs {off:.1}s)"),
            overhead < TARGET_OVERHEAD_PERCENT,
        ));
        let gw = self.max_rss_kib(|m| m.gateway.max_rss_kib.max(m.gateway.hwm_kib));
        let wk = self.max_rss_kib(|m| m.worker.max_rss_kib.max(m.worker.hwm_kib));
        out.push(("upload-gateway peak RSS < 150 MB".into(), format!("{:.1} MiB", mib(gw)), gw < TARGET_RSS_KIB));
        out.push(("import-worker peak RSS < 150 MB".into(), format!("{:.1} MiB", mib(wk)), wk < TARGET_RSS_KIB));
        for kind in self.kinds().into_iter().filter(|k| *k != Kind::FirstProgressOff) {
            let worst = self
                .of_kind(kind)
                .flat_map(|r| eta_points(&r.measured))
                .filter(|p| p.decile >= 20)
                .filter_map(|p| p.error_percent())
                .fold(0.0f64, |worst, e| if e.abs() > worst.abs() { e } else { worst });
            let holds = self.of_kind(kind).all(|r| eta_holds(&eta_points(&r.measured)));
            out.push((
                format!("{}: ETA within {TARGET_ETA_PERCENT}% from 20% on", kind.label()),
                format!("worst {worst:+.1}%"),
                holds,
            ));
        }
        let wrong = self.wrong_counts().len();
        let checked = self.runs.iter().filter(|r| r.expected.is_some()).count();
        out.push((
            "lifecycle counts as expected".into(),
            format!("{} of {checked} imports", checked - wrong),
            wrong == 0,
        ));
        out
    }

    /// Prints the report as text on stdout.
    pub fn print(&self) {
        println!("# hexflow end-to-end benchmark\n");
        println!("file: {} ({:.1} MiB)", self.file.display(), self.file_bytes as f64 / 1048576.0);
        for (what, version) in &self.versions {
            println!("{what}: {version}");
        }
        println!("logs: {}\n", self.logs.display());

        println!("## Imports (upload start to terminal event)\n");
        println!(
            "| run | rows | wall s | × COPY | rows/s | upload s | events | gateway RSS / HWM MiB | worker RSS / HWM MiB | load avg | counts |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &self.runs {
            let m = &r.measured;
            let copy = median(self.copy_secs(r.kind.next_week_file()));
            let counts = match r.counts_right() {
                Some(true) => "as expected",
                Some(false) => "**WRONG**",
                None => "not checked",
            };
            println!(
                "| {} | {} | {:.1} | {:.2} | {:.0} | {:.1} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} | {counts} |",
                m.label,
                m.rows(),
                m.wall.as_secs_f64(),
                m.wall.as_secs_f64() / copy,
                m.rows_per_second(),
                m.upload.as_secs_f64(),
                m.events.len(),
                m.gateway.rss_mib(),
                m.gateway.hwm_mib(),
                m.worker.rss_mib(),
                m.worker.hwm_mib(),
                m.load_average
            );
        }

        println!("\n## Lifecycle counts (expected → got)\n");
        println!("| run | rows | folded | new | updated | unchanged | resolved | reopened |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.runs {
            let got = r.counts();
            let e = r.expected.unwrap_or(got);
            let cell = |e: u64, g: u64| if e == g { g.to_string() } else { format!("**{e} → {g}**") };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.measured.label,
                cell(e.rows, got.rows),
                cell(e.skipped_duplicates, got.skipped_duplicates),
                cell(e.new, got.new),
                cell(e.updated, got.updated),
                cell(e.unchanged, got.unchanged),
                cell(e.resolved, got.resolved),
                cell(e.reopened, got.reopened)
            );
        }

        println!("\n## Time per phase (s; from a phase's first event to the next phase's first event)\n");
        for m in self.runs.iter().map(|r| &r.measured) {
            let total = m.wall.as_secs_f64();
            let cells: Vec<String> = m
                .phases()
                .iter()
                .map(|p| format!("{} {:.1}s ({:.0}%)", p.phase, p.seconds, p.seconds / total * 100.0))
                .collect();
            println!("- {}: {}", m.label, cells.join(" · "));
            let steps = m.merge_steps();
            if steps.len() > 1 {
                let cells: Vec<String> = steps.iter().map(|p| format!("{} {:.1}s", p.phase, p.seconds)).collect();
                println!("  - merge steps: {}", cells.join(" · "));
            }
        }

        for r in self.runs.iter().filter(|r| r.kind != Kind::FirstProgressOff) {
            println!("\n## ETA accuracy, {}\n", r.measured.label);
            println!("| decile | progress | phase | predicted s | real s | error |");
            println!("|---:|---:|---|---:|---:|---:|");
            let points = eta_points(&r.measured);
            for p in &points {
                let eta = p.eta.map(|e| format!("{e:.1}")).unwrap_or_else(|| "–".into());
                let err = p.error_percent().map(|e| format!("{e:+.1}%")).unwrap_or_else(|| "–".into());
                println!("| {}% | {:.1} | {} | {eta} | {:.1} | {err} |", p.decile, p.progress, p.phase, p.real);
            }
            let holds = eta_holds(&points);
            println!("\n15% target from 20% on: {}", if holds { "holds" } else { "does NOT hold" });
        }

        println!("\n## Bare COPY of the same file into an UNLOGGED 13-text-column table\n");
        for (next_week, c) in &self.copies {
            let secs = c.elapsed.as_secs_f64();
            let which = if *next_week { "next week's file" } else { "first file" };
            println!("- {which}: {} rows in {secs:.1}s ({:.0} rows/s)", c.rows, c.rows as f64 / secs);
        }

        let series = self.of_kind(Kind::First).count();
        println!("\n## Medians over {series} series\n");
        println!("| what | median s | min s | max s | spread |");
        println!("|---|---:|---:|---:|---:|");
        let mut rows: Vec<(String, Vec<f64>)> =
            self.kinds().into_iter().map(|k| (k.label().to_owned(), self.walls(k))).collect();
        rows.push(("bare COPY, first file".into(), self.copy_secs(false)));
        if !self.copy_secs(true).is_empty() {
            rows.push(("bare COPY, next week's file".into(), self.copy_secs(true)));
        }
        for (what, values) in rows {
            let m = median(values.clone());
            let (lo, hi) = spread(&values);
            println!("| {what} | {m:.1} | {lo:.1} | {hi:.1} | {:.1}% |", (hi - lo) / m * 100.0);
        }

        println!("\n## Targets\n");
        println!("| target | measured | met |");
        println!("|---|---|---|");
        for (target, measured, ok) in self.verdicts() {
            println!("| {target} | {measured} | {} |", if ok { "yes" } else { "**no**" });
        }
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let run = |r: &Run| {
            let m = &r.measured;
            json!({
                "kind": r.kind.label(),
                "label": m.label,
                "sessionId": m.session_id,
                "rows": m.rows(),
                "wallSeconds": m.wall.as_secs_f64(),
                "copyRatio": m.wall.as_secs_f64() / median(self.copy_secs(r.kind.next_week_file())),
                "rowsPerSecond": m.rows_per_second(),
                "uploadSeconds": m.upload.as_secs_f64(),
                "events": m.events.len(),
                "phases": m.phases(),
                "mergeSteps": m.merge_steps(),
                "gateway": m.gateway,
                "worker": m.worker,
                "loadAverage": m.load_average,
                "summary": m.terminal().summary,
                "expectedCounts": r.expected,
                "countsRight": r.counts_right(),
                "timeline": m.events.iter().map(|a| json!({
                    "at": a.at.as_secs_f64(), "seq": a.event.seq, "phase": a.event.phase,
                    "progress": a.event.progress, "etaSeconds": a.event.eta_seconds, "message": a.event.message,
                })).collect::<Vec<_>>(),
                "eta": eta_points(m).iter().map(|p| json!({
                    "decile": p.decile, "progress": p.progress, "phase": p.phase,
                    "predictedSeconds": p.eta, "realSeconds": p.real, "errorPercent": p.error_percent(),
                })).collect::<Vec<_>>(),
            })
        };
        let stats = |values: Vec<f64>| {
            let (min, max) = spread(&values);
            json!({"median": median(values), "min": min, "max": max})
        };
        json!({
            "file": self.file,
            "fileBytes": self.file_bytes,
            "logs": self.logs,
            "versions": self.versions.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "runs": self.runs.iter().map(run).collect::<Vec<_>>(),
            "bareCopy": self.copies.iter().map(|(next_week, c)| json!({"nextWeekFile": next_week, "rows": c.rows, "seconds": c.elapsed.as_secs_f64()})).collect::<Vec<_>>(),
            "medianSeconds": self.kinds().into_iter().map(|k| (k.label().to_owned(), stats(self.walls(k)))).collect::<serde_json::Map<_, _>>(),
            "targets": self.verdicts().into_iter().map(|(t, m, ok)| json!({"target": t, "measured": m, "met": ok})).collect::<Vec<_>>(),
        })
    }
}
