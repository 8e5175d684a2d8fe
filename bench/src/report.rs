//! The figures of `bench e2e`, checked against the targets, as text or as one JSON object.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::{copy::CopyRun, import::Measured};

/// Rows per second the whole import must reach.
const TARGET_ROWS_PER_SECOND: f64 = 100_000.0;
/// End-to-end time may be at most this many times the bare COPY.
const TARGET_COPY_RATIO: f64 = 2.0;
/// Largest cost of intermediate progress events, in percent.
const TARGET_OVERHEAD_PERCENT: f64 = 1.0;
/// Largest resident set of each service: 150 MB (10^6 bytes), in KiB.
const TARGET_RSS_KIB: u64 = 150_000_000 / 1024;
/// Largest ETA error from 20 % on, in percent.
const TARGET_ETA_PERCENT: f64 = 15.0;

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
    /// Imports with progress events (the default).
    pub progress_on: Vec<Measured>,
    /// Imports with `HEXFLOW_PROGRESS_EVENTS=false`.
    pub progress_off: Vec<Measured>,
    /// Bare COPYs of the file.
    pub copies: Vec<CopyRun>,
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

/// For each decile, the first event at or past it: its ETA against the real time left.
fn eta_points(m: &Measured) -> Vec<EtaPoint> {
    let end = m.wall;
    (1..=9)
        .filter_map(|decile| {
            let a = m.events.iter().find(|a| a.event.progress >= f64::from(decile * 10))?;
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

fn eta_holds(points: &[EtaPoint]) -> bool {
    let from_20: Vec<&EtaPoint> = points.iter().filter(|p| p.decile >= 20).collect();
    from_20.len() == 8 && from_20.iter().all(|p| p.within_target())
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
        Report {
            file,
            file_bytes,
            logs,
            versions: Vec::new(),
            progress_on: vec![],
            progress_off: vec![],
            copies: vec![],
        }
    }

    fn walls(runs: &[Measured]) -> Vec<f64> {
        runs.iter().map(|m| m.wall.as_secs_f64()).collect()
    }

    fn copy_secs(&self) -> Vec<f64> {
        self.copies.iter().map(|c| c.elapsed.as_secs_f64()).collect()
    }

    fn rows(&self) -> u64 {
        self.progress_on.first().map(Measured::rows).unwrap_or_default()
    }

    fn max_rss_kib(&self, pick: fn(&Measured) -> u64) -> u64 {
        self.progress_on.iter().chain(&self.progress_off).map(pick).max().unwrap_or_default()
    }

    /// The headline figures and whether each target is met.
    fn verdicts(&self) -> Vec<(String, String, bool)> {
        let on = median(Self::walls(&self.progress_on));
        let off = median(Self::walls(&self.progress_off));
        let copy = median(self.copy_secs());
        let rps = self.rows() as f64 / on;
        let overhead = (on - off) / off * 100.0;
        let gw = self.max_rss_kib(|m| m.gateway.max_rss_kib.max(m.gateway.hwm_kib));
        let wk = self.max_rss_kib(|m| m.worker.max_rss_kib.max(m.worker.hwm_kib));
        let eta_ok = self.progress_on.iter().all(|m| eta_holds(&eta_points(m)));
        vec![
            (
                format!("end-to-end ≥ {TARGET_ROWS_PER_SECOND:.0} rows/s"),
                format!("{rps:.0} rows/s"),
                rps >= TARGET_ROWS_PER_SECOND,
            ),
            (
                format!("end-to-end ≤ {TARGET_COPY_RATIO}× bare COPY"),
                format!("{:.2}× ({on:.1}s vs {copy:.1}s)", on / copy),
                on / copy <= TARGET_COPY_RATIO,
            ),
            (
                format!("progress overhead < {TARGET_OVERHEAD_PERCENT}%"),
                format!("{overhead:+.2}% ({on:.1}s vs {off:.1}s)"),
                overhead < TARGET_OVERHEAD_PERCENT,
            ),
            ("upload-gateway peak RSS < 150 MB".into(), format!("{:.1} MiB", mib(gw)), gw < TARGET_RSS_KIB),
            ("import-worker peak RSS < 150 MB".into(), format!("{:.1} MiB", mib(wk)), wk < TARGET_RSS_KIB),
            (
                format!("ETA within {TARGET_ETA_PERCENT}% from 20% on"),
                if eta_ok { "yes".into() } else { "no (see the ETA table)".into() },
                eta_ok,
            ),
        ]
    }

    /// Prints the report as text on stdout.
    pub fn print(&self) {
        println!("# hexflow end-to-end benchmark\n");
        println!("file: {} ({:.1} MiB, {} rows)", self.file.display(), self.file_bytes as f64 / 1048576.0, self.rows());
        for (what, version) in &self.versions {
            println!("{what}: {version}");
        }
        println!("logs: {}\n", self.logs.display());

        println!("## Imports (upload start to terminal event)\n");
        println!(
            "| run | rows | wall s | rows/s | upload s | events | gateway RSS / HWM MiB | worker RSS / HWM MiB | load avg |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for m in self.progress_on.iter().chain(&self.progress_off) {
            println!(
                "| {} | {} | {:.1} | {:.0} | {:.1} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} |",
                m.label,
                m.rows(),
                m.wall.as_secs_f64(),
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

        println!("\n## Time per phase (s; from a phase's first event to the next phase's first event)\n");
        for m in self.progress_on.iter().chain(&self.progress_off) {
            let phases = m.phases();
            let total = m.wall.as_secs_f64();
            let cells: Vec<String> = phases
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

        if let Some(m) = self.progress_on.first() {
            println!("\n## Summary of {}\n", m.label);
            let summary = serde_json::to_string_pretty(&m.terminal().summary).unwrap_or_default();
            println!("```json\n{summary}\n```");
        }

        for m in &self.progress_on {
            println!("\n## ETA accuracy, {}\n", m.label);
            println!("| decile | progress | phase | predicted s | real s | error |");
            println!("|---:|---:|---|---:|---:|---:|");
            let points = eta_points(m);
            for p in &points {
                let eta = p.eta.map(|e| format!("{e:.1}")).unwrap_or_else(|| "–".into());
                let err = p.error_percent().map(|e| format!("{e:+.1}%")).unwrap_or_else(|| "–".into());
                println!("| {}% | {:.1} | {} | {eta} | {:.1} | {err} |", p.decile, p.progress, p.phase, p.real);
            }
            let holds = eta_holds(&points);
            println!("\n15% target from 20% on: {}", if holds { "holds" } else { "does NOT hold" });
        }

        println!("\n## Bare COPY of the same file into an UNLOGGED 13-text-column table\n");
        for (i, c) in self.copies.iter().enumerate() {
            let secs = c.elapsed.as_secs_f64();
            println!("- bare-copy-{}: {} rows in {secs:.1}s ({:.0} rows/s)", i + 1, c.rows, c.rows as f64 / secs);
        }

        println!("\n## Medians over {} repeat(s)\n", self.progress_on.len());
        println!("| what | median s | min s | max s | spread |");
        println!("|---|---:|---:|---:|---:|");
        for (what, values) in [
            ("import, progress on", Self::walls(&self.progress_on)),
            ("import, progress off", Self::walls(&self.progress_off)),
            ("bare COPY", self.copy_secs()),
        ] {
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
        let run = |m: &Measured| {
            json!({
                "label": m.label,
                "sessionId": m.session_id,
                "rows": m.rows(),
                "wallSeconds": m.wall.as_secs_f64(),
                "rowsPerSecond": m.rows_per_second(),
                "uploadSeconds": m.upload.as_secs_f64(),
                "events": m.events.len(),
                "phases": m.phases(),
                "mergeSteps": m.merge_steps(),
                "gateway": m.gateway,
                "worker": m.worker,
                "loadAverage": m.load_average,
                "summary": m.terminal().summary,
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
            "progressOn": self.progress_on.iter().map(run).collect::<Vec<_>>(),
            "progressOff": self.progress_off.iter().map(run).collect::<Vec<_>>(),
            "bareCopy": self.copies.iter().map(|c| json!({"rows": c.rows, "seconds": c.elapsed.as_secs_f64()})).collect::<Vec<_>>(),
            "medians": {
                "progressOnSeconds": stats(Self::walls(&self.progress_on)),
                "progressOffSeconds": stats(Self::walls(&self.progress_off)),
                "bareCopySeconds": stats(self.copy_secs()),
            },
            "targets": self.verdicts().into_iter().map(|(t, m, ok)| json!({"target": t, "measured": m, "met": ok})).collect::<Vec<_>>(),
        })
    }
}
