//! `hexflow import FILE`: upload a scan export and follow its import in the terminal, or, with
//! `--json`, for a script.
//!
//! # Exit codes
//!
//! Each ending has its own code, so a script can tell them apart (see [`exit`]): 0 the import
//! completed, 1 it was refused or failed, 2 the command line or a local file was wrong, 3 it
//! was cancelled, 4 the server could not be reached (the import may still be going on).
//!
//! # Layout
//! - this file: the command (arguments, upload, following the import, the outcome);
//! - `display`: progress frames on a terminal, plain lines elsewhere;
//! - `retry`: which poll failures are retried, and the jittered backoff;
//! - `tls`: the HTTPS client and its certificate errors.

mod display;
mod retry;
mod tls;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use shared::{ProgressEvent, Status};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::io::ReaderStream;

use display::Progress;
pub use display::format_eta;
use retry::{Backoff, is_transient_error, is_transient_status};
use tls::{connect_error, http_client};

/// The exit codes of `hexflow import`.
pub mod exit {
    /// The import completed.
    pub const COMPLETED: i32 = 0;
    /// The server refused the upload, the import ended in error, or a poll got an answer that
    /// asking again will not change (401, 404).
    pub const FAILED: i32 = 1;
    /// A wrong command line (clap's own code for usage errors), or a file or CA certificate
    /// that cannot be read.
    pub const USAGE: i32 = 2;
    /// The import was cancelled (from here, the page or another client).
    pub const CANCELLED: i32 = 3;
    /// The server could not be reached, or kept answering 502/503/504 past the retry budget.
    pub const UNREACHABLE: i32 = 4;
}

/// The `--help` text after the options: what each exit code means.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 completed, 1 refused or failed, 2 usage error (bad arguments, \
unreadable file), 3 cancelled, 4 server unreachable (the import may still be running).";

/// Arguments of `hexflow import`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXIT_CODES_HELP)]
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
    #[arg(long, env = "HEXFLOW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate(s) (PEM) to trust besides the system's, for a server behind a private CA.
    #[arg(long = "ca-cert", env = "HEXFLOW_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Print one JSON object with the outcome on stdout (status, exitCode, sessionId, and the
    /// final progress event with its summary or error) instead of the text summary.
    #[arg(long)]
    pub json: bool,
    /// How long polling may keep failing (502/503/504, connection refused) before giving up
    /// with exit code 4.
    #[arg(long = "retry-for", value_name = "SECONDS", default_value_t = 60)]
    pub retry_for: u64,
}

/// Bytes read from the file per body chunk (the default 4 KiB costs a write per 4 KiB).
const UPLOAD_READ_BYTES: usize = 256 * 1024;

/// How often the import's state is asked for.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// How an import command ended: its exit code and what `--json` prints.
#[derive(Debug)]
struct Ending {
    code: i32,
    /// `completed`, `cancelled`, `error`, `refused`, `usage_error` or `unreachable`.
    status: &'static str,
    session_id: Option<String>,
    event: Option<ProgressEvent>,
    /// What went wrong, for the endings without a progress event.
    error: Option<Value>,
}

impl Ending {
    fn without_event(code: i32, status: &'static str, session_id: Option<String>, error: Value) -> Ending {
        Ending { code, status, session_id, event: None, error: Some(error) }
    }

    fn from_event(event: ProgressEvent) -> Ending {
        let (code, status) = match event.status {
            Status::Completed => (exit::COMPLETED, "completed"),
            Status::Cancelled => (exit::CANCELLED, "cancelled"),
            _ => (exit::FAILED, "error"),
        };
        Ending { code, status, session_id: Some(event.session_id.to_string()), event: Some(event), error: None }
    }

    fn json(&self) -> Value {
        let mut out = json!({ "status": self.status, "exitCode": self.code, "sessionId": self.session_id });
        if let Some(event) = &self.event {
            out["event"] = serde_json::to_value(event).unwrap_or(Value::Null);
        }
        if let Some(error) = &self.error {
            out["error"] = error.clone();
        }
        out
    }
}

/// Uploads the file, shows progress until the import ends, prints the outcome. Returns the
/// process exit code (see [`exit`]); every failure is reported here, on stderr or as JSON.
pub async fn run(args: ImportArgs) -> i32 {
    let ending = import(&args).await;
    if args.json {
        println!("{}", ending.json());
    } else if let Some(event) = &ending.event {
        report(event);
    } else if let Some(error) = &ending.error {
        eprintln!("hexflow import: {}", error["message"].as_str().unwrap_or("failed"));
    }
    ending.code
}

async fn import(args: &ImportArgs) -> Ending {
    let usage = |err: anyhow::Error| Ending::without_event(exit::USAGE, "usage_error", None, message(&err));
    let client = match http_client(args.ca_cert.as_deref()) {
        Ok(client) => client,
        Err(err) => return usage(err),
    };
    let server = args.server.trim_end_matches('/').to_owned();
    let form = match upload_form(args).await {
        Ok(form) => form,
        Err(err) => return usage(err),
    };
    let response =
        match with_token(client.post(format!("{server}/api/imports")), &args.token).multipart(form).send().await {
            Ok(response) => response,
            Err(err) => {
                return Ending::without_event(
                    exit::UNREACHABLE,
                    "unreachable",
                    None,
                    message(&connect_error(err, &server)),
                );
            }
        };
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let mut error = body["error"].clone();
        if !error.is_object() {
            error = json!({ "message": format!("the server answered {status} without an error body") });
        }
        error["httpStatus"] = json!(status.as_u16());
        error["message"] = json!(format!(
            "upload refused ({status}): {} [{}]",
            error["message"].as_str().unwrap_or("no details"),
            error["code"].as_str().unwrap_or("?")
        ));
        let code = if status.is_server_error() { exit::UNREACHABLE } else { exit::FAILED };
        let label = if status.is_server_error() { "unreachable" } else { "refused" };
        return Ending::without_event(code, label, None, error);
    }
    let Some(id) = body["sessionId"].as_str().map(str::to_owned) else {
        let error = json!({ "message": "the server accepted the upload but answered without a sessionId" });
        return Ending::without_event(exit::FAILED, "error", None, error);
    };
    // Ctrl-C is ours from here on (before, it ends the upload as usual): the stream is set up
    // before "Queued as" is shown, so no press after it can kill the process.
    let interrupts = match signal(SignalKind::interrupt()) {
        Ok(interrupts) => interrupts,
        Err(err) => {
            let error = json!({ "message": format!("listening for Ctrl-C: {err}") });
            return Ending::without_event(exit::FAILED, "error", Some(id), error);
        }
    };
    eprintln!("Queued as {id} (format {})", body["format"].as_str().unwrap_or("?"));
    let watch = Watch { client: &client, server: &server, token: &args.token, id: &id, retry_for: args.retry_for };
    match watch.until_done(Progress::for_this_process(), interrupts).await {
        Ok(event) => Ending::from_event(event),
        Err(Stop::Unreachable(err)) => {
            let err = err.context(format!("following import {id} (it may still be running on the server)"));
            Ending::without_event(exit::UNREACHABLE, "unreachable", Some(id), message(&err))
        }
        Err(Stop::Failed(err)) => {
            let err = err.context(format!("following import {id}"));
            Ending::without_event(exit::FAILED, "error", Some(id), message(&err))
        }
    }
}

/// Why following an import stopped before it ended.
#[derive(Debug)]
enum Stop {
    /// The server stayed unreachable (or kept answering 502/503/504) past the retry budget.
    Unreachable(anyhow::Error),
    /// An answer that asking again will not change (401, 404, a body that does not parse), or a
    /// local failure (the terminal).
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(err: anyhow::Error) -> Stop {
        Stop::Failed(err)
    }
}

/// The multipart form: a session id of our own and the optional fields, then the file streamed
/// (fields before the file let a large import start while the file uploads).
async fn upload_form(args: &ImportArgs) -> anyhow::Result<reqwest::multipart::Form> {
    let file = tokio::fs::File::open(&args.file).await.with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata().await.with_context(|| format!("reading {}", args.file.display()))?.len();
    let name = args.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload.csv".into());
    let part = reqwest::multipart::Part::stream_with_length(
        reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, UPLOAD_READ_BYTES)),
        size,
    )
    .file_name(name.clone())
    .mime_str("text/csv")?;
    let mut form = reqwest::multipart::Form::new().text("sessionId", uuid::Uuid::new_v4().to_string());
    if let Some(f) = &args.format {
        form = form.text("format", f.clone());
    }
    if let Some(d) = &args.scan_date {
        form = form.text("scanDate", d.clone());
    }
    let form = form.part("file", part);
    eprintln!("Uploading {name} ({})…", human_bytes(size));
    Ok(form)
}

/// `{"message": ...}` with the whole cause chain.
fn message(err: &anyhow::Error) -> Value {
    json!({ "message": format!("{err:#}") })
}

/// Following one import on the server.
struct Watch<'a> {
    client: &'a reqwest::Client,
    server: &'a str,
    token: &'a Option<String>,
    id: &'a str,
    retry_for: u64,
}

impl Watch<'_> {
    /// Polls until the import ends; Ctrl-C asks whether to cancel it (every time it is pressed).
    /// `interrupts` is one stream for the whole watch: a Ctrl-C pressed while a request is in
    /// flight waits in it for the next look, and answering "no" leaves it armed for the next.
    async fn until_done(&self, mut progress: Progress, mut interrupts: Signal) -> Result<ProgressEvent, Stop> {
        loop {
            let event = self.poll().await?;
            progress.show(&event);
            if event.is_terminal() {
                progress.break_line();
                return Ok(event);
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = interrupts.recv() => {
                    progress.break_line();
                    self.ask_to_cancel().await?;
                }
            }
        }
    }

    /// The import's latest event; 502/503/504 and connection failures are retried with backoff
    /// until `retry_for` seconds are spent.
    async fn poll(&self) -> Result<ProgressEvent, Stop> {
        let url = format!("{}/api/imports/{}", self.server, self.id);
        let mut backoff = Backoff::new(Duration::from_secs(self.retry_for));
        loop {
            let failure = match with_token(self.client.get(&url), self.token).send().await {
                Ok(response) if response.status().is_success() => {
                    let event = response.json().await.with_context(|| format!("reading the answer of GET {url}"))?;
                    return Ok(event);
                }
                Ok(response) if is_transient_status(response.status()) => {
                    anyhow!("GET {url} answered {}", response.status())
                }
                Ok(response) => {
                    let status = response.status();
                    return Err(Stop::Failed(anyhow!("GET {url} answered {status}: {}", error_text(response).await)));
                }
                Err(err) if is_transient_error(&err) => anyhow::Error::new(err).context(format!("GET {url}")),
                Err(err) => return Err(Stop::Failed(anyhow::Error::new(err).context(format!("GET {url}")))),
            };
            match backoff.next_wait() {
                Some(wait) => {
                    eprintln!("{failure:#}; retrying in {:.1}s", wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                }
                None => {
                    let err = failure.context(format!("gave up after {}s of retries", self.retry_for));
                    return Err(Stop::Unreachable(err));
                }
            }
        }
    }

    async fn ask_to_cancel(&self) -> anyhow::Result<()> {
        eprint!("Cancel import {}? [y/N] ", self.id);
        let answer = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s).map(|_| s)
        })
        .await
        .context("reading the answer")?
        .context("reading the answer")?;
        if answer.trim().eq_ignore_ascii_case("y") {
            let url = format!("{}/api/imports/{}/cancel", self.server, self.id);
            let response =
                with_token(self.client.post(&url), self.token).send().await.with_context(|| format!("POST {url}"))?;
            if !response.status().is_success() {
                eprintln!("The server refused to cancel ({}): {}", response.status(), error_text(response).await);
            } else {
                eprintln!("Cancel requested; waiting for the worker to stop…");
            }
        } else {
            eprintln!("Still watching (the import goes on even if you quit; Ctrl-C asks again).");
        }
        Ok(())
    }
}

/// The error message of a JSON error answer, or its status.
async fn error_text(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap_or(Value::Null);
    body["error"]["message"].as_str().unwrap_or("no details").to_owned()
}

fn with_token(request: reqwest::RequestBuilder, token: &Option<String>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The text summary of an ended import, on stdout.
fn report(e: &ProgressEvent) {
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
        }
        Status::Cancelled => println!("cancelled: {}", e.message),
        _ => {
            let err = e.error.clone().unwrap_or_default();
            println!("error [{}]: {}", err.code, err.message);
            for s in &err.recovery_suggestions {
                println!("  - {s}");
            }
        }
    }
}
