//! `hexflow import FILE`: upload a scan export and follow its import in the terminal.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;
use shared::{ProgressEvent, Status};
use tokio_util::io::ReaderStream;

/// Arguments of `hexflow import`.
#[derive(clap::Args, Debug, Clone)]
pub struct ImportArgs {
    /// The scan export to import.
    pub file: PathBuf,
    /// Format (default: detected from the header).
    #[arg(long)]
    pub format: Option<String>,
    /// Scan date, YYYY-MM-DD or RFC 3339 (default: now).
    #[arg(long = "scan-date")]
    pub scan_date: Option<String>,
    /// The hexflow server.
    #[arg(long, env = "HEXFLOW_SERVER", default_value = "http://127.0.0.1:8989")]
    pub server: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "HEXFLOW_TOKEN")]
    pub token: Option<String>,
}

/// Bytes read from the file per body chunk (the default 4 KiB costs a write per 4 KiB).
const UPLOAD_READ_BYTES: usize = 256 * 1024;

/// Uploads the file, draws progress until the import ends, prints the summary. Returns the
/// process exit code: 0 completed, 1 error, 2 cancelled.
pub async fn run(args: ImportArgs) -> anyhow::Result<i32> {
    let client = reqwest::Client::new();
    let server = args.server.trim_end_matches('/').to_owned();
    let file = tokio::fs::File::open(&args.file).await.with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata().await?.len();
    let name = args.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload.csv".into());
    let part = reqwest::multipart::Part::stream_with_length(
        reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, UPLOAD_READ_BYTES)),
        size,
    )
    .file_name(name.clone())
    .mime_str("text/csv")?;
    let mut form = reqwest::multipart::Form::new().part("file", part);
    if let Some(f) = &args.format {
        form = form.text("format", f.clone());
    }
    if let Some(d) = &args.scan_date {
        form = form.text("scanDate", d.clone());
    }
    eprintln!("Uploading {name} ({})…", human_bytes(size));
    let response = with_token(client.post(format!("{server}/api/imports")), &args.token)
        .multipart(form)
        .send()
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "upload refused ({status}): {} [{}]",
            body["error"]["message"].as_str().unwrap_or("no details"),
            body["error"]["code"].as_str().unwrap_or("?")
        );
    }
    let id = body["sessionId"].as_str().context("the server answered without a sessionId")?.to_owned();
    eprintln!("Queued as {id} (format {})", body["format"].as_str().unwrap_or("?"));

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let started = Instant::now();
    let mut asked = false;
    loop {
        let event: ProgressEvent = with_token(client.get(format!("{server}/api/imports/{id}")), &args.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        draw(&event, started.elapsed());
        if event.is_terminal() {
            eprintln!();
            return Ok(report(&event));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = &mut ctrl_c, if !asked => {
                asked = true;
                eprint!("\nCancel import {id}? [y/N] ");
                let answer = tokio::task::spawn_blocking(|| { let mut s = String::new(); std::io::stdin().read_line(&mut s).map(|_| s) }).await??;
                if answer.trim().eq_ignore_ascii_case("y") {
                    with_token(client.post(format!("{server}/api/imports/{id}/cancel")), &args.token).send().await?;
                    eprintln!("Cancel requested; waiting for the worker to stop…");
                } else {
                    eprintln!("Still watching (the import goes on even if you quit).");
                }
            }
        }
    }
}

fn with_token(request: reqwest::RequestBuilder, token: &Option<String>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    }
}

fn draw(e: &ProgressEvent, elapsed: Duration) {
    const WIDTH: usize = 30;
    let filled = ((e.progress / 100.0) * WIDTH as f64).round() as usize;
    let bar: String = "█".repeat(filled.min(WIDTH)) + &"░".repeat(WIDTH - filled.min(WIDTH));
    let eta = e.eta_seconds.map(|s| format_eta(s.round() as u64)).unwrap_or_else(|| "–".into());
    eprint!(
        "\r\x1b[2K{bar} {:>5.1}% {:<10} {:>9} rows {:>8.0} rows/s ETA {eta:<8} {:>5.1}s",
        e.progress,
        e.phase.as_str(),
        e.processed_rows,
        e.rows_per_second,
        elapsed.as_secs_f64()
    );
    let _ = std::io::stderr().flush();
}

/// `45s`, `1m 30s`, `61m 5s`.
pub fn format_eta(secs: u64) -> String {
    if secs < 60 { format!("{secs}s") } else { format!("{}m {}s", secs / 60, secs % 60) }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn report(e: &ProgressEvent) -> i32 {
    match e.status {
        Status::Completed => {
            if let Some(s) = &e.summary {
                println!(
                    "completed: {} rows in {:.1}s ({:.0} rows/s)\n  new {}  updated {}  unchanged {}  resolved {}  reopened {}\n  duplicates merged {}  invalid rows skipped {}",
                    s.rows,
                    s.duration_ms as f64 / 1000.0,
                    s.rows_per_second,
                    s.new,
                    s.updated,
                    s.unchanged,
                    s.resolved,
                    s.reopened,
                    s.skipped_duplicates,
                    s.validation_errors
                );
            }
            0
        }
        Status::Cancelled => {
            println!("cancelled: {}", e.message);
            2
        }
        _ => {
            let err = e.error.clone().unwrap_or_default();
            println!("error [{}]: {}", err.code, err.message);
            for s in &err.recovery_suggestions {
                println!("  - {s}");
            }
            1
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn eta_is_formatted_like_the_page() {
        assert_eq!(super::format_eta(45), "45s");
        assert_eq!(super::format_eta(90), "1m 30s");
        assert_eq!(super::format_eta(3665), "61m 5s");
    }
}
