//! `bench e2e`: the whole import over HTTP against a stack of child processes, compared with
//! the bare `COPY` of the same file and with the same import without intermediate progress
//! events.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};

use crate::{
    copy::{self, CopyRun},
    import::{self, Measured},
    report::Report,
    stack::{Services, Stack},
};

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
    /// Imports of each kind (progress on, progress off) and bare COPYs; medians are compared.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,
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

    // Interleaved, so a slow drift of the machine affects both kinds alike.
    for i in 1..=args.repeat {
        report.progress_on.push(measured(&mut stack, &http, &file, true, i, &args, limit).await?);
        stack.stop_services().await;
        report.copies.push(copy_once(&stack, &file, i).await?);
        report.progress_off.push(measured(&mut stack, &http, &file, false, i, &args, limit).await?);
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
    Ok(())
}

/// One import into a fresh database, with fresh services.
async fn measured(
    stack: &mut Stack,
    http: &reqwest::Client,
    file: &std::path::Path,
    progress_events: bool,
    i: u32,
    args: &E2eArgs,
    limit: Duration,
) -> anyhow::Result<Measured> {
    let kind = if progress_events { "on" } else { "off" };
    let database = format!("hexflow_progress_{kind}_{i}");
    let label = format!("progress-{kind}-{i}");
    eprintln!("{label}: database {database}, starting services");
    stack.create_database(&database, &args.db_settings).await?;
    stack.restart_services(http, Services { database: &database, progress_events, label: &label }).await?;
    let measured = import::import(stack, http, file, label.clone(), limit).await?;
    eprintln!(
        "{label}: {} rows in {:.1}s ({:.0} rows/s)",
        measured.rows(),
        measured.wall.as_secs_f64(),
        measured.rows_per_second()
    );
    Ok(measured)
}

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
