//! `bench e2e`: the imports a team runs, over HTTP against a stack of child processes: a first
//! import, the same file again, next week's scan and the first file back again, each compared
//! with the bare `COPY` of the same file and checked against the lifecycle counts the generator
//! expects; and the first import without intermediate progress events.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};

use crate::{
    copy::{self, CopyRun},
    import,
    report::{Report, Run},
    stack::{Services, Stack},
    weeks::{self, Counts, Expected},
};

/// The imports of a series, in the order `bench e2e` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The first file into an empty tenant.
    First,
    /// The same file again, same scan date: every finding unchanged.
    Identical,
    /// Next week's scan: some findings gone, changed or new.
    NextWeek,
    /// The first file once more, a week later: reopens and resolves.
    BackAgain,
    /// The first file into an empty tenant, without intermediate progress events.
    FirstProgressOff,
}

impl Kind {
    /// Every kind, in the order of the report.
    pub const ALL: [Kind; 5] = [Kind::First, Kind::Identical, Kind::NextWeek, Kind::BackAgain, Kind::FirstProgressOff];

    /// The name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Kind::First => "first import",
            Kind::Identical => "identical re-import",
            Kind::NextWeek => "next week's scan",
            Kind::BackAgain => "back again",
            Kind::FirstProgressOff => "first import, progress off",
        }
    }

    /// The scan date sent with the upload: a week apart, as weekly scans are.
    fn scan_date(self) -> &'static str {
        match self {
            Kind::First | Kind::Identical | Kind::FirstProgressOff => "2026-01-15",
            Kind::NextWeek => "2026-01-22",
            Kind::BackAgain => "2026-01-29",
        }
    }

    /// The largest wall time allowed, as a multiple of the bare COPY of the same file.
    pub fn target_ratio(self) -> f64 {
        match self {
            Kind::First | Kind::Identical | Kind::FirstProgressOff => 2.0,
            Kind::NextWeek | Kind::BackAgain => 2.5,
        }
    }

    /// True when it imports next week's file.
    pub fn next_week_file(self) -> bool {
        self == Kind::NextWeek
    }

    fn expected(self, e: &Expected) -> Counts {
        match self {
            Kind::First | Kind::FirstProgressOff => e.first,
            Kind::Identical => e.identical,
            Kind::NextWeek => e.next_week,
            Kind::BackAgain => e.back_again,
        }
    }
}

/// Set once the report is printed: Ctrl-C after it is the normal end of `--keep-stack`.
pub static FINISHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Arguments of `bench e2e`.
#[derive(clap::Args, Debug)]
pub struct E2eArgs {
    /// The CSV to import (see `bench generate`).
    #[arg(long, default_value = "/tmp/hexflow-bench/nessus_1m.csv")]
    pub file: PathBuf,
    /// Leave the stack running at the end (until Ctrl-C) and keep its data.
    #[arg(long)]
    pub keep_stack: bool,
    /// Series to run (each: the four imports, the bare COPYs, the import with progress off);
    /// medians are compared.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,
    /// Run only the first imports (progress on and off) and the bare COPY: no next week's file
    /// needed, and the first imports' counts checked when the expected counts lie beside the
    /// file.
    #[arg(long)]
    pub first_only: bool,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Longest wait for one import (upload to terminal event), in minutes.
    #[arg(long = "timeout-mins", default_value_t = 30)]
    pub timeout_mins: u64,
    /// Where the run's directory (data and logs) is created.
    #[arg(long = "work-dir", default_value = "/tmp/hexflow-bench")]
    pub work_dir: PathBuf,
    /// A PostgreSQL setting applied to every import database (`ALTER DATABASE ... SET`), as
    /// `name=value`; repeatable. For diagnosis only: the report lists them, and figures taken
    /// with one are not the product's.
    #[arg(long = "db-setting", value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub db_settings: Vec<(String, String)>,
    /// An environment variable for the upload gateway and the worker, as `name=value`;
    /// repeatable (for instance `HEXFLOW_EARLY_STARTS=0`, to measure imports that start only
    /// once their files are stored). The report lists them.
    #[arg(long = "service-env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub service_env: Vec<(String, String)>,
    /// Send each upload at most this fast, in MiB/s, as over a network link (119 is 1 Gbit/s);
    /// the report lists it. Unbounded by default (loopback).
    #[arg(long = "upload-mib-per-sec", value_parser = clap::value_parser!(u64).range(1..))]
    pub upload_mib_per_sec: Option<u64>,
    /// The `hexflow` binary [default: next to this one].
    #[arg(long)]
    pub hexflow: Option<PathBuf>,
}

/// Runs the benchmark and prints the report; every child is stopped on the way out.
pub async fn run(args: E2eArgs) -> anyhow::Result<()> {
    let file =
        args.file.canonicalize().with_context(|| format!("{} (run `bench generate` first)", args.file.display()))?;
    let hexflow = match &args.hexflow {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.parent().context("the bench binary has no directory")?.join("hexflow"),
    };
    if !hexflow.is_file() {
        bail!("{} not found; build it with `cargo build --release -p hexflow -p bench`", hexflow.display());
    }
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let dir = args.work_dir.join(format!("e2e-{stamp}"));
    let (data, logs) = (dir.join("data"), dir.join("logs"));
    let limit = Duration::from_secs(args.timeout_mins * 60);
    let http = reqwest::Client::builder().build()?;

    eprintln!("starting nats-server and PostgreSQL under {}", data.display());
    let mut stack = Stack::start(hexflow.clone(), &data, logs.clone()).await?;
    eprintln!("logs: {} (PostgreSQL: {})", logs.display(), data.join("postgres/server.log").display());
    let mut report = Report::new(file.clone(), std::fs::metadata(&file)?.len(), logs.clone());
    report.versions = versions(&stack).await;
    for (name, value) in &args.db_settings {
        report.versions.push(("database setting (diagnosis, not the default)".into(), format!("{name} = {value}")));
    }
    for (name, value) in &args.service_env {
        report.versions.push(("service setting (not the default)".into(), format!("{name}={value}")));
    }
    stack.service_env = args.service_env.clone();
    stack.upload_bytes_per_sec = args.upload_mib_per_sec.map(|mib| mib * 1024 * 1024);
    if let Some(mib) = args.upload_mib_per_sec {
        report.versions.push(("uploads sent at most".into(), format!("{mib} MiB/s")));
    }

    // A first-only run checks the first imports' counts too, when they lie beside the file.
    let (next_week, counts) = weeks::sidecars(&file);
    let expected = if args.first_only && !counts.is_file() { None } else { Some(Expected::read(&file)?) };
    if !args.first_only && !next_week.is_file() {
        bail!("{} not found (write it with `bench generate --next-week GONE,CHANGED,NEW`)", next_week.display());
    }
    // Interleaved, so a slow drift of the machine affects every kind alike.
    for i in 1..=args.repeat {
        let series = Series {
            http: &http,
            file: &file,
            next_week: &next_week,
            expected: expected.as_ref(),
            args: &args,
            limit,
            logs: &logs,
        };
        let database = format!("hexflow_series_{i}");
        series.start(&mut stack, &database, true, "first").await?;
        report.runs.push(series.import(&mut stack, Kind::First, i).await?);
        stack.stop_services().await;
        report.copies.push((false, copy_once(&stack, &file, i).await?));
        if !args.first_only {
            series.start(&mut stack, &database, true, "rescans").await?;
            report.runs.push(series.import(&mut stack, Kind::Identical, i).await?);
            report.runs.push(series.import(&mut stack, Kind::NextWeek, i).await?);
            stack.stop_services().await;
            report.copies.push((true, copy_once(&stack, &next_week, i).await?));
            series.start(&mut stack, &database, true, "back-again").await?;
            report.runs.push(series.import(&mut stack, Kind::BackAgain, i).await?);
        }
        series.start(&mut stack, &format!("hexflow_progress_off_{i}"), false, "first").await?;
        report.runs.push(series.import(&mut stack, Kind::FirstProgressOff, i).await?);
    }
    stack.stop_services().await;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        report.print();
    }
    if args.keep_stack {
        eprintln!(
            "stack kept: NATS {} · PostgreSQL {} · data {}; Ctrl-C to stop",
            stack.nats.url,
            stack.pg.url("postgres"),
            data.display()
        );
        FINISHED.store(true, std::sync::atomic::Ordering::SeqCst);
        // `main` stops waiting on Ctrl-C and drops this future, which stops the stack.
        std::future::pending::<()>().await;
    }
    let pg_log = data.join("postgres/server.log");
    if pg_log.exists() {
        let _ = std::fs::copy(&pg_log, logs.join("postgres.log"));
    }
    drop(stack);
    if !args.keep_stack {
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    }
    let wrong = report.wrong_counts();
    if !wrong.is_empty() {
        bail!("{} import(s) gave lifecycle counts other than expected:\n{}", wrong.len(), wrong.join("\n"));
    }
    Ok(())
}

/// What every import of a series needs.
struct Series<'a> {
    http: &'a reqwest::Client,
    file: &'a std::path::Path,
    next_week: &'a std::path::Path,
    expected: Option<&'a Expected>,
    args: &'a E2eArgs,
    limit: Duration,
    /// The run's logs, where each import's events are written.
    logs: &'a std::path::Path,
}

impl Series<'_> {
    /// Fresh services on `database`, created when it does not exist yet.
    async fn start(&self, stack: &mut Stack, database: &str, progress_events: bool, step: &str) -> anyhow::Result<()> {
        let label = format!("{database}-{step}");
        eprintln!("{label}: database {database}, starting services (progress events {progress_events})");
        stack.create_database(database, &self.args.db_settings).await?;
        stack.restart_services(self.http, Services { database, progress_events, label: &label }).await
    }

    /// One import of `kind`, with the counts it must give.
    async fn import(&self, stack: &mut Stack, kind: Kind, i: u32) -> anyhow::Result<Run> {
        let file = if kind.next_week_file() { self.next_week } else { self.file };
        let label = format!("{} #{i}", kind.label());
        let measured = import::import(stack, self.http, file, kind.scan_date(), label.clone(), self.limit).await?;
        eprintln!(
            "{label}: {} rows in {:.1}s ({:.0} rows/s)",
            measured.rows(),
            measured.wall.as_secs_f64(),
            measured.rows_per_second()
        );
        measured.write_events(self.logs)?;
        Ok(Run { kind, expected: self.expected.map(|e| kind.expected(e)), measured })
    }
}

/// The bare COPY of `file` into a table of its own.
async fn copy_once(stack: &Stack, file: &std::path::Path, i: u32) -> anyhow::Result<CopyRun> {
    hexflow::dev::ensure_database(&stack.pg.url("postgres"), "bench_copy").await?;
    let run = copy::bare_copy(&stack.pg.url("bench_copy"), file).await?;
    eprintln!(
        "bare-copy-{i}: {} rows in {:.1}s ({:.0} rows/s)",
        run.rows,
        run.elapsed.as_secs_f64(),
        run.rows as f64 / run.elapsed.as_secs_f64()
    );
    Ok(run)
}

/// PostgreSQL's and nats-server's versions, for the report.
async fn versions(stack: &Stack) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let pg: Result<String, _> = async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&stack.pg.url("postgres")).await?;
        sqlx::query_scalar("SHOW server_version").fetch_one(&mut conn).await
    }
    .await;
    out.push(("PostgreSQL".into(), pg.unwrap_or_else(|e| format!("unknown ({e})"))));
    let nats = hexflow::embedded::find_program("nats-server", &[PathBuf::from("/usr/sbin")])
        .and_then(|p| std::process::Command::new(p).arg("--version").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    out.push(("nats-server".into(), nats));
    out.push(("CPUs".into(), std::thread::available_parallelism().map(|n| n.to_string()).unwrap_or_default()));
    out
}

fn parse_setting(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value))
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') =>
        {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{raw:?} is not NAME=VALUE (e.g. enable_nestloop=off)")),
    }
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value))
            if name.starts_with("HEXFLOW_")
                && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') =>
        {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{raw:?} is not HEXFLOW_NAME=VALUE (e.g. HEXFLOW_EARLY_STARTS=0)")),
    }
}
